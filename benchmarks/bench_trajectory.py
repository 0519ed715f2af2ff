"""Trajectory matching speed and memory: one ``mtt`` iteration against ``syn_steps`` (10, 20, 40)
for both unrolls (``constant``: TESLA's, ``full``: autograd through every step), beside a
bare-torch floor measured in the same run.

    python benchmarks/bench_trajectory.py                      # tiny, CPU, ~1 min on 2 cores
    python benchmarks/bench_trajectory.py --size cifar --device cuda
    python -m pytest benchmarks/bench_trajectory.py -s         # the tiny run as a test

What one iteration is: from an expert's parameters, ``syn_steps`` SGD steps of the student on
the whole synthetic set (``batch_syn`` = all, no augmentation), the normalised parameter
distance to the target, and its gradient w.r.t. the images and the learned step size
(:func:`kddbench_plugins.condensation.trajectory_matching.unroll_constant` / ``unroll_full``).
The synthetic images and the expert parameters are random: speed and memory do not depend on
the values.

Measures
* seconds per iteration: median of ``--repeats`` timed iterations after one warm-up.
* peak memory, two measures:
  ``saved``: the largest total size of the tensors autograd keeps alive for backward during
  the iteration (activations, their graphs; :class:`SavedTensorMeter`, counted per save),
  plus, for the constant unroll, the stored parameter vectors (``(syn_steps + 1) x P`` floats,
  kept on the CPU when the device is a GPU).  Device-independent and exact for what autograd
  holds; it leaves out temporaries that live inside a single operation.
  ``cuda``: ``torch.cuda.max_memory_allocated`` above what was allocated before the iteration
  (GPU only).
* floor (bare torch): ``syn_steps`` ordinary training steps of the same ``nn.Module`` on the
  same batch (forward, cross-entropy, backward, in-place SGD): the student's trajectory
  itself, with no gradient through it.  An exact unroll differentiates through it, so it
  costs a multiple of the floor (the double backward of each step is ~2-3 passes more); the
  ratio is printed.  The floor's memory: the saved-tensor peak of one such step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "plugins"))

from kddbench_plugins.architectures.networks import ConvNet  # noqa: E402
from kddbench_plugins.condensation import trajectory_matching as tm  # noqa: E402

SIZES = {
    # classes, ipc, channels, image side, ConvNet depth, width
    "tiny": dict(classes=10, ipc=2, channels=1, side=16, depth=2, width=16),
    "mnist": dict(classes=10, ipc=10, channels=1, side=28, depth=3, width=128),
    "cifar": dict(classes=10, ipc=10, channels=3, side=32, depth=3, width=128),
}
STEPS = (10, 20, 40)


def make_problem(size: dict, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ConvNet(size["channels"], size["classes"], (size["side"], size["side"]),
                  depth=size["depth"], width=size["width"]).to(device)
    fnet = tm.FlatNet(net)
    start = fnet.flat()
    target = start + 0.01 * torch.randn(start.shape, generator=g).to(device)
    n = size["classes"] * size["ipc"]
    images = torch.randn(n, size["channels"], size["side"], size["side"], generator=g)
    labels = torch.arange(size["classes"]).repeat_interleave(size["ipc"])
    return net, fnet, start, target, images.to(device), labels.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mtt_iteration(mode, fnet, start, target, images, labels, steps, lr0=0.01):
    imgs = images.clone().requires_grad_(True)
    lr = torch.tensor(lr0, device=images.device, requires_grad=True)
    plan = tm.plan_steps(imgs.shape[0], steps, 0, torch.Generator().manual_seed(1),
                         images.device)
    return tm.UNROLL[mode](fnet, start, target, imgs, labels, lr, plan, None)


def floor_iteration(net, images, labels, steps, lr=0.01):
    for _ in range(steps):
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        with torch.no_grad():
            for p in net.parameters():
                p.sub_(lr * p.grad)


def timed(fn, repeats, device):
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak(fn, device):
    """(saved-tensor peak bytes, cuda peak bytes or None) of one call."""
    cuda = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    with tm.SavedTensorMeter() as meter:
        fn()
    if device.type == "cuda":
        _sync(device)
        cuda = torch.cuda.max_memory_allocated(device) - before
    return meter.peak_bytes, cuda


def run(size_name="tiny", device_name="cpu", repeats=3, steps_list=STEPS, threads=0,
        modes=("constant", "full"), memory_only=False, on_row=None):
    """The figures; ``memory_only`` skips the timings (one call per measure), ``on_row(row)``
    sees each row as it is measured."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    size = SIZES[size_name]
    net, fnet, start, target, images, labels = make_problem(size, device)
    rows = []
    for steps in steps_list:
        state = {k: v.clone() for k, v in net.state_dict().items()}

        def floor(steps=steps):
            floor_iteration(net, images, labels, steps)
            net.load_state_dict(state)

        f_s = float("nan") if memory_only else timed(floor, repeats, device)
        f_saved, f_cuda = peak(lambda: floor_iteration(net, images, labels, 1), device)
        net.load_state_dict(state)
        row = {"syn_steps": steps, "floor_s": f_s, "floor_saved_mb": f_saved / 2 ** 20,
               "floor_cuda_mb": None if f_cuda is None else f_cuda / 2 ** 20}
        for mode in modes:
            def it(mode=mode, steps=steps):
                return mtt_iteration(mode, fnet, start, target, images, labels, steps)

            s = float("nan") if memory_only else timed(it, repeats, device)
            saved, cuda = peak(it, device)
            stored = (steps + 1) * fnet.numel * 4 if mode == "constant" else 0
            row.update({f"{mode}_s": s, f"{mode}_x_floor": s / f_s,
                        f"{mode}_saved_mb": (saved + (stored if device.type == "cpu" else 0))
                        / 2 ** 20,
                        f"{mode}_params_stored_mb": stored / 2 ** 20,
                        f"{mode}_cuda_mb": None if cuda is None else cuda / 2 ** 20})
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return {"size": size_name, "device": str(device), "threads": torch.get_num_threads(),
            "modes": list(modes),
            "params": fnet.numel, "images": int(images.shape[0]),
            "torch": torch.__version__, "rows": rows}


def render(result) -> str:
    cuda = result["device"].startswith("cuda")
    head = (f"mtt iteration, {result['size']} ({result['images']} synthetic images, "
            f"{result['params']:,} parameters), {result['device']}, "
            f"{result['threads']} thread(s), torch {result['torch']}")
    modes = result.get("modes", ["constant", "full"])
    cols = (["syn_steps", "floor s", "floor MB"] + [f"{m} s (x floor)" for m in modes]
            + [f"{m} MB" for m in modes] + ([f"{m} cuda MB" for m in modes] if cuda else []))
    lines = [head, " | ".join(cols)]
    for r in result["rows"]:
        cells = ([str(r["syn_steps"]), f"{r['floor_s']:.4f}", f"{r['floor_saved_mb']:.2f}"]
                 + [f"{r[m + '_s']:.4f} ({r[m + '_x_floor']:.1f}x)" for m in modes]
                 + [f"{r[m + '_saved_mb']:.2f}" for m in modes])
        if cuda:
            cells += [f"{r[m + '_cuda_mb']:.1f}" for m in modes]
        lines.append(" | ".join(cells))
    first, last = result["rows"][0], result["rows"][-1]
    for mode in modes:
        key = f"{mode}_cuda_mb" if cuda else f"{mode}_saved_mb"
        lines.append(f"{mode}: peak memory at {last['syn_steps']} steps = "
                     f"{last[key] / first[key]:.2f}x that at {first['syn_steps']} steps")
    lines.append("MB (saved): autograd-saved tensors' peak (+ the constant unroll's stored "
                 "parameter vectors on CPU); floor = bare-torch training steps, same batch")
    return "\n".join(lines)


def test_trajectory_bench():
    """The tiny run: prints the table; the constant unroll's memory stays flat."""
    result = run("tiny", "cpu", repeats=2, threads=1)
    print("\n" + render(result))
    rows = result["rows"]
    assert rows[-1]["constant_saved_mb"] <= 1.1 * rows[0]["constant_saved_mb"] or \
        rows[-1]["constant_saved_mb"] - rows[0]["constant_saved_mb"] <= \
        rows[-1]["constant_params_stored_mb"]
    assert rows[-1]["full_saved_mb"] > 2 * rows[0]["full_saved_mb"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--modes", nargs="+", choices=tm.UNROLLS, default=list(tm.UNROLLS))
    ap.add_argument("--memory-only", action="store_true", help="skip the timings")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    result = run(args.size, args.device, args.repeats, args.steps, args.threads, args.modes,
                 args.memory_only, on_row=lambda row: print(json.dumps(row), flush=True))
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
