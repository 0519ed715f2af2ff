"""Neural-architecture search on proxy sets: the ``nas`` task and the ``[[nas]]`` section.

The ``nas`` task trains each candidate architecture of a search space on a proxy of the
training data (a condensed set of any method, a random subset, an early-stopped run on the
whole set) or on the whole set (the target); its ``candidate`` axis declares the DC papers'
space of 720 ConvNets, so a suite writes ``candidate = {sample = 48}`` for a seeded sample of
it (the same sample in every experiment that asks alike) instead of listing architectures.

A ``[[nas]]`` entry ranks candidate architectures (the values of one axis, ``by``) after
training on each proxy configuration of one or more experiments and after training on the
data of another (the target), and reports how well the proxy ranking finds the target's best
candidates (Spearman's rho over all and the top-k, the candidate picked, search times).
Registration only: the task and section load lazily (``task.py``, ``section.py``; the ranking
maths in ``ranking.py``), so listing and validating import no pandas and no torch.
"""
from kddbench import SectionSpec, TaskSpec, hookimpl
from kddbench.axes import AxisUnused, IntAxis, PluginAxis
from kddbench.metrics import PROTOCOL_METRICS, MetricSpec
from kddbench.validation import EVALUATION_METRICS
from kddbench_plugins.condensation import EVALUATION_REUSED

# The DC papers' NAS space (Zhao et al. 2021, "Dataset Condensation with Gradient Matching";
# docs/references.md s.5): depth x width x activation x pooling x normalisation = 720 ConvNets.
DC_SPACE = ("convnet[depth=1|2|3|4,width=32|64|128|256,act=sigmoid|relu|leakyrelu,"
            "pool=none|maxpool|avgpool,norm=none|batchnorm|layernorm|instancenorm|groupnorm]")


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "nas", "kddbench_plugins.nas.task:run",
        "architecture search on a proxy: train one candidate of a search space on the set "
        "method makes at ipc on distill_arch (from the artifact store; full = the whole "
        "set) and test it; [[nas]] ranks the candidates against the whole-set search",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True,
                                   doc="the proxy: a condensation method, random, or full "
                                   "(the whole set; the target, or early-stopped by its "
                                   "protocol)"),
              "ipc": IntAxis(min=1, doc="images per class of the proxy set"),
              "distill_arch": PluginAxis("architecture", doc="the net the proxy set is "
                                         "condensed on (default convnet3)"),
              "candidate": PluginAxis("architecture", required=True, space=DC_SPACE,
                                      doc="the architecture trained; {sample = k, seed = s} "
                                      "draws k of the declared space (the DC papers' 720 "
                                      "ConvNets)")},
        rules=(AxisUnused("ipc", by="method", flag="uses_ipc"),),
        cost="kddbench_plugins.nas.task:cost",
        artifacts="kddbench_plugins.nas.task:declared_artifacts",
        metrics=PROTOCOL_METRICS + EVALUATION_METRICS + (
            MetricSpec("condense.*", None, description="what the condensation method reports "
                       "about its own run"),
            MetricSpec("learned_lr", None, "", 4, "the learning rate learned with the images"),
            MetricSpec("set_reused", None, "", 0, "1 when the set came from the artifact store"),
            EVALUATION_REUSED,
        ))


@hookimpl
def kddbench_report_sections():
    yield SectionSpec(
        "nas", "kddbench_plugins.nas.section:NASSection",
        "[[nas]]: rank correlation between proxy-trained and target-trained candidate "
        "architectures (Spearman over all and top-k, the pick's target accuracy, search time)",
        key="nas")
