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

from kddbench import names
from kddbench.errors import KddbenchError
from kddbench.kd import DistillationLoss, build_kd_loss
from kddbench.protocol import PROTOCOL_VERSION, Recipe, model_metrics, train_and_evaluate
from kddbench.suite import PROTOCOL_OPTION_PREFIX
from kddbench.validation import fit_and_test, holdout, run_tuned, split_data

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


TEACHER = "kddbench_plugins.distillation.task:teacher"  # the artifact builder


def _teacher_args(cell, registry) -> dict:
    name = cell.get("teacher_protocol")
    recipe = cell.recipe if name is None else cell.options.get(PROTOCOL_OPTION_PREFIX + str(name))
    if recipe is None:
        teacher_recipe(cell)  # raises the error that names the missing protocol
    out = {"dataset": cell["dataset"],
           "dataset_options": cell.options.get(registry.get("dataset", cell["dataset"]).name),
           "arch": cell["teacher"],
           "arch_options": dict(cell.options.get(
               registry.get("architecture", cell["teacher"]).name, {})),
           "recipe": dict(recipe), "seed": cell.seed}
    split = holdout(cell.recipe, cell.seed)  # the cell's validation split: never trained on
    if split:
        out["holdout"] = split
    return out


def declared_artifacts(cell, registry) -> list:
    """The ``kd`` task's declaration: the cell's teacher and, for a student trained on a
    condensed set, that set (the condensation family's artifact, the same as a ``condense``
    cell distilled on the student would use)."""
    from kddbench.artifacts import ArtifactRequest

    args = _teacher_args(cell, registry)
    out = [ArtifactRequest("teacher", TEACHER, args,
                           description=f"{args['arch']} on {args['dataset']}, seed {cell.seed}")]
    if cell.get("method"):
        from kddbench_plugins.condensation.task import condensed_request

        request = condensed_request(
            registry, dataset=cell["dataset"], options=cell.options, method=cell["method"],
            ipc=cell.get("ipc"), distill_arch=cell.get("distill_arch") or cell["student"],
            seed=cell.seed, holdout=holdout(cell.recipe, cell.seed))
        if request is not None:
            out.append(request)
    return out


def check_teacher(net):
    """A validator of a stored teacher against the network it must load into."""
    import torch

    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}

    def check(value) -> str | None:
        if not isinstance(value, dict) or not isinstance(value.get("state_dict"), dict):
            return "no state_dict"
        if not isinstance(value.get("metrics"), dict):
            return "no metrics"
        state = value["state_dict"]
        if set(state) != set(expected):
            missing = sorted(set(expected) - set(state))[:2]
            extra = sorted(set(state) - set(expected))[:2]
            return f"state_dict keys differ from the network's (missing {missing}, extra {extra})"
        for k, shape in expected.items():
            if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != shape:
                return f"state_dict[{k!r}] is not a tensor of shape {shape}"
        return None

    return check


def teacher(ctx, *, dataset: str, dataset_options, arch: str, arch_options, recipe, seed: int,
            label: str = "", holdout=None):
    """``(teacher network in eval mode, its test metrics, whether this call trained it)``.

    The teacher is stored as ``{"state_dict", "metrics"}`` under a key of the data fingerprint,
    the architecture (name, options, version), the recipe, the protocol and teacher versions
    and the seed; a stored one whose tensors do not fit the network is retrained."""
    from kddbench.context import derive_seed
    from kddbench.protocol import make_generator

    data = split_data(ctx.data(dataset, dataset_options), holdout)[0]  # less any validation
    spec = ctx.registry.get("architecture", arch)
    recipe = Recipe.from_mapping(recipe)
    key = {"data": data.fingerprint(), "arch": arch, "arch_version": spec.version,
           "arch_options": dict(arch_options), "recipe": recipe.as_dict(),
           "protocol": PROTOCOL_VERSION, "teacher": TEACHER_VERSION, "seed": seed}
    init_seed = derive_seed(seed, "teacher-net", arch)
    built = []

    def build():
        net = ctx.build_net(arch, data, init_seed, arch_options)
        ctx.log(f"training teacher {arch} on {dataset} ({recipe.epochs} epochs)")
        metrics = train_and_evaluate(
            net, data.x_train, data.y_train, data.x_test, data.y_test, data.num_classes, recipe,
            make_generator(derive_seed(seed, "teacher-train", arch), ctx.device),
            augment=ctx.augment(recipe.augment, data))
        built.append(True)
        return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "metrics": {k: float(v) for k, v in metrics.items()}}

    net = ctx.build_net(arch, data, init_seed, arch_options, empty=True)  # loaded below
    stored = ctx.artifacts.get_or_build(
        "teacher", key, build, check=check_teacher(net),
        provenance={"cell": label or f"{arch} seed {seed}", "dataset": dataset})
    net.load_state_dict(stored["state_dict"])
    net.eval().requires_grad_(False)
    return net, dict(stored["metrics"]), bool(built)


def trained_teacher(cell, ctx, data=None):
    """``(teacher network in eval mode, its stored metrics, loaded_from_cache)``."""
    net, metrics, built = teacher(ctx, **_teacher_args(cell, ctx.registry), label=cell.label())
    return net, metrics, not built


def training_set(cell, ctx, data):
    """``(x, y, learned lr or None, extra metrics)``: the full training set, or the condensed
    set of ``method`` at ``ipc`` (distilled on ``distill_arch``, default the student)."""
    if not cell.get("method"):
        return data.x_train, data.y_train, None, {}
    from kddbench.condense import SyntheticSet
    from kddbench_plugins.condensation.task import condensed

    reg = ctx.registry
    distill_arch = cell.get("distill_arch") or cell["student"]
    stored = condensed(
        ctx, dataset=cell["dataset"],
        dataset_options=cell.options.get(reg.get("dataset", cell["dataset"]).name),
        method=cell["method"],
        method_options=cell.options.get(reg.get("condenser", cell["method"]).name, {}),
        ipc=cell.get("ipc"), distill_arch=distill_arch,
        distill_arch_options=cell.options.get(reg.get("architecture", distill_arch).name),
        seed=cell.seed, label=cell.label(), holdout=holdout(cell.recipe, cell.seed))
    syn = SyntheticSet.from_tensors(stored)
    return (syn.images.to(ctx.device), syn.labels.to(ctx.device), syn.lr,
            {"condense_time_s": float(stored.get("seconds", 0.0))})


def run(cell, ctx) -> dict:
    """One cell; with a ``tune`` grid, one student per grid point, the best on validation
    kept (:func:`kddbench.validation.run_tuned`)."""
    return run_tuned(cell, ctx, evaluate_cell)


def evaluate_cell(cell, ctx) -> dict:
    """Teacher, then the student(s) by the recipe and its evaluation rules: ``n_models``
    students, each from its own init seed; a validation split held out of everything the
    cell trains (teacher, condensed set, students); the weights kept by ``select``."""
    role = cell["kd_method"]
    data = ctx.data(cell["dataset"], cell.options.get(
        ctx.registry.get("dataset", cell["dataset"]).name))
    split = holdout(cell.recipe, cell.seed)
    data, x_val, y_val = split_data(data, split)
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
    augment = ctx.augment(recipe.augment, data)

    def make(m: int):  # student m: its own init seed (student 0: the cell's usual one)
        more = [m] if m else []
        student = ctx.build_net(arch, data, ctx.seed(cell, "student-net", arch, *more), options)
        if role == "none":
            return student, None, None
        spec = ctx.registry.get("kd_method", role)
        kd_options = {**cell.options.get(spec.name, {}), **names.parse(role)[1]}
        kd = build_kd_loss(spec.load(), teacher, student, x[:2],
                           ctx.seed(cell, "kd-extras", role, *more), **kd_options)
        # no augmentation: the teacher's outputs on the training images never change, so they
        # are computed once; with augmentation the teacher sees every augmented batch.
        loss_fn = DistillationLoss(kd, teacher, epochs=recipe.epochs,
                                   x=None if augment is not None else x)
        summary["teacher_outputs_cached"] = loss_fn.cached
        summary["kd_extra_params"] = sum(p.numel() for p in loss_fn.extra_params)
        return student, loss_fn, loss_fn.extra_params

    metrics = fit_and_test(
        make, x, y, data, recipe,
        lambda m: ctx.generator(cell, "student-train", arch, *([m] if m else [])),
        val=(x_val, y_val) if split else None, augment=augment, lr=lr)
    metrics.update(extra)
    if lr is not None:
        metrics["learned_lr"] = lr
    return {**metrics, **summary}
