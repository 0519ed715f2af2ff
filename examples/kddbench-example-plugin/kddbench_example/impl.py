"""Implementations of the example plugin's entries (see ``plugin.py``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.kd import KDLoss
from kddbench.sections import key_problems


def first_k(request: CondenseRequest, stride: int = 1) -> SyntheticSet:
    picks = [idx[::stride][:request.ipc] for idx in request.data.indices_by_class()]
    idx = torch.cat(picks)
    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone())


class LogitMSE(KDLoss):
    def __init__(self, teacher=None, student=None, weight: float = 1.0, ce_weight: float = 1.0):
        super().__init__(teacher, student, ce_weight)
        self.weight = float(weight)

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        return (self.ce_weight * self.ce(student_logits, targets)
                + self.weight * F.mse_loss(student_logits, teacher_logits))


def gauss_noise(data=None, *, std: float = 0.1):
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        return x + std * noise.to(x.device, x.dtype)

    return apply if std > 0 else None


def centroid_task(cell, ctx) -> dict:
    """Condense with the cell's method (through the registry, like any task), then classify
    the real test images by the nearest class mean of the condensed set."""
    data = ctx.data(cell["dataset"], cell=cell)
    spec = ctx.registry.get("condenser", cell["method"])
    from kddbench.condense import CondenseRequest

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
