"""Cells and the artifacts they declare in one queue, each handed out once what it needs is built.

For an executor that takes its work lazily -- one item whenever a worker is free, never reading
ahead (``lazy = True``: the in-process and the process-pool executors) -- the runner hands out
the work through a :class:`Schedule` instead of wave by wave:

1. a cell whose declared artifacts are all built, in the order of the cells given (the suite's,
   or longest first: :func:`longest_first`);
2. else an artifact whose own ``needs`` are built, in the order of the first cell needing it,
   one that another live run is building (``busy``: it holds the artifact's lease) last: two
   runs of one suite build different experts side by side instead of both waiting for the
   first;
3. else :data:`~kddbench.executor.WAIT` while something runs that the rest waits for.

So no worker idles while there is work it could start (with waves, the last long artifact of a
wave held every other worker), and an interrupted run keeps the record of every cell whose
artifacts were ready.  An artifact that fails counts as built: the cells that need it then run,
build it inline and fail with the full traceback, as with waves.  Executors that take all their
work at once (a Slurm job array, Ray) keep the waves (:func:`kddbench.runner.build_artifacts`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from .artifacts import ArtifactRequest
from .executor import WAIT


class Schedule:
    """An iterator over ready work for ``executor.map``; call :meth:`finished` with each item the
    executor gives back.  ``take(cell) -> bool`` is asked before a cell is handed out (False:
    skip it, e.g. another run holds its claim); ``started(item)`` is told of every item handed
    out; ``busy(request) -> bool`` says an artifact is being built elsewhere (handed out only
    when no other artifact is ready: its builder then waits on the cache's lock and finds it
    built)."""

    def __init__(self, cells: Sequence, requests: Mapping[str, Sequence[ArtifactRequest]],
                 take: Callable[[Any], bool] = lambda cell: True,
                 started: Callable[[Any], None] = lambda item: None,
                 busy: Callable[[ArtifactRequest], bool] = lambda request: False):
        self.take, self.started, self.busy = take, started, busy
        self.by_id: dict[str, ArtifactRequest] = {}
        self.cell_needs: dict[str, list[str]] = {}
        order: list[str] = []

        def visit(req: ArtifactRequest, trail: tuple = ()) -> None:
            rid = req.artifact_id
            if rid in trail:
                raise ValueError(f"artifact {req.label()} needs itself")
            if rid in self.by_id:
                return
            for need in req.needs:
                visit(need, (*trail, rid))
            self.by_id[rid] = req
            order.append(rid)

        for cell in cells:
            for req in requests.get(cell.cell_id, ()):
                visit(req)
                self.cell_needs.setdefault(cell.cell_id, []).append(req.artifact_id)
        self.cells = list(cells)
        self.artifacts = order
        self.built: set[str] = set()
        self.running: set[str] = set()

    def __iter__(self) -> "Schedule":
        return self

    def __next__(self):
        item = self._ready()
        if item is not None:
            self.running.add(item.cell_id)
            self.started(item)
            return item
        if self.running:
            return WAIT
        if self.cells or self.artifacts:  # nothing runs and nothing is ready: cannot happen
            raise RuntimeError("schedule: work left that waits for nothing running")
        raise StopIteration

    def _ready(self):
        while True:
            i = next((i for i, cell in enumerate(self.cells)
                      if all(r in self.built for r in self.cell_needs.get(cell.cell_id, ()))),
                     None)
            if i is None:
                break
            cell = self.cells.pop(i)
            if self.take(cell):
                return cell
        ready = [i for i, rid in enumerate(self.artifacts)
                 if all(n.artifact_id in self.built for n in self.by_id[rid].needs)]
        if not ready:
            return None
        free = next((i for i in ready if not self.busy(self.by_id[self.artifacts[i]])), ready[0])
        return self.by_id[self.artifacts.pop(free)]

    def finished(self, item) -> None:
        self.running.discard(item.cell_id)
        if isinstance(item, ArtifactRequest):
            self.built.add(item.artifact_id)

    def needs_of(self, cell) -> list[ArtifactRequest]:
        """The requests ``cell`` declared (their own ``needs`` inside them)."""
        return [self.by_id[r] for r in self.cell_needs.get(cell.cell_id, ())]


def longest_first(cells: Sequence, registry, device: str = "auto") -> list:
    """``cells`` with the longest estimated compute first (suite order among equals).

    With several workers the run ends when its last cell does; started last, a long cell runs
    alone at the end while the other workers idle (a 40-minute trajectory-matching set after a
    suite's two-minute random baselines).  Longest first (Graham 1969, "Bounds on
    multiprocessing timing anomalies": within 4/3 of the best order) keeps them busy.  The
    estimate is :func:`kddbench.cost.estimate`'s (the tasks' cost functions, seconds per image
    pass calibrated now); a cell without one counts as the longest (it may be), so its length is
    found out early."""
    import math

    from .cost import CostInfo, calibrate, seconds_of, works_of

    works = {cell.cell_id: ws for cell, ws in works_of(cells, registry, CostInfo(registry))}
    every = [w for ws in works.values() for w in ws or ()]
    calib = calibrate(every, registry, device)[0] if every else {}

    def key(cell) -> float:
        ws = works[cell.cell_id]
        seconds = math.inf if ws is None else sum(seconds_of(w, calib) for w in ws)
        return -(math.inf if math.isnan(seconds) else seconds)

    return sorted(cells, key=key)


def requests_of(cells: Iterable, registry) -> dict[str, list[ArtifactRequest]]:
    """:func:`kddbench.artifacts.declared`, checked for cycles (a one-line error)."""
    from .artifacts import declared, waves
    from .errors import KddbenchError

    by_cell = declared(cells, registry)
    try:
        waves(r for reqs in by_cell.values() for r in reqs)
    except ValueError as exc:  # a plugin declared a cycle
        raise KddbenchError(f"the declared artifacts cannot be built: {exc}") from None
    return by_cell
