"""Run cells: skip finished ones, isolate failures, record everything that produced a number."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .cells import Cell
from .errors import KddbenchError
from .plugins import Registry, get_registry
from .store import ResultStore


@dataclass
class RunSettings:
    """Everything a worker needs to rebuild a run context (picklable)."""

    device: str = "auto"
    data_root: str | None = None
    download: bool | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    threads: int | None = None
    out_dir: str | None = None


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(registry: Registry, device: str) -> dict[str, Any]:
    import torch

    from . import __version__

    env = {
        "kddbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "git": git_revision(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "plugins": registry.plugin_versions(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def make_context(settings: RunSettings, registry: Registry | None = None):
    import torch

    from .context import RunContext, default_data_root, resolve_device
    from .store import ArtifactCache

    if settings.threads:
        torch.set_num_threads(settings.threads)
    registry = registry or get_registry()
    kwargs: dict[str, Any] = {}
    if settings.data_root:
        kwargs["data_root"] = Path(settings.data_root).expanduser()
    else:
        kwargs["data_root"] = default_data_root()
    if settings.download is not None:
        kwargs["download"] = settings.download
    return RunContext(registry=registry, device=resolve_device(settings.device),
                      artifacts=ArtifactCache(settings.cache_dir, enabled=settings.use_cache),
                      output_dir=Path(settings.out_dir) if settings.out_dir else None, **kwargs)


def split_result(result: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """Numbers are metrics; anything else (strings, lists) is info."""
    metrics, info = {}, {}
    for key, value in (result or {}).items():
        if isinstance(value, bool):
            info[key] = value
        elif isinstance(value, (int, float)):
            metrics[key] = value
        else:
            info[key] = value
    return metrics, info


def base_record(cell: Cell, suite_name: str, env: dict[str, Any]) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "config_id": cell.config_id,
        "suite": suite_name,
        **cell.to_dict(),
        "env": env,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def error_record(record: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    record.update(status="error", metrics={}, info={}, error=f"{type(exc).__name__}: {exc}",
                  traceback="".join(traceback.format_exception(exc)),
                  user_error=isinstance(exc, KddbenchError))
    return record


def execute_cell(cell: Cell, ctx, suite_name: str, env: dict[str, Any]) -> dict[str, Any]:
    """Run one cell and return its record; an exception becomes an error record."""
    record = base_record(cell, suite_name, env)
    start = time.perf_counter()
    try:
        spec = ctx.registry.get("task", cell.task)
        ctx.extra = {}
        result = spec.load()(cell, ctx)
        metrics, info = split_result(result)
        record.update(status="ok", metrics=metrics, info=info)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failing cell never loses the others
        error_record(record, exc)
    record["wall_time_s"] = time.perf_counter() - start
    return record


class InProcessExecutor:
    """Runs cells one after another in this process (the default)."""

    def __init__(self, settings: RunSettings, registry: Registry | None = None):
        self.settings = settings
        self.registry = registry or get_registry()
        self.ctx = None

    def map(self, cells: Sequence[Cell], suite_name: str):
        if self.ctx is None:
            self.ctx = make_context(self.settings, self.registry)
        env = environment(self.registry, str(self.ctx.device))
        for cell in cells:
            yield cell, execute_cell(cell, self.ctx, suite_name, env)


_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """On Linux, ask the kernel to kill this worker when the parent dies (even by SIGKILL), so
    an interrupted run leaves no orphans computing into the void."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class CellJob:
    """``record = CellJob(...)(cell_dict)``: runs one cell in whatever process calls it.

    This is the whole contract between the runner and an out-of-process executor (a process
    pool, a Slurm job, a Ray task): it is picklable, rebuilds the plugin registry and the run
    context in the worker the first time it is called there (the same plugins and settings as
    the parent), and returns the cell's record; it never raises for a failing cell.
    """

    settings: RunSettings
    suite_name: str
    plugin_args: tuple = ()

    @classmethod
    def for_this_run(cls, settings: RunSettings, suite_name: str) -> "CellJob":
        from .plugins import registry_args

        return cls(settings, suite_name, registry_args())

    def setup(self) -> None:
        key = (repr(self.settings), repr(self.plugin_args))
        if _WORKER.get("key") == key:
            return
        from . import plugins

        registry = plugins.configure(*self.plugin_args)
        _WORKER["ctx"] = make_context(self.settings, registry)
        _WORKER["env"] = environment(registry, str(_WORKER["ctx"].device))
        _WORKER["key"] = key

    def __call__(self, cell_dict: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        return execute_cell(Cell.from_dict(cell_dict), _WORKER["ctx"], self.suite_name,
                            _WORKER["env"])

    def failed(self, cell: Cell, exc: BaseException) -> dict[str, Any]:
        """The record of a cell whose worker died before it could write one."""
        return error_record(base_record(cell, self.suite_name, {}), exc)


def executor_options(name: str, given: dict[str, Any],
                     declared: dict[str, Any]) -> dict[str, Any]:
    """An executor's options: its ``declared`` defaults updated by those ``given``; a name it
    does not declare is a :class:`KddbenchError` listing the real ones (typos fail early)."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise KddbenchError(
            f"executor {name!r} has no option(s) {unknown}"
            + (f"; its options: {', '.join(declared)}" if declared else "; it takes none"))
    return {**declared, **given}


def _pool_worker_init(job: CellJob) -> None:
    _die_with_parent()
    job.setup()


class ProcessPoolExecutor:
    """Runs cells in a pool of worker processes (one torch thread each by default)."""

    def __init__(self, settings: RunSettings, registry: Registry | None = None, workers: int = 2):
        self.settings = settings
        self.workers = workers

    def map(self, cells: Sequence[Cell], suite_name: str):
        import concurrent.futures as cf
        import multiprocessing as mp

        settings = replace(self.settings, threads=self.settings.threads or 1)
        job = CellJob.for_this_run(settings, suite_name)
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                      initializer=_pool_worker_init, initargs=(job,))
        try:
            futures = {pool.submit(job, c.to_dict()): c for c in cells}
            for fut in cf.as_completed(futures):
                cell = futures[fut]
                try:
                    record = fut.result()
                except Exception as exc:  # a worker died (out of memory, segfault, ...)
                    record = job.failed(cell, exc)
                yield cell, record
        except BaseException:
            # Ctrl-C or a failing consumer: drop the queued cells instead of running them all
            # (a plain shutdown would wait for every one); workers die with this process.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def run_cells(
    cells: Sequence[Cell],
    store: ResultStore,
    suite_name: str,
    executor=None,
    settings: RunSettings | None = None,
    rerun_failed: bool = True,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    registry: Registry | None = None,
) -> list[dict[str, Any]]:
    """Run every cell not yet finished in ``store``; return the records of all ``cells``."""
    registry = registry or get_registry()
    settings = settings or RunSettings()
    todo = [c for c in cells
            if not store.is_done(c.cell_id) and (rerun_failed or store.get(c.cell_id) is None)]
    executor = executor or InProcessExecutor(settings, registry)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=suite_name, unit="cell", file=sys.stderr,
                   dynamic_ncols=True)
    try:
        for cell, record in executor.map(todo, suite_name):
            store.put(record)
            registry.pm.hook.kddbench_record_finished(record=record)
            if on_record:
                on_record(record)
            if bar is not None:
                bar.set_postfix_str(f"{cell.label()[:60]} {record['status']}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return [store.get(c.cell_id) or {} for c in cells]


def plan(cells: Iterable[Cell], store: ResultStore) -> list[dict[str, Any]]:
    """Each cell with its state in ``store``: done, failed or todo."""
    rows = []
    for cell in cells:
        record = store.get(cell.cell_id)
        state = "todo" if record is None else ("done" if record.get("status") == "ok"
                                                else "failed")
        rows.append({"cell_id": cell.cell_id, "experiment": cell.experiment, "task": cell.task,
                     **{k: v for k, v in cell.axes.items()}, "seed": cell.seed,
                     "protocol": cell.protocol, "epochs": cell.recipe.get("epochs"),
                     "state": state})
    return rows
