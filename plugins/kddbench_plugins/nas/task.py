"""The ``nas`` task: one candidate architecture trained on one proxy of the training data.

A cell trains candidate ``candidate`` (a value of the search space the experiment samples)
on the set made by ``method`` at ``ipc`` on ``distill_arch`` — a condensed set, a random
subset, or the whole training set (``full``; with a short protocol, an early-stopped search)
— by the cell's protocol, and tests it on the real test set.  The set is the condensation
family's artifact (the key of :func:`kddbench_plugins.condensation.task.condensed`), declared
so the runner condenses it once before the candidates and every candidate, every suite on the
same cache, reuses it; each candidate is its own cell, so a killed search resumes at the
first candidate it had not finished.  The ``[[nas]]`` section ranks the candidates.
"""
from __future__ import annotations

from dataclasses import replace

from kddbench.validation import fit_and_test, holdout, split_data

DEFAULT_DISTILL_ARCH = "convnet3"  # the DC papers' distillation net, when a suite names none


def distill_arch(cell) -> str:
    return cell.get("distill_arch") or DEFAULT_DISTILL_ARCH


def condense_view(cell):
    """The cell as the ``condense`` task would see it: ``candidate`` as ``eval_arch``, the
    distillation net explicit (so the set's key never depends on the candidate)."""
    axes = {k: v for k, v in cell.axes.items() if k != "candidate"}
    axes.update(eval_arch=cell["candidate"], distill_arch=distill_arch(cell))
    return replace(cell, axes=axes, _ids={})


def declared_artifacts(cell, registry) -> list:
    """The proxy set of the cell (nothing for ``full``, which is the data itself)."""
    from kddbench_plugins.condensation.task import declared_artifacts as declare

    return declare(condense_view(cell), registry)


def cost(cell, info):
    """Image passes for ``--dry-run``: the condensation (counted once per set) and the
    candidate's training."""
    from kddbench_plugins.condensation.costs import condense_cost

    return condense_cost(condense_view(cell), info)


def run(cell, ctx) -> dict:
    from kddbench_plugins.condensation.task import condensed_set

    view = condense_view(cell)
    data = ctx.data(cell["dataset"], cell=cell)
    recipe = ctx.recipe(cell)
    split = holdout(recipe, cell.seed)
    data, x_val, y_val = split_data(data, split)
    hits = ctx.artifacts.hits
    syn, seconds = condensed_set(view, ctx, data)
    arch = cell["candidate"]

    def make(m: int):  # the same initial weights for a candidate on every proxy (paired)
        return ctx.build_net(arch, data, ctx.seed(cell, "eval-net", arch, *([m] if m else [])),
                             cell=cell), None, None

    metrics = fit_and_test(
        make, syn.images.to(ctx.device), syn.labels.to(ctx.device), data, recipe,
        lambda m: ctx.generator(cell, "eval-train", arch, *([m] if m else [])),
        val=(x_val, y_val) if split else None, augment=ctx.augment(recipe.augment, data),
        lr=syn.lr)
    metrics["condense_time_s"] = seconds
    metrics["set_reused"] = int(ctx.artifacts.hits > hits)
    metrics.update({f"condense.{k}": v for k, v in syn.info.items()})
    metrics["data_fingerprint"] = data.fingerprint()
    if syn.lr is not None:
        metrics["learned_lr"] = syn.lr
    return metrics
