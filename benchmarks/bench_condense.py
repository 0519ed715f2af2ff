"""Condensation speed: seconds per iteration of dc, dsa, dm and datadam at IPC 10, and the
evaluation protocol's throughput with augmentation on and off, beside the floors of
docs/references.md section 7 computed from a matmul ceiling measured in the same run.

    /work/venv/bin/python -m pytest benchmarks/bench_condense.py --benchmark-enable -s

Everything runs on Fashion-MNIST-shaped tensors (1x28x28, 10 classes, 300 random "real"
images per class; the speed does not depend on the pixels) with ConvNet-3 (instance norm), on
one torch thread, as each worker of ``kddbench run --jobs N`` uses.

* ``dm``, ``datadam``: best of rounds of a few full iterations (256 real images per class, DSA
  on both sides; DataDAM in its paper setting).
* ``dc``, ``dsa``: a full outer iteration at IPC 10 is 10 matching steps and 9 inner updates
  of 50 epochs on the synthetic set (minutes here), so a run of 2 matching steps and one
  50-epoch inner update is timed by the method itself (``info``: seconds per matching step and
  per inner update) and combined as 10 x step + 9 x update.  ``KDDBENCH_BENCH_FULL=1`` times
  one whole outer iteration instead.
* the augmentations' own cost per 256-image batch, against a training step.
* evaluation: :func:`kddbench.protocol.train` on a 100-image set (IPC 10) with augment
  "none" and "dsa", and one pass of :func:`kddbench.protocol.evaluate` over 10,000 images.

Floors (docs/references.md section 7): one training image (forward + backward, 28x28 padded to 32)
costs ~0.29 GFLOP and one forward ~0.097 GFLOP, so at the measured matmul rate R (GFLOP/s):
training R / 0.29 img/s; a 10,000-image test pass 970 / R s; a DM iteration
(2,560 x 0.097 + 100 x 0.29) / R s; a DC/DSA outer iteration
(10 x (2,560 + 2 x 100) + 9 x 50 x 100) x 0.29 / R s.  The reference code, measured by the
project at 186 GFLOP/s, ran at 1.16x (training), 1.8x (test pass), 1.63x (DM) and 1.33x
(DC/DSA) its floor; our targets are 1.1x, 1.6x, 1.4x and 1.25x.  Those reference ratios
are an earlier measurement; ``benchmarks/reference_driver.py dm_iteration`` (and
``datadam_iteration``, ``dd_eval_train``, ``dd_test_pass``, ``dc_match_loss``) time the
reference code itself beside ours, in the same run.
"""
from __future__ import annotations

import os
import time

import pytest
import torch

from kddbench.bench import matmul_gflops
from kddbench.condense import CondenseRequest
from kddbench.context import RunContext
from kddbench.data import DataSplits
from kddbench.plugins import get_registry
from kddbench.protocol import Recipe, evaluate, make_generator, seeded, train

PER_CLASS, CLASSES, IPC = 300, 10, 10
TRAIN_GFLOP, FWD_GFLOP = 0.29, 0.097
REFERENCE_RATIO = {"train": 1.16, "test": 1.8, "dm": 1.63, "dc": 1.33}
TARGET_RATIO = {"train": 1.1, "test": 1.6, "dm": 1.4, "dc": 1.25}
RESULTS: dict[str, float] = {}
FULL = bool(os.environ.get("KDDBENCH_BENCH_FULL"))  # time whole DC/DSA outer iterations



@pytest.fixture(scope="module")
def data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    n = PER_CLASS * CLASSES
    y = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    x = torch.randn(n, 1, 28, 28, generator=g)
    xt = torch.randn(10_000, 1, 28, 28, generator=g)
    yt = torch.randint(0, CLASSES, (10_000,), generator=g)
    return DataSplits("fashion-mnist", x, y, xt, yt, [f"c{k}" for k in range(CLASSES)],
                      [0.2861], [0.3530])


def _net(seed: int):
    spec = get_registry().get("architecture", "convnet3")
    with seeded(seed):
        return spec.load()(1, CLASSES, (28, 28), **spec.resolve_options(None))


def _request(data, seed=0):
    return CondenseRequest(data=data, ipc=IPC, arch="convnet3", build_net=_net,
                           generator=make_generator(seed), device=torch.device("cpu"),
                           seed=seed,
                           augment=lambda name: RunContext(registry=get_registry()).augment(
                               name, data))


def _condense(name, data, **options):
    spec = get_registry().get("condenser", name)
    start = time.perf_counter()
    spec.load()(_request(data), **{**options, "checkpoint_every": 0})
    return time.perf_counter() - start


def test_matmul_ceiling_before(benchmark):
    benchmark.pedantic(lambda: RESULTS.__setitem__(
        "gflops_before", matmul_gflops(torch.device("cpu"))), rounds=1, iterations=1)


@pytest.mark.parametrize("name,options", [
    ("dm", {}),
    ("datadam", {"setting": "paper"}),
])
def test_distribution_matching_seconds_per_iteration(benchmark, data, name, options):
    iters = 3
    _condense(name, data, iterations=1, **options)  # warm-up
    benchmark.pedantic(lambda: _condense(name, data, iterations=iters, **options), rounds=3,
                       iterations=1)
    RESULTS[name] = benchmark.stats.stats.min / iters


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_gradient_matching_seconds_per_outer_iteration(benchmark, name, data):
    if FULL:  # one real outer iteration at IPC 10: 10 matching steps, 9 x 50 inner epochs
        benchmark.pedantic(lambda: _condense(name, data, iterations=1), rounds=1, iterations=1)
        RESULTS[name] = benchmark.stats.stats.min
        return
    _condense(name, data, iterations=1, outer_loop=1)  # warm-up
    timings = []

    def run():  # 2 matching steps and one inner update of 50 epochs, timed by the method
        spec = get_registry().get("condenser", name)
        syn = spec.load()(_request(data), iterations=1, outer_loop=2, inner_loop=50,
                          checkpoint_every=0)
        timings.append(syn.info)

    benchmark.pedantic(run, rounds=2, iterations=1)
    step = min(t["seconds_per_matching_step"] for t in timings)
    update = min(t["seconds_per_inner_update"] for t in timings)
    RESULTS[f"{name}_step"], RESULTS[f"{name}_epoch"] = step, update / 50
    RESULTS[name] = 10 * step + 9 * update


@pytest.mark.parametrize("aug", ["dsa", "flip_rotate"])
def test_augmentation_cost_per_batch(benchmark, data, aug):
    fn = RunContext(registry=get_registry()).augment(aug, data)
    x, g = data.x_train[:256], make_generator(0)
    fn(x, g)
    benchmark.pedantic(lambda: fn(x, g), rounds=30, iterations=1)
    RESULTS[f"aug_{aug}"] = benchmark.stats.stats.mean  # the operation drawn varies per call


@pytest.mark.parametrize("aug", ["none", "dsa", "flip_rotate"])
def test_evaluation_training_throughput(benchmark, data, aug):
    x, y = data.x_train[::PER_CLASS // IPC][:IPC * CLASSES], torch.arange(CLASSES).repeat(IPC)
    recipe = Recipe(epochs=20, schedule="constant", augment=aug)
    fn = RunContext(registry=get_registry()).augment(aug, data)

    def run():
        return train(_net(1), x, y, recipe, make_generator(0), augment=fn)

    run()
    benchmark.pedantic(run, rounds=2, iterations=1)
    RESULTS[f"train_{aug}"] = x.shape[0] * recipe.epochs / benchmark.stats.stats.min


def test_test_pass(benchmark, data):
    net = _net(2)
    evaluate(net, data.x_test[:512], data.y_test[:512], CLASSES)
    benchmark.pedantic(lambda: evaluate(net, data.x_test, data.y_test, CLASSES), rounds=2,
                       iterations=1)
    RESULTS["test"] = benchmark.stats.stats.min


def test_matmul_ceiling_after_and_report(benchmark):
    benchmark.pedantic(lambda: RESULTS.__setitem__(
        "gflops_after", matmul_gflops(torch.device("cpu"))), rounds=1, iterations=1)
    rate = max(RESULTS.get("gflops_before", 0.0), RESULTS["gflops_after"])
    floors = {
        "train": TRAIN_GFLOP / rate,  # seconds per training image
        "test": 10_000 * FWD_GFLOP / rate,
        "dm": (2_560 * FWD_GFLOP + 100 * TRAIN_GFLOP) / rate,
        "dc": (10 * (2_560 + 2 * 100) + 9 * 50 * 100) * TRAIN_GFLOP / rate,
    }
    rows = []

    def row(label, measured_s, floor_key, scale=1.0):
        if measured_s is None:
            return
        ratio = measured_s / floors[floor_key]
        rows.append(f"{label:<44} {scale * measured_s:10.3f} {scale * floors[floor_key]:10.3f} "
                    f"{ratio:7.2f}x"
                    f"   (reference {REFERENCE_RATIO[floor_key]:.2f}x, target "
                    f"{TARGET_RATIO[floor_key]:.2f}x)")

    for aug in ("none", "dsa", "flip_rotate"):
        if f"train_{aug}" in RESULTS:
            row(f"eval training, augment={aug} (ms/img)", 1 / RESULTS[f"train_{aug}"], "train",
                1000.0)
    row("test pass, 10,000 images (s)", RESULTS.get("test"), "test")
    row("dm, IPC 10, 256 real/class (s/it)", RESULTS.get("dm"), "dm")
    row("datadam paper, IPC 10, 256 real/class (s/it)", RESULTS.get("datadam"), "dm")
    for name in ("dc", "dsa"):
        label = "full" if FULL else "extrap."
        row(f"{name}, IPC 10, outer iteration (s, {label})", RESULTS.get(name), "dc")
    lines = [
        "",
        f"matmul ceiling: {RESULTS.get('gflops_before', float('nan')):.1f} GFLOP/s before, "
        f"{RESULTS['gflops_after']:.1f} after (floors use {rate:.1f}); "
        f"threads={torch.get_num_threads()}",
        f"{'measure':<44} {'measured':>10} {'floor':>10} {'ratio':>8}",
        *rows,
    ]
    for name in ("dc", "dsa"):
        if f"{name}_step" in RESULTS:
            lines.append(f"  {name}: matching step {RESULTS[name + '_step']:.2f} s, inner epoch "
                         f"{RESULTS[name + '_epoch']:.3f} s (x 50 x 9 per outer iteration)")
    for aug in ("dsa", "flip_rotate"):
        if f"aug_{aug}" in RESULTS and "train_none" in RESULTS:
            step = 256 / RESULTS["train_none"]
            lines.append(f"  augment={aug}: {1000 * RESULTS['aug_' + aug]:.2f} ms per 256-image "
                         f"batch = {100 * RESULTS['aug_' + aug] / step:.2f}% of a training step")
    for aug in ("none", "dsa", "flip_rotate"):
        if f"train_{aug}" in RESULTS:
            lines.append(f"  eval training augment={aug}: {RESULTS['train_' + aug]:.0f} img/s "
                         f"(ceiling {rate / TRAIN_GFLOP:.0f} img/s)")
    print("\n".join(lines))
