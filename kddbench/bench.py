"""Throughput benchmarks: the shared protocol against a bare torch loop and a matmul ceiling.

Absolute speed moves between machines and days, so every figure is printed beside baselines
measured in the same process, on the same tensors and model.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from .context import resolve_device
from .plugins import get_registry
from .protocol import CPU_MICRO_BATCH_ENV, Recipe, make_generator, seeded, train


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, x, y, recipe: Recipe, seed: int) -> float:
    """The least a training loop can do: shuffle, slice, forward, backward, step."""
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    g = torch.Generator(device=x.device).manual_seed(seed)
    n, bs = x.shape[0], min(recipe.batch_size, x.shape[0])
    model.train()
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        perm = torch.randperm(n, generator=g, device=x.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(x.device)
    return n * recipe.epochs / (time.perf_counter() - start)


def protocol_vs_bare(arch: str = "convnet3", images: int = 512, epochs: int = 2,
                     repeats: int = 3, device: str = "auto", channels: int = 1,
                     size: int = 28, classes: int = 10) -> list[dict[str, Any]]:
    """Images/s of :func:`kddbench.protocol.train` and of :func:`bare_loop`, best of repeats."""
    dev = resolve_device(device)
    spec = get_registry().get("architecture", arch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(images, channels, size, size, generator=gen).to(dev)
    y = torch.randint(0, classes, (images,), generator=gen).to(dev)
    recipe = Recipe(epochs=epochs, schedule="constant")

    def fresh():
        with seeded(0):
            options = spec.resolve_options(None)
            return spec.load()(channels, classes, (size, size), **options).to(dev)

    bare_loop(fresh(), x[:recipe.batch_size], y[:recipe.batch_size], recipe.with_(epochs=1), 0)
    protocol, whole, bare = [], [], []
    for r in range(repeats):
        bare.append(bare_loop(fresh(), x, y, recipe, r))
        for micro, out in ((None, protocol), ("0", whole)):
            with _env(CPU_MICRO_BATCH_ENV, micro):
                res = train(fresh(), x, y, recipe, make_generator(r, dev))
            out.append(res.images_seen / res.train_time_s)
    ceiling = matmul_gflops(dev)
    best_p, best_w, best_b = max(protocol), max(whole), max(bare)
    rows = [
        {"measure": "bare torch loop (img/s)", "value": best_b},
        {"measure": "kddbench protocol.train (img/s)", "value": best_p},
        {"measure": "protocol / bare (%)", "value": 100 * best_p / best_b},
        {"measure": "protocol, CPU micro-batches off (img/s)", "value": best_w},
        {"measure": "protocol without micro-batches / bare (%)", "value": 100 * best_w / best_b},
        {"measure": "2048^3 matmul ceiling (GFLOP/s)", "value": ceiling},
    ]
    per_image = training_gflops_per_image(fresh(), x[:2], y[:2])
    if per_image > 0:
        rows.append({"measure": f"{arch} training GFLOP per image (counted)", "value": per_image})
        rows.append({"measure": "ceiling: matmul GFLOP/s / GFLOP per image (img/s)",
                     "value": ceiling / per_image})
        rows.append({"measure": "protocol / ceiling (%)", "value": 100 * best_p * per_image /
                     ceiling})
    rows.append({"measure": f"threads={torch.get_num_threads()} device={dev} arch={arch} "
                 "(value: images)", "value": float(images)})
    return rows


def training_gflops_per_image(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward + backward FLOPs of one training image, counted by torch's FLOP counter on a
    small batch (any architecture; 0 when the counter is unavailable)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover - older torch
        return 0.0
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 1e9 / max(int(x.shape[0]), 1)


@contextlib.contextmanager
def _env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
