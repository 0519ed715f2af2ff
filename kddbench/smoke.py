"""Smoke runs: every cell of a suite at a tiny budget, on stand-in data, over the real code paths.

``kddbench run SUITE --smoke`` (``kddbench.api.run(..., smoke=True)``) keeps every experiment,
axis value, method, architecture, table and reference of the suite and cuts only the budget:

* options declared with a ``smoke`` value (:class:`kddbench.options.Option`) take it (a
  positive integer already below it stays): the recipe's ``epochs``, ``steps_per_epoch`` and
  ``batch_size`` (1 epoch of 1 batch of at most 64, for every protocol a cell names too), a
  method's ``iterations``, a network's ``width`` (every network that declares one: 16; depth,
  normalisation, pooling and the image size are kept, so every layer runs at every shape but
  the channel count)...;
* pictures (a task's side output, e.g. the grids of a synthesised set) may be drawn for one
  seed of each configuration only (the condensation task: seed 0);
* data: each data set holds at most ``per_class`` real images per class in each split (the
  run context caps what its loader returns, :func:`cap_per_class`);
* data sets that declare a stand-in writer (``DatasetSpec.standin``) get their stand-in files,
  in the real on-disk format, written into a temporary data root, so the real loaders run;
  with an explicit ``--data-root`` the files there are used (capped) instead.

Smoke cells never pass for real results: each carries ``versions["smoke"]`` (so its cell and
config ids differ from the real cell's, and ``kddbench compare`` refuses to pair the two), its
record says ``smoke: true``, and results go to their own directory (a temporary one unless
``--out`` names one; a directory holding real records is refused).  The temporary stand-in data
and artifact cache are removed when the run ends (:func:`remove_scratch`); the report stays.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from .cells import Cell
from .errors import KddbenchError

SMOKE_KEY = "smoke"            # the versions entry (and record field) marking a smoke cell
SMOKE_VERSION = "3"            # bump when the smoke rules change
PER_CLASS_ENV = "KDDBENCH_SMOKE_PER_CLASS"  # read by the run context of every worker
DEFAULT_PER_CLASS = 2
GENERIC_EPOCHS = 1             # recipe epochs where no smoke value is declared


def is_smoke(cell_or_record: Any) -> bool:
    versions = (cell_or_record.get("versions") if isinstance(cell_or_record, Mapping)
                else getattr(cell_or_record, "versions", None)) or {}
    return SMOKE_KEY in versions


def smoke_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``recipe`` with every budget knob at its declared smoke value (epochs: 1 by default)."""
    from .options import smoke_values
    from .recipe import RECIPE_OPTIONS

    out = dict(recipe)
    values = smoke_values(RECIPE_OPTIONS)
    values.setdefault("epochs", GENERIC_EPOCHS)
    for key, value in values.items():
        out[key] = _cut(out.get(key), value)
    return out


def _cut(given: Any, smoke: Any) -> Any:
    """The smoke value of a knob: ``smoke``, or ``given`` when that is already smaller (a
    positive integer: a width of 8 stays 8 where the smoke width is 16; 0 means "all" or "by
    the reference", so it takes the smoke value)."""
    if (isinstance(given, int) and isinstance(smoke, int) and not isinstance(given, bool)
            and not isinstance(smoke, bool) and 0 < given < smoke):
        return given
    return smoke


def smoke_options(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A plugin's resolved options with each declared smoke value in place."""
    from .options import smoke_values

    out = dict(given)
    for key, value in smoke_values(declared).items():
        if key in out:
            out[key] = _cut(out[key], value)
        elif getattr(declared[key], "later", False):  # left out of resolved options at default
            out[key] = _cut(declared[key].default, value)
    return out


def smoke_cell(cell: Cell, registry, per_class: int = DEFAULT_PER_CLASS) -> Cell:
    """The smoke twin of ``cell``: same task, axes and seed; smoke budget; its own identity."""
    from .suite import PROTOCOL_OPTION_PREFIX

    task = registry.get("task", cell.task)
    specs: dict[str, Any] = {}
    for axis, family in task.plugin_axes.items():
        value = cell.axes.get(axis)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is None or v in task.reserved.get(axis, ()):
                continue
            spec = registry.get(family, v)
            specs[spec.name] = spec
    options: dict[str, Any] = {}
    for key, value in cell.options.items():
        if key.startswith(PROTOCOL_OPTION_PREFIX):
            options[key] = smoke_recipe(value)
        elif key in specs and isinstance(value, Mapping):
            options[key] = smoke_options(specs[key].options, value)
        else:
            options[key] = value
    versions = {**cell.versions, SMOKE_KEY: f"{SMOKE_VERSION}:per_class={per_class}"}
    return Cell(cell.experiment, cell.task, dict(cell.axes), options, smoke_recipe(cell.recipe),
                cell.protocol, versions, cell.seed)


def smoke_cells(cells: Iterable[Cell], registry, per_class: int = DEFAULT_PER_CLASS) -> list[Cell]:
    out, seen = [], set()
    for cell in cells:
        twin = smoke_cell(cell, registry, per_class)
        if twin.cell_id not in seen:  # two real cells differing only in budget: one smoke cell
            seen.add(twin.cell_id)
            out.append(twin)
    return out


def datasets_of(cells: Iterable[Cell], registry) -> dict[str, list[Cell]]:
    """Canonical data set name -> the cells that load it (from the tasks' plugin axes of the
    ``dataset`` family)."""
    found: dict[str, list[Cell]] = {}
    for cell in cells:
        task = registry.get("task", cell.task)
        for axis, family in task.plugin_axes.items():
            if family != "dataset" or cell.axes.get(axis) is None:
                continue
            found.setdefault(registry.canonical("dataset", cell.axes[axis]), []).append(cell)
    return found


def write_standins(names: Iterable[str], root: Path, registry, per_class: int,
                   seed: int = 0) -> list[str]:
    """Stand-in files of every data set in ``names`` that declares a writer; returns those."""
    from .specs import PluginSpec

    written = []
    for name in names:
        spec = registry.get("dataset", name)
        writer = getattr(spec, "standin", None)
        if writer is None:
            continue
        fn = writer if callable(writer) else PluginSpec(name, writer).load()
        fn(root, per_class=per_class, seed=seed)
        written.append(spec.name)
    return written


def prepare(suite_name: str, cells: list[Cell], registry, *, out_dir, data_root, cache_dir,
            per_class: int = DEFAULT_PER_CLASS) -> dict[str, Any]:
    """Smoke cells and where they run: ``{"cells", "out", "data_root", "cache_dir",
    "standins", "root"}``.  Paths not given go under one new temporary directory."""
    if per_class < 1:
        raise KddbenchError(f"--smoke-per-class must be at least 1, not {per_class}")
    root = Path(tempfile.mkdtemp(prefix=f"kddbench-smoke-{suite_name}-"))
    twins = smoke_cells(cells, registry, per_class)
    out = Path(out_dir) if out_dir else root / "report"
    refuse_real_results(out)
    standins: list[str] = []
    if data_root is None:
        data_root = root / "data"
        standins = write_standins(datasets_of(twins, registry), data_root, registry, per_class)
    return {"cells": twins, "out": out, "data_root": str(data_root),
            "cache_dir": str(cache_dir) if cache_dir else str(root / "cache"),
            "standins": standins, "root": root}


def refuse_real_results(out: Path) -> None:
    """A smoke run never writes beside real results."""
    from .store import ResultStore

    if not Path(out).exists():
        return
    store = ResultStore(out)
    records = getattr(store, "records", None)
    items = records() if callable(records) else _read_records(Path(out))
    for record in items:
        if not is_smoke(record):
            raise KddbenchError(f"{out} holds real results; a smoke run writes into its own "
                                "directory (leave out --out, or name an empty one)")


def _read_records(out: Path):
    import json

    for path in sorted((out / "records").glob("*.json")) if (out / "records").is_dir() else []:
        try:
            yield json.loads(path.read_text())
        except (OSError, ValueError):
            continue


class per_class_cap:
    """Context manager: the run contexts created inside (here and in spawned workers) cap each
    data set at ``n`` images per class (through :data:`PER_CLASS_ENV`)."""

    def __init__(self, n: int | None):
        self.n, self.saved = n, None

    def __enter__(self):
        self.saved = os.environ.get(PER_CLASS_ENV)
        if self.n:
            os.environ[PER_CLASS_ENV] = str(int(self.n))
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop(PER_CLASS_ENV, None)
        else:
            os.environ[PER_CLASS_ENV] = self.saved


def env_per_class() -> int | None:
    value = os.environ.get(PER_CLASS_ENV, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else None


def cap_per_class(data, n: int):
    """``data`` (:class:`kddbench.data.DataSplits`) with at most ``n`` images of each class in
    each split: the first ones in the loader's order (deterministic)."""
    import torch

    from .data import DataSplits

    def head(y):
        keep = torch.zeros(len(y), dtype=torch.bool)
        for c in torch.unique(y):
            idx = torch.nonzero(y == c).flatten()[:n]
            keep[idx] = True
        return keep

    tr, te = head(data.y_train.cpu()), head(data.y_test.cpu())
    if bool(tr.all()) and bool(te.all()):
        return data
    notes = "; ".join(filter(None, [data.notes, f"smoke: at most {n} images per class"]))
    return DataSplits(data.name, data.x_train[tr], data.y_train[tr], data.x_test[te],
                      data.y_test[te], data.classes, data.mean, data.std, notes, None,
                      frozenset(data.traits))


def run_smoke(run, args: dict[str, Any]):
    """``kddbench.api.run`` with ``smoke=True``: prepare (:func:`prepare`), then the ordinary
    run of the smoke cells with the per-class cap in force; returns its results table, whose
    ``attrs["smoke"]`` says where everything went."""
    import dataclasses
    import inspect

    from .api import resolve_suite
    from .plugins import get_registry

    args = {k: v for k, v in args.items() if k in inspect.signature(run).parameters}
    suite = resolve_suite(args.pop("suite"), args["overrides"])
    per_class = args.pop("smoke_per_class", None) or DEFAULT_PER_CLASS
    args.pop("smoke", None)
    plan = prepare(suite.name, suite.cells, get_registry(), out_dir=args.get("out_dir"),
                   data_root=args.get("data_root"), cache_dir=args.get("cache_dir"),
                   per_class=per_class)
    twin = dataclasses.replace(suite, cells=plan["cells"])
    args.update(out_dir=plan["out"], data_root=plan["data_root"], cache_dir=plan["cache_dir"])
    if args.get("data_root") and plan["standins"]:
        args["download"] = False  # stand-ins: nothing to fetch
    try:
        with per_class_cap(per_class):
            df = run(twin, **args)
    finally:
        scratch = remove_scratch(plan)
    df.attrs["smoke"] = {k: str(v) for k, v in plan.items() if k != "cells"}
    df.attrs["smoke"]["removed"] = ", ".join(scratch)
    board = Path(plan["out"]) / "leaderboard.md"
    if board.exists():  # the titles name the real protocols: say what these numbers are
        from .store import atomic_write_text

        atomic_write_text(board, BANNER.format(per_class=per_class) + board.read_text())
    return df


def remove_scratch(plan: Mapping[str, Any]) -> list[str]:
    """Remove what the smoke run made for itself under its temporary root -- the stand-in data
    and the artifact cache (a whole ``paper_tables`` smoke run stores ~6 GB there: its teachers
    and sets) -- and keep the report.  A data root or cache given by the user is left alone."""
    import shutil

    root, removed = Path(plan["root"]), []
    for key in ("cache_dir", "data_root"):
        path = Path(plan[key])
        if path.parent == root and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


BANNER = ("> **Smoke run** (`kddbench run --smoke`): every cell at a tiny budget (declared smoke "
          "values, 1 epoch, at most {per_class} images per class) on stand-in data. The numbers "
          "test the code paths; they say nothing about the methods.\n\n")


def explicit_paths(click_ctx, data_root, cache_dir):
    """A smoke run uses a temporary data root and cache unless ``--data-root``/``--cache-dir``
    were given on the command line (the KDDBENCH_DATA/KDDBENCH_CACHE variables point at real
    data and caches, which a smoke run leaves alone)."""
    import click

    def given(name, value):
        source = click_ctx.get_parameter_source(name)
        return value if source == click.core.ParameterSource.COMMANDLINE else None

    return given("data_root", data_root), given("cache_dir", cache_dir)


def representative(cells: Iterable[Cell], registry) -> list[Cell]:
    """One cell per experiment and combination of plugin-axis values (data set x method x
    architectures x ...: every plugin the suite names, in every pairing and experiment it
    has), the first in suite order; budgets (ipc) and seeds are not multiplied."""
    out, seen = [], set()
    for cell in cells:
        task = registry.get("task", cell.task)
        key = (cell.experiment, cell.task) + tuple((axis, str(cell.axes.get(axis)))
                                   for axis in sorted(task.plugin_axes))
        if key not in seen:
            seen.add(key)
            out.append(cell)
    return out
