"""Several networks of one shape trained at once, with stacked weights.

``n_models`` networks, several seeds or several candidate networks of one architecture train on
the same training set by the same recipe.  One by one, each step of each network is a separate
series of small kernels; stacked, the weights of the M networks are stacked along a new leading
dimension (:func:`torch.func.stack_module_state`) and one vectorised call
(:func:`torch.func.vmap` over :func:`torch.func.functional_call`) runs the M forward and
backward passes as batched kernels (a convolution of M weight sets becomes one grouped
convolution).  On a GPU that fills the device; on the CPU it measured slower than one by one,
so the recipe key ``stack`` (``"auto"``: on CUDA only, ``"on"``, ``"off"``) decides.

The steps are the same ones as :func:`kddbench.protocol.train` takes for each network alone:

* network ``m`` draws its batch order and its augmentation from its own generator, in the same
  order as alone (at each epoch one ``randperm``, then one augmentation call per batch);
* the stacked loss is the sum of the M networks' batch-mean losses, so the gradient of each
  network's weights is its own;
* the optimisers of the protocol (SGD with momentum and weight decay, Adam, AdamW) update each
  element from its own gradient and state alone, so one optimiser over the stacked tensors takes
  every network's own step.

Only the float summation order differs (the CPU's micro-batches, batched kernels), so weights
and accuracies agree with one by one to float tolerance (``tests/test_stacked.py``).

Stacking needs networks of one type whose parameters and buffers have equal names and shapes,
no buffer updated in training (batch norm's running statistics are in-place writes that a
vectorised call cannot make) and no dropout (its draws could not match one by one's).  A custom
``loss_fn`` (e.g. a KD loss) or extra parameters also fall back to one by one.
:func:`train_many` makes the choice and says why in ``reason``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import KddbenchError
from .protocol import (Augment, LossFn, Recipe, TrainResult, autocast, label_loss,
                       make_optimizer, train)
from .recipe import batch_starts, lr_at

OnEpoch = Callable[[int, int, nn.Module], None]  # (epoch, network index, network)


def wants_stacking(recipe: Recipe, device: torch.device | str) -> bool:
    """The recipe's ``stack`` key on ``device``: ``on``, ``off``, or ``auto`` (CUDA only)."""
    mode = getattr(recipe, "stack", "auto")
    if mode == "on":
        return True
    if mode == "off":
        return False
    return torch.device(device).type == "cuda"


def why_not_stack(models: Sequence[nn.Module]) -> str | None:
    """None when ``models`` can be trained stacked, else the reason they cannot."""
    if len(models) < 2:
        return "fewer than two networks"
    first = models[0]
    shapes = _shapes(first)
    for m in models[1:]:
        if type(m) is not type(first) or _shapes(m) != shapes:
            return "the networks differ in type or in their parameters' names or shapes"
    for module in first.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return "batch norm updates running statistics in training"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return "dropout draws differ from one-by-one training"
    return None


def _shapes(model: nn.Module) -> list:
    return ([(k, tuple(v.shape), v.dtype) for k, v in model.named_parameters()]
            + [(k, tuple(v.shape), v.dtype) for k, v in model.named_buffers()])


@dataclass
class ManyResult:
    """What :func:`train_many` did: each network's :class:`TrainResult` and whether (or why
    not) the networks were stacked.  Stacked, ``train_time_s`` of each is the group's time
    divided by the number of networks."""
    results: list[TrainResult]
    stacked: bool
    reason: str | None = None


def train_many(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
               generators: Sequence[torch.Generator], augment: Augment | None = None,
               lr: float | None = None, loss_fns: Sequence[LossFn | None] | None = None,
               extra_params: Sequence[list | None] | None = None,
               on_epoch: OnEpoch | None = None) -> ManyResult:
    """Train every network of ``models`` on (x, y) by ``recipe``, network ``m`` with
    ``generators[m]``: stacked when the recipe's ``stack`` key and the networks allow it, else
    one by one with :func:`kddbench.protocol.train`.  ``on_epoch(epoch, m, model)`` is called
    after every epoch for every network (stacked: with its current weights written back)."""
    if len(generators) != len(models):
        raise KddbenchError(f"train_many: {len(models)} networks but {len(generators)} "
                            "generators")
    reason = None
    if not wants_stacking(recipe, x.device):
        reason = f"recipe stack = {getattr(recipe, 'stack', 'auto')!r} on {x.device.type}"
    elif any(f is not None for f in (loss_fns or ())):
        reason = "a custom loss_fn"
    elif any(e for e in (extra_params or ())):
        reason = "extra parameters"
    else:
        reason = why_not_stack(models)
    if reason is None:
        return ManyResult(train_stacked(models, x, y, recipe, generators, augment, lr,
                                        on_epoch), True)
    results = []
    for m, model in enumerate(models):
        hook = None if on_epoch is None else (lambda e, net, m=m: on_epoch(e, m, net))
        results.append(train(model, x, y, recipe, generators[m], augment,
                             (loss_fns or [None] * len(models))[m],
                             (extra_params or [None] * len(models))[m], lr, on_epoch=hook))
    return ManyResult(results, False, reason)


def train_stacked(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor,
                  recipe: Recipe, generators: Sequence[torch.Generator],
                  augment: Augment | None = None, lr: float | None = None,
                  on_epoch: OnEpoch | None = None) -> list[TrainResult]:
    """Train ``models`` (see :func:`why_not_stack`) at once; their weights are written back in
    place.  The same steps as :func:`kddbench.protocol.train` on each (module docstring)."""
    from torch.func import functional_call, stack_module_state, vmap

    reason = why_not_stack(models)
    if reason is not None:
        raise KddbenchError(f"cannot train these networks stacked: {reason}")
    n, count = int(x.shape[0]), len(models)
    if n == 0:
        raise KddbenchError("cannot train on an empty training set")
    for model in models:
        model.train()
    params, buffers = stack_module_state(list(models))
    base = copy.deepcopy(models[0]).to("meta")
    base_lr = recipe.lr if lr is None else float(lr)
    opt = make_optimizer(recipe.with_(lr=base_lr), list(params.values()))
    bs = min(recipe.batch_size, n)

    def one_loss(p, b, xb, yb):
        return label_loss(functional_call(base, (p, b), (xb,)), yb, recipe)

    batched = vmap(one_loss)
    steps = seen = 0
    losses = torch.zeros(count)
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(recipe, epoch, base_lr)
        perms = [torch.randperm(n, generator=g, device=g.device).to(x.device)
                 for g in generators]
        for i in batch_starts(recipe, n, bs):
            idx = [p[i:i + bs] for p in perms]
            xs = [x[j] for j in idx]
            if augment is not None:
                xs = [augment(xb, g) for xb, g in zip(xs, generators)]
            xb = torch.stack(xs)
            yb = torch.stack([y[j] for j in idx])
            opt.zero_grad(set_to_none=True)
            with autocast(recipe, x.device):
                losses = batched(params, buffers, xb, yb)
                losses.sum().backward()
            opt.step()
            steps += 1
            seen += int(idx[0].numel())
        if on_epoch is not None:
            paused = time.perf_counter()
            write_back(models, params, buffers)
            for m, model in enumerate(models):
                on_epoch(epoch, m, model)
                model.train()
            start += time.perf_counter() - paused
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    elapsed = time.perf_counter() - start
    write_back(models, params, buffers)
    finals = [float(v) for v in losses.detach().float().cpu()] if steps else [float("nan")] * count
    bad = [m for m, v in enumerate(finals) if v != v or abs(v) == float("inf")]
    if bad:
        raise KddbenchError(f"training diverged (network {bad[0]}: final loss {finals[bad[0]]});"
                            " lower the learning rate")
    return [TrainResult(elapsed / count, steps, seen, v) for v in finals]


@torch.no_grad()
def write_back(models: Sequence[nn.Module], params: dict, buffers: dict) -> None:
    """Copy network ``m``'s slice of the stacked tensors into ``models[m]``."""
    for m, model in enumerate(models):
        for name, p in model.named_parameters():
            p.copy_(params[name][m])
        for name, b in model.named_buffers():
            b.copy_(buffers[name][m])
