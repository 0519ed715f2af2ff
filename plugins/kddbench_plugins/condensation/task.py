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
from kddbench.protocol import train_and_evaluate


def method_options(cell, spec) -> dict:
    """The method's options: the suite's, then any written inline (``datadam[init=noise]``)."""
    return {**cell.options.get(spec.name, {}), **names.parse(cell["method"])[1]}


def condensed_set(cell, ctx, data) -> tuple[SyntheticSet, float]:
    """The cell's condensed set and the seconds its condensation took (cached or not)."""
    method = cell["method"]
    spec = ctx.registry.get("condenser", method)
    distill_arch = cell.get("distill_arch") or cell["eval_arch"]
    options = method_options(cell, spec)
    arch_spec = ctx.registry.get("architecture", distill_arch)
    key = {"data": data.fingerprint(), "method": spec.name, "version": spec.version,
           "options": options, "ipc": cell.get("ipc"), "distill_arch": distill_arch,
           "distill_arch_options": cell.options.get(arch_spec.name, {}),
           "distill_arch_version": arch_spec.version, "seed": cell.seed}
    if spec.uses_ipc and not cell.get("ipc"):
        raise ValueError(f"method {method!r} needs an ipc (images per class) in the suite")

    def build():
        curve: list[dict[str, float]] = []  # request.log(step, **scalars) collects the curve
        request = CondenseRequest(
            data=data, ipc=cell.get("ipc"), arch=distill_arch,
            build_net=lambda seed: ctx.build_net(distill_arch, data, seed, cell=cell),
            generator=ctx.generator(cell, "condense"), device=ctx.device,
            checkpoint=ctx.checkpoint({"condense": key}), seed=ctx.seed(cell, "condense"),
            augment=lambda name: ctx.augment(name, data), artifacts=ctx.artifacts,
            net_key={"arch": arch_spec.name, "inline": names.parse(distill_arch)[1],
                     "options": cell.options.get(arch_spec.name, {}),
                     "version": arch_spec.version},
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

    if spec.cacheable:
        stored = ctx.artifacts.get_or_build("condensed", key, build,
                                            provenance={"cell": cell.label()})
    else:
        stored = build()
    syn = SyntheticSet.from_tensors(stored)
    syn.info = dict(stored.get("info", {}))
    return syn, float(stored.get("seconds", 0.0))


def write_pictures(cell, ctx, data, syn: SyntheticSet) -> None:
    """Grids of a synthesised set at initialisation and at the end, and its loss curve, under
    ``<report dir>/pictures/`` (only for methods that synthesise and log a curve)."""
    if ctx.output_dir is None or syn.init_images is None or not syn.curve:
        return
    from .pictures import write_pictures as draw

    spec = ctx.registry.get("condenser", cell["method"])
    draw(ctx.output_dir, cell, method_options(cell, spec), spec.resolve_options(None), data, syn)


def run(cell, ctx) -> dict:
    data = ctx.data(cell["dataset"], cell=cell)
    syn, seconds = condensed_set(cell, ctx, data)
    write_pictures(cell, ctx, data, syn)
    recipe = ctx.recipe(cell)
    net = ctx.build_net(cell["eval_arch"], data, ctx.seed(cell, "eval-net", cell["eval_arch"]),
                        cell=cell)
    metrics = train_and_evaluate(
        net, syn.images.to(ctx.device), syn.labels.to(ctx.device), data.x_test, data.y_test,
        data.num_classes, recipe, ctx.generator(cell, "eval-train", cell["eval_arch"]),
        augment=ctx.augment(recipe.augment, data), lr=syn.lr)
    metrics["condense_time_s"] = seconds
    metrics.update({f"condense.{k}": v for k, v in syn.info.items()})
    metrics["data_fingerprint"] = data.fingerprint()
    if syn.lr is not None:
        metrics["learned_lr"] = syn.lr
    return metrics
