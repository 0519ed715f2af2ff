"""Run cells: skip finished ones, isolate failures, record everything that produced a number."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import allocator
from .cells import Cell
from .errors import KddbenchError
# the executor contract lives in kddbench.executor; these names stay importable from here
from .executor import (_WORKER, WAIT, CellJob, Executor, RunSettings,  # noqa: F401
                       executor_options)
from .plugins import Registry, get_registry
from .store import ArtifactCache, Claims, ResultStore


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


# "finish the running cells, then stop" (SIGUSR1 to `kddbench run`, kddbench.cli): no cell or
# artifact is started once it is set; what is running finishes and is stored
_STOP_AFTER_RUNNING = threading.Event()


def stop_after_running(on: bool = True) -> None:
    """Ask the run in this process to start nothing more and end when its running cells have
    finished (their records are stored; the rest stays to do); ``on = False`` takes it back."""
    if on:
        _STOP_AFTER_RUNNING.set()
    else:
        _STOP_AFTER_RUNNING.clear()


def stopping_after_running() -> bool:
    return _STOP_AFTER_RUNNING.is_set()


def _until_stopped(items: Iterable) -> Iterator:
    """``items`` until :func:`stop_after_running` is asked for (checked before each next)."""
    source = iter(items)
    while not _STOP_AFTER_RUNNING.is_set():
        try:
            item = next(source)
        except StopIteration:
            return
        yield item


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
        "cpu_allocator": allocator.configure(),
        "plugins": registry.plugin_versions(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def make_context(settings: RunSettings, registry: Registry | None = None):
    import torch

    from .context import RunContext, default_data_root, resolve_device

    if settings.threads:
        torch.set_num_threads(settings.threads)
    allocator.configure()  # before the data and the networks take their memory
    registry = registry or get_registry()
    kwargs: dict[str, Any] = {}
    if settings.data_root:
        kwargs["data_root"] = Path(settings.data_root).expanduser()
    else:
        kwargs["data_root"] = default_data_root()
    if settings.download is not None:
        kwargs["download"] = settings.download
    from .release import released_dirs

    released = released_dirs(settings.out_dir) if settings.out_dir else []
    return RunContext(registry=registry, device=resolve_device(settings.device),
                      artifacts=ArtifactCache(settings.cache_dir, enabled=settings.use_cache,
                                              released=released),
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
        **({"smoke": True} if "smoke" in cell.versions else {}),  # kddbench.smoke: not real
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
    ctx.artifacts.warnings.clear()
    used = getattr(ctx.artifacts, "used", None)
    if used is not None:
        used.clear()
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
    if ctx.artifacts.warnings:  # corrupt artifacts this cell found (and rebuilt)
        record["warnings"] = list(ctx.artifacts.warnings)
        ctx.artifacts.warnings.clear()
    if used:  # "<kind>/<key>" of every artifact the cell read or built (kddbench release)
        record["artifacts"] = list(used)
    return record


def execute(item, ctx, suite_name: str, env: dict[str, Any]) -> dict[str, Any]:
    """Run one work item: a cell (its record) or an :class:`~kddbench.artifacts.ArtifactRequest`
    (a small result saying whether its artifact was built)."""
    from .artifacts import ArtifactRequest, build_artifact

    if ctx.output_dir is not None:  # its checkpoints' progress, beside the run's lease on it
        ctx.progress_file = Claims(Path(ctx.output_dir) / "claims").progress_path(item.cell_id)
    try:
        if isinstance(item, ArtifactRequest):
            return build_artifact(item, ctx)
        return execute_cell(item, ctx, suite_name, env)
    finally:
        if ctx.progress_file is not None:
            ctx.progress_file.unlink(missing_ok=True)
            ctx.progress_file = None


def item_from_dict(data: dict[str, Any]):
    """The inverse of ``item.to_dict()`` for cells and artifact requests."""
    from .artifacts import ArtifactRequest

    if "artifact" in data:
        return ArtifactRequest.from_dict(data)
    return Cell.from_dict(data)


def failed_item(item, suite_name: str, exc: BaseException) -> dict[str, Any]:
    """The record of a cell (or the result of an artifact request) whose worker died."""
    if not isinstance(item, Cell):
        return {"artifact_id": getattr(item, "artifact_id", ""), "status": "error",
                "label": item.label(), "error": f"{type(exc).__name__}: {exc}"}
    return error_record(base_record(item, suite_name, {}), exc)


class InProcessExecutor:
    """Runs cells one after another in this process (the default)."""

    lazy = True  # takes one item at a time (kddbench.schedule)

    def __init__(self, settings: RunSettings, registry: Registry | None = None):
        self.settings = settings
        self.registry = registry or get_registry()
        self.ctx = None

    def map(self, cells: Sequence[Cell], suite_name: str):
        if self.ctx is None:
            self.ctx = make_context(self.settings, self.registry)
        env = environment(self.registry, str(self.ctx.device))
        for cell in cells:  # taken one at a time: the runner claims each as it is taken
            if cell is WAIT:  # (nothing runs between two takes here, so never in practice)
                continue
            yield cell, execute(cell, self.ctx, suite_name, env)


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


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def _pool_worker_init(job: CellJob) -> None:
    import signal
    import warnings

    _die_with_parent()
    if hasattr(signal, "SIGUSR1"):  # meant for the run (kddbench.cli), not its workers
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    warnings.showwarning = _one_line_warning  # a corrupt artifact: one line, as in the parent
    job.setup()


class ProcessPoolExecutor:
    """Runs cells in a pool of worker processes (one torch thread each by default).

    The pool lives from the first ``map`` until :meth:`close` (the runner calls it), so the
    artifact waves and the cells share warm workers.  It takes a cell from the runner only
    when a worker is free (at most ``workers`` in flight), so two runs on one store split the
    cells between them."""

    lazy = True  # takes an item only when a worker is free (kddbench.schedule)

    def __init__(self, settings: RunSettings, registry: Registry | None = None, workers: int = 2):
        self.settings = settings
        self.workers = workers
        self._pool = None
        self._job = None

    def _start(self, suite_name: str):
        import concurrent.futures as cf
        import multiprocessing as mp

        if self._pool is None:
            settings = replace(self.settings, threads=self.settings.threads or 1)
            self._job = CellJob.for_this_run(settings, suite_name)
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"),
                initializer=_pool_worker_init, initargs=(self._job,))
        return self._pool, self._job

    def map(self, cells: Iterable, suite_name: str):
        import concurrent.futures as cf

        pool, job = self._start(suite_name)
        source = iter(cells)
        futures: dict = {}
        try:
            while True:
                while len(futures) < self.workers:
                    cell = next(source, None)
                    if cell is None or cell is WAIT:  # WAIT: take again after a result
                        break
                    try:
                        futures[pool.submit(job, cell.to_dict())] = cell
                    except cf.process.BrokenProcessPool:  # a worker died: start a fresh pool
                        self.close(wait=False)
                        pool, job = self._start(suite_name)
                        futures[pool.submit(job, cell.to_dict())] = cell
                if not futures:
                    break
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    cell = futures.pop(fut)
                    try:
                        record = fut.result()
                    except Exception as exc:  # a worker died (out of memory, segfault, ...)
                        record = job.failed(cell, exc)
                    yield cell, record
        except BaseException:
            # Ctrl-C or a failing consumer: drop the queued cells instead of running them all
            # (a plain shutdown would wait for every one); workers die with this process.
            self.close(wait=False)
            raise

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None


def _stamp(record: dict[str, Any] | None) -> tuple | None:
    """What tells one record of a cell from a later one."""
    if record is None:
        return None
    return (record.get("status"), record.get("started"), record.get("wall_time_s"))


class _Progress:
    """The progress bar: cells done out of those to do, and what runs now (a cell's label
    while one runs, ``N running`` for a pool, who holds the cells this run waits for)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.running: dict[str, str] = {}
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="cell", file=sys.stderr,
                            dynamic_ncols=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text[:70])

    def started(self, item_id: str, label: str) -> None:
        self.running[item_id] = label
        self._show()

    def finished(self, item_id: str, status: str = "", count: bool = True) -> None:
        label = self.running.pop(item_id, "")
        if self.running:
            self._show()
        elif status:
            self.note(f"{label} {status}")
        if self.bar is not None and count:
            self.bar.update(1)

    def _show(self) -> None:
        labels = list(self.running.values())
        if len(labels) == 1:
            self.note(f"running {labels[0]}")
        elif labels:
            self.note(f"{len(labels)} running, e.g. {labels[0]}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _artifact_warnings(request, results: dict[str, dict]) -> list[str]:
    """The warnings (a corrupt artifact rebuilt) of ``request`` and of what it needs, from the
    results of their builds."""
    found = list(results.get(request.artifact_id, {}).get("warnings") or ())
    for need in request.needs:
        found += _artifact_warnings(need, results)
    return found


def build_artifacts(cells: Sequence[Cell], executor, suite_name: str, registry: Registry,
                    settings: RunSettings, progress: bool = True,
                    announce: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """Build, once each, the artifacts the ``cells`` declare (see :mod:`kddbench.artifacts`),
    wave by wave on ``executor``; return the warnings (a corrupt artifact rebuilt) each cell's
    record must carry, by cell id."""
    from .artifacts import declared, waves

    if not settings.use_cache:  # nothing would be kept: cells build what they need inline
        return {}
    by_cell = declared(cells, registry)
    try:
        levels = waves(r for reqs in by_cell.values() for r in reqs)
    except ValueError as exc:  # a plugin declared a cycle
        raise KddbenchError(f"the declared artifacts cannot be built: {exc}") from None
    results: dict[str, dict] = {}
    total = sum(map(len, levels))
    if not total:
        return {}
    bar = _Progress(total, f"{suite_name} artifacts", progress)
    try:
        for level in levels:
            def taken(items=level):
                for item in items:
                    bar.started(item.artifact_id, item.label())
                    yield item

            for item, result in executor.map(_until_stopped(taken()), suite_name):
                results[item.artifact_id] = result
                bar.finished(item.artifact_id, "built" if result.get("built") else "ready")
                if result.get("status") != "ok" and announce:
                    announce(f"artifact {item.label()} could not be built "
                             f"({result.get('error')}); the cells that need it will say why")
    finally:
        bar.close()

    out = {}
    for cell_id, requests in by_cell.items():
        found = [w for r in requests for w in _artifact_warnings(r, results)]
        if found:
            out[cell_id] = list(dict.fromkeys(found))
    return out


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
    wait: bool = True,
    poll_s: float = 2.0,
    announce: Callable[[str], None] | None = None,
    batch: int = 8,
) -> list[dict[str, Any]]:
    """Run every cell not yet finished in ``store``; return the records of all ``cells``.

    Each cell is claimed (:class:`~kddbench.store.Claims`) as the executor takes it, so runs
    sharing ``store`` compute each cell once; cells another live run holds are skipped and,
    with ``wait``, waited for at the end (taken over if their holder dies).  The declared
    artifacts of the cells are built before the cells that need them: on a lazy executor
    through one queue with the cells (:mod:`kddbench.schedule`); otherwise
    (:func:`build_artifacts`) ``batch`` cells at a time in suite order: the artifacts of the
    next ``batch`` cells, then those cells, so a long suite writes records from its first
    minutes; an artifact several batches share is built once (later batches find it ready).
    Only records computed here reach ``on_record`` and the ``kddbench_record_finished`` hook.
    """
    registry = registry or get_registry()
    settings = settings or RunSettings()
    say = announce or (lambda message: None)
    seen: dict[str, tuple | None] = {}
    todo = []
    for c in cells:
        record = store.get(c.cell_id)
        if record is not None and (record.get("status") == "ok" or not rerun_failed):
            continue
        seen[c.cell_id] = _stamp(record)
        todo.append(c)
    if not todo:
        if cells:
            say(f"all {len(cells)} cells are already done in {store.root}: nothing to "
                "compute, the report is rebuilt from their records")
        return [store.get(c.cell_id) or {} for c in cells]
    executor = executor or InProcessExecutor(settings, registry)
    claims = store.claims()
    bar = None
    try:
        if getattr(executor, "lazy", False):  # cells and artifacts in one queue
            bar = _Progress(len(todo), suite_name, progress)
            elsewhere = []
            _run_scheduled(todo, executor, suite_name, store, claims, seen, bar, registry,
                           settings, on_record, elsewhere, announce)
            pending = _wait_for_others(elsewhere, store, claims, seen, bar, wait, poll_s, say)
            while pending:
                elsewhere = []
                _run_batch(pending, executor, suite_name, store, claims, seen, bar, {},
                           registry, on_record, elsewhere)
                pending = _wait_for_others(elsewhere, store, claims, seen, bar, wait, poll_s,
                                           say)
            return [store.get(c.cell_id) or {} for c in cells]
        step = max(1, int(batch))
        chunks = [todo[i:i + step] for i in range(0, len(todo), step)]
        notes: dict[str, list[str]] = {}
        bar = None
        elsewhere: list[Cell] = []
        for number, pending in enumerate(chunks):
            notes.update(build_artifacts(pending, executor, suite_name, registry, settings,
                                         progress, announce))
            if bar is None:
                bar = _Progress(len(todo), suite_name, progress)
            if number == len(chunks) - 1 or stopping_after_running():
                break
            _run_batch(pending, executor, suite_name, store, claims, seen, bar, notes,
                       registry, on_record, elsewhere)
        pending = chunks[-1] if chunks else []
        while pending:
            _run_batch(pending, executor, suite_name, store, claims, seen, bar, notes, registry,
                       on_record, elsewhere)
            pending = _wait_for_others(elsewhere, store, claims, seen, bar, wait, poll_s, say)
            elsewhere = []
    finally:
        claims.release_all()
        if bar is not None:
            bar.close()
        close = getattr(executor, "close", None)
        if callable(close):
            close()
    return [store.get(c.cell_id) or {} for c in cells]


def _take(cell: Cell, store: ResultStore, claims, seen, bar, elsewhere: list[Cell]) -> bool:
    """Claim ``cell`` for this run: False when a live run holds it (it goes to ``elsewhere``)
    or another run has just finished it."""
    if not claims.claim(cell.cell_id):
        elsewhere.append(cell)
        return False
    if _stamp(store.get(cell.cell_id)) != seen[cell.cell_id]:
        claims.release(cell.cell_id)  # another run just finished it
        bar.finished(cell.cell_id)
        return False
    bar.started(cell.cell_id, cell.label())
    return True


def _keep(cell: Cell, record: dict[str, Any], notes: Sequence[str], store: ResultStore, claims,
          bar, registry: Registry, on_record) -> None:
    """Store a cell's record (with the warnings of what was rebuilt for it) and tell the
    reporters."""
    found = [store.problems.pop(cell.cell_id, None), *notes]
    found = [w for w in found if w and w not in record.get("warnings", ())]
    if found:  # what was corrupt and rebuilt for this cell, before it ran
        record["warnings"] = found + list(record.get("warnings", ()))
    store.put(record)
    claims.release(cell.cell_id)
    registry.pm.hook.kddbench_record_finished(record=record)
    if on_record:
        on_record(record)
    bar.finished(cell.cell_id, record.get("status", ""))


def _run_batch(cells: list[Cell], executor, suite_name: str, store: ResultStore, claims, seen,
               bar, notes: dict[str, list[str]], registry: Registry, on_record,
               elsewhere: list[Cell]) -> None:
    """Claim and run ``cells`` on ``executor``, storing each record as it arrives; cells a
    live run holds go to ``elsewhere``."""
    taken = (c for c in cells if _take(c, store, claims, seen, bar, elsewhere))
    for cell, record in executor.map(_until_stopped(taken), suite_name):
        _keep(cell, record, notes.pop(cell.cell_id, ()), store, claims, bar, registry, on_record)


def _run_scheduled(cells: list[Cell], executor, suite_name: str, store: ResultStore, claims,
                   seen, bar, registry: Registry, settings: RunSettings, on_record,
                   elsewhere: list[Cell], announce) -> None:
    """A lazy executor: the cells and their declared artifacts through one
    :class:`~kddbench.schedule.Schedule`, each started as soon as what it needs is built."""
    from .artifacts import ArtifactRequest
    from .schedule import Schedule, longest_first, requests_of

    by_cell = requests_of(cells, registry) if settings.use_cache else {}
    if int(getattr(executor, "workers", 1) or 1) > 1:  # one worker: suite order, same end
        cells = longest_first(cells, registry, settings.device)

    # an artifact's lease is kept twice: in the report directory (what `kddbench status` lists)
    # and in the artifact cache, which other suites sharing the artifact see too; the cache's
    # lock is what makes runs that need the same artifact build it once, the leases only let a
    # run start on another artifact meanwhile
    shared = Claims(ArtifactCache(settings.cache_dir).root / "claims") if by_cell else None

    def started(item) -> None:
        if isinstance(item, ArtifactRequest):
            bar.started(item.cell_id, item.label())
            claims.claim(item.cell_id, label=item.label())
            if shared is not None:
                shared.claim(item.cell_id, label=f"{suite_name}: {item.label()}")

    def busy(request: ArtifactRequest) -> bool:  # another live run holds its lease
        for leases in (claims, shared):
            holder = leases.holder(request.cell_id) if leases is not None else None
            if holder is not None and holder.get("token") != leases.token:
                return True
        return False

    schedule = Schedule(cells, by_cell, lambda c: _take(c, store, claims, seen, bar, elsewhere),
                        started, busy)

    try:
        _drain(executor, schedule, suite_name, store, claims, shared, bar, registry, on_record,
               announce)
    finally:
        if shared is not None:
            shared.release_all()


def _drain(executor, schedule, suite_name: str, store: ResultStore, claims, shared, bar,
           registry: Registry, on_record, announce) -> None:
    from .artifacts import ArtifactRequest

    results: dict[str, dict] = {}
    for item, result in executor.map(_until_stopped(schedule), suite_name):
        schedule.finished(item)
        if isinstance(item, ArtifactRequest):
            claims.release(item.cell_id)
            if shared is not None:
                shared.release(item.cell_id)
            results[item.artifact_id] = result
            bar.finished(item.cell_id, count=False)
            if result.get("status") != "ok" and announce:
                announce(f"artifact {item.label()} could not be built "
                         f"({result.get('error')}); the cells that need it will say why")
            continue
        notes = list(dict.fromkeys(w for r in schedule.needs_of(item)
                                    for w in _artifact_warnings(r, results)))
        _keep(item, result, notes, store, claims, bar, registry, on_record)


def _wait_for_others(cells: list[Cell], store: ResultStore, claims, seen, bar, wait: bool,
                     poll_s: float, say: Callable[[str], None]) -> list[Cell]:
    """Wait until another run's cells have records; return those whose holder died (to be
    computed here).  Without ``wait``, say which cells run elsewhere and return none."""
    if not cells or stopping_after_running():
        return []
    holders = set()
    for cell in cells:
        info = claims.holder(cell.cell_id)
        if info is not None:
            holders.add(f"{info.get('host', '?')} pid {info.get('pid', '?')}")
    who = ", ".join(sorted(holders)[:3]) or "another run"
    if not wait:
        say(f"{len(cells)} cell(s) are being computed by another run ({who}); "
            "their results will be in the report once it finishes them (run report again)")
        return []
    say(f"{len(cells)} cell(s) are being computed by another run ({who}); waiting for them")
    waiting = list(cells)
    orphans: list[Cell] = []
    while waiting:
        bar.note(f"waiting for {len(waiting)} cell(s) running in {who}")
        still = []
        for cell in waiting:
            if _stamp(store.get(cell.cell_id)) != seen[cell.cell_id]:
                bar.finished(cell.cell_id)
            elif claims.holder(cell.cell_id) is None:
                orphans.append(cell)  # its holder died without a record: compute it here
            else:
                still.append(cell)
        waiting = still
        if waiting and not orphans:
            time.sleep(poll_s)
        elif orphans:
            # compute the orphans now; keep waiting for the rest in the next round
            return orphans + waiting
    return orphans
def plan(cells: Iterable[Cell], store: ResultStore) -> list[dict[str, Any]]:
    """Each cell with its state in ``store``: done, failed, running (claimed by a live run)
    or todo."""
    rows = []
    claims = store.claims()
    watch = claims.dir.is_dir()
    for cell in cells:
        record = store.get(cell.cell_id)
        state = "todo" if record is None else ("done" if record.get("status") == "ok"
                                                else "failed")
        if state != "done" and watch and claims.holder(cell.cell_id) is not None:
            state = "running"
        rows.append({"cell_id": cell.cell_id, "experiment": cell.experiment, "task": cell.task,
                     **{k: v for k, v in cell.axes.items()}, "seed": cell.seed,
                     "protocol": cell.protocol, "epochs": cell.recipe.get("epochs"),
                     "state": state})
    return rows
