"""Cost estimates (image passes, :mod:`kddbench.cost`) of the ``condense`` task and of the
built-in condensation methods, from their options; torch-free.

A method's own ``CondenserSpec.cost`` wins; the table :data:`METHOD_COSTS` covers the
built-in ones.  Methods with neither are "not estimated" in their condensation part (the
evaluation is always counted).
"""
from __future__ import annotations

from kddbench.cost import (TRAIN_PASSES, Work, evaluation_passes, load_ref, recipe_train_passes,
                           train_passes)
from kddbench.validation import holdout

# (outer_loop, inner_loop) by images per class: the table of gradient_matching (kept in step
# by tests/test_smoke_paper_tables.py)
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
DATADAM_SETTINGS = {"paper": (8000, 256), "code": (20000, 64)}


def _loops(ipc: int) -> tuple[int, int]:
    return LOOPS.get(ipc) or LOOPS[min(LOOPS, key=lambda k: (abs(k - ipc), k))]


def _embedding(options, ipc, data) -> float:  # herding, k-center
    return train_passes(options.get("train_epochs", 0), data.train) + float(data.train)


def _forgetting(options, ipc, data) -> float:
    return train_passes(options.get("epochs", 3), data.train)


def _gradient_matching(options, ipc, data) -> float:
    outer, inner = _loops(int(ipc or 1))
    outer, inner = options.get("outer_loop") or outer, options.get("inner_loop") or inner
    real = min(options.get("batch_real", 256), data.train_per_class)
    # per outer step and class: real and synthetic gradients, and the second-order backward
    # through the synthetic one (about twice a training step on those images)
    match = data.classes * (real + 2 * ipc) * TRAIN_PASSES
    inner_train = inner * train_passes(1, ipc * data.classes)
    return float(options.get("iterations", 1000)) * outer * (match + inner_train)


def _distribution_matching(options, ipc, data) -> float:
    real = min(options.get("batch_real", 256), data.train_per_class)
    return float(options.get("iterations", 20000)) * data.classes * (real + ipc * TRAIN_PASSES)


def _attention_matching(options, ipc, data) -> float:
    iterations, real = DATADAM_SETTINGS.get(options.get("setting", "paper"), (8000, 256))
    iterations = options.get("iterations") or iterations
    real = min(options.get("batch_real") or real, data.train_per_class)
    return float(iterations) * data.classes * (real + ipc * TRAIN_PASSES)


def _meta_learning(options, ipc, data) -> float:  # ddwang (Wang et al. 2018)
    """Per iteration: the unrolled descent (``epochs`` passes over the synthetic set, each a
    training step kept in the graph, then differentiated again: ~3 steps per step, as the plain
    trajectory unroll) and the real batch's loss through the final weights; then the method's
    own evaluation (``eval_draws`` unrolls and the test set; 1 draw with fixed weights)."""
    n_syn = data.classes * int(ipc or 1)
    epochs = int(options.get("epochs", 3))
    real = min(int(options.get("batch_real", 1024)), data.train)
    iterations = options.get("iterations") or 400 * -(-data.train // real)
    unroll = epochs * n_syn * 3 * TRAIN_PASSES
    draws = 1 if options.get("init_weights", "random") == "fixed" else int(
        options.get("eval_draws", 10))
    return (float(iterations) * (unroll + real * TRAIN_PASSES)
            + draws * (epochs * n_syn * TRAIN_PASSES + data.test))


def _kernel_ridge(options, ipc, data) -> float:  # krr (FRePo style)
    """Per iteration: the real batch's features (forward only), the synthetic set's features
    with their backward to the images, and one online training step of a pool network."""
    n_syn = data.classes * int(ipc or 1)
    real = min(int(options.get("batch_real", 1024)), data.train)
    return float(options.get("iterations", 5000)) * (real + 2 * n_syn * TRAIN_PASSES)


METHOD_COSTS = {"full": None, "random": None, "average": None, "herding": _embedding,
                "kcenter": _embedding, "forgetting": _forgetting, "dc": _gradient_matching,
                "dsa": _gradient_matching, "dm": _distribution_matching,
                "datadam": _attention_matching, "ddwang": _meta_learning, "krr": _kernel_ridge}
FREE = ("full", "random", "average", "file")  # real images or a file: no network runs
CONDENSED_KIND = "condensed"               # the artifact kinds the works below build
EXPERTS_KIND = "expert_trajectories"


def artifact_costs(spec, options, data) -> list[tuple[tuple, float]]:
    """``(key, image passes)`` of the shared artifacts a built-in method asks for (the expert
    trajectories of ``mtt`` and ``pad``), each counted once per estimate by its key."""
    if spec.name in ("mtt", "pad"):
        from .trajectory_settings import expert_costs

        return expert_costs(options, data)
    return []


def method_cost(spec, options, ipc, data) -> float | None:
    """Image passes of the method on its distillation network, None when not estimated."""
    own = getattr(spec, "cost", None)
    if own is not None:
        return float(load_ref(own)(options, ipc, data))
    if spec.name in FREE:
        return 0.0
    fn = METHOD_COSTS.get(spec.name)
    return None if fn is None else float(fn(options, ipc, data))


def condense_cost(cell, info) -> list[Work]:
    data = info.data(cell["dataset"], cell)
    if data is None:
        raise ValueError("data set size unknown")
    spec = info.spec("condenser", cell["method"])
    options = info.options(cell, "condenser", cell["method"])
    ipc = cell.get("ipc")
    distill = cell.get("distill_arch") or cell["eval_arch"]
    works = []
    passes = method_cost(spec, options, ipc, data)
    if passes is None:
        raise ValueError(f"condensation method {spec.name!r} declares no cost")
    if passes:
        works.append(Work(distill, data, passes, "condense",
                          key=("condense", spec.name, options, ipc, distill, cell.seed,
                               data.name), arch_options=info.options(cell, "architecture",
                                                                     distill),
                          artifact=CONDENSED_KIND))
    split = holdout(info.recipe(cell), cell.seed)  # experts on a validation split: their own
    for key, artifact_passes in artifact_costs(spec, options, data):
        works.append(Work(distill, data, artifact_passes, "experts",
                          key=(key, distill, data.name, cell.get("transform"), split),
                          arch_options=info.options(cell, "architecture", distill),
                          artifact=EXPERTS_KIND))
    n = data.train if not spec.uses_ipc else min(int(ipc), data.train_per_class) * data.classes
    recipe = info.recipe(cell)
    works.append(Work(cell["eval_arch"], data, evaluation_passes(recipe, n, data.test),
                      "evaluate", arch_options=info.options(cell, "architecture",
                                                            cell["eval_arch"])))
    return works


def dd_ranking_cost(cell, info) -> list[Work]:
    """The ``dd_ranking`` task: the set's condensation and evaluation (as ``condense``), the
    set again without augmentation, the random subset under both (shared by every method of a
    seed and budget) and the whole set under ``full_protocol`` (shared by every cell of a seed)."""
    works = condense_cost(cell, info)
    data = info.data(cell["dataset"], cell)
    evaluate = works[-1]
    recipe = info.recipe(cell)
    arch = info.options(cell, "architecture", cell["eval_arch"])
    augmented = recipe.get("augment", "none") != "none"
    if augmented:
        works.append(Work(cell["eval_arch"], data, evaluate.passes, "evaluate without augmentation",
                          arch_options=arch))
    for aug in ((True, False) if augmented else (False,)):
        works.append(Work(cell["eval_arch"], data, evaluate.passes, "random subset",
                          key=("dd_ranking random", data.name, cell.get("ipc"), cell.seed, aug,
                               cell["eval_arch"], recipe), arch_options=arch))
    full = info.recipe(cell, "full_protocol")
    works.append(Work(cell["eval_arch"], data, recipe_train_passes(full, data.train) + data.test,
                      "whole set", key=("dd_ranking full", data.name, cell.seed,
                                        cell["eval_arch"], full), arch_options=arch))
    return works
