"""The CPU allocator setting (``KDDBENCH_CPU_ALLOCATOR``, :mod:`kddbench.allocator`): the same
workloads in child processes with ``heap`` and with ``system``, alternating (heap, system, heap,
system, ...) so a change of machine load hits both alike.

    python benchmarks/bench_allocator.py                 # mnist-sized, ~3 min on one core
    python benchmarks/bench_allocator.py --size tiny --rounds 1
    python -m pytest benchmarks/bench_allocator.py -s    # the tiny run as a test

Workloads (one thread each; the values are random: speed does not depend on them):

* ``mtt_full`` / ``mtt_constant``: one trajectory-matching iteration, ``unroll_full`` /
  ``unroll_constant`` of ``kddbench_plugins.condensation.trajectory_matching``: 10 synthetic
  steps of ConvNet-3 on IPC 10 (100 images), no augmentation.
* ``train``: :func:`kddbench.protocol.train`, ConvNet-3, 1,000 images, batch 256 (micro-batched
  on a CPU), one epoch.
* ``train_resnet18``: the same on ResNet-18 (batch norm: never micro-batched) with the IPC-10
  set (100 images in one batch), 2 epochs -- a cross-architecture evaluation's steps.
* ``dm``: one DM iteration (``dm_backward``: 256 real images per class, IPC 10; chunked).

Printed per workload: the best seconds of each child (median over rounds), their ratio
(system / heap: above 1, heap is faster) and each side's peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("mtt_full", "mtt_constant", "train", "train_resnet18", "dm")
SIZES = {"mnist": dict(side=28, width=128, depth=3, ipc=10, real=256, train=1000, resnet=64),
         "tiny": dict(side=16, width=16, depth=2, ipc=2, real=8, train=64, resnet=8)}


def child(workload: str, size: str) -> dict:
    """Run in a child process: time ``workload`` (best of 2 after a warm-up)."""
    import resource
    import time

    import torch

    from kddbench import allocator

    mode = allocator.configure()
    torch.set_num_threads(1)
    fn = _workload(workload, SIZES[size])
    fn()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"allocator": mode, "seconds": min(times),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _workload(name: str, s: dict):
    import torch

    from kddbench_plugins.architectures.networks import ConvNet

    g = torch.Generator().manual_seed(0)
    net = ConvNet(1, 10, (s["side"], s["side"]), depth=s["depth"], width=s["width"])
    n_syn = 10 * s["ipc"]
    images = torch.randn(n_syn, 1, s["side"], s["side"], generator=g)
    labels = torch.arange(10).repeat_interleave(s["ipc"])
    if name.startswith("mtt"):
        from kddbench_plugins.condensation import trajectory_matching as tm

        fnet = tm.FlatNet(net)
        start = fnet.flat()
        target = start + 0.01 * torch.randn(start.shape, generator=g)
        images.requires_grad_(True)
        lr = torch.tensor(0.01, requires_grad=True)
        run = tm.unroll_full if name == "mtt_full" else tm.unroll_constant

        def mtt():
            steps = tm.plan_steps(n_syn, 10, 0, g, "cpu")
            run(fnet, start, target, images, labels, lr, steps, None)
        return mtt
    if name == "train":
        from kddbench.protocol import Recipe, make_generator, train

        x = torch.randn(s["train"], 1, s["side"], s["side"], generator=g)
        y = torch.randint(0, 10, (s["train"],), generator=g)
        recipe = Recipe(epochs=1, batch_size=256, lr=0.01, momentum=0.9, weight_decay=5e-4,
                        schedule="constant")
        return lambda: train(net, x, y, recipe, make_generator(0))
    if name == "train_resnet18":
        from kddbench.plugins import get_registry
        from kddbench.protocol import Recipe, make_generator, train

        spec = get_registry().get("architecture", "resnet18")
        resnet = spec.load()(1, 10, (s["side"], s["side"]),
                             **spec.resolve_options({"width": s["resnet"]}))
        recipe = Recipe(epochs=2, batch_size=256, lr=0.01, momentum=0.9, weight_decay=5e-4,
                        schedule="constant")
        return lambda: train(resnet, images, labels, recipe, make_generator(0))
    if name == "dm":
        from kddbench_plugins.condensation.distribution_matching import dm_backward
        from kddbench_plugins.condensation.synthesis import auto_chunk

        net.requires_grad_(False)
        x_real = torch.randn(10 * s["real"], 1, s["side"], s["side"], generator=g)
        y_real = torch.arange(10).repeat_interleave(s["real"])
        images.requires_grad_(True)
        chunk = auto_chunk(net, x_real[:2])
        return lambda: dm_backward(net, x_real, y_real, images, labels, 10, False, chunk)
    raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")


def measure(size: str = "mnist", rounds: int = 3, workloads=WORKLOADS) -> list[dict]:
    rows = []
    for w in workloads:
        sides: dict[str, list[dict]] = {"heap": [], "system": []}
        for _ in range(rounds):
            for mode in ("heap", "system"):
                env = {**os.environ, "KDDBENCH_CPU_ALLOCATOR": mode}
                out = subprocess.run([sys.executable, __file__, "--child", w, "--size", size],
                                     env=env, capture_output=True, text=True, check=True)
                sides[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        heap = statistics.median(r["seconds"] for r in sides["heap"])
        system = statistics.median(r["seconds"] for r in sides["system"])
        rows.append({"workload": w, "size": size, "rounds": rounds,
                     "heap_allocator": sides["heap"][0]["allocator"],
                     "heap_s": heap, "system_s": system, "speedup": system / heap,
                     "heap_maxrss_mb": max(r["maxrss_mb"] for r in sides["heap"]),
                     "system_maxrss_mb": max(r["maxrss_mb"] for r in sides["system"]),
                     "load_avg_1min": os.getloadavg()[0]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| workload | heap (s) | system (s) | system / heap | peak RSS heap / system (MB) |",
             "|:--|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['workload']} ({r['size']}, {r['rounds']} rounds, load "
                     f"{r['load_avg_1min']:.1f}) | {r['heap_s']:.3f} | {r['system_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['heap_maxrss_mb']:.0f} / "
                     f"{r['system_maxrss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="mnist")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", action="append", choices=WORKLOADS, help="repeatable")
    p.add_argument("--json", type=Path)
    p.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.size)))
        return 0
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    rows = measure(a.size, a.rounds, a.only or WORKLOADS)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


def test_tiny_run_reports_both_allocators():
    rows = measure("tiny", 1, ("mtt_full", "train"))
    assert [r["workload"] for r in rows] == ["mtt_full", "train"]
    assert all(r["heap_s"] > 0 and r["system_s"] > 0 for r in rows)
    print(table(rows))


if __name__ == "__main__":
    if str(ROOT / "plugins") not in sys.path:  # a checkout without installing
        sys.path.insert(0, str(ROOT / "plugins"))
    sys.exit(main())
