"""Time a reference implementation beside ours, on equal settings, interleaved.

This driver holds none of the reference's code: it imports the reference's public functions
from a checkout the user points to (``--reference PATH``), or from one it clones with git at a
pinned commit (``--fetch``, needs internet), and calls them on the same tensors, network shape,
batch size, epochs and thread count as ours, alternating ours / theirs round by round so a
change of machine load hits both alike.

    python benchmarks/reference_driver.py --list
    python benchmarks/reference_driver.py dd_eval_train --reference ~/src/DatasetCondensation
    python benchmarks/reference_driver.py dd_test_pass --fetch --rounds 5 --json out.json
    python benchmarks/reference_driver.py dd_eval_train --reference PATH --dry-run

Workloads (more can be added to :data:`WORKLOADS`; each names the reference, the module it
imports from it and the settings both sides run):

* ``dd_eval_train``: the evaluation training of a condensed set, the dataset-distillation
  papers' protocol: ConvNet-3 (width 128, instance norm, average pooling) trained on
  ``--images`` CIFAR-shaped images, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4,
  ``--epochs`` epochs, no augmentation.  Theirs: ``utils.get_network("ConvNet", ...)`` and
  ``utils.epoch("train", ...)`` of the DatasetCondensation code base (Zhao et al. 2021, Zhao &
  Bilen 2021 and 2023); ours: :func:`kddbench.protocol.train`.
* ``dd_test_pass``: one pass over ``--images`` test images, batch 256: theirs
  ``utils.epoch("test", ...)``, ours :func:`kddbench.protocol.evaluate`.

Printed: the median and best seconds of each side and ours' speed-up (their time / ours,
median of the per-round ratios and ratio of the best), with threads, device and load average.
Nothing is claimed that this run did not measure.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

EXIT_INVALID = 2  # kddbench.errors.ExitCode.INVALID_INPUT (not imported: --list needs no torch)


class DriverError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


@dataclass(frozen=True)
class Reference:
    name: str
    url: str
    commit: str       # pinned: the commit whose public functions the adapters call
    module: str       # imported from the checkout's root
    citation: str


DATASET_CONDENSATION = Reference(
    "DatasetCondensation", "https://github.com/VICO-UoE/DatasetCondensation.git",
    "306245d074cca5524694a8a83ca0797a6e85dfc8", "utils",
    "Zhao, Mopuri & Bilen 2021, 'Dataset Condensation with Gradient Matching'; Zhao & Bilen "
    "2021 (DSA) and 2023 (DM)")


@dataclass(frozen=True)
class Workload:
    name: str
    reference: Reference
    doc: str
    setup: Callable[..., Any]           # (ref_module, settings) -> state
    ours: Callable[[Any], None]
    theirs: Callable[[Any], None]
    defaults: dict = field(default_factory=dict)


# -- the dataset-distillation code base: evaluation training and the test pass ---------------
def _dd_tensors(s):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (s.images,), generator=g)
    return x.to(s.device), y.to(s.device)


def _our_convnet(s):
    from kddbench.plugins import get_registry
    from kddbench.protocol import seeded

    spec = get_registry().get("architecture", "convnet3")
    with seeded(0):
        return spec.load()(3, 10, (32, 32), **spec.resolve_options(None)).to(s.device)


def _their_args(s):
    # the fields their training/testing helpers read; no augmentation on either side
    return SimpleNamespace(device=str(s.device), dsa=False, dc_aug_param=None, batch_train=256,
                           lr_net=0.01, epoch_eval_train=s.epochs, dis_metric="ours")


def _dd_setup(ref, s):
    import torch

    x, y = _dd_tensors(s)
    loader = torch.utils.data.DataLoader(ref.TensorDataset(x.cpu(), y.cpu()), batch_size=256,
                                         shuffle=True, num_workers=0)
    test_loader = torch.utils.data.DataLoader(ref.TensorDataset(x.cpu(), y.cpu()),
                                              batch_size=256, shuffle=False, num_workers=0)
    return SimpleNamespace(ref=ref, s=s, x=x, y=y, loader=loader, test_loader=test_loader,
                           args=_their_args(s))


def _dd_train_ours(st):
    from kddbench.protocol import Recipe, make_generator, train

    recipe = Recipe(epochs=st.s.epochs, batch_size=256, lr=0.01, momentum=0.9,
                    weight_decay=5e-4, schedule="constant")
    train(_our_convnet(st.s), st.x, st.y, recipe, make_generator(0, st.s.device))


def _dd_train_theirs(st):
    import torch

    net = st.ref.get_network("ConvNet", 3, 10, (32, 32)).to(st.s.device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = torch.nn.CrossEntropyLoss()
    for _ in range(st.s.epochs):
        st.ref.epoch("train", st.loader, net, opt, criterion, st.args, aug=False)


def _dd_test_ours(st):
    from kddbench.protocol import evaluate

    evaluate(st.net_ours, st.x, st.y, 10, 256)


def _dd_test_theirs(st):
    import torch

    st.ref.epoch("test", st.test_loader, st.net_theirs, None, torch.nn.CrossEntropyLoss(),
                 st.args, aug=False)


def _dd_test_setup(ref, s):
    st = _dd_setup(ref, s)
    st.net_ours = _our_convnet(s)
    st.net_theirs = ref.get_network("ConvNet", 3, 10, (32, 32)).to(s.device)
    return st


WORKLOADS = {w.name: w for w in (
    Workload("dd_eval_train", DATASET_CONDENSATION,
             "evaluation training: ConvNet-3 on N CIFAR-shaped images, batch 256, SGD 0.01, "
             "E epochs", _dd_setup, _dd_train_ours, _dd_train_theirs,
             {"images": 500, "epochs": 2}),
    Workload("dd_test_pass", DATASET_CONDENSATION,
             "one test pass of ConvNet-3 over N CIFAR-shaped images, batch 256",
             _dd_test_setup, _dd_test_ours, _dd_test_theirs, {"images": 2000, "epochs": 0}),
)}


# -- getting the reference ---------------------------------------------------------------------
def default_cache() -> Path:
    return Path(os.environ.get("KDDBENCH_CACHE", Path.home() / ".cache" / "kddbench")) \
        / "references"


def fetch(ref: Reference, cache: Path, runner=subprocess.run) -> Path:
    """A checkout of ``ref`` at its pinned commit under ``cache`` (cloned once, with git)."""
    target = cache / f"{ref.name}-{ref.commit[:12]}"
    if (target / ".git").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    steps = [["git", "clone", "--quiet", "--no-checkout", ref.url, str(target)],
             ["git", "-C", str(target), "checkout", "--quiet", ref.commit]]
    for cmd in steps:
        try:
            done = runner(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise DriverError("git is not installed; clone the reference yourself and pass "
                              "--reference PATH") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["failed"]
            raise DriverError(f"could not fetch {ref.url} at {ref.commit[:12]} ({last[0]}); "
                              "without internet, clone it elsewhere and pass --reference PATH")
    return target


def load_reference(ref: Reference, path: Path):
    """The reference's module, imported from the checkout at ``path``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DriverError(f"--reference {path}: no such folder")
    if not (path / f"{ref.module}.py").is_file() and not (path / ref.module).is_dir():
        raise DriverError(f"--reference {path}: no {ref.module}.py there (expected a checkout "
                          f"of {ref.url})")
    sys.path.insert(0, str(path.resolve()))
    try:
        sys.modules.pop(ref.module, None)
        return importlib.import_module(ref.module)
    except Exception as exc:  # the reference's own imports (old scipy, ...)
        raise DriverError(f"importing {ref.module} from {path} failed: "
                          f"{type(exc).__name__}: {exc}") from None


# -- timing -------------------------------------------------------------------------------------
def measure(workload: Workload, module, settings, rounds: int) -> dict:
    import torch

    dev = torch.device(settings.device)

    def timed(fn, state):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        fn(state)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    state = workload.setup(module, settings)
    timed(workload.ours, state), timed(workload.theirs, state)  # warm-up
    load = os.getloadavg()[0]
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(workload.ours, state))
        theirs.append(timed(workload.theirs, state))
    ratios = [t / o for o, t in zip(ours, theirs)]
    return {"workload": workload.name, "reference": workload.reference.name,
            "reference_commit": workload.reference.commit, "device": str(dev),
            "threads": torch.get_num_threads(), "rounds": rounds,
            "images": settings.images, "epochs": settings.epochs,
            "load_avg_1min": [load, os.getloadavg()[0]],
            "ours_s": {"median": statistics.median(ours), "best": min(ours)},
            "theirs_s": {"median": statistics.median(theirs), "best": min(theirs)},
            "speedup_median": statistics.median(ratios), "speedup_best": min(theirs) / min(ours)}


def table(r: dict) -> str:
    return "\n".join([
        f"{r['workload']}: ours vs {r['reference']}@{r['reference_commit'][:12]}, "
        f"{r['images']} images, {r['epochs']} epochs, device {r['device']}, {r['threads']} "
        f"thread(s), {r['rounds']} alternating rounds, load average "
        f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}",
        f"ours:   median {r['ours_s']['median']:.3f} s, best {r['ours_s']['best']:.3f} s",
        f"theirs: median {r['theirs_s']['median']:.3f} s, best {r['theirs_s']['best']:.3f} s",
        f"our speed-up (their time / ours): median {r['speedup_median']:.2f}x, best "
        f"{r['speedup_best']:.2f}x"])


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="reference_driver.py", description=__doc__.split("\n\n")[0],
        epilog="Workloads: " + ", ".join(WORKLOADS) + " (--list describes them).")
    p.add_argument("workload", nargs="?", help="what to time (see --list)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--reference", type=Path, help="a checkout of the reference")
    src.add_argument("--fetch", action="store_true",
                     help="clone the reference at its pinned commit (needs internet and git)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where --fetch keeps checkouts (default $KDDBENCH_CACHE/references)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, help="images (default: the workload's)")
    p.add_argument("--epochs", type=int, help="epochs (default: the workload's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the result to this file")
    p.add_argument("--dry-run", action="store_true",
                   help="check the arguments and the reference's import, time nothing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    try:
        if a.list:
            for w in WORKLOADS.values():
                ref = w.reference
                print(f"{w.name}: {w.doc}\n    reference: {ref.url} at {ref.commit} "
                      f"(module {ref.module}; {ref.citation})")
            return 0
        if not a.workload:
            raise DriverError("name a workload (see --list)")
        if a.workload not in WORKLOADS:
            raise DriverError(f"unknown workload {a.workload!r} (known: {', '.join(WORKLOADS)})")
        if not a.reference and not a.fetch:
            raise DriverError("give the reference: --reference PATH (a checkout) or --fetch")
        if a.rounds < 1:
            raise DriverError(f"--rounds must be at least 1, not {a.rounds}")
        w = WORKLOADS[a.workload]
        settings = SimpleNamespace(images=a.images or w.defaults.get("images", 500),
                                   epochs=a.epochs if a.epochs is not None
                                   else w.defaults.get("epochs", 1), device=a.device)
        if settings.images < 1 or settings.epochs < 0:
            raise DriverError("--images must be >= 1 and --epochs >= 0")
        path = a.reference if a.reference else fetch(w.reference, a.cache or default_cache())
        module = load_reference(w.reference, path)
        if a.dry_run:
            print(f"{w.name}: would time ours vs {w.reference.name} ({w.reference.module} from "
                  f"{path}), {settings.images} images, {settings.epochs} epochs, {a.rounds} "
                  f"rounds, device {a.device}, threads {a.threads or 'default'}")
            return 0
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        result = measure(w, module, settings, a.rounds)
    except DriverError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(table(result))
    if a.json:
        import json

        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
