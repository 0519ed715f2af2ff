"""The ``kd`` task: a teacher trained once, then a student distilled from it.

Axes: ``dataset``, ``teacher`` and ``student`` (architectures), ``kd_method``, and optionally
``teacher_protocol`` (a suite protocol naming the teacher's recipe; default: the cell's own),
``method``/``ipc``/``distill_arch`` (train the student on a condensed set from the condenser
registry instead of the full training set; the teacher then labels the condensed images).

``kd_method`` is a registered KD method, or one of two reserved roles:

* ``teacher``: the cell reports the teacher itself (its test metrics and training time);
* ``none``: the student trained by the plain protocol, without a teacher ("scratch").

The teacher is an artifact (its state dict and test metrics) keyed by the data fingerprint,
its architecture, options and version, its recipe and the seed; every KD method, role and
suite that needs the same teacher loads it from the cache.  Students of one configuration
start from the same weights and see batches in the same order, whatever the KD method.
"""
from __future__ import annotations

import dataclasses

from kddbench import names
from kddbench.errors import KddbenchError
from kddbench.kd import DistillationLoss, build_kd_loss
from kddbench.protocol import PROTOCOL_VERSION, Recipe, model_metrics, train_and_evaluate
from kddbench.suite import PROTOCOL_OPTION_PREFIX

TEACHER_VERSION = "1"  # bump when the way teachers are trained changes
ROLES = ("teacher", "none")
TEACHER_METRICS = ("accuracy", "misclassified", "macro_f1", "train_time_s", "params", "size_mb",
                   "epochs")


def teacher_recipe(cell) -> Recipe:
    """The recipe of the suite protocol named by ``teacher_protocol``, else the cell's own."""
    name = cell.get("teacher_protocol")
    if name is None:
        return Recipe.from_mapping(cell.recipe)
    key = PROTOCOL_OPTION_PREFIX + str(name)
    if key not in cell.options:
        raise KddbenchError(f"the cell carries no recipe for teacher_protocol {name!r}")
    return Recipe.from_mapping(cell.options[key])


def _arch(ctx, cell, axis: str):
    name = cell[axis]
    spec = ctx.registry.get("architecture", name)
    return name, spec, dict(cell.options.get(spec.name, {}))


def trained_teacher(cell, ctx, data):
    """``(teacher network in eval mode, its stored metrics, loaded_from_cache)``."""
    arch, spec, options = _arch(ctx, cell, "teacher")
    recipe = teacher_recipe(cell)
    key = {"data": data.fingerprint(), "arch": arch, "arch_version": spec.version,
           "arch_options": options, "recipe": recipe.as_dict(), "protocol": PROTOCOL_VERSION,
           "teacher": TEACHER_VERSION, "seed": cell.seed}
    init_seed = ctx.seed(cell, "teacher-net", arch)
    built = []

    def build():
        net = ctx.build_net(arch, data, init_seed, options)
        ctx.log(f"training teacher {arch} on {cell['dataset']} ({recipe.epochs} epochs)")
        metrics = train_and_evaluate(
            net, data.x_train, data.y_train, data.x_test, data.y_test, data.num_classes, recipe,
            ctx.generator(cell, "teacher-train", arch), augment=ctx.augment(recipe.augment, data))
        built.append(True)
        return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "metrics": {k: float(v) for k, v in metrics.items()}}

    stored = ctx.artifacts.get_or_build(
        "teacher", key, build, provenance={"cell": cell.label(), "dataset": cell["dataset"]})
    net = ctx.build_net(arch, data, init_seed, options)
    net.load_state_dict(stored["state_dict"])
    net.eval().requires_grad_(False)
    return net, dict(stored["metrics"]), not built


def training_set(cell, ctx, data):
    """``(x, y, learned lr or None, extra metrics)``: the full training set, or the condensed
    set of ``method`` at ``ipc`` (distilled on ``distill_arch``, default the student)."""
    if not cell.get("method"):
        return data.x_train, data.y_train, None, {}
    from kddbench_plugins.condensation.task import condensed_set

    as_condense = dataclasses.replace(cell, axes={**cell.axes, "eval_arch": cell["student"]},
                                      _ids={})
    syn, seconds = condensed_set(as_condense, ctx, data)
    return (syn.images.to(ctx.device), syn.labels.to(ctx.device), syn.lr,
            {"condense_time_s": seconds})


def run(cell, ctx) -> dict:
    role = cell["kd_method"]
    data = ctx.data(cell["dataset"], cell.options.get(
        ctx.registry.get("dataset", cell["dataset"]).name))
    teacher, t_metrics, cached = trained_teacher(cell, ctx, data)
    summary = {f"teacher_{k}": t_metrics[k] for k in TEACHER_METRICS if k in t_metrics}
    summary.update(teacher_cached=cached, data_fingerprint=data.fingerprint())
    if role == "teacher":
        metrics = {k: v for k, v in t_metrics.items()}
        metrics.update(model_metrics(teacher))
        return {**metrics, **summary}

    recipe = ctx.recipe(cell)
    x, y, lr, extra = training_set(cell, ctx, data)
    arch, _, options = _arch(ctx, cell, "student")
    student = ctx.build_net(arch, data, ctx.seed(cell, "student-net", arch), options)
    augment = ctx.augment(recipe.augment, data)
    loss_fn = None
    if role != "none":
        spec = ctx.registry.get("kd_method", role)
        kd_options = {**cell.options.get(spec.name, {}), **names.parse(role)[1]}
        kd = build_kd_loss(spec.load(), teacher, student, x[:2],
                           ctx.seed(cell, "kd-extras", role), **kd_options)
        # no augmentation: the teacher's outputs on the training images never change, so they
        # are computed once; with augmentation the teacher sees every augmented batch.
        loss_fn = DistillationLoss(kd, teacher, epochs=recipe.epochs,
                                   x=None if augment is not None else x)
        summary["teacher_outputs_cached"] = loss_fn.cached
        summary["kd_extra_params"] = sum(p.numel() for p in loss_fn.extra_params)
    metrics = train_and_evaluate(
        student, x, y, data.x_test, data.y_test, data.num_classes, recipe,
        ctx.generator(cell, "student-train", arch), augment=augment, loss_fn=loss_fn,
        extra_params=loss_fn.extra_params if loss_fn is not None else None, lr=lr)
    metrics.update(extra)
    if lr is not None:
        metrics["learned_lr"] = lr
    return {**metrics, **summary}
