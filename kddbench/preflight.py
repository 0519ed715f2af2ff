"""Pre-flight: find missing data before any compute, once per data set, not once per cell.

:func:`check_data` loads every data set the cells to run name (each distinct data set and
options once, in this process, then lets it go), and returns, per data set that raised
:class:`~kddbench.errors.DataMissingError`, its one-line message and the cells that need it.
``kddbench.api.run`` records those cells as failed with that message without running them
(one line per data set on the terminal); the other cells run as usual, and the run exits with
``ExitCode.FAILED_CELLS``.  With ``--download`` the data sets are fetched here, once, before
the workers start (instead of by several workers at the same time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .cells import Cell, short_hash
from .errors import DataMissingError


@dataclass
class MissingData:
    dataset: str
    message: str
    cells: list[Cell] = field(default_factory=list)


def data_needs(cells: Iterable[Cell], registry) -> dict[tuple[str, str], tuple[str, dict, list]]:
    """``(data set, options hash) -> (name as written, options, cells)`` for the cells, from
    the tasks' plugin axes of the ``dataset`` family."""
    from . import names

    needs: dict[tuple[str, str], tuple[str, dict, list]] = {}
    for cell in cells:
        task = registry.get("task", cell.task)
        for axis, family in task.plugin_axes.items():
            value = cell.axes.get(axis)
            if family != "dataset" or value is None:
                continue
            spec = registry.get("dataset", value)
            opts = {**(cell.options.get(spec.name) or {}), **names.parse(str(value))[1]}
            key = (spec.name, short_hash(opts))
            needs.setdefault(key, (str(value), opts, []))[2].append(cell)
    return needs


def check_data(cells: Iterable[Cell], registry, context) -> list[MissingData]:
    """Load each data set the ``cells`` need once through ``context`` (a
    :class:`~kddbench.context.RunContext`, whose root, download flag and smoke cap apply)."""
    missing: dict[str, MissingData] = {}
    for (canonical, _h), (value, opts, needing) in data_needs(cells, registry).items():
        try:
            context.data(value, opts)
        except DataMissingError as exc:
            entry = missing.setdefault(canonical, MissingData(canonical, str(exc)))
            entry.cells.extend(needing)
        except Exception:  # any other failure is the cells' to report, with its traceback
            pass
        finally:
            context._data.clear()  # the workers load their own copy; free this one
    return list(missing.values())


def failed_records(missing: list[MissingData], suite_name: str) -> list[dict[str, Any]]:
    """The error record of every cell a missing data set stops (no traceback: nothing ran)."""
    from .runner import base_record

    out = []
    for entry in missing:
        for cell in entry.cells:
            record = base_record(cell, suite_name, {})
            record.update(status="error", metrics={}, info={},
                          error=f"DataMissingError: {entry.message}", traceback="",
                          user_error=True, wall_time_s=0.0, preflight=True)
            out.append(record)
    return out


def run_preflight(cells: list[Cell], store, suite_name: str, settings, registry,
                  rerun_failed: bool = True, say=None) -> list[Cell]:
    """Check the data of the cells still to run (see the module doc); store a failed record
    for each cell whose data set is missing, say one line per such data set, and return the
    cells left to run."""
    import sys
    from dataclasses import replace

    from .runner import make_context

    def todo(cell):
        record = store.get(cell.cell_id)
        return record is None or (record.get("status") != "ok" and rerun_failed)

    pending = [c for c in cells if todo(c)]
    if not pending:
        return cells
    context = make_context(replace(settings, device="cpu"), registry)
    missing = check_data(pending, registry, context)
    if not missing:
        return cells
    say = say or (lambda message: print(message, file=sys.stderr))
    for record in failed_records(missing, suite_name):
        store.put(record)
    stopped = set()
    for entry in missing:
        stopped.update(c.cell_id for c in entry.cells)
        say(f"data set {entry.dataset!r} is missing, {len(entry.cells)} cell(s) not run: "
            f"{entry.message}")
    return [c for c in cells if c.cell_id not in stopped]
