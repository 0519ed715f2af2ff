"""KD with cached teacher outputs against the student trained alone, interleaved in one run.

    python benchmarks/bench_kd_cached.py                       # CPU, one thread, small sizes
    python benchmarks/bench_kd_cached.py --device cuda --images 16384 --json out.json
    python -m pytest benchmarks/bench_kd_cached.py -s          # the small CPU run, as a test

Four ways to train the same fresh student (ConvNet depth 2 width 8, the student of
suites/kd_cpu.toml) for one epoch on the same images with :func:`kddbench.protocol.train`,
measured round-robin (A, B, C, D, A, B, C, D, ...) so that a change of machine load hits every
mode alike:

* ``student``: cross-entropy alone (no teacher);
* ``cached``:  response KD (Hinton et al. 2015) with the teacher's logits computed once before
  training and looked up by index (the fill is timed apart, ``fill_s``);
* ``cached_whole``: the same, with the CPU micro-batches switched off
  (``KDDBENCH_CPU_MICRO_BATCH=0``): the KD path as it ran before KD losses could declare
  ``per_sample_mean``;
* ``live``:    response KD with the teacher (ConvNet-3 width 32) run on every batch.

Printed: the median and best seconds per mode and each mode's speed relative to ``student``
(median over the rounds of the per-round ratio, and the ratio of the best times), with the
thread count, the device and the load average.  Absolute numbers move with the machine and its
load; the ratios of one run are the result.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

MODES = ("student", "cached", "cached_whole", "live")


def _arch(name, channels, size):
    """A network from a registry name with inline options, ``convnet[depth=2,width=8]``."""
    from kddbench import names
    from kddbench.plugins import get_registry

    base, options = names.parse(name)
    spec = get_registry().get("architecture", base)
    return spec.load()(channels, 10, (size, size), **spec.resolve_options(options))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(images: int = 1024, rounds: int = 5, device: str = "cpu", threads: int | None = 1,
            size: int = 28, channels: int = 1, batch_size: int = 128, epochs: int = 1,
            method: str = "response", student: str = "convnet[depth=2,width=8]",
            teacher: str = "convnet3[width=32]") -> dict:
    """Round-robin timings of the four modes; returns a JSON-able dict (see the docstring)."""
    from kddbench.context import resolve_device
    from kddbench.kd import DistillationLoss, build_kd_loss
    from kddbench.plugins import get_registry
    from kddbench.protocol import CPU_MICRO_BATCH_ENV, Recipe, make_generator, seeded, train

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, channels, size, size, generator=g).to(dev)
    y = torch.randint(0, 10, (images,), generator=g).to(dev)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=0.05, schedule="constant")
    with seeded(0):
        teacher_net = _arch(teacher, channels, size).to(dev).eval()
    spec = get_registry().get("kd_method", method)

    def fresh_student():
        with seeded(1):
            return _arch(student, channels, size).to(dev)

    def run(mode):
        net = fresh_student()
        loss_fn, fill = None, 0.0
        if mode != "student":
            kd = build_kd_loss(spec.load(), teacher_net, net, x[:2], 0,
                               **spec.resolve_options(None))
            _sync(dev)
            start = time.perf_counter()
            loss_fn = DistillationLoss(kd, teacher_net, epochs=epochs,
                                       x=None if mode == "live" else x)
            _sync(dev)
            fill = time.perf_counter() - start
        old = os.environ.get(CPU_MICRO_BATCH_ENV)
        if mode == "cached_whole":
            os.environ[CPU_MICRO_BATCH_ENV] = "0"
        try:
            _sync(dev)
            start = time.perf_counter()
            train(net, x, y, recipe, make_generator(0, dev), loss_fn=loss_fn,
                  extra_params=loss_fn.extra_params if loss_fn is not None else None)
            _sync(dev)
            return time.perf_counter() - start, fill
        finally:
            if mode == "cached_whole":
                if old is None:
                    os.environ.pop(CPU_MICRO_BATCH_ENV, None)
                else:
                    os.environ[CPU_MICRO_BATCH_ENV] = old

    for mode in MODES:  # warm-up: allocator, kernel choice
        run(mode)
    times = {m: [] for m in MODES}
    fills = {m: [] for m in MODES}
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        for mode in MODES:
            t, f = run(mode)
            times[mode].append(t)
            fills[mode].append(f)
    out = {"device": str(dev), "threads": torch.get_num_threads(), "images": images,
           "epochs": epochs, "batch_size": batch_size, "rounds": rounds, "method": method,
           "student": student, "teacher": teacher,
           "load_avg_1min": [load_before, os.getloadavg()[0]], "modes": {}}
    for mode in MODES:
        ratios = [s / t for s, t in zip(times["student"], times[mode])]
        out["modes"][mode] = {
            "median_s": statistics.median(times[mode]), "best_s": min(times[mode]),
            "speed_vs_student_median": statistics.median(ratios),
            "speed_vs_student_best": min(times["student"]) / min(times[mode]),
            "img_s_best": images * epochs / min(times[mode]),
            "fill_s": min(fills[mode]) if mode in ("cached", "cached_whole") else None}
    return out


def table(result: dict) -> str:
    lines = [f"KD with cached teacher outputs vs the student alone: {result['images']} images x "
             f"{result['epochs']} epoch(s), batch {result['batch_size']}, {result['method']} KD, "
             f"student {result['student']}, teacher {result['teacher']}, "
             f"device {result['device']}, {result['threads']} thread(s), {result['rounds']} "
             f"interleaved rounds, load average {result['load_avg_1min'][0]:.1f} -> "
             f"{result['load_avg_1min'][1]:.1f}",
             f"{'mode':<13} {'median s':>9} {'best s':>8} {'img/s':>8} {'speed (median)':>15} "
             f"{'speed (best)':>13} {'fill s':>7}"]
    for mode, r in result["modes"].items():
        fill = f"{r['fill_s']:.3f}" if r["fill_s"] is not None else "-"
        lines.append(f"{mode:<13} {r['median_s']:>9.3f} {r['best_s']:>8.3f} "
                     f"{r['img_s_best']:>8.0f} {100 * r['speed_vs_student_median']:>14.1f}% "
                     f"{100 * r['speed_vs_student_best']:>12.1f}% {fill:>7}")
    return "\n".join(lines)


def test_kd_cached_vs_student(capsys):
    """The small CPU run; prints the table (speed is reported, not asserted)."""
    result = measure(images=512, rounds=3)
    assert set(result["modes"]) == set(MODES)
    assert all(r["best_s"] > 0 for r in result["modes"].values())
    with capsys.disabled():
        print("\n" + table(result))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=28, help="image side (28: MNIST, 32: CIFAR)")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--method", default="response", help="a KD method of the registry")
    p.add_argument("--student", default="convnet[depth=2,width=8]",
                   help="architecture name with inline options")
    p.add_argument("--teacher", default="convnet3[width=32]")
    p.add_argument("--json", help="also write the result to this file")
    a = p.parse_args(argv)
    result = measure(a.images, a.rounds, a.device, a.threads or None, a.size, a.channels,
                     a.batch_size, a.epochs, a.method, a.student, a.teacher)
    print(table(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
