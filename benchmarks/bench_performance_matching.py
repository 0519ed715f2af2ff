"""Performance-matching speed: seconds per outer iteration of ``ddwang`` and ``krr`` beside a
bare-torch floor measured in the same run.

    python -m pytest benchmarks/bench_performance_matching.py -s

Everything runs on MNIST-shaped random tensors (1x28x28, 10 classes, 300 "real" images per
class; the speed does not depend on the pixels) on one torch thread, as each worker of
``kddbench run --jobs N`` uses.  Each figure is given in wall-clock and in CPU seconds of this
process (``time.process_time``): on a shared machine the wall clock includes the time other
processes held the cores, the CPU time does not; the ratios use CPU time.

* ``ddwang``: LeNet, IPC 10 (the paper's default layout: 10 steps x 3 epochs of one image per
  class, 30 learned step sizes), 1024 real images per iteration, fixed and random initial
  weights.  Seconds per iteration = (time of k2 iterations - time of k1) / (k2 - k1), so the
  set-up and the method's own evaluation at the end do not count.
* its floor: the same computation written in bare torch -- LeNet as ``F.conv2d`` / ``F.linear``
  on a list of weight tensors, 30 differentiable gradient steps on 10 images each, the real
  batch's loss in one pass, one backward, one Adam step -- in a plain loop.  The method takes
  the real batch's gradient in cache-sized chunks (first order) before the backward through
  the descent, so it may run below this floor on a CPU (a ratio under 1).
* ``krr``: ConvNet-3 (instance norm), IPC 10, ``batch_real`` real images (256 by default;
  ``KDDBENCH_BENCH_FULL=1``: the method's default 1024), a pool of 10 networks.
* its floor: the same computation in bare torch -- real features under ``no_grad``, synthetic
  features, the 100 x 100 kernel, its ridge solve, the loss, its gradient to the images, an
  Adam step, one online training step of the network -- in a plain loop.
"""
from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F

from kddbench.condense import CondenseRequest
from kddbench.data import DataSplits
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator, seeded

PER_CLASS, CLASSES, IPC = 300, 10, 10
FULL = bool(os.environ.get("KDDBENCH_BENCH_FULL"))
KRR_BATCH = 1024 if FULL else 256
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    n = PER_CLASS * CLASSES
    y = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    x = torch.randn(n, 1, 28, 28, generator=g)
    xt = torch.randn(500, 1, 28, 28, generator=g)
    yt = torch.randint(0, CLASSES, (500,), generator=g)
    return DataSplits("mnist", x, y, xt, yt, [f"c{k}" for k in range(CLASSES)],
                      [0.1307], [0.3081])


def _builder(arch: str):
    spec = get_registry().get("architecture", arch)

    def build(seed: int):
        with seeded(seed):
            return spec.load()(1, CLASSES, (28, 28), **spec.resolve_options({}))
    return build


def _request(data, arch):
    return CondenseRequest(data=data, ipc=IPC, arch=arch, build_net=_builder(arch),
                           generator=make_generator(0), device=torch.device("cpu"), seed=0)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_iteration(start, end, n) -> tuple[float, float]:
    return tuple((b - a) / n for a, b in zip(start, end))


def _seconds_per_iteration(name, data, arch, k1, k2, **options) -> tuple[float, float]:
    """(wall, CPU) seconds per iteration of a condenser, set-up and evaluation excluded."""
    spec = get_registry().get("condenser", name)
    fn = spec.load()
    fn(_request(data, arch), iterations=1, checkpoint_every=0, **options)  # warm-up (oneDNN)
    times = {}
    for k in (k1, k2):
        start = _clocks()
        fn(_request(data, arch), iterations=k, checkpoint_every=0, **options)
        times[k] = tuple(b - a for a, b in zip(start, _clocks()))
    return tuple((b - a) / (k2 - k1) for a, b in zip(times[k1], times[k2]))


# ---------------------------------------------------------------------------------------------
# bare-torch floors
def _lenet(w, x):
    x = F.max_pool2d(F.relu(F.conv2d(x, w[0], w[1], padding=2)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, w[2], w[3])), 2)
    x = F.relu(F.linear(torch.flatten(x, 1), w[4], w[5]))
    x = F.relu(F.linear(x, w[6], w[7]))
    return F.linear(x, w[8], w[9])


def _ddwang_floor(data, iterations: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(1)
    w_init = [p.detach().clone() for p in _builder("lenet")(0).parameters()]
    images = torch.randn(IPC * CLASSES, 1, 28, 28, generator=g, requires_grad=True)
    raw = torch.full((3 * IPC,), 0.02).expm1().log().requires_grad_(True)
    opt = torch.optim.Adam([images, raw], lr=0.01, betas=(0.5, 0.999))
    step_labels = torch.arange(CLASSES)
    n = data.x_train.shape[0]
    start = None
    for it in range(iterations + 1):
        if it == 1:  # the first iteration warms up
            start = _clocks()
        idx = torch.randperm(n, generator=g)[:1024]
        w = [t.clone().requires_grad_(True) for t in w_init]
        lrs = F.softplus(raw)
        for i in range(3 * IPC):
            x = images[(i % IPC)::IPC]  # one image of every class
            grads = torch.autograd.grad(F.cross_entropy(_lenet(w, x), step_labels), w,
                                        create_graph=True)
            w = [a - lrs[i] * b for a, b in zip(w, grads)]
        loss = F.cross_entropy(_lenet(w, data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _per_iteration(start, _clocks(), iterations)


def _krr_floor(data, iterations: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(2)
    net = _builder("convnet3")(0)
    body = torch.nn.Sequential(*net.stages.values())
    images = data.x_train[::PER_CLASS // IPC][:IPC * CLASSES].clone().requires_grad_(True)
    labels = torch.arange(CLASSES).repeat_interleave(IPC)
    y_s = F.one_hot(labels, CLASSES).double()
    opt = torch.optim.Adam([images], lr=0.001)
    net_opt = torch.optim.Adam(net.parameters(), lr=0.001)
    n = data.x_train.shape[0]
    eye = torch.eye(IPC * CLASSES, dtype=torch.float64)
    start = None
    for it in range(iterations + 1):
        if it == 1:
            start = _clocks()
        idx = torch.randperm(n, generator=g)[:KRR_BATCH]
        with torch.no_grad():
            phi_t = torch.flatten(body(data.x_train[idx]), 1).double()
        phi_s = torch.flatten(body(images), 1).double()
        k = phi_s @ phi_s.T
        alpha = torch.linalg.solve(k + 1e-6 * torch.trace(k) / k.shape[0] * eye, y_s)
        pred = phi_t @ phi_s.T @ alpha
        loss = ((pred - F.one_hot(data.y_train[idx], CLASSES)) ** 2).sum(1).mean()
        (images.grad,) = torch.autograd.grad(loss, [images])
        opt.step()
        net_opt.zero_grad()
        F.cross_entropy(net(images.detach()), labels).backward()
        net_opt.step()
    return _per_iteration(start, _clocks(), iterations)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fixed", "random"])
def test_ddwang_seconds_per_iteration(data, mode):
    RESULTS[f"ddwang_{mode}"] = _seconds_per_iteration(
        "ddwang", data, "lenet", 2, 6, init_weights=mode, eval_draws=1)


def test_ddwang_floor(data):
    RESULTS["ddwang_floor"] = _ddwang_floor(data, 4)


def test_krr_seconds_per_iteration(data):
    RESULTS["krr"] = _seconds_per_iteration("krr", data, "convnet3", 2, 6,
                                            batch_real=KRR_BATCH)


def test_krr_floor(data):
    RESULTS["krr_floor"] = _krr_floor(data, 4)


def test_report():
    rows = [f"threads={torch.get_num_threads()}; MNIST-shaped tensors, IPC 10; seconds per "
            "iteration, wall / CPU",
            f"{'measure':<52} {'wall':>7} {'CPU':>7} {'floor CPU':>9} {'ratio':>7}"]
    for key, label, floor in [
            ("ddwang_fixed", "ddwang LeNet, 10 steps x 3 epochs, 1024 real, fixed", "ddwang_floor"),
            ("ddwang_random", "ddwang LeNet, same, random init", "ddwang_floor"),
            ("krr", f"krr ConvNet-3, {KRR_BATCH} real, pool of 10", "krr_floor")]:
        if key in RESULTS and floor in RESULTS:
            (wall, cpu), (_, floor_cpu) = RESULTS[key], RESULTS[floor]
            rows.append(f"{label:<52} {wall:7.3f} {cpu:7.3f} {floor_cpu:9.3f} "
                        f"{cpu / floor_cpu:6.2f}x")
    for floor in ("ddwang_floor", "krr_floor"):
        if floor in RESULTS:
            rows.append(f"  {floor}: wall {RESULTS[floor][0]:.3f} s, CPU {RESULTS[floor][1]:.3f} s")
    print("\n" + "\n".join(rows))
    assert len(rows) > 4, "run the whole file: the report needs the measurements"


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-s", "-q"]))
