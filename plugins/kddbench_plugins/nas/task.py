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
    """Train the candidate on the proxy set (the condensation family's artifact) and test it."""
    from kddbench_plugins.condensation.task import evaluate_set

    return evaluate_set(cell, ctx, cell["candidate"], view=condense_view(cell))
