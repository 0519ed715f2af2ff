"""Regression history: the gated metrics of each CI run, keyed by commit, in one CSV file.

In the spirit of asv (airspeed velocity), but over kddbench's own cells: ``kddbench history
RESULTS --commit REV --file reports/ci/history.csv`` appends one row per cell identity and
gated metric of a results table (a ``results.csv`` or a report directory) with the commit, its
date and the machine; ``kddbench history --plot`` draws each gated metric over the commits
(mean over seeds, one line per configuration).  The HTML report (:mod:`kddbench.html`) shows
that figure and the entries when a ``history.csv`` lies beside the report.

Columns of the file: ``commit``, ``date``, ``machine``, ``suite``, ``gate``, ``experiment``,
``task``, ``config_id``, ``cell_id``, ``seed``, ``status``, ``axes`` (the cell's axis values as
JSON), ``versions``, ``metric``, ``value``.  Appending the same commit again replaces its rows.

Each entry is gated against the last good entry before it (:func:`kddbench.compare.compare`,
the regression gate's rule and tolerances); its ``gate`` column says how that went:
``first`` (nothing to compare with), ``pass``, ``regression``, ``versions changed`` (plugin or
protocol versions moved on: the entry starts a new baseline), ``nothing compared`` or
``failed cells``.  An entry is *good* unless its gate is ``regression`` or ``failed cells``;
``kddbench compare --baseline-from-history FILE CURRENT`` (or a baseline argument
``history:FILE``) compares with the last good entry.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import ExitCode, KddbenchError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COLUMNS = ["commit", "date", "machine", "suite", "gate", "experiment", "task", "config_id",
           "cell_id", "seed", "status", "axes", "versions", "metric", "value"]
DEFAULT_METRICS = ("accuracy",)
BAD_GATES = ("regression", "failed cells")
PREFIX = "history:"
_GATE_OF = {ExitCode.OK: "pass", ExitCode.REGRESSION: "regression",
            ExitCode.NOT_COMPARABLE: "versions changed",
            ExitCode.NOTHING_COMPARED: "nothing compared"}


def git_commit(rev: str = "HEAD", cwd: str | Path | None = None) -> tuple[str, str] | None:
    """(12-digit commit id, ISO commit date) of ``rev`` in the repository at ``cwd``, or
    ``None`` when git cannot say."""
    try:
        out = subprocess.run(["git", "show", "-s", "--format=%H %cI", rev], cwd=cwd,
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return None
    return parts[0][:12], parts[1]


def read_history(path: str | Path) -> "pd.DataFrame":
    """The history file as a table (empty, with the columns, when the file does not exist)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        df = pd.read_csv(path, dtype={"commit": str, "config_id": str, "cell_id": str,
                                      "axes": str, "versions": str, "gate": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KddbenchError(f"history {path}: not a history CSV ({first})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing and not df.empty:
        raise KddbenchError(f"history {path}: not a history CSV (no {', '.join(missing)} "
                            "column)")
    for col in missing:
        df[col] = None
    return df


def entries(hist: "pd.DataFrame") -> list[str]:
    """The commits of the history, in the order they were appended."""
    return list(dict.fromkeys(hist["commit"].astype(str))) if not hist.empty else []


def last_good(hist: "pd.DataFrame", before: str | None = None) -> str | None:
    """The last good entry's commit (see the module docstring), ignoring ``before`` and what
    follows it; ``None`` when there is none."""
    commits = entries(hist)
    if before is not None and before in commits:
        commits = commits[:commits.index(before)]
    for commit in reversed(commits):
        gate = hist.loc[hist["commit"].astype(str) == commit, "gate"].astype(str)
        if not gate.isin(BAD_GATES).any():
            return commit
    return None


def entry_table(hist: "pd.DataFrame", commit: str) -> "pd.DataFrame":
    """One entry of the history as a results table :func:`kddbench.compare.compare` reads:
    one row per cell, a column per metric and per axis, and an ``axes`` column naming them."""
    import pandas as pd

    rows = hist[hist["commit"].astype(str) == str(commit)]
    cells: dict[str, dict[str, Any]] = {}
    for rec in rows.to_dict("records"):
        cell = cells.get(rec["cell_id"])
        if cell is None:
            axes = json.loads(rec["axes"]) if isinstance(rec["axes"], str) and rec["axes"] \
                else {}
            cell = {"cell_id": rec["cell_id"], "config_id": rec["config_id"],
                    "suite": rec["suite"], "experiment": rec["experiment"],
                    "task": rec["task"], "seed": int(rec["seed"]), "status": rec["status"],
                    "versions": rec["versions"] if isinstance(rec["versions"], str) else "",
                    "axes": ";".join(axes), **axes}
            cells[rec["cell_id"]] = cell
        cell[rec["metric"]] = rec["value"]
    return pd.DataFrame(list(cells.values()))


def baseline_table(path: str | Path) -> "pd.DataFrame":
    """The last good entry of the history file ``path`` as a results table."""
    path = Path(path)
    if not path.is_file():
        raise KddbenchError(f"history {path}: no such file")
    hist = read_history(path)
    commit = last_good(hist)
    if commit is None:
        raise KddbenchError(f"history {path}: no good entry to compare with "
                            f"({len(entries(hist))} entries, none passed its gate)")
    return entry_table(hist, commit)


def history_rows(df: "pd.DataFrame", commit: str, date: str, machine: str,
                 metrics: Sequence[str], gate: str) -> "pd.DataFrame":
    """The rows one results table adds: one per cell and gated metric."""
    import pandas as pd

    from .compare import axis_columns

    axes = axis_columns(df)
    out = []
    for rec in df.to_dict("records"):
        named = [a for a in (str(rec.get("axes")).split(";") if isinstance(rec.get("axes"), str)
                             else axes) if a in rec]
        values = {a: _plain(rec.get(a)) for a in named}
        values = {a: v for a, v in values.items() if v is not None}
        for m in metrics:
            value = rec.get(m)
            out.append({"commit": commit, "date": date, "machine": machine,
                        "suite": rec.get("suite"), "gate": gate,
                        "experiment": rec.get("experiment"), "task": rec.get("task"),
                        "config_id": rec.get("config_id"), "cell_id": rec.get("cell_id"),
                        "seed": rec.get("seed"), "status": rec.get("status"),
                        "axes": json.dumps(values, sort_keys=True),
                        "versions": rec.get("versions"), "metric": m,
                        "value": None if value is None or pd.isna(value) else float(value)})
    return pd.DataFrame(out, columns=COLUMNS)


def _plain(value: Any) -> Any:
    try:
        import pandas as pd

        if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def default_file(df: "pd.DataFrame") -> Path:
    """``reports/<suite>/history.csv`` for the one suite of ``df``."""
    suites = sorted(set(df["suite"].dropna().astype(str))) if "suite" in df else []
    if len(suites) != 1:
        raise KddbenchError("the results hold " + (f"{len(suites)} suites" if suites else
                                                   "no suite column")
                            + ": name the history file with --file")
    return Path("reports") / suites[0] / "history.csv"


def append(results, path: str | Path | None = None, *, commit: str | None = None,
           date: str | None = None, machine: str | None = None,
           metrics: Sequence[str] = DEFAULT_METRICS, tolerance: float | None = None,
           tolerances: Mapping[str, float] | None = None, registry=None) -> dict[str, Any]:
    """Append the gated ``metrics`` of ``results`` (a table, a ``results.csv`` or a report
    directory) to the history file ``path`` as the entry of ``commit`` (default: git's HEAD;
    its commit date unless ``date``), gated against the last good entry before it.

    Returns ``{"file", "commit", "rows", "gate", "baseline"}``."""
    import pandas as pd

    from .compare import DEFAULT_TOLERANCE, compare, read_table

    df = results if isinstance(results, pd.DataFrame) else read_table(results, "results")
    if df.empty:
        raise KddbenchError(f"results {results}: no cells to record")
    metrics = list(dict.fromkeys(metrics or DEFAULT_METRICS))
    absent = [m for m in metrics if m not in df.columns]
    if absent:
        raise KddbenchError(f"results {results}: no {', '.join(map(repr, absent))} column "
                            f"(its metrics: {', '.join(_metric_columns(df)) or 'none'})")
    path = Path(path) if path else default_file(df)
    if commit is None:
        found = git_commit()
        if found is None:
            raise KddbenchError("no --commit given and git cannot name HEAD here")
        commit, git_date = found
    else:
        found = git_commit(commit)
        git_date = found[1] if found else None
        commit = found[0] if found else commit
    date = date or git_date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    machine = machine or socket.gethostname()

    hist = read_history(path)
    base_commit = last_good(hist, before=commit)
    failed = int((df["status"] != "ok").sum()) if "status" in df else 0
    if failed:
        gate = "failed cells"
    elif base_commit is None:
        gate = "first"
    else:
        result = compare(entry_table(hist, base_commit), df, metrics=metrics,
                         tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
                         tolerances=tolerances, registry=registry)
        gate = _GATE_OF.get(result.exit_code, "nothing compared")
    rows = history_rows(df, str(commit), date, machine, metrics, gate)
    kept = hist[hist["commit"].astype(str) != str(commit)] if not hist.empty else hist
    out = pd.concat([kept, rows], ignore_index=True) if not kept.empty else rows
    from .store import atomic_write_text

    buf = io.StringIO()
    out[COLUMNS].to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())
    return {"file": path, "commit": str(commit), "rows": len(rows), "gate": gate,
            "baseline": base_commit}


def _metric_columns(df: "pd.DataFrame") -> list[str]:
    from .compare import PROVENANCE_COLUMNS, axis_columns
    from .report import ID_COLUMNS

    skip = set(ID_COLUMNS) | set(PROVENANCE_COLUMNS) | set(axis_columns(df))
    return [c for c in df.columns if c not in skip and not c.startswith("info.")
            and str(df[c].dtype) != "object"]


# ---------------------------------------------------------------------------------------------
# reading it back: a figure and a table of entries


def _config_label(axes_json: str, experiment: Any) -> str:
    try:
        axes = json.loads(axes_json) if isinstance(axes_json, str) else {}
    except ValueError:
        axes = {}
    shown = " ".join(f"{k}={v}" for k, v in axes.items() if v is not None)
    return f"{experiment} {shown}".strip()


def _labels(hist: "pd.DataFrame") -> dict[str, str]:
    """A label per configuration: its experiment and the axis values that tell it apart from
    the experiment's other configurations (all of them when it is the only one)."""
    axes: dict[str, tuple[str, dict[str, Any]]] = {}
    for rec in hist.drop_duplicates("config_id").to_dict("records"):
        try:
            values = json.loads(rec["axes"]) if isinstance(rec["axes"], str) else {}
        except ValueError:
            values = {}
        axes[str(rec["config_id"])] = (str(rec["experiment"]), values)
    out = {}
    for config, (exp, values) in axes.items():
        peers = [v for e, v in axes.values() if e == exp]
        shown = {k: v for k, v in values.items()
                 if len(peers) == 1 or any(p.get(k) != v for p in peers)}
        out[config] = _config_label(json.dumps(shown), exp)
    return out


def series(hist: "pd.DataFrame") -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{metric: {configuration label: [(entry index, mean over seeds), ...]}}``."""
    commits = entries(hist)
    index = {c: i for i, c in enumerate(commits)}
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    ok = hist[(hist["status"] == "ok") & hist["value"].notna()]
    labels = _labels(ok) if not ok.empty else {}
    for (metric, config, commit), g in ok.groupby(["metric", "config_id", "commit"],
                                                  sort=False):
        label = labels.get(str(config)) or _config_label(g["axes"].iloc[0],
                                                         g["experiment"].iloc[0])
        out.setdefault(str(metric), {}).setdefault(label, []).append(
            (index[str(commit)], float(g["value"].astype(float).mean())))
    for lines in out.values():
        for points in lines.values():
            points.sort()
    return out


def plot(hist: "pd.DataFrame", path: str | Path | None = None) -> Any:
    """Each gated metric over the entries (one panel per metric, one line per
    configuration; entries that failed their gate shaded).  Saved to ``path`` when given;
    returns the matplotlib figure (``None`` when the history holds no finished value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(hist)
    if not data:
        return None
    commits = entries(hist)
    dates = {str(c): str(d)[:10] for c, d in zip(hist["commit"], hist["date"])}
    bad = [i for i, c in enumerate(commits)
           if hist.loc[hist["commit"].astype(str) == c, "gate"].astype(str).isin(BAD_GATES).any()]
    fig, axes = plt.subplots(len(data), 1, figsize=(9, 3.2 * len(data) + 0.6), squeeze=False)
    for ax, (metric, lines) in zip(axes[:, 0], sorted(data.items())):
        for label, points in sorted(lines.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", ms=4, lw=1.4, label=label)
        for i in bad:
            ax.axvspan(i - 0.4, i + 0.4, color="#b3261e", alpha=0.12, lw=0)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_xticks(range(len(commits)))
        ax.set_xticklabels([f"{c[:8]}\n{dates.get(c, '')}" for c in commits], fontsize=7)
        ax.set_xlim(-0.5, max(len(commits) - 0.5, 0.5))
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 14:
            handles, labels = handles[:14], labels[:13] + [f"… {len(labels) - 13} more"]
        ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  frameon=False)
    axes[0, 0].set_title("regression history: mean over seeds per configuration"
                         + (" (shaded: failed its gate)" if bad else ""), fontsize=10)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_bytes(hist: "pd.DataFrame") -> bytes | None:
    """The history figure as PNG bytes (``None`` when there is nothing to draw)."""
    import matplotlib.pyplot as plt

    fig = plot(hist)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def entries_table(hist: "pd.DataFrame") -> "pd.DataFrame":
    """One line per entry: commit, date, machine, gate, cells, and each metric's mean over
    the entry's finished cells."""
    import pandas as pd

    rows = []
    for commit in entries(hist):
        g = hist[hist["commit"].astype(str) == commit]
        row = {"commit": commit, "date": str(g["date"].iloc[0]),
               "machine": str(g["machine"].iloc[0]), "gate": str(g["gate"].iloc[0]),
               "cells": int(g["cell_id"].nunique()),
               "finished": int(g.loc[g["status"] == "ok", "cell_id"].nunique())}
        for metric, mg in g.groupby("metric", sort=True):
            vals = mg.loc[mg["status"] == "ok", "value"].astype(float)
            row[f"mean {metric}"] = f"{vals.mean():.2f}" if len(vals) else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def format_entries(hist: "pd.DataFrame") -> str:
    table = entries_table(hist)
    if table.empty:
        return "no entries\n"
    return table.to_markdown(index=False, disable_numparse=True) + "\n"


__all__ = ["append", "read_history", "baseline_table", "entry_table", "last_good", "plot",
           "plot_bytes", "entries_table", "git_commit"]
