"""Stacked training against one-by-one training, and the accuracy effect of bf16 / channels-last.

    python benchmarks/bench_stacked.py speed                    # CPU, one thread, small sizes
    python benchmarks/bench_stacked.py speed --device cuda --models 10 --width 128 --epochs 50
    python benchmarks/bench_stacked.py accuracy                 # digits, fp32 vs bf16 vs CL
    python -m pytest benchmarks/bench_stacked.py -s             # both, small, as tests

``speed``: ``--models`` networks of one architecture (ConvNet-3, instance norm, as the
condensation papers evaluate) trained on the same images, the evaluation of a condensed set
(default 100 CIFAR-shaped images: 10 classes x 10 images per class), one by one with
:func:`kddbench.protocol.train` and at once with :func:`kddbench.stacked.train_stacked`,
measured in alternating rounds (one-by-one, stacked, one-by-one, ...).  Printed: median and
best seconds of each and the speed-up (one-by-one time / stacked time, median of per-round
ratios and ratio of the best), with the device, threads and load average.

``accuracy``: the test accuracy on the real ``digits`` data set (scikit-learn's 8x8 digits,
no download) of a ConvNet trained by the same recipe in fp32, with ``precision = "bf16"`` and
with ``channels_last = true``, over several seeds (mean, std, and the paired difference to
fp32).  bf16 on a CPU without bf16 units is slow: this measures accuracy, not speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _nets(count, arch, channels, size, classes, dev, seed0=0):
    from kddbench import names
    from kddbench.plugins import get_registry
    from kddbench.protocol import seeded

    base, options = names.parse(arch)
    spec = get_registry().get("architecture", base)
    out = []
    for m in range(count):
        with seeded(seed0 + m):
            out.append(spec.load()(channels, classes, (size, size),
                                   **spec.resolve_options(options)).to(dev))
    return out


def speed(models: int = 3, images: int = 100, epochs: int = 2, rounds: int = 3,
          device: str = "cpu", threads: int | None = 1, arch: str = "convnet3[width=32]",
          channels: int = 3, size: int = 32, classes: int = 10, batch_size: int = 256,
          precision: str = "fp32") -> dict:
    from kddbench.context import resolve_device
    from kddbench.protocol import Recipe, make_generator, train
    from kddbench.stacked import train_stacked, why_not_stack

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, channels, size, size, generator=g).to(dev)
    y = torch.randint(0, classes, (images,), generator=g).to(dev)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=0.01, precision=precision)
    reason = why_not_stack(_nets(2, arch, channels, size, classes, dev))
    if reason is not None:
        raise SystemExit(f"{arch} cannot be stacked: {reason}")

    def one_by_one():
        nets = _nets(models, arch, channels, size, classes, dev)
        _sync(dev)
        start = time.perf_counter()
        for m, net in enumerate(nets):
            train(net, x, y, recipe, make_generator(m, dev))
        _sync(dev)
        return time.perf_counter() - start

    def stacked():
        nets = _nets(models, arch, channels, size, classes, dev)
        _sync(dev)
        start = time.perf_counter()
        train_stacked(nets, x, y, recipe, [make_generator(m, dev) for m in range(models)])
        _sync(dev)
        return time.perf_counter() - start

    one_by_one(), stacked()  # warm-up
    load = os.getloadavg()[0]
    t_one, t_stack = [], []
    for _ in range(rounds):
        t_one.append(one_by_one())
        t_stack.append(stacked())
    ratios = [a / b for a, b in zip(t_one, t_stack)]
    return {"device": str(dev), "threads": torch.get_num_threads(), "models": models,
            "images": images, "epochs": epochs, "arch": arch, "shape": [channels, size, size],
            "precision": precision, "rounds": rounds,
            "load_avg_1min": [load, os.getloadavg()[0]],
            "one_by_one_s": {"median": statistics.median(t_one), "best": min(t_one)},
            "stacked_s": {"median": statistics.median(t_stack), "best": min(t_stack)},
            "speedup_median": statistics.median(ratios), "speedup_best": min(t_one) / min(t_stack)}


def speed_table(r: dict) -> str:
    return "\n".join([
        f"stacked vs one-by-one: {r['models']} x {r['arch']} on {r['images']} images "
        f"{'x'.join(map(str, r['shape']))}, {r['epochs']} epochs, {r['precision']}, device "
        f"{r['device']}, {r['threads']} thread(s), {r['rounds']} alternating rounds, load "
        f"average {r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}",
        f"one-by-one: median {r['one_by_one_s']['median']:.3f} s, best "
        f"{r['one_by_one_s']['best']:.3f} s",
        f"stacked:    median {r['stacked_s']['median']:.3f} s, best {r['stacked_s']['best']:.3f} s",
        f"speed-up (one-by-one / stacked): median {r['speedup_median']:.2f}x, best "
        f"{r['speedup_best']:.2f}x"])


MODES = {"fp32": {}, "bf16": {"precision": "bf16"}, "channels_last": {"channels_last": True}}


def accuracy(seeds: int = 3, epochs: int = 20, device: str = "cpu", threads: int | None = 1,
             arch: str = "convnet3[width=32]", dataset: str = "digits") -> dict:
    from kddbench.context import RunContext, resolve_device
    from kddbench.plugins import get_registry
    from kddbench.protocol import Recipe, evaluate, make_generator, train

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    data = RunContext(get_registry(), device=dev).data(dataset)
    recipe = Recipe(epochs=epochs, batch_size=64, lr=0.01)
    acc = {m: [] for m in MODES}
    secs = {m: [] for m in MODES}
    load = os.getloadavg()[0]
    for s in range(seeds):
        for mode, keys in MODES.items():  # interleaved: seed by seed, every mode
            net = _nets(1, arch, data.channels, data.image_size[0], data.num_classes, dev,
                        seed0=100 + s)[0]
            res = train(net, data.x_train, data.y_train, recipe.with_(**keys),
                        make_generator(s, dev))
            acc[mode].append(evaluate(net, data.x_test, data.y_test, data.num_classes)["accuracy"])
            secs[mode].append(res.train_time_s)
    out = {"dataset": dataset, "arch": arch, "epochs": epochs, "seeds": seeds,
           "device": str(dev), "threads": torch.get_num_threads(),
           "n_train": int(data.x_train.shape[0]), "n_test": int(data.x_test.shape[0]),
           "load_avg_1min": [load, os.getloadavg()[0]], "modes": {}}
    for mode in MODES:
        diffs = [a - b for a, b in zip(acc[mode], acc["fp32"])]
        out["modes"][mode] = {
            "accuracy_mean": statistics.mean(acc[mode]),
            "accuracy_std": statistics.stdev(acc[mode]) if seeds > 1 else 0.0,
            "accuracy_per_seed": acc[mode], "diff_vs_fp32_mean": statistics.mean(diffs),
            "train_s_median": statistics.median(secs[mode])}
    return out


def accuracy_table(r: dict) -> str:
    lines = [f"accuracy effect: {r['arch']} on {r['dataset']} ({r['n_train']} train / "
             f"{r['n_test']} test images), {r['epochs']} epochs, {r['seeds']} seeds, device "
             f"{r['device']}, {r['threads']} thread(s), load average "
             f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}",
             f"{'mode':<14} {'accuracy %':>11} {'std':>6} {'vs fp32 (paired)':>17} "
             f"{'train s':>8}"]
    for mode, m in r["modes"].items():
        lines.append(f"{mode:<14} {m['accuracy_mean']:>11.2f} {m['accuracy_std']:>6.2f} "
                     f"{m['diff_vs_fp32_mean']:>+16.2f}  {m['train_s_median']:>8.2f}")
    return "\n".join(lines)


def test_stacked_speed(capsys):
    r = speed(models=2, images=64, epochs=1, rounds=2, arch="convnet3[width=16]")
    assert r["one_by_one_s"]["best"] > 0 and r["stacked_s"]["best"] > 0
    with capsys.disabled():
        print("\n" + speed_table(r))


def test_precision_accuracy(capsys):
    r = accuracy(seeds=1, epochs=2, arch="convnet3[width=16]")
    assert set(r["modes"]) == set(MODES)
    with capsys.disabled():
        print("\n" + accuracy_table(r))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed", help="stacked vs one-by-one training time")
    s.add_argument("--models", type=int, default=3)
    s.add_argument("--images", type=int, default=100)
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--arch", default="convnet3[width=32]")
    s.add_argument("--width", type=int, help="shorthand: convnet3[width=W]")
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--channels", type=int, default=3)
    s.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    a = sub.add_parser("accuracy", help="test accuracy of fp32, bf16 and channels-last")
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--epochs", type=int, default=20)
    a.add_argument("--arch", default="convnet3[width=32]")
    a.add_argument("--dataset", default="digits")
    for q in (s, a):
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
        q.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    if args.what == "speed":
        arch = f"convnet3[width={args.width}]" if args.width else args.arch
        r = speed(args.models, args.images, args.epochs, args.rounds, args.device,
                  args.threads or None, arch, args.channels, args.size, precision=args.precision)
        print(speed_table(r))
    else:
        r = accuracy(args.seeds, args.epochs, args.device, args.threads or None, args.arch,
                     args.dataset)
        print(accuracy_table(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
