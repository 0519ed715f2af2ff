"""The public types of the condensation family: what a condenser gets and what it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .data import DataSplits


@dataclass
class CondenseRequest:
    """Everything a condensation method may use.

    data:        the real data set, on ``device``.
    ipc:         images per class (None for budget-free methods such as ``full``).
    arch:        name of the distillation architecture; ``build_net(seed)`` returns a fresh,
                 seeded instance of it on ``device`` (methods that sample many networks call it
                 with seeds drawn from ``generator``).
    generator:   the only source of randomness (seeded from the cell).
    checkpoint:  ``checkpoint.load()`` -> state dict or None, ``checkpoint.save(state)``: long
                 methods save their state every so often so an interrupted run resumes.
    log:         ``log(step, **scalars)`` records a loss curve.
    augment:     ``augment(name) -> fn(x, generator)`` gives the shared batched augmentations.
    artifacts:   the run's artifact cache (``get_or_build(kind, key_dict, build)``), for what a
                 method builds once and shares across cells (e.g. networks trained on the real
                 set); None: build inline, keep nothing.  The key must hold everything that
                 determines the artifact (``data.fingerprint()``, ``net_key``, options, seed).
    net_key:     what determines ``build_net``'s network besides its seed (name, options,
                 version): put it in such keys.
    """

    data: DataSplits
    ipc: int | None
    arch: str
    build_net: Callable[[int], torch.nn.Module]
    generator: torch.Generator
    device: torch.device
    checkpoint: Any = None
    log: Callable[..., None] = lambda step, **scalars: None
    augment: Callable[[str], Any] | None = None
    seed: int = 0
    artifacts: Any = None
    net_key: dict[str, Any] = field(default_factory=dict)


def pack_curve(curve: list[dict[str, float]], dtype: torch.dtype = torch.float64
               ) -> tuple[list[str], torch.Tensor]:
    """A loss curve (rows of named scalars) as tensors only, for a set or a checkpoint: the
    sorted names, and a (rows, names) tensor with NaN where a row lacks a name."""
    keys = sorted({k for row in curve for k in row}) or ["step", "loss"]
    table = torch.tensor([[float(row.get(k, float("nan"))) for k in keys] for row in curve],
                         dtype=dtype).reshape(-1, len(keys))
    return keys, table


def unpack_curve(keys: list[str], table: torch.Tensor) -> list[dict[str, float]]:
    """The rows :func:`pack_curve` packed."""
    return [dict(zip(keys, map(float, row))) for row in table.tolist()]


@dataclass
class SyntheticSet:
    """A condensed training set.

    images: (N, C, H, W) normalised like the real data.  labels: (N,) int64 class indices or
    (N, C) soft labels.  lr: an optional learned learning rate for evaluation training.
    init_images: the images at initialisation (for pictures), if the method synthesises.
    curve: a list of {"step": ..., "loss": ...} dicts.
    extras: named tensors a method stores with the set (e.g. learned per-step learning rates
    or the initial weights its own evaluation needs); they survive the artifact round trip.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lr: float | None = None
    init_images: torch.Tensor | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_tensors(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images.detach().cpu(),
                               "labels": self.labels.detach().cpu()}
        if self.lr is not None:
            out["lr"] = torch.tensor(float(self.lr))
        if self.init_images is not None:
            out["init_images"] = self.init_images.detach().cpu()
        if self.curve:
            out["curve_keys"], out["curve"] = pack_curve(self.curve, torch.float32)
        if self.extras:
            out["extras"] = {k: v.detach().cpu() for k, v in self.extras.items()}
        return out

    @classmethod
    def from_tensors(cls, data: dict[str, Any]) -> "SyntheticSet":
        curve = unpack_curve(data["curve_keys"], data["curve"]) if "curve" in data else []
        lr = float(data["lr"]) if "lr" in data else None
        return cls(data["images"], data["labels"], lr, data.get("init_images"), curve,
                   extras=dict(data.get("extras", {})))

    def hard_labels(self) -> torch.Tensor:
        return self.labels.argmax(1) if self.labels.dim() == 2 else self.labels


def take_per_class(data: DataSplits, ipc: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``ipc`` random real training images of each class (fewer if a class is small)."""
    picks = []
    for idx in data.indices_by_class():
        order = torch.randperm(idx.numel(), generator=generator,
                               device=generator.device).to(idx.device)
        picks.append(idx[order[:ipc]])
    return torch.cat(picks)
