"""An example third-party kddbench plugin package: one of each extension point.

* condenser ``first-k``: the first IPC images of each class in data-set order;
* KD loss ``logit-mse``: CE + weight x MSE between student and teacher logits;
* augmentation ``gauss-noise``: adds Gaussian noise of a given std to every pixel;
* task ``centroid`` with its own report section ``[[centroid_summary]]``: classify the real test
  set by the nearest class mean of a condensed set (no training at all) and report, per data
  set, the method whose set gives the best nearest-centroid accuracy.

The module is self-contained (so it also loads by path with ``--plugin``); the implementations
import torch inside their functions, so ``kddbench list`` imports no torch.  Install the package with
``pip install examples/kddbench-example-plugin`` (its ``pyproject.toml`` declares one entry
point), or load this file with ``kddbench --plugin .../kddbench_example/plugin.py ...``.
"""
from kddbench import (AugmentationSpec, CondenserSpec, KDMethodSpec, SectionSpec, TaskSpec,
                      hookimpl)
from kddbench.axes import IntAxis, PluginAxis
from kddbench.metrics import MetricSpec
from kddbench.options import Float, Int



@hookimpl
def kddbench_condensers():
    yield CondenserSpec("first-k", first_k,
                        "the first IPC images of each class (example plugin)",
                        options={"stride": Int(1, min=1)})


@hookimpl
def kddbench_kd_methods():
    yield KDMethodSpec("logit-mse", logit_mse,
                       "CE + weight x MSE(student logits, teacher logits) (example plugin)",
                       options={"weight": Float(1.0, min=0.0), "ce_weight": Float(1.0, min=0.0)})


@hookimpl
def kddbench_augmentations():
    yield AugmentationSpec("gauss-noise", gauss_noise,
                           "adds N(0, std^2) noise to every pixel (example plugin)",
                           options={"std": Float(0.1, min=0.0)})


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "centroid", centroid_task,
        "nearest-class-mean accuracy of a condensed set on the real test set, no training "
        "(example plugin)",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True),
              "ipc": IntAxis(min=1, doc="images per class")},
        metrics=(MetricSpec("accuracy", True, "%", 2, "nearest-centroid test accuracy"),),
        sections=("centroid_summary",))


@hookimpl
def kddbench_report_sections():
    yield SectionSpec("centroid_summary", CentroidSummary,
                      "[[centroid_summary]]: the best method per data set by nearest-centroid "
                      "accuracy (example plugin)", key="centroid_summary")


# ---------------------------------------------------------------------------------------------
# implementations (torch imported on first use)
def first_k(request, stride: int = 1):
    import torch

    from kddbench.condense import SyntheticSet

    picks = [idx[::stride][:request.ipc] for idx in request.data.indices_by_class()]
    idx = torch.cat(picks)
    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone())


def logit_mse(teacher=None, student=None, weight: float = 1.0, ce_weight: float = 1.0):
    import torch.nn.functional as F

    from kddbench.kd import KDLoss

    class LogitMSE(KDLoss):
        def forward(self, student_logits, student_feats, teacher_logits, teacher_feats,
                    targets, epoch=0, epochs=1):
            return (self.ce_weight * self.ce(student_logits, targets)
                    + weight * F.mse_loss(student_logits, teacher_logits))

    return LogitMSE(teacher, student, ce_weight)


def gauss_noise(data=None, *, std: float = 0.1):
    import torch

    def apply(x, generator):
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        return x + std * noise.to(x.device, x.dtype)

    return apply if std > 0 else None


def centroid_task(cell, ctx) -> dict:
    """Condense with the cell's method (through the registry, like any task), then classify
    the real test images by the nearest class mean of the condensed set."""
    import torch

    from kddbench.condense import CondenseRequest

    data = ctx.data(cell["dataset"], cell=cell)
    spec = ctx.registry.get("condenser", cell["method"])
    request = CondenseRequest(
        data=data, ipc=cell.get("ipc"), arch="none", build_net=None,
        generator=ctx.generator(cell, "condense"), device=ctx.device,
        seed=ctx.seed(cell, "condense"), augment=lambda name: ctx.augment(name, data))
    syn = spec.load()(request, **spec.resolve_options(cell.options.get(spec.name)))
    hard = syn.hard_labels()
    flat = syn.images.reshape(len(hard), -1)
    means = torch.stack([flat[hard == c].mean(0) for c in range(data.num_classes)])
    pred = torch.cdist(data.x_test.reshape(len(data.y_test), -1), means).argmin(1)
    return {"accuracy": 100.0 * float((pred == data.y_test).float().mean()),
            "images": int(len(hard))}


class CentroidSummary:
    """``[[centroid_summary]]`` entries: ``experiment`` (optional: all centroid experiments)."""

    def parse(self, entry, path, scope):
        from kddbench.sections import key_problems

        problems = key_problems(path, entry, ("experiment", "title"))
        if "experiment" in entry:
            problems += scope.experiment(entry["experiment"], f"{path}.experiment")
        return dict(entry), problems

    def implicit(self, experiments):
        return [{"experiment": name} for name in experiments]

    def markdown(self, parsed, df, suite) -> str:
        rows = df[(df["task"] == "centroid") & (df["status"] == "ok")]
        if "experiment" in parsed:
            rows = rows[rows["experiment"] == parsed["experiment"]]
        title = parsed.get("title", "Best method by nearest-centroid accuracy")
        if rows.empty:
            return f"## {title}\n\nno finished centroid cells yet\n"
        means = rows.groupby(["dataset", "method"])["accuracy"].mean().reset_index()
        best = means.loc[means.groupby("dataset")["accuracy"].idxmax()]
        lines = [f"## {title}", "", "| dataset | best method | accuracy |", "|---|---|---|"]
        lines += [f"| {r.dataset} | {r.method} | {r.accuracy:.2f} |" for r in best.itertuples()]
        return "\n".join(lines) + "\n"
