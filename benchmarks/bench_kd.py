"""KD training throughput: every registered KD method against the student trained alone.

    /work/venv/bin/python -m pytest benchmarks/bench_kd.py --benchmark-enable

All runs train a fresh student (ConvNet depth 2, width 8: the student of suites/kd_cpu.toml) for
one epoch on the same 2,048 MNIST-shaped images with :func:`kddbench.protocol.train`; the
teacher is a ConvNet-3 of width 32 (its weights do not matter for speed).  Two modes per method:

* ``cached``: no augmentation, so the teacher's outputs are computed once before training and
  looked up by index (the cost of that one pass is printed separately, ``fill s``);
* ``live``: the teacher runs on every batch, as it must when batches are augmented.

The table printed at the end gives images/s (best of 5 rounds after one warm-up round, one torch
thread, as each worker of ``kddbench run --jobs N`` uses) and the ratio to the student alone
(100% = KD costs nothing).  Absolute images/s move between machines and with load: compare
ratios of one run.
"""
import time

import pytest
import torch

from kddbench.kd import DistillationLoss, build_kd_loss
from kddbench.plugins import get_registry
from kddbench.protocol import Recipe, make_generator, seeded, train

N = 2048
RECIPE = Recipe(epochs=1, batch_size=128, lr=0.05, schedule="constant")
METHODS = get_registry().names("kd_method")
RESULTS: dict[tuple[str, str], dict[str, float]] = {}



@pytest.fixture(scope="module")
def tensors():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 1, 28, 28, generator=g), torch.randint(0, 10, (N,), generator=g)


def _arch(name, **options):
    spec = get_registry().get("architecture", name)
    return spec.load()(1, 10, (28, 28), **spec.resolve_options(options))


@pytest.fixture(scope="module")
def teacher():
    with seeded(0):
        return _arch("convnet3", width=32).eval()


def _student():
    with seeded(1):
        return _arch("convnet", width=8, depth=2)


def _measure(benchmark, key, make_loss_fn, x, y):
    """Best of 5 rounds of train(); setup (student, loss, cache) is outside the timing."""
    times, fills = [], []

    def setup():
        student = _student()
        start = time.perf_counter()
        loss_fn = make_loss_fn(student)
        fills.append(time.perf_counter() - start)
        return (student, loss_fn), {}

    def target(student, loss_fn):
        start = time.perf_counter()
        train(student, x, y, RECIPE, make_generator(0), loss_fn=loss_fn,
              extra_params=loss_fn.extra_params if loss_fn is not None else None)
        times.append(time.perf_counter() - start)

    benchmark.pedantic(target, setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    RESULTS[key] = {"img_s": N / min(times[1:] or times), "fill_s": min(fills)}


@pytest.fixture(scope="module")
def warm(tensors, teacher):
    """The first trainings of a process are several times slower (allocator, kernel choice):
    run two, with and without a teacher, before measuring anything."""
    x, y = tensors
    train(_student(), x, y, RECIPE, make_generator(0))
    kd = build_kd_loss(get_registry().get("kd_method", "response").load(), teacher, _student(),
                       x[:2], 0)
    train(_student(), x, y, RECIPE, make_generator(0), loss_fn=DistillationLoss(kd, teacher))


def test_student_alone(benchmark, tensors, warm):
    x, y = tensors
    _measure(benchmark, ("none", "-"), lambda student: None, x, y)


@pytest.mark.parametrize("mode", ["cached", "live"])
@pytest.mark.parametrize("name", METHODS)
def test_kd_method(benchmark, tensors, teacher, warm, name, mode):
    x, y = tensors
    spec = get_registry().get("kd_method", name)

    def make(student):
        kd = build_kd_loss(spec.load(), teacher, student, x[:2], 0, **spec.resolve_options(None))
        return DistillationLoss(kd, teacher, epochs=RECIPE.epochs,
                                x=x if mode == "cached" else None)

    _measure(benchmark, (name, mode), make, x, y)


def test_zz_print_ratios(capsys):
    base = RESULTS.get(("none", "-"))
    if base is None:
        pytest.skip("the student-alone run did not happen")
    lines = [f"\nKD throughput, {N} images x 1 epoch, student ConvNet d2/w8, teacher ConvNet-3 "
             f"w32, {torch.get_num_threads()} thread(s)",
             f"{'method':<12} {'mode':<7} {'img/s':>8} {'vs alone':>9} {'fill s':>7}",
             f"{'none':<12} {'-':<7} {base['img_s']:>8.0f} {'100%':>9} {'-':>7}"]
    for (name, mode), r in sorted(RESULTS.items()):
        if name == "none":
            continue
        fill = f"{r['fill_s']:.2f}" if mode == "cached" else "-"
        lines.append(f"{name:<12} {mode:<7} {r['img_s']:>8.0f} "
                     f"{100 * r['img_s'] / base['img_s']:>8.0f}% {fill:>7}")
    with capsys.disabled():
        print("\n".join(lines))
