"""kddbench: a plugin-based benchmark for knowledge and dataset distillation.

Library entry points (the CLI is a thin layer over these)::

    import kddbench
    df = kddbench.run("suites/quickstart.toml")            # pandas DataFrame, one row per cell
    df = kddbench.load_results("reports/quickstart")       # from stored records
    result = kddbench.compare(baseline_df, current_df)     # regression gate
"""
from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (cheap: pluggy only)
from .specs import (  # noqa: E402
    ArchitectureSpec,
    AugmentationSpec,
    CondenserSpec,
    DatasetSpec,
    ExecutorSpec,
    KDMethodSpec,
    ReporterSpec,
    SectionSpec,
    TaskSpec,
)

__all__ = [
    "__version__", "hookimpl", "run", "load_results", "compare", "load_suite",
    "ArchitectureSpec", "AugmentationSpec", "CondenserSpec", "DatasetSpec", "ExecutorSpec", "KDMethodSpec",
    "ReporterSpec", "SectionSpec", "TaskSpec",
]


def run(suite, out_dir=None, **kwargs):
    """Run a suite file (or a loaded :class:`kddbench.suite.Suite`); see :func:`kddbench.api.run`."""
    from .api import run as _run

    return _run(suite, out_dir, **kwargs)


def load_results(path):
    """A tidy DataFrame from a report directory or a results CSV."""
    from .report import load_results as _load

    return _load(path)


# The gate's code is the submodule ``kddbench.compare``.  Python sets a package attribute of a
# submodule's name when the submodule is first imported, which would replace the function below
# with the module after its first call; importing the submodule here, before the function is
# defined, keeps ``kddbench.compare`` the function (the submodule imports no pandas until used).
from . import compare as _gate  # noqa: E402,F401


def compare(baseline, current, **kwargs):
    """The regression gate on two results tables (DataFrames, results.csv paths or report
    directories): a :class:`kddbench.compare.Comparison` whose ``exit_code`` says whether it
    passed; see :func:`kddbench.compare.compare`."""
    from .api import compare as _compare

    return _compare(baseline, current, **kwargs)


def load_suite(path, overrides=()):
    from .suite import load_suite as _load

    return _load(path, overrides)
