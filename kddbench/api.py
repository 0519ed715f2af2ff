"""The library API behind the CLI: run a suite, rebuild reports, compare results."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from .errors import KddbenchError, UnknownNameError
from .plugins import get_registry
from .store import ResultStore

DEFAULT_REPORTS = Path("reports")


def report_dir(suite, out_dir: str | Path | None) -> Path:
    return Path(out_dir) if out_dir else DEFAULT_REPORTS / suite.name


def resolve_suite(suite, overrides: Iterable[str] = ()):
    from .suite import Suite, load_suite

    return suite if isinstance(suite, Suite) else load_suite(suite, overrides)


def run(suite, out_dir: str | Path | None = None, *, overrides: Iterable[str] = (),
        device: str = "auto", data_root: str | None = None, download: bool | None = None,
        cache_dir: str | None = None, use_cache: bool = True, jobs: int | str = "auto",
        executor: str | None = None, rerun_failed: bool = True, progress: bool = True,
        threads: int | None = None, only: Iterable[str] = (), where: Iterable[str] = (),
        smoke: bool = False, smoke_per_class: int | None = None,
        reporters: Iterable[str] = (), wait: bool = True,
        announce: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run every unfinished cell of ``suite`` and rebuild its reports; return the tidy table.

    Runs sharing ``out_dir`` split the cells (each is claimed before it is computed); with
    ``wait`` this one waits at the end for the cells another run is computing, so its
    reports include them.  ``announce(message)`` receives one-line news (all cells already
    done, cells waited for).

    Before any compute each data set the cells to run need is loaded once
    (:mod:`kddbench.preflight`): the cells of a missing one fail with its message, one line
    per data set.  ``smoke``: every cell at a tiny budget on stand-in data, in temporary
    directories unless ``out_dir``/``data_root``/``cache_dir`` are given (:mod:`kddbench.smoke`;
    ``smoke_per_class`` images per class, default 2)."""
    if smoke:  # the same run at a tiny budget on stand-in data: see kddbench.smoke
        from .smoke import run_smoke

        return run_smoke(run, {k: v for k, v in locals().items() if k != "run_smoke"})
    from .report import write_reports
    from .runner import RunSettings, run_cells

    overrides = list(overrides)
    suite = resolve_suite(suite, overrides)
    out = report_dir(suite, out_dir)
    store = ResultStore(out)
    _keep_suite_copy(suite, out, overrides)
    settings = RunSettings(device=device, data_root=data_root, download=download,
                           cache_dir=cache_dir, use_cache=use_cache, threads=threads,
                           out_dir=str(out))
    registry = get_registry()
    cells = select_experiments(suite, only, where)
    todo = sum(not store.is_done(c.cell_id) for c in cells)
    workers = resolve_jobs(jobs, device, todo)
    if workers > 1 and threads is None:
        settings.threads = 1
    exe = make_executor(executor or ("process" if workers > 1 else "inprocess"), workers,
                        settings, registry)
    from .preflight import run_preflight  # missing data: found once per data set, up front

    cells = run_preflight(cells, store, suite.name, settings, registry, rerun_failed)
    sinks = [registry.get("reporter", r).load()(out_dir=out) for r in reporters]
    run_cells(cells, store, suite.name, executor=exe, settings=settings,
              rerun_failed=rerun_failed, progress=progress, registry=registry,
              on_record=(lambda record: [sink(record) for sink in sinks]) if sinks else None,
              wait=wait, announce=announce)
    df = write_reports(suite, out)
    # cells with no record yet: a run told to stop after its running cells leaves some
    df.attrs["cells_left"] = sum(store.get(c.cell_id) is None for c in cells)
    if (out / "index.html").is_file():  # a report with a page keeps it in step
        from .html import write_html

        write_html(suite, out, df)
    return df


def select_experiments(suite, only: Iterable[str] = (), where: Iterable[str] = ()) -> list:
    """The cells of the experiments named in ``only`` (all cells when empty) whose axes match
    every clause of ``where``; a name that is not one of the suite's experiments is an error
    ("did you mean"), and so are a clause naming no axis of those cells, a value no cell has
    and clauses that together leave no cell."""
    only = list(only)
    names = list(dict.fromkeys(c.experiment for c in suite.cells))
    for name in only:
        if name not in names:
            raise UnknownNameError("experiment", name, names, note=f"suite {suite.name}")
    cells = [c for c in suite.cells if not only or c.experiment in only]
    clauses = [parse_where(clause) for clause in where]
    for key, values in clauses:
        have = {axis_text(c, key) for c in cells} - {None}
        if not have:
            axes = {k for c in cells for k in c.axes} | {"seed"}
            raise UnknownNameError("axis", key, axes, note="in --where")
        for value in values:
            if value not in have:
                raise UnknownNameError(f"value of {key}", value, have, note="in --where")
    cells = [c for c in cells if all(axis_text(c, key) in values for key, values in clauses)]
    if not cells:
        raise KddbenchError("no cell matches every --where clause together: "
                            + " ".join(f"{k}={'|'.join(v)}" for k, v in clauses))
    return cells


def parse_where(clause: str) -> tuple[str, tuple[str, ...]]:
    """``KEY=V1|V2|...`` as (key, values); a ``|`` inside brackets belongs to its value
    (``method=datadam[init=real|noise]`` is one value)."""
    key, eq, rest = str(clause).partition("=")
    key = key.strip()
    values, depth, part = [], 0, ""
    for ch in rest:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            values.append(part.strip())
            part = ""
        else:
            part += ch
    values.append(part.strip())
    if not eq or not key or not all(values):
        raise KddbenchError(f"--where {clause!r}: expected KEY=VALUE or KEY=VALUE|VALUE|..., "
                            "e.g. dataset=fashion-mnist or ipc=1|10")
    return key, tuple(values)


def axis_text(cell, key: str) -> str | None:
    """A cell's value of axis ``key`` (or its seed) as text, None where it has no such axis."""
    if key == "seed":
        return str(cell.seed)
    return None if key not in cell.axes else str(cell.axes[key])


def check_executor(name: str, registry):
    """The executor spec and inline options of ``name``, checked against the declared ones;
    an unknown executor or a bad option fails here, in one line, without starting anything."""
    from .names import parse
    from .runner import executor_options

    base, options = parse(name)
    spec = registry.get("executor", base)
    executor_options(spec.name, options, dict(spec.options))
    return spec, options


def make_executor(name: str, workers: int, settings, registry):
    """The executor plugin ``name``, which may carry inline options checked against its
    declared ones, e.g. ``submitit[partition=gpu,gpus=1]``."""
    spec, options = check_executor(name, registry)
    if spec.name == "process":
        options.setdefault("workers", workers)
    return spec.load()(settings, registry, **options)


def resolve_jobs(jobs: int | str, device: str, todo: int) -> int:
    """``auto``: on the CPU one single-threaded worker per core (up to 8, at most one per cell),
    which trains ~1.4x faster than one process using every core; on a GPU one worker."""
    if str(jobs) != "auto":
        try:
            n = int(jobs)
        except ValueError:
            n = 0
        if n < 1:
            raise KddbenchError(f"--jobs must be a whole number >= 1 or 'auto', not {jobs!r}")
        return n
    from .context import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, 8, todo))


def _keep_suite_copy(suite, out: Path, overrides: list[str]) -> None:
    """Keep the suite file beside its results, so ``kddbench report DIR`` needs nothing else."""
    import json

    from .store import atomic_write_text

    if suite.path is not None:
        atomic_write_text(out / "suite.toml", Path(suite.path).read_text())
        atomic_write_text(out / "overrides.json", json.dumps(overrides))


def saved_overrides(out: Path) -> list[str]:
    import json

    path = Path(out) / "overrides.json"
    return json.loads(path.read_text()) if path.exists() else []


def report(suite, out_dir: str | Path | None = None, overrides: Iterable[str] = (),
           html: bool = False):
    """Rebuild the reports of ``suite`` from its records; ``html``: also the self-contained
    page ``index.html`` (:mod:`kddbench.html`), which is rebuilt too wherever it exists."""
    from .report import write_reports

    suite = resolve_suite(suite, overrides)
    out = report_dir(suite, out_dir)
    df = write_reports(suite, out)
    if html or (out / "index.html").is_file():
        from .html import write_html

        write_html(suite, out, df)
    return df


def status(suite, out_dir: str | Path | None = None, overrides: Iterable[str] = (),
           estimate: bool = True, only: Iterable[str] = (), where: Iterable[str] = ()):
    """Done, running, failed and pending cells of ``suite`` (of the experiments ``only``, the
    cells matching ``where``) in its report directory, and the compute left
    (:func:`kddbench.status.status`); reads only, safe during a run."""
    from .status import status as _status

    return _status(resolve_suite(suite, overrides), out_dir, estimate=estimate, only=only,
                   where=where)


def history(results, history_file: str | Path | None = None, **kwargs):
    """Append a results table's gated metrics to a regression history, keyed by commit
    (:func:`kddbench.history.append`)."""
    from .history import append

    return append(results, history_file, **kwargs)


def compare(baseline, current, **kwargs):
    """The regression gate on two results tables (DataFrames, results.csv paths or report
    directories); see :func:`kddbench.compare.compare` for the options and exit codes."""
    from .compare import compare as _compare, read_table

    b = baseline if isinstance(baseline, pd.DataFrame) else read_table(baseline, "baseline")
    c = current if isinstance(current, pd.DataFrame) else read_table(current, "current")
    return _compare(b, c, **kwargs)
