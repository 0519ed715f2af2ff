"""What a suite costs, before any compute: image passes per cell, and seconds on this device.

The unit is the *image pass*: one forward pass of one image through one network.  A training
step on an image counts :data:`TRAIN_PASSES` (forward + backward, about 3 forward passes).

A task declares its cost with ``TaskSpec.cost`` (``"module:function"`` or a callable)
``(cell, info) -> [Work, ...]``: which network runs how many image passes on which data.  A
condensation method may declare its own with ``CondenserSpec.cost`` (``(options, ipc, data) ->
image passes``); the task that runs it adds that in.  :class:`CostInfo` gives a cost function
the data set sizes and shapes without loading the data (``DatasetSpec.sizes``; the shape from
the data set's stand-in or offline loader), the cell's recipes and plugin options.

Seconds come from a calibration measured in the same run: for every network and image shape
the suite uses, a few forward/backward passes of a batch of 32 random images on the device,
single-threaded on a CPU (as each worker of ``--jobs auto`` runs).  The estimate ignores data
loading, augmentation and per-step overheads, so treat it as the order of magnitude it is.

Nothing in this module names a task, method, architecture or data set.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from .cells import Cell, short_hash
from .recipe import epoch_images

TRAIN_PASSES = 3.0  # a training step on one image, in forward passes (forward + backward)


@dataclass(frozen=True)
class DataInfo:
    """Sizes and image shape of a data set (what a cost function needs of it)."""

    name: str
    train: int
    test: int
    classes: int
    channels: int
    height: int
    width: int

    @property
    def train_per_class(self) -> int:
        return max(1, self.train // max(1, self.classes))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


@dataclass
class Work:
    """``passes`` image passes of network ``arch`` (with ``arch_options``) on ``data``.

    key: work shared by several cells (a cached teacher, a condensed set evaluated on several
         networks) carries the same key and is counted once per suite.
    artifact: the kind of the declared artifact (:mod:`kddbench.artifacts`) this work builds,
         if any: the dry-run leaves it out for a cell whose artifacts of that kind are already
         stored (in the cache or released with a report), and whatever only they need.
    """

    arch: str
    data: DataInfo
    passes: float
    what: str = ""
    key: Any = None
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    artifact: str | None = None


def work_key(work: Work) -> str:
    """What names shared work (a teacher, an expert) so an estimate counts it once."""
    return work.key if isinstance(work.key, str) else short_hash(work.key)


def unshared(works: Iterable[Work], seen: set) -> Iterator[Work]:
    """The works not yet in ``seen`` (shared work, e.g. a teacher or an expert, counts for the
    first cell that needs it only); adds their keys to ``seen``."""
    for w in works:
        if w.key is not None:
            k = work_key(w)
            if k in seen:
                continue
            seen.add(k)
        yield w


def train_passes(epochs: int, images: int) -> float:
    return float(epochs) * float(images) * TRAIN_PASSES


def recipe_train_passes(recipe: Mapping[str, Any], images: int) -> float:
    """:func:`train_passes` of a recipe (a cell's recipe dict): its epochs over ``images``, or
    over the first ``steps_per_epoch`` batches of each epoch when that cap is set."""
    per_epoch = epoch_images(int(images), int(recipe.get("batch_size", 256)),
                             int(recipe.get("steps_per_epoch") or 0))
    return train_passes(int(recipe["epochs"]), per_epoch)


def evaluation_passes(recipe: Mapping[str, Any], images: int, test_images: int) -> float:
    """Image passes of an evaluation under the rules of :mod:`kddbench.validation`: each of the
    recipe's ``n_models`` networks trained (:func:`recipe_train_passes`) and tested."""
    models = int(recipe.get("n_models") or 1)
    return models * (recipe_train_passes(recipe, images) + float(test_images))


def load_ref(ref: Callable | str) -> Callable:
    """A callable from a callable or a ``"module:attribute"`` string."""
    if callable(ref):
        return ref
    import importlib

    module, _, attr = str(ref).partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class CostInfo:
    """What cost functions may ask (sizes and shapes of data sets, a cell's options)."""

    def __init__(self, registry, smoke_per_class: int | None = None):
        self.registry = registry
        self.smoke_per_class = smoke_per_class
        self._shapes: dict[str, DataInfo | None] = {}
        self._tmp = None

    def spec(self, family: str, name: str):
        return self.registry.get(family, name)

    def options(self, cell: Cell, family: str, name: str) -> dict[str, Any]:
        """A plugin's resolved options in ``cell`` (the suite's, then those written inline)."""
        from . import names

        spec = self.registry.get(family, name)
        given = {**(cell.options.get(spec.name) or {}), **names.parse(str(name))[1]}
        return spec.resolve_options(given) if spec.options else given

    def recipe(self, cell: Cell, protocol_axis: str | None = None) -> dict[str, Any]:
        """The cell's recipe, or that of the protocol named by ``protocol_axis``."""
        if protocol_axis and cell.axes.get(protocol_axis):
            from .suite import PROTOCOL_OPTION_PREFIX

            got = cell.options.get(PROTOCOL_OPTION_PREFIX + str(cell.axes[protocol_axis]))
            if got:
                return dict(got)
        return dict(cell.recipe)

    def data(self, name: str, cell: Cell | None = None) -> DataInfo | None:
        """Sizes and shape of data set ``name`` (None when they cannot be known unloaded)."""
        spec = self.registry.get("dataset", name)
        opts = self.options(cell, "dataset", name) if cell is not None else {}
        key = f"{spec.name}:{short_hash(opts)}"
        if key not in self._shapes:
            self._shapes[key] = self._probe(spec, opts)
        info = self._shapes[key]
        if info is None:
            return None
        if self.smoke_per_class:
            n = self.smoke_per_class * info.classes
            return DataInfo(info.name, min(n, info.train), min(n, info.test), info.classes,
                            info.channels, info.height, info.width)
        return info

    def _probe(self, spec, opts) -> DataInfo | None:
        """The shape from the stand-in (written to a temporary folder) or, for offline data
        sets, from the data itself; the sizes from ``spec.sizes`` (else the data's)."""
        import tempfile
        from pathlib import Path

        from .errors import KddbenchError

        writer = getattr(spec, "standin", None)
        sizes = tuple(getattr(spec, "sizes", ()) or ())
        if writer is None and not getattr(spec, "offline", False):
            return None
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kddbench-cost-")
        root = Path(self._tmp.name)
        try:
            if writer is not None:
                load_ref(writer)(root / spec.name, per_class=1)
            data = spec.load()(root / spec.name, False, **spec.resolve_options(opts))
        except (KddbenchError, OSError, ValueError):
            return None
        c, h, w = (int(v) for v in data.x_train.shape[1:])
        train, test = (sizes[0], sizes[1]) if len(sizes) >= 2 and writer is not None else (
            int(len(data.x_train)), int(len(data.x_test)))
        return DataInfo(spec.name, int(train), int(test), int(data.num_classes), c, h, w)


@dataclass
class Estimate:
    rows: list[dict[str, Any]]          # per experiment: cells, passes, seconds, unestimated
    calibration: dict[tuple, float]     # (arch, options hash, shape, classes) -> s per pass
    labels: dict[tuple, str]
    device: str
    threads: int


def cell_work(cell: Cell, registry, info: CostInfo) -> list[Work] | None:
    task = registry.get("task", cell.task)
    fn = getattr(task, "cost", None)
    if fn is None:
        return None
    from .validation import TUNE_OPTION, grid_points, with_point

    grid = cell.options.get(TUNE_OPTION)
    if not grid:
        return list(load_ref(fn)(cell, info))
    # a tuned cell runs once per grid point (work shared between points, such as a teacher,
    # carries the same key and is counted once)
    return [w for point in grid_points(grid) for w in load_ref(fn)(with_point(cell, point), info)]


def works_of(cells: Iterable[Cell], registry,
             info: CostInfo) -> list[tuple[Cell, list[Work] | None]]:
    """Each cell with its :func:`cell_work`; ``None`` where the task's cost function cannot say
    (it has none, or it raises)."""
    out: list[tuple[Cell, list[Work] | None]] = []
    for cell in cells:
        try:
            out.append((cell, cell_work(cell, registry, info)))
        except Exception:  # a cost function that cannot say: not estimated
            out.append((cell, None))
    return out


def _arch_key(work: Work) -> tuple:
    d = work.data  # the number of classes changes only the last layer: not part of the key
    return (work.arch, short_hash(dict(work.arch_options)), d.shape)


def _build(registry, work: Work, seeded):
    """The network of ``work`` as the run context builds it (inline and prefix options)."""
    from . import names

    spec = registry.get("architecture", work.arch)
    base, inline = names.parse(work.arch)
    opts = spec.resolve_options({**dict(work.arch_options), **inline})
    if spec.prefix and ":" in base:
        opts["name"] = base.split(":", 1)[1]
    d = work.data
    with seeded(0):
        return spec.load()(d.channels, d.classes, (d.height, d.width), **opts)


def seconds_of(work: Work, calibration: Mapping[tuple, float]) -> float:
    """Seconds of ``work`` at a :func:`calibrate` result (NaN: its network not calibrated)."""
    return float(work.passes) * calibration.get(_arch_key(work), math.nan)


def calibrate(works: Iterable[Work], registry, device: str = "auto", batch: int = 32,
              repeats: int = 2, threads: int | None = 1) -> tuple[dict, dict, str, int]:
    """Seconds per image pass for each network and shape in ``works``, measured now:
    the fastest of ``repeats`` timed forward/backward steps of ``batch`` random images (after
    one warm-up).  On a CPU the time is this process's CPU time (one thread), so other
    programs sharing the cores do not inflate it; on a GPU it is synchronised wall time.

    Why 32: on a 2-core CPU (2026-12-02, one thread, 1x28x28) batch 32 measured 1.1-1.3x the
    seconds per pass of batch 256 for LeNet, ConvNet-3, AlexNet, VGG-11 and ResNet-18 (an MLP
    2.2x: its steps are overhead), where batch 8 measured up to 2.1x (LeNet) and 1.8x (VGG-11)."""
    import torch

    from .context import resolve_device
    from .protocol import seeded

    dev = resolve_device(device)
    saved = torch.get_num_threads()
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    out, labels = {}, {}
    try:
        for work in works:
            key = _arch_key(work)
            if key in out:
                continue
            d = work.data
            labels[key] = f"{work.arch}@{'x'.join(map(str, d.shape))}"
            try:
                net = _build(registry, work, seeded).to(dev)
            except Exception:  # a network that cannot be built here: its seconds unknown
                out[key] = math.nan
                continue
            x = torch.randn(batch, *d.shape, device=dev)
            y = torch.randint(0, d.classes, (batch,), device=dev)
            opt = torch.optim.SGD(net.parameters(), lr=1e-3)
            times = []
            clock = time.process_time if dev.type == "cpu" else time.perf_counter
            for i in range(repeats + 1):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                start = clock()
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if i:
                    times.append(clock() - start)
            out[key] = min(times) / (batch * TRAIN_PASSES)
    finally:
        torch.set_num_threads(saved)
    return out, labels, str(dev), (threads if dev.type == "cpu" and threads else saved)


def stored_kinds(cells: Iterable[Cell], registry, available: Callable[[str, dict], bool],
                 ctx) -> dict[str, set[str]]:
    """``{cell_id: kinds}``: the kinds of declared artifact a cell will not build, because
    every request of that kind it has is stored (``available(kind, key_dict)``) or needed only
    by stored ones.  Keys come from the build functions (:func:`kddbench.release.artifact_key`,
    which builds nothing)."""
    from .artifacts import declared
    from .release import artifact_key

    known: dict[str, bool] = {}

    def stored(request) -> bool:
        if request.artifact_id not in known:
            found = artifact_key(request, ctx)
            known[request.artifact_id] = found is not None and available(*found)
        return known[request.artifact_id]

    out: dict[str, set[str]] = {}
    for cell_id, requests in declared(cells, registry).items():
        kinds: set[str] = set()
        to_build: set[str] = set()

        def visit(request, needed: bool) -> None:
            kinds.add(request.kind)
            needed = needed and not stored(request)
            if needed:
                to_build.add(request.kind)
            for need in request.needs:
                visit(need, needed)

        try:
            for request in requests:
                visit(request, True)
        except Exception:  # noqa: BLE001 - a key that cannot be found: counted as to build
            continue
        if kinds - to_build:
            out[cell_id] = kinds - to_build
    return out


def estimate(cells: list[Cell], registry, device: str = "auto",
             smoke_per_class: int | None = None, calibration: bool = True,
             stored: Mapping[str, set[str]] | None = None) -> Estimate:
    """The estimate of ``cells``; ``stored`` (:func:`stored_kinds`) drops the works that build
    artifacts already stored."""
    per_cell = works_of(cells, registry, CostInfo(registry, smoke_per_class))
    if stored:
        per_cell = [(c, ws if ws is None else [w for w in ws if w.artifact is None
                                               or w.artifact not in stored.get(c.cell_id, ())])
                    for c, ws in per_cell]
    every = [w for _c, ws in per_cell for w in ws or ()]
    calib, labels, dev, threads = (calibrate(every, registry, device) if calibration and every
                                   else ({}, {}, device, 0))
    rows: dict[str, dict[str, Any]] = {}
    seen_keys: set = set()
    for cell, works in per_cell:
        row = rows.setdefault(cell.experiment, {"experiment": cell.experiment, "cells": 0,
                                                "passes": 0.0, "seconds": 0.0,
                                                "not_estimated": 0})
        row["cells"] += 1
        if works is None:
            row["not_estimated"] += 1
            continue
        for w in unshared(works, seen_keys):
            row["passes"] += float(w.passes)
            row["seconds"] += seconds_of(w, calib)
    return Estimate(list(rows.values()), calib, labels, dev, threads)


def human_seconds(s: float) -> str:
    if s != s:  # nan
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size * 1.5:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def format_estimate(est: Estimate, workers: int = 1) -> list[str]:
    total = {"cells": sum(r["cells"] for r in est.rows),
             "passes": sum(r["passes"] for r in est.rows),
             "seconds": sum(r["seconds"] for r in est.rows),
             "not_estimated": sum(r["not_estimated"] for r in est.rows)}
    lines = ["Estimated compute (image passes: forward passes of one image; a training step "
             f"counts {TRAIN_PASSES:g}), seconds on {est.device} "
             f"({est.threads} torch thread{'s' if est.threads != 1 else ''}"
             + (", CPU time" if est.device == "cpu" else "") + ") from a "
             "calibration measured now:", "",
             "| experiment | cells | image passes | est. time |", "|:--|--:|--:|--:|"]
    for r in est.rows + [dict(total, experiment="**total**")]:
        extra = f" ({r['not_estimated']} not estimated)" if r["not_estimated"] else ""
        lines.append(f"| {r['experiment']} | {r['cells']}{extra} | {r['passes']:.3g} | "
                     f"{human_seconds(r['seconds'])} |")
    lines.append("")
    if workers > 1:
        lines.append(f"With {workers} workers at once: about {human_seconds(total['seconds'] / workers)}"
                     " of wall time.")
    lines.append("Calibration (s per image pass): " + ", ".join(
        f"{est.labels[k]} {v:.2e}" if v == v else f"{est.labels[k]} ?" for k, v in sorted(est.calibration.items(),
                                                        key=lambda kv: est.labels[kv[0]])))
    lines.append("")
    return lines


def print_estimate(suite_path, overrides=(), *, device: str = "auto", smoke: bool = False,
                   smoke_per_class: int | None = None, echo: Callable[[str], None] = print,
                   jobs: int | str = "auto", out=None, only=(), where=(),
                   cache_dir=None, data_root=None) -> Estimate | None:
    """The cost block of ``kddbench run SUITE --dry-run``: the cells not yet done in the
    report directory ``out`` (default ``reports/<suite>``) of the experiments ``only`` (all
    when empty) that match ``where``, less the artifacts already stored in the cache
    ``cache_dir`` or released with the reports (:mod:`kddbench.release`); ``--smoke``: all
    smoke cells."""
    from .api import report_dir, resolve_jobs, select_experiments
    from .plugins import get_registry
    from .store import ResultStore
    from .suite import load_suite

    registry = get_registry()
    suite = load_suite(suite_path, overrides)
    chosen = cells = select_experiments(suite, only, where)
    per_class = None
    if not smoke:
        store = ResultStore(report_dir(suite, out))
        cells = [c for c in cells if not store.is_done(c.cell_id)]
        if not cells:
            echo("Estimated compute: nothing to run (every cell is done).")
            echo("")
            return None
        if len(cells) < len(chosen):
            echo(f"{len(chosen) - len(cells)} of {len(chosen)} cells are done; the "
                 "estimate is for the rest.")
    if smoke:
        from .smoke import DEFAULT_PER_CLASS, smoke_cells

        per_class = smoke_per_class or DEFAULT_PER_CLASS
        cells = smoke_cells(cells, registry, per_class)
    stored = None if smoke else _stored(cells, registry, report_dir(suite, out), cache_dir,
                                        data_root)
    est = estimate(cells, registry, device, per_class, stored=stored)
    workers = resolve_jobs(jobs, device, len(cells))
    if stored:
        echo(f"{len(stored)} of these cells find{'s' if len(stored) == 1 else ''} some of "
             "the artifacts they declare already stored (cache or released): the estimate "
             "leaves out building them.")
    for line in format_estimate(est, workers):
        echo(line)
    if smoke:
        echo(f"{len(cells)} smoke cells ({per_class} images per class, declared smoke budgets)")
    return est


def _stored(cells, registry, out_dir, cache_dir, data_root) -> dict[str, set[str]]:
    from .executor import RunSettings
    from .runner import make_context

    # the run's own context: its cache reads the released directories a run would
    ctx = make_context(RunSettings(device="cpu", data_root=data_root, cache_dir=cache_dir,
                                   out_dir=str(out_dir)), registry)
    return stored_kinds(cells, registry, ctx.artifacts.available, ctx)
