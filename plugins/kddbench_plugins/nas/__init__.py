"""Neural-architecture search on proxy sets: the ``[[nas]]`` suite key and its report section.

A ``[[nas]]`` entry ranks candidate architectures (the values of one axis, ``by``) after
training on each proxy configuration of one experiment and after training on the data of
another (the target), and reports how well the proxy ranking finds the target's best
candidates (Spearman's rho over all and the top-k, the candidate picked, search times).
Registration only: the section loads lazily (``section.py``; the ranking maths in
``ranking.py``), so listing and validating import no pandas and no torch.
"""
from kddbench import SectionSpec, hookimpl


@hookimpl
def kddbench_report_sections():
    yield SectionSpec(
        "nas", "kddbench_plugins.nas.section:NASSection",
        "[[nas]]: rank correlation between proxy-trained and target-trained candidate "
        "architectures (Spearman over all and top-k, the pick's target accuracy, search time)",
        key="nas")
