"""Gradient matching: ``dc`` (Zhao, Mopuri & Bilen 2021) and ``dsa`` (Zhao & Bilen 2021).

Each outer iteration samples a fresh network; ``outer_loop`` times it (1) moves the synthetic
images so that, class by class, the network's gradient on them matches its gradient on real
images, then (2) trains the network for ``inner_loop`` epochs on the synthetic set.  DSA adds
the same random augmentation to the real and the synthetic batch of a class (and to the inner
updates).  Defaults: docs/references.md section 3.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from kddbench.condense import CondenseRequest, SyntheticSet

from .synthesis import (ClassSampler, ImageOptimizer, auto_chunk, backward_mean_loss, draw_seed,
                    has_batchnorm, mean_loss_grads)

# (outer_loop, inner_loop) by images per class, from the reference code
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def loops_for(ipc: int) -> tuple[int, int]:
    """The reference's (outer, inner) loops; other budgets take the nearest listed one."""
    if ipc in LOOPS:
        return LOOPS[ipc]
    nearest = min(LOOPS, key=lambda k: (abs(k - ipc), k))
    return LOOPS[nearest]


def matched_parameters(net: nn.Module) -> list[torch.Tensor]:
    """The parameters whose gradients are matched: weights of conv/linear layers (ndim >= 2);
    biases and normalisation parameters (1-d) are ignored, as in the reference."""
    return [p for p in net.parameters() if p.ndim >= 2]


def gradient_distance(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers and over output units of (1 - cos) between real and synthetic gradients.

    A weight of shape (out, ...) is compared row by row (one row per output unit); tensors
    with fewer than 2 dimensions (biases, norm parameters) contribute nothing.
    """
    total = None
    for gr, gs in zip(real, syn):
        if gr.ndim < 2:
            continue
        a = gr.reshape(gr.shape[0], -1)
        b = gs.reshape(gs.shape[0], -1)
        dot = (a * b).sum(1)
        norms = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
        d = (1.0 - dot / norms).sum()
        total = d if total is None else total + d
    if total is None:
        ref = next(iter(syn), None)
        return torch.zeros((), device=ref.device if ref is not None else "cpu")
    return total


@torch.no_grad()
def freeze_batchnorm_stats(net: nn.Module, x_real: torch.Tensor) -> None:
    """Set every batch norm's running statistics to those of ``x_real`` (a small real batch of
    every class), then put the batch norms in eval mode so matching uses them."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly this batch's statistics
    net.train()
    net(x_real)
    for m, mom in zip(bns, saved):
        m.momentum = mom
        m.eval()


def gradient_matching(request: CondenseRequest, *, iterations: int = 1000,
                      outer_loop: int = 0, inner_loop: int = 0, batch_real: int = 256,
                      batch_train: int = 256, lr_img: float = 0.1, momentum_img: float = 0.5,
                      lr_net: float = 0.01, init: str = "noise", augment: str = "none",
                      bn_real_per_class: int = 16, checkpoint_every: int = 10) -> SyntheticSet:
    """DC (``augment = "none"``) and DSA (``augment = "dsa"``); see the module docstring.

    outer_loop / inner_loop: 0 takes the reference's value for the IPC (:data:`LOOPS`).
    batch_real: real images per class per matching step.  batch_train: batch of the inner
    network updates on the synthetic set (plain SGD, ``lr_net``).  bn_real_per_class: real
    images per class that set a batch-norm network's statistics before each matching step.
    """
    data, ipc, g = request.data, int(request.ipc), request.generator
    c = data.num_classes
    default_outer, default_inner = loops_for(ipc)
    outer = outer_loop or default_outer
    inner = inner_loop or default_inner
    aug = request.augment(augment)
    sampler = ClassSampler(data.y_train, c)
    opt = ImageOptimizer(request, init, lr_img, momentum_img, checkpoint_every)
    syn_labels = opt.labels
    n_syn = syn_labels.numel()
    chunk = bn = None
    seconds = {"matching": 0.0, "inner": 0.0}
    counts = {"matching": 0, "inner": 0}
    for it in range(opt.start, iterations):
        net = request.build_net(draw_seed(g))
        net.train()
        params = matched_parameters(net)
        net_opt = torch.optim.SGD(net.parameters(), lr=lr_net)
        if bn is None:
            bn = has_batchnorm(net)
            chunk = auto_chunk(net, data.x_train[:2])
        total = 0.0
        for ol in range(outer):
            start = _now(data.x_train)
            if bn:
                idx_bn, _ = sampler.sample(bn_real_per_class, g)
                freeze_batchnorm_stats(net, data.x_train[idx_bn])
            idx, cls = sampler.sample(batch_real, g)
            x_real_all = data.x_train[idx]
            # the loss is a sum over classes: backward class by class (one double-backward
            # graph alive at a time), one image step for all of them
            opt.zero_grad()
            for k in range(c):
                x_real = x_real_all[cls == k]
                x_syn = opt.images[k * ipc:(k + 1) * ipc]
                if aug is not None:
                    p = aug.sample_params(1, g)
                    x_real = aug.apply(x_real, p)
                    x_syn = aug.apply(x_syn, p)
                y_real = torch.full((x_real.shape[0],), k, device=x_real.device)
                y_syn = syn_labels[k * ipc:(k + 1) * ipc]
                # batch norms are in eval mode here, so images do not interact: chunks are exact
                g_real = [t.detach() for t in mean_loss_grads(net, x_real, y_real, params,
                                                               chunk)]
                g_syn = mean_loss_grads(net, x_syn, y_syn, params, chunk, create_graph=True)
                d = gradient_distance(g_real, g_syn)
                d.backward()
                total += float(d.detach())
            opt.opt.step()
            seconds["matching"] += _now(data.x_train) - start
            counts["matching"] += 1
            if ol == outer - 1:
                break
            start = _now(data.x_train)
            # train the network on the current synthetic set
            net.train()
            x_syn_all = opt.images.detach()
            bs = min(batch_train, n_syn)
            for _ in range(inner):
                perm = torch.randperm(n_syn, generator=g, device=g.device).to(x_syn_all.device)
                for i in range(0, n_syn, bs):
                    b = perm[i:i + bs]
                    xb = x_syn_all[b]
                    if aug is not None:
                        xb = aug(xb, g)
                    net_opt.zero_grad(set_to_none=True)
                    backward_mean_loss(net, xb, syn_labels[b], 0 if bn else chunk)
                    net_opt.step()
            seconds["inner"] += _now(data.x_train) - start
            counts["inner"] += 1
        opt.record(total / (outer * c), it)
    # where the time went (this process only, not counting iterations before a resume)
    timing = {"seconds_per_matching_step": seconds["matching"] / max(counts["matching"], 1),
              "seconds_per_inner_update": seconds["inner"] / max(counts["inner"], 1)}
    return opt.result({"outer_loop": outer, "inner_loop": inner, "iterations": iterations,
                       "augment": augment, "init": init, **timing})


def _now(like: torch.Tensor) -> float:
    if like.is_cuda:
        torch.cuda.synchronize(like.device)
    return time.perf_counter()


def dc(request: CondenseRequest, **options) -> SyntheticSet:
    return gradient_matching(request, **options)


def dsa(request: CondenseRequest, **options) -> SyntheticSet:
    return gradient_matching(request, **options)
