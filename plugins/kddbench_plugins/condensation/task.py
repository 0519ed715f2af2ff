"""The ``condense`` task: build (or reuse) a condensed set, evaluate it by the shared protocol.

One condensed set is an artifact keyed by (data fingerprint, method, its options and version,
ipc, distillation architecture, seed): evaluating it on five architectures condenses once.
The method's curve (``request.log``) and its ``info`` are stored with the set; a synthesised
set is drawn to ``<report dir>/pictures/`` (:mod:`kddbench_plugins.condensation.pictures`).
"""
from __future__ import annotations

import time

from kddbench import names
from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.options import keyed_options
from kddbench.validation import fit_and_test, holdout, run_tuned, split_data


def method_options(cell, spec) -> dict:
    """The method's options: the suite's, then any written inline (``datadam[init=noise]``)."""
    return {**cell.options.get(spec.name, {}), **names.parse(cell["method"])[1]}


CONDENSED = "kddbench_plugins.condensation.task:condensed"  # the artifact builder
SET_KEY = "set_key"  # condensed(): the set's cache key, beside its tensors
EVAL_VERSION = "1"   # the stored evaluations (shared_evaluation): bump when their numbers change
# the random streams of an evaluation: the network's initialisation and the training batches
EVAL_STREAMS = ("eval-net", "eval-train")


def data_for(ctx, dataset: str, dataset_options=None, transform: str | None = None, cell=None):
    """The data set a condensation cell works on: loaded, then the data-set-level ``transform``
    (the cell's ``transform`` axis, e.g. ``zca``) applied to every split when one is named --
    the same data for the condensation, its experts and the evaluation."""
    return ctx.transform(transform, ctx.data(dataset, dataset_options, cell=cell))


def cell_data(cell, ctx):
    """:func:`data_for` of a cell."""
    return data_for(ctx, cell["dataset"], transform=cell.get("transform"), cell=cell)


def condensed_request(registry, *, dataset: str, options, method: str, ipc, distill_arch: str,
                      seed: int, holdout=None, transform: str | None = None):
    """The :class:`~kddbench.artifacts.ArtifactRequest` of one condensed set (None for a
    method whose output is not cached, e.g. ``full``).  Any task that needs a condensed set
    declares it with this (``options`` are the cell's, by plugin name); the method's own
    declared artifacts (``CondenserSpec.artifacts``) become the request's ``needs``."""
    from kddbench.artifacts import ArtifactRequest

    spec = registry.get("condenser", method)
    if not spec.cacheable:
        return None
    data_spec = registry.get("dataset", dataset)
    arch_spec = registry.get("architecture", distill_arch)
    args = {"dataset": dataset, "dataset_options": options.get(data_spec.name),
            "method": method, "method_options": dict(options.get(spec.name, {})), "ipc": ipc,
            "distill_arch": distill_arch,
            "distill_arch_options": options.get(arch_spec.name), "seed": seed}
    if holdout:  # condensed from the training set less a validation split
        args["holdout"] = dict(holdout)
    if transform not in (None, "", "none"):  # condensed on transformed data (e.g. zca)
        args["transform"] = transform
    needs = ()
    if getattr(spec, "artifacts", None):
        declare = spec.artifacts
        if isinstance(declare, str):
            declare = ArtifactRequest("", declare).function()
        needs = tuple(declare(dict(args), registry) or ())
    budget = f" ipc={ipc}" if ipc else ""
    return ArtifactRequest("condensed", CONDENSED, args, needs=needs,
                           description=f"{method}{budget} on {distill_arch}, {dataset}, "
                           f"seed {seed}")


def declared_artifacts(cell, registry) -> list:
    """The ``condense`` task's declaration: the cell's condensed set."""
    request = condensed_request(
        registry, dataset=cell["dataset"], options=cell.options, method=cell["method"],
        ipc=cell.get("ipc"), distill_arch=cell.get("distill_arch") or cell["eval_arch"],
        seed=cell.seed, holdout=holdout(cell.recipe, cell.seed), transform=cell.get("transform"))
    return [request] if request is not None else []


def check_condensed(value) -> str | None:
    """What is wrong with a stored condensed set's structure, or None."""
    import torch

    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not a dict"
    for key in ("images", "labels"):
        if not isinstance(value.get(key), torch.Tensor):
            return f"no {key} tensor"
    images, labels = value["images"], value["labels"]
    if images.dim() != 4:
        return f"images of shape {tuple(images.shape)}, not (N, C, H, W)"
    if labels.dim() not in (1, 2) or labels.shape[0] != images.shape[0]:
        return f"labels of shape {tuple(labels.shape)} for {images.shape[0]} images"
    if "curve" in value and not isinstance(value.get("curve_keys"), list):
        return "a curve without its keys"
    return None


def condensed(ctx, *, dataset: str, dataset_options, method: str, method_options, ipc,
              distill_arch: str, distill_arch_options, seed: int, label: str = "",
              holdout=None, transform: str | None = None):
    """The stored form of one condensed set (a dict of tensors), from the cache or built now.

    The cache key is (data fingerprint, method, its options and version, ipc, distillation
    architecture with its options and version, seed); the condensation's randomness comes
    from ``seed`` alone, so every task that asks for the same set gets the same images.
    ``holdout`` (:func:`kddbench.validation.holdout`): condense the training set less that
    validation split (the data's fingerprint, hence the key, says which images it saw);
    ``transform``: a data-set-level transform applied first (the fingerprint says so too)."""
    from kddbench.context import derive_seed
    from kddbench.protocol import make_generator

    data = split_data(data_for(ctx, dataset, dataset_options, transform), holdout)[0]
    spec = ctx.registry.get("condenser", method)
    options = {**dict(method_options or {}), **names.parse(method)[1]}
    arch_spec = ctx.registry.get("architecture", distill_arch)
    key = {"data": data.fingerprint(), "method": spec.name, "version": spec.version,
           "options": keyed_options(spec.options, options), "ipc": ipc,
           "distill_arch": distill_arch,
           "distill_arch_options": distill_arch_options or {},
           "distill_arch_version": arch_spec.version, "seed": seed}
    if spec.uses_ipc and not ipc:
        raise ValueError(f"method {method!r} needs an ipc (images per class) in the suite")

    def build():
        curve: list[dict[str, float]] = []  # request.log(step, **scalars) collects the curve
        request = CondenseRequest(
            data=data, ipc=ipc, arch=distill_arch,
            build_net=lambda s: ctx.build_net(distill_arch, data, s, distill_arch_options),
            generator=make_generator(derive_seed(seed, "condense"), ctx.device),
            device=ctx.device, checkpoint=ctx.checkpoint({"condense": key}),
            seed=derive_seed(seed, "condense"),
            augment=lambda name: ctx.augment(name, data), artifacts=ctx.artifacts,
            net_key={"arch": arch_spec.name, "inline": names.parse(distill_arch)[1],
                     "options": distill_arch_options or {}, "version": arch_spec.version},
            log=lambda step, **scalars: curve.append({"step": float(step), **scalars}))
        start = time.perf_counter()
        syn = spec.load()(request, **options)
        seconds = time.perf_counter() - start
        if not syn.curve and curve:
            syn.curve = curve
        out = syn.to_tensors()
        out["seconds"] = seconds
        out["info"] = {k: v for k, v in syn.info.items()
                       if isinstance(v, (str, int, float, bool))}
        return out

    if not spec.cacheable:
        return build()
    stored = ctx.artifacts.get_or_build(
        "condensed", key, build, check=check_condensed,
        provenance={"cell": label or f"{method} ipc={ipc} on {distill_arch}, seed {seed}"})
    return {**stored, SET_KEY: key}  # (in memory only: what names this set, for evaluations)


def condensed_set(cell, ctx, data=None) -> tuple[SyntheticSet, float, dict | None]:
    """The cell's condensed set, the seconds its condensation took (cached or not) and the
    set's cache key (None for a method whose sets are not cached, e.g. ``file``)."""
    stored = condensed(
        ctx, dataset=cell["dataset"],
        dataset_options=cell.options.get(ctx.registry.get("dataset", cell["dataset"]).name),
        method=cell["method"],
        method_options=cell.options.get(ctx.registry.get("condenser", cell["method"]).name, {}),
        ipc=cell.get("ipc"), distill_arch=cell.get("distill_arch") or cell["eval_arch"],
        distill_arch_options=cell.options.get(ctx.registry.get(
            "architecture", cell.get("distill_arch") or cell["eval_arch"]).name),
        seed=cell.seed, label=cell.label(), holdout=holdout(cell.recipe, cell.seed),
        transform=cell.get("transform"))
    syn = SyntheticSet.from_tensors(stored)
    syn.info = dict(stored.get("info", {}))
    return syn, float(stored.get("seconds", 0.0)), stored.get(SET_KEY)


def shared_evaluation(ctx, cell, data, set_key, arch: str, recipe, streams: tuple,
                      compute) -> tuple[dict, bool]:
    """``compute()``'s metrics (training ``arch`` on a condensed set by ``recipe`` and testing
    it), stored as an artifact: every task and suite that trains the same network on the same
    set by the same recipe, seed and random ``streams`` gets the stored numbers instead of
    training again (a dd_ranking cell and the condense cell of the same set; a cross_arch
    column and another suite's).  Returns ``(metrics, reused)``; a set with no cache key is
    evaluated afresh."""
    if set_key is None:
        return compute(), False
    from kddbench.protocol import PROTOCOL_VERSION

    spec = ctx.registry.get("architecture", arch)
    augment = recipe.augment
    key = {"set": set_key, "data": data.fingerprint(), "arch": arch,
           "arch_version": spec.version, "arch_options": dict(cell.options.get(spec.name) or {}),
           "augment_version": (ctx.registry.get("augmentation", augment).version
                               if augment not in ("", None, "none") else None),
           "recipe": recipe.as_dict(), "seed": cell.seed, "streams": [str(x) for x in streams],
           "protocol": PROTOCOL_VERSION, "version": EVAL_VERSION,
           "device": str(ctx.device).split(":")[0]}
    built = []

    def build():
        built.append(True)
        return {"metrics": _plain(compute())}

    stored = ctx.artifacts.get_or_build("evaluation", key, build,
                                        check=lambda v: None if isinstance(v, dict) and
                                        isinstance(v.get("metrics"), dict) else "no metrics",
                                        provenance={"cell": cell.label()})
    return dict(stored["metrics"]), not built


def _plain(value):
    """Metrics as plain numbers, strings and lists (what torch.load(weights_only=True) reads)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return value.item()
    raise TypeError(f"a metric of type {type(value).__name__}")


def write_pictures(cell, ctx, data, syn: SyntheticSet) -> None:
    """Grids of a synthesised set at initialisation and at the end, and its loss curve, under
    ``<report dir>/pictures/`` (only for methods that synthesise and log a curve; a smoke run
    draws those of seed 0 only: the same code path, without a grid per seed)."""
    from kddbench.smoke import is_smoke

    if ctx.output_dir is None or syn.init_images is None or not syn.curve:
        return
    if is_smoke(cell) and cell.seed != 0:
        return
    from .pictures import write_pictures as draw

    spec = ctx.registry.get("condenser", cell["method"])
    draw(ctx.output_dir, cell, method_options(cell, spec), spec.resolve_options(None), data, syn)


def run(cell, ctx) -> dict:
    """One cell; with a ``tune`` grid, one evaluation per grid point, the best on validation
    kept (:func:`kddbench.validation.run_tuned`)."""
    return run_tuned(cell, ctx, evaluate_cell)


def evaluate_cell(cell, ctx) -> dict:
    """The condensed set trained on by the recipe and its evaluation rules (``n_models``
    networks, validation split held out of the condensation's input, weights selection)."""
    return evaluate_set(cell, ctx, cell["eval_arch"], pictures=True)


def evaluate_set(cell, ctx, arch: str, view=None, pictures: bool = False) -> dict:
    """Train ``arch`` on the condensed set of ``view`` (a cell with the condensation axes;
    default ``cell``) by ``cell``'s recipe and evaluation rules, and test it.  Network m has its
    own initial weights (network 0 the cell's usual ones), the same for every set it trains on,
    so candidates are paired across proxies.  Reports ``set_reused`` (1 when the set came from
    the artifact store)."""
    data = cell_data(cell, ctx)
    recipe = ctx.recipe(cell)
    split = holdout(recipe, cell.seed)
    data, x_val, y_val = split_data(data, split)
    hits = ctx.artifacts.hits
    syn, seconds, set_key = condensed_set(view if view is not None else cell, ctx, data)
    reused = int(ctx.artifacts.hits > hits)
    if pictures:
        write_pictures(cell, ctx, data, syn)

    def make(m: int):  # network m: its own init seed (network 0: the cell's usual one)
        return ctx.build_net(arch, data, ctx.seed(cell, "eval-net", arch, *([m] if m else [])),
                             cell=cell), None, None

    metrics, evaluated_before = shared_evaluation(
        ctx, cell, data, set_key, arch, recipe, EVAL_STREAMS, lambda: fit_and_test(
            make, syn.images.to(ctx.device), syn.labels.to(ctx.device), data, recipe,
            lambda m: ctx.generator(cell, "eval-train", arch, *([m] if m else [])),
            val=(x_val, y_val) if split else None, augment=ctx.augment(recipe.augment, data),
            lr=syn.lr))
    metrics["evaluation_reused"] = int(evaluated_before)
    metrics["condense_time_s"] = seconds
    if view is not None:
        metrics["set_reused"] = reused
    metrics.update({f"condense.{k}": v for k, v in syn.info.items()})
    metrics["data_fingerprint"] = data.fingerprint()
    if syn.lr is not None:
        metrics["learned_lr"] = syn.lr
    return metrics
