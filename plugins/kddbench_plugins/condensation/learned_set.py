"""A synthetic set learned by Adam, resumable: what the performance-matching condensers
(``ddwang``, ``krr``) share.

:class:`LearnedSet` owns the synthetic images (started by :func:`synthesis.initial_set`), any
further learned tensors (per-step learning rates, label logits), one Adam optimiser over all of
them with a step decay of its learning rates, the loss curve and the checkpoint.  A method may
add its own state to the checkpoint (e.g. a pool of networks) through ``state_fn``; it gets it
back from :meth:`LearnedSet.restore`.  Everything saved is tensors and plain values
(``torch.load(weights_only=True)``), and a resumed run ends with exactly the result of an
uninterrupted one.

Usage::

    opt = LearnedSet(request, init, lr_img, {"raw_lrs": raw}, {"raw_lrs": lr_lr}, ...)
    mine = opt.restore()                  # None, or what state_fn returned at the last save
    for it in range(opt.start, iterations):
        opt.zero_grad(); loss = ...; loss.backward()
        opt.update(float(loss), it)       # Adam step, curve, request.log, checkpoint
    return opt.result(info)               # clears the checkpoint
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from kddbench.condense import CondenseRequest, SyntheticSet

from .synthesis import CHECKPOINT_FORMAT, SetUnderOptimization


class LearnedSet(SetUnderOptimization):
    def __init__(self, request: CondenseRequest, init: str, lr_img: float,
                 extra: Mapping[str, torch.Tensor] | None = None,
                 extra_lr: Mapping[str, float] | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), checkpoint_every: int = 0,
                 decay_every: int = 0, decay_factor: float = 1.0,
                 state_fn: Callable[[], dict[str, Any]] | None = None):
        super().__init__(request, init, checkpoint_every)
        self.decay_every, self.decay_factor = int(decay_every), float(decay_factor)
        self.extra = {k: v.detach().clone().requires_grad_(True)
                      for k, v in (extra or {}).items()}
        extra_lr = dict(extra_lr or {})
        groups = [{"params": [self.images], "lr": float(lr_img)}]
        groups += [{"params": [t], "lr": float(extra_lr.get(k, lr_img))}
                   for k, t in self.extra.items()]
        self.base_lrs = [g["lr"] for g in groups]
        self.opt = torch.optim.Adam(groups, betas=tuple(betas))
        self.state_fn = state_fn

    # checkpoint ----------------------------------------------------------------
    def restore(self) -> dict[str, Any] | None:
        """Load the last checkpoint, if any: images, learned tensors, Adam state, generator,
        iteration and curve; returns the method's own saved state (or None)."""
        ck = self._checkpoint()
        state = ck.load() if ck is not None else None
        if not state or int(state.get("format", -1)) != CHECKPOINT_FORMAT:
            return None
        if tuple(state["images"].shape) != tuple(self.images.shape) or \
                sorted(state["extra"]) != sorted(self.extra):
            return None  # not ours (cannot happen with a proper key); start afresh
        dev = self.images.device
        with torch.no_grad():
            self.images.copy_(state["images"].to(dev))
            for k, t in self.extra.items():
                t.copy_(state["extra"][k].to(t.device))
        self.init_images = state["init_images"].to(dev)
        self.opt.load_state_dict(state["optimizer"])
        self._resumed(state)
        return state.get("method")

    def save(self, next_iteration: int) -> None:
        ck = self._checkpoint()
        if ck is None:
            return
        ck.save({**self._saved(next_iteration),
                 "extra": {k: t.detach().cpu().clone() for k, t in self.extra.items()},
                 "optimizer": _to_cpu(self.opt.state_dict()),
                 "method": self.state_fn() if self.state_fn is not None else None})

    # the step ------------------------------------------------------------------
    def lr_factor(self, iteration: int) -> float:
        if self.decay_every <= 0:
            return 1.0
        return self.decay_factor ** (int(iteration) // self.decay_every)

    def update(self, loss: float, iteration: int, **scalars: float) -> float:
        """An Adam step with the gradients already in ``.grad``; record and checkpoint."""
        factor = self.lr_factor(iteration)
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self.opt.step()
        return self.record(float(loss), iteration, **scalars)

    def result(self, labels: torch.Tensor | None = None, info: dict[str, Any] | None = None,
               extras: dict[str, torch.Tensor] | None = None) -> SyntheticSet:
        info = self._finished(info)
        return SyntheticSet(self.images.detach().clone(),
                            (self.labels if labels is None else labels).detach().clone(),
                            init_images=self.init_images, curve=list(self.curve), info=info,
                            extras={k: v.detach().clone() for k, v in (extras or {}).items()})


def _to_cpu(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
