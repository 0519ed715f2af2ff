"""Expert trajectories as declared artifacts (imports no torch until an expert is built).

A trajectory-matching condenser (``mtt``, ``pad``) declares, through ``CondenserSpec.artifacts``,
one :class:`~kddbench.artifacts.ArtifactRequest` per expert; the runner builds each once, as its
own job on the run's executor (so a killed run keeps the experts it finished, and workers build
different experts in parallel), before the condensed sets that need them.  The request names the
expert by what determines it only (data set, distillation network, the expert options and the
index), never by method or cell seed, so every trajectory-matching cell of every suite asking for
the same experts shares them.  The build computes the same cache key as the method itself
(:func:`kddbench_plugins.condensation.trajectory_matching.expert_key`), so the cell finds them.
"""
from __future__ import annotations

from typing import Any, Mapping

# the options that determine an expert (and the EL2N data selection it trains on)
EXPERT_OPTIONS = ("num_experts", "epochs", "expert_lr", "batch_train", "expert_augment",
                  "expert_seed", "el2n_keep", "el2n_nets", "el2n_epochs")
BUILD = "kddbench_plugins.condensation.expert_artifacts:expert"


def net_key(registry, distill_arch: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """What determines the distillation network besides its seed (``CondenseRequest.net_key``)."""
    from kddbench import names

    spec = registry.get("architecture", distill_arch)
    return {"arch": spec.name, "inline": names.parse(distill_arch)[1],
            "options": dict(options or {}), "version": spec.version}


def declare(args: Mapping[str, Any], registry) -> list:
    """One request per expert of the condensed set described by ``args`` (the condensed-set
    request's arguments: dataset, method and their options, distillation architecture...)."""
    from kddbench import names
    from kddbench.artifacts import ArtifactRequest

    spec = registry.get("condenser", args["method"])
    options = spec.resolve_options({**dict(args.get("method_options") or {}),
                                    **names.parse(args["method"])[1]})
    expert_options = {k: options[k] for k in EXPERT_OPTIONS if k in options}
    if float(expert_options.get("el2n_keep", 1.0)) >= 1.0:  # no selection: mtt's experts
        for k in ("el2n_keep", "el2n_nets", "el2n_epochs"):
            expert_options.pop(k, None)
    out = []
    for index in range(int(options["num_experts"])):
        out.append(ArtifactRequest(
            "expert_trajectories", BUILD,
            {"dataset": args["dataset"], "dataset_options": args.get("dataset_options"),
             "distill_arch": args["distill_arch"],
             "distill_arch_options": args.get("distill_arch_options"),
             "options": expert_options, "index": index,
             **({"transform": args["transform"]} if args.get("transform") else {}),
             **({"holdout": dict(args["holdout"])} if args.get("holdout") else {})},
            description=f"expert {index + 1}/{options['num_experts']} on "
                        f"{args['distill_arch']}, {args['dataset']}"))
    return out


def expert(ctx, *, dataset: str, dataset_options, distill_arch: str, distill_arch_options,
           options: Mapping[str, Any], index: int, transform: str | None = None,
           holdout=None) -> None:
    """Get or build one expert in the run's artifact cache, on the data the set is condensed
    from (the training set less ``holdout``'s validation split, when the cell has one)."""
    from kddbench.condense import CondenseRequest
    from kddbench.protocol import make_generator

    from .trajectory_matching import build_expert

    from kddbench.validation import split_data

    from .task import data_for

    data = split_data(data_for(ctx, dataset, dataset_options, transform), holdout)[0]
    request = CondenseRequest(
        data=data, ipc=None, arch=distill_arch,
        build_net=lambda s: ctx.build_net(distill_arch, data, s, distill_arch_options),
        generator=make_generator(0, ctx.device), device=ctx.device,
        augment=lambda name: ctx.augment(name, data), artifacts=ctx.artifacts,
        net_key=net_key(ctx.registry, distill_arch, distill_arch_options))
    build_expert(request, {"el2n_keep": 1.0, **dict(options)}, index)
