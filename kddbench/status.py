"""Where a suite's run stands: done, running, failed and pending cells, and the compute left.

``kddbench status SUITE [--out DIR]`` reads the report directory the way a run leaves it while
it writes: records (``records/<cell_id>.json``, each written to a temporary file and renamed
into place) and claims (``claims/<cell_id>.lease``, :class:`kddbench.store.Claims`).  It
writes nothing: a record that does not parse counts as pending and is named (a run moves it
aside), a lease whose holder is alive and whose heartbeat is fresh makes its cell *running*,
and a stale lease (holder dead, heartbeat too old) is only counted.  A run with a lazy
executor also holds a lease (``claims/artifact-<id>.lease``, labelled) for each declared
artifact a worker is building: those are listed as *artifacts being built*, since a suite of
long condensations spends most of its time there, with no cell running yet.

A cell is *done* (a record with status ok), *running* (a live claim; this wins over a failed
record, which is then being retried), *failed* (an error record: its one-line cause is
shown) or *pending* (neither).  The compute left covers the running, failed (a run retries
them) and pending cells: the image passes of the dry-run cost estimate (:mod:`kddbench.cost`,
when the suite's tasks declare a cost) and seconds from the finished cells of the same
experiment (their measured wall time per image pass, or per cell where no cost is declared).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import ARTIFACT_LEASE
from .store import Claims, ResultStore, record_problem

STATES = ("done", "running", "failed", "pending")


@dataclass
class CellState:
    cell: Any
    state: str
    cause: str = ""
    holder: dict[str, Any] | None = None
    wall_time_s: float | None = None
    note: str = ""
    progress: dict[str, Any] | None = None  # a running cell's last checkpoint


@dataclass
class Status:
    suite: str
    out_dir: Path
    cells: list[CellState]
    rows: list[dict[str, Any]] = field(default_factory=list)
    stale_claims: int = 0
    unreadable: list[str] = field(default_factory=list)
    estimated: bool = False
    building: list[dict[str, Any]] = field(default_factory=list)  # artifacts under way

    @property
    def total(self) -> dict[str, Any]:
        out: dict[str, Any] = {"experiment": "total", "cells": len(self.cells)}
        for state in STATES:
            out[state] = sum(r[state] for r in self.rows)
        unknown = any(math.isnan(r["passes_left"]) for r in self.rows if r["done"] < r["cells"])
        out["passes_left"] = math.nan if unknown else _sum(r["passes_left"] for r in self.rows)
        out["unknown_left"] = sum(r["unknown_left"] for r in self.rows)
        left = out["cells"] - out["done"]
        out["seconds_left"] = (math.nan if left and out["unknown_left"] >= left  # none timed
                               else _sum(r["seconds_left"] for r in self.rows))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "out": str(self.out_dir), "experiments": self.rows,
                "total": self.total, "stale_claims": self.stale_claims,
                "unreadable_records": self.unreadable,
                "failed": [{"experiment": c.cell.experiment, "cell_id": c.cell.cell_id,
                            "seed": c.cell.seed, "cause": c.cause}
                           for c in self.cells if c.state == "failed"],
                "running": [{"experiment": c.cell.experiment, "cell_id": c.cell.cell_id,
                             "seed": c.cell.seed, "holder": c.holder,
                             "progress": c.progress}
                            for c in self.cells if c.state == "running"],
                "building": self.building}


def _sum(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(sum(values)) if values else math.nan


def _read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(record, "") or (None, why it cannot be read); never moves or writes anything."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "not JSON"
    problem = record_problem(record, path.stem)
    return (None, problem) if problem else (record, "")


def one_line_cause(record: dict[str, Any]) -> str:
    """The failed cell's cause in one line: its ``error`` (``Type: message``), else the last
    line of its traceback."""
    text = str(record.get("error") or "").strip()
    if not text:
        tb = str(record.get("traceback") or "").strip()
        text = tb.splitlines()[-1] if tb else "failed (no cause recorded)"
    first = text.splitlines()[0]
    return first if len(first) <= 200 else first[:197] + "..."


def cell_states(cells, out_dir: str | Path) -> tuple[list[CellState], int, list[str],
                                                    list[dict[str, Any]]]:
    """Each cell's state in ``out_dir``, the number of stale claims, the unreadable records,
    and the artifacts being built (their live leases' holders)."""
    out = Path(out_dir)
    store = ResultStore(out)
    claims = Claims(out / "claims")
    states, unreadable = [], []
    for cell in cells:
        record, problem = _read_record(store.path_for(cell.cell_id))
        holder = claims.holder(cell.cell_id)
        if problem:
            unreadable.append(f"{store.path_for(cell.cell_id).name}: {problem}")
        if record is not None and record.get("status") == "ok":
            states.append(CellState(cell, "done", wall_time_s=_float(record.get("wall_time_s"))))
        elif holder is not None:
            states.append(CellState(cell, "running", holder=holder,
                                    note="retrying a failed cell" if record else "",
                                    progress=claims.progress(cell.cell_id)))
        elif record is not None:
            states.append(CellState(cell, "failed", cause=one_line_cause(record)))
        else:
            states.append(CellState(cell, "pending", note=problem))
    live = claims.live()  # every lease read once: the stale ones are the rest
    stale = sum(1 for lease in claims.dir.glob("*.lease")
                if lease.stem not in live and lease.exists()) if claims.dir.is_dir() else 0
    building = [{"artifact": lease, **info, "progress": claims.progress(lease)}
                for lease, info in live.items() if lease.startswith(ARTIFACT_LEASE)]
    return states, stale, unreadable, building


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _passes(cells, registry) -> dict[str, float] | None:
    """Image passes per cell id from the dry-run cost estimate (``None`` when the cost
    module or the tasks' cost functions cannot say)."""
    try:
        from .cost import CostInfo, unshared, works_of
    except ImportError:
        return None
    out: dict[str, float] = {}
    seen: set[str] = set()  # shared work (a teacher, an expert) counts for the first cell only
    for cell, works in works_of(cells, registry, CostInfo(registry)):
        if works is None:
            continue
        out[cell.cell_id] = sum(float(w.passes) for w in unshared(works, seen))
    return out or None


def status(suite, out_dir: str | Path | None = None, registry=None,
           estimate: bool = True, only=(), where=()) -> Status:
    """The state of every cell of ``suite`` (a Suite or a suite file) in ``out_dir`` (default
    ``reports/<suite name>``), per experiment and in total, with the compute left; ``only`` and
    ``where`` narrow the cells as they narrow a run (:func:`kddbench.api.select_experiments`)."""
    from .api import report_dir, resolve_suite, select_experiments

    suite = resolve_suite(suite)
    out = report_dir(suite, out_dir)
    cells = select_experiments(suite, only, where)
    states, stale, unreadable, building = cell_states(cells, out)
    passes = None
    busy = {s.cell.experiment for s in states if s.state != "done"}
    if estimate and busy:  # the cost of the experiments with work left (theirs finished too)
        if registry is None:
            from .plugins import get_registry

            registry = get_registry()
        passes = _passes([c for c in cells if c.experiment in busy], registry)
    rows: dict[str, dict[str, Any]] = {}
    by_exp: dict[str, list[CellState]] = {}
    for s in states:
        by_exp.setdefault(s.cell.experiment, []).append(s)
    for exp, members in by_exp.items():
        row: dict[str, Any] = {"experiment": exp, "cells": len(members)}
        for state in STATES:
            row[state] = sum(m.state == state for m in members)
        done = [m for m in members if m.state == "done" and m.wall_time_s is not None]
        left = [m for m in members if m.state != "done"]
        p_left = [passes.get(m.cell.cell_id) for m in left] if passes else []
        row["passes_left"] = _sum(p_left) if passes and left else (0.0 if not left else math.nan)
        done_passes = [passes.get(m.cell.cell_id) for m in done] if passes else []
        rate = None
        if done and passes and all(p for p in done_passes):
            rate = sum(m.wall_time_s for m in done) / sum(done_passes)  # s per image pass
        seconds, unknown = 0.0, 0
        for m, p in zip(left, p_left or [None] * len(left)):
            if rate is not None and p:
                seconds += rate * p
            elif done:
                seconds += sum(d.wall_time_s for d in done) / len(done)
            else:
                unknown += 1
        row["seconds_left"] = seconds if len(left) > unknown else (0.0 if not left else math.nan)
        row["unknown_left"] = unknown
        rows[exp] = row
    return Status(suite.name, out, states, list(rows.values()), stale, unreadable,
                  estimated=passes is not None, building=building)


def _seconds(s: float) -> str:
    if s is None or math.isnan(s):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size * 1.5:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


def _describe(cell) -> str:
    from .sections import label

    axes = " ".join(f"{k}={label(v)}" for k, v in cell.axes.items() if v is not None)
    return f"{cell.experiment}[{axes}] seed {cell.seed} ({cell.cell_id})"


def format_status(st: Status) -> str:
    """The command's report: a table per experiment and in total, then the running and
    failed cells, then the compute left."""
    head = ["experiment", "cells", *STATES, "image passes left", "time left"]
    lines = [f"suite {st.suite}: {st.out_dir}", "",
             "| " + " | ".join(head) + " |", "|:--|" + "--:|" * (len(head) - 1)]
    for n, r in enumerate(st.rows + [st.total]):
        name = "**total**" if n == len(st.rows) else r["experiment"]
        timed = r["cells"] - r["done"] - r["unknown_left"]
        left = _seconds(r["seconds_left"]) + (f" (+{r['unknown_left']} cells unknown)"
                                              if r["unknown_left"] and timed > 0 else "")
        passes = "?" if math.isnan(r["passes_left"]) else f"{r['passes_left']:.3g}"
        lines.append(f"| {name} | {r['cells']} | " + " | ".join(str(r[s]) for s in STATES)
                     + f" | {passes} | {left} |")
    now = time.time()

    def held(h: dict[str, Any]) -> str:  # a lease's holder: where, and for how long
        since = h.get("since")
        age = f", for {_seconds(now - since)}" if isinstance(since, (int, float)) else ""
        return f"{h.get('host', '?')} pid {h.get('pid', '?')}{age}"

    def last_checkpoint(note: dict[str, Any] | None) -> str:
        if not note or not isinstance(note.get("time"), (int, float)):
            return ""
        at = f" at iteration {note['iteration']}" if "iteration" in note else ""
        return f"; last checkpoint{at}, {_seconds(max(0.0, now - note['time']))} ago"

    running = [c for c in st.cells if c.state == "running"]
    if running:
        lines += ["", f"running ({len(running)}):"]
        lines += [f"  {_describe(c.cell)}: {held(c.holder or {})}"
                  + last_checkpoint(c.progress) + (f" ({c.note})" if c.note else "")
                  for c in running]
    if st.building:
        lines += ["", f"artifacts being built ({len(st.building)}; their cells wait for them):"]
        lines += [f"  {b.get('label') or b['artifact']}: {held(b)}"
                  + last_checkpoint(b.get("progress")) for b in st.building]
    failed = [c for c in st.cells if c.state == "failed"]
    if failed:
        lines += ["", f"failed ({len(failed)}; a run retries them):"]
        lines += [f"  {_describe(c.cell)}: {c.cause}" for c in failed]
    if st.unreadable:
        lines += ["", f"unreadable records ({len(st.unreadable)}; counted as pending, a run "
                  "moves them aside and recomputes their cells):"]
        lines += [f"  {u}" for u in st.unreadable]
    if st.stale_claims:
        lines += ["", f"{st.stale_claims} stale claim(s): their holders are gone; the next run "
                  "takes the cells over"]
    total = st.total
    left = total["cells"] - total["done"]
    lines.append("")
    if not left:
        lines.append("compute left: none, every cell is done")
    else:
        how = ("the finished cells' wall time per image pass of the same experiment"
               if st.estimated else "the finished cells' mean wall time in the same experiment")
        timing = (f", about {_seconds(total['seconds_left'])} of one worker's time (from {how})"
                  if total["unknown_left"] < left else
                  ", not timed yet (no finished cell to time it by)")
        lines.append(f"compute left: {left} cell(s)"
                     + ("" if math.isnan(total["passes_left"]) else
                        f", {total['passes_left']:.3g} image passes (dry-run estimate)")
                     + timing
                     + (f"; {total['unknown_left']} cell(s) of experiments with no finished "
                        "cell not timed" if 0 < total["unknown_left"] < left else ""))
    return "\n".join(lines) + "\n"
