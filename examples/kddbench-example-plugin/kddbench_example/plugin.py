"""An example third-party kddbench plugin package: one of each extension point.

* condenser ``first-k``: the first IPC images of each class in data-set order;
* KD loss ``logit-mse``: CE + weight x MSE between student and teacher logits;
* augmentation ``gauss-noise``: adds Gaussian noise of a given std to every pixel;
* task ``centroid`` with its own report section ``[[centroid_summary]]``: classify the real test
  set by the nearest class mean of a condensed set (no training at all) and report, per data
  set, the method whose set gives the best nearest-centroid accuracy.

Registration is all this module does (the implementations sit in ``impl.py`` and load lazily,
so ``kddbench list`` imports no torch).  Install the package with
``pip install examples/kddbench-example-plugin`` (its ``pyproject.toml`` declares one entry
point), or load this file with ``kddbench --plugin .../kddbench_example/plugin.py ...``.
"""
from kddbench import (AugmentationSpec, CondenserSpec, KDMethodSpec, SectionSpec, TaskSpec,
                      hookimpl)
from kddbench.axes import IntAxis, PluginAxis
from kddbench.metrics import MetricSpec
from kddbench.options import Float, Int

_I = "kddbench_example.impl:"


@hookimpl
def kddbench_condensers():
    yield CondenserSpec("first-k", _I + "first_k",
                        "the first IPC images of each class (example plugin)",
                        options={"stride": Int(1, min=1)})


@hookimpl
def kddbench_kd_methods():
    yield KDMethodSpec("logit-mse", _I + "LogitMSE",
                       "CE + weight x MSE(student logits, teacher logits) (example plugin)",
                       options={"weight": Float(1.0, min=0.0), "ce_weight": Float(1.0, min=0.0)})


@hookimpl
def kddbench_augmentations():
    yield AugmentationSpec("gauss-noise", _I + "gauss_noise",
                           "adds N(0, std^2) noise to every pixel (example plugin)",
                           options={"std": Float(0.1, min=0.0)})


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "centroid", _I + "centroid_task",
        "nearest-class-mean accuracy of a condensed set on the real test set, no training "
        "(example plugin)",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True),
              "ipc": IntAxis(min=1, doc="images per class")},
        metrics=(MetricSpec("accuracy", True, "%", 2, "nearest-centroid test accuracy"),),
        sections=("centroid_summary",))


@hookimpl
def kddbench_report_sections():
    yield SectionSpec("centroid_summary", _I + "CentroidSummary",
                      "[[centroid_summary]]: the best method per data set by nearest-centroid "
                      "accuracy (example plugin)", key="centroid_summary")
