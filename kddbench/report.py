"""Tidy results and leaderboards, always derived from the stored records."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from .errors import KddbenchError
from .sections import cell_row, label, matches, render_sections, write_section_files
from .store import ResultStore, atomic_write_text
from .validation import grid_columns

ID_COLUMNS = ["cell_id", "config_id", "suite", "experiment", "task", "protocol", "seed", "status"]


def tidy(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: identity columns, every axis, every metric, provenance."""
    rows = []
    for rec in records:
        row = {k: rec.get(k) for k in ID_COLUMNS}
        for key, value in rec.get("axes", {}).items():
            row[key] = "+".join(map(str, value)) if isinstance(value, list) else value
        row.update(rec.get("metrics", {}))
        row.update(grid_columns(rec.get("info", {})))  # a tuned cell's every grid point
        row["versions"] = ";".join(f"{k}={v}" for k, v in sorted(rec.get("versions", {}).items()))
        row["options"] = json.dumps(rec.get("options", {}), sort_keys=True)
        row["recipe"] = json.dumps(rec.get("recipe", {}), sort_keys=True)
        env = rec.get("env", {})
        row.update({"device": env.get("device"), "git": env.get("git"),
                    "torch": env.get("torch"), "wall_time_s": rec.get("wall_time_s"),
                    "error": rec.get("error")})
        for key, value in rec.get("info", {}).items():
            if isinstance(value, (str, int, float)):
                row[f"info.{key}"] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["experiment", "cell_id"], kind="stable").reset_index(drop=True)
    return df


def load_results(path: str | Path) -> pd.DataFrame:
    """A results table from a report directory (its records) or a tidy CSV file."""
    path = Path(path)
    if path.is_dir():
        return tidy(ResultStore(path).records())
    return pd.read_csv(path)


def _fmt(mean: float, std: float, n: int, digits: int) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


_label = label  # how a value reads in a table (one rule with the suite's checks)
_matches = matches


def _reference_for(row: Mapping[str, Any], references: Sequence):
    for ref in references:
        if all(k in row for k in ref.match) and _matches(row, ref.match):
            return ref
    return None


def _sort_key(label: str):
    try:
        return (1, float(label.split("=")[-1]), label)
    except ValueError:
        return (0, 0.0, label)


def _table_rows(df: pd.DataFrame, table) -> pd.DataFrame | None:
    """The finished rows a ``[[tables]]`` entry covers, its row/column keys as labels."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:  # no record yet: nothing of any column, the experiment's included
        return None
    if table.experiments:
        ok = ok[ok["experiment"].isin(table.experiments)]
    if table.where:
        ok = ok[[_matches(r, table.where) for r in ok.to_dict("records")]]
    if ok.empty or table.metric not in ok:
        return None
    ok = ok.copy()
    for k in list(table.rows) + list(table.columns):
        ok[k] = ok[k].map(_label) if k in ok else "—"
    return ok


def _grouped(df: pd.DataFrame, table, references: Sequence = ()) -> pd.DataFrame | None:
    """Mean, std and count of the table's metric per (rows, columns) key, and the one
    published reference all of a group's rows match (``None`` when none or several)."""
    ok = _table_rows(df, table)
    if ok is None:
        return None
    refs = [r for r in references if r.metric == table.metric] if table.reference else []
    ok["_ref"] = [id(_reference_for(r, refs)) if refs else 0 for r in ok.to_dict("records")]
    by_id = {id(r): r for r in refs}
    keys = list(table.rows) + list(table.columns)
    grouped = ok.groupby(keys, sort=False, dropna=False).agg(
        mean=(table.metric, "mean"), std=(table.metric, "std"), count=(table.metric, "count"),
        ref=("_ref", "first"), refs=("_ref", "nunique"))
    grouped["reference"] = [by_id.get(r) if n == 1 else None
                            for r, n in zip(grouped["ref"], grouped["refs"])]
    return grouped.drop(columns=["ref", "refs"])


def _published(ref, digits: int) -> str:
    text = f"{ref.value:.{digits}f}"
    if ref.std is not None:
        text += f" ± {float(ref.std):.{digits}f}"
    return text


def leaderboard(df: pd.DataFrame, table, references: Sequence = ()) -> pd.DataFrame:
    """Pivot ``df`` (ok rows only) into the table described by a suite ``[[tables]]`` entry.

    Cells read ``mean ± std (n=k)`` over seeds; a matching published number follows as
    ``[paper x ± s]``.
    """
    grouped = _grouped(df, table, references)
    if grouped is None:
        return pd.DataFrame()
    out_rows: dict[tuple, dict[str, str]] = {}
    for key, stats in grouped.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        row_key, col_key = key[:len(table.rows)], key[len(table.rows):]
        col = " / ".join(f"{c}={v}" for c, v in zip(table.columns, col_key)) or table.metric
        text = _fmt(stats["mean"], stats["std"], int(stats["count"]), table.digits)
        if stats["reference"] is not None:
            text += f" [paper {_published(stats['reference'], table.digits)}]"
        out_rows.setdefault(row_key, {})[col] = text
    index = pd.MultiIndex.from_tuples(list(out_rows), names=table.rows) if len(table.rows) > 1 \
        else pd.Index([k[0] for k in out_rows], name=table.rows[0])
    result = pd.DataFrame(list(out_rows.values()), index=index)
    result = result[sorted(result.columns, key=_sort_key)].fillna("—")
    return result.reset_index()


def metric_direction(df: pd.DataFrame, metric: str, registry=None) -> bool | None:
    """Whether higher ``metric`` is better, as the tasks of ``df``'s rows declare it
    (:func:`kddbench.metrics.direction`); raises :class:`KddbenchError` when no task declares
    it or two tasks disagree."""
    from .metrics import direction
    from .plugins import get_registry

    registry = registry or get_registry()
    tasks = sorted(set(df["task"].dropna())) if "task" in df else [None]
    found = {direction(metric, t, registry) for t in tasks or [None]}
    if len(found) > 1:
        raise KddbenchError(f"metric {metric!r}: the tasks {', '.join(tasks)} disagree on "
                            "which way is better")
    return found.pop()


def _column_label(table, col_key: tuple) -> str:
    return " / ".join(f"{c}={v}" for c, v in zip(table.columns, col_key)) if table.columns \
        else table.metric


def _row_frame(out: dict[tuple, dict[str, str]], table) -> pd.DataFrame:
    """``{row key: {column label: text}}`` as a table: the row keys as columns, then the
    table's columns in order."""
    if not out:
        return pd.DataFrame()
    index = pd.MultiIndex.from_tuples(list(out), names=table.rows) if len(table.rows) > 1 \
        else pd.Index([k[0] for k in out], name=table.rows[0])
    frame = pd.DataFrame(list(out.values()), index=index)
    frame = frame[sorted(frame.columns, key=_sort_key)].fillna("—")
    return frame.reset_index()


def versus_baseline(df: pd.DataFrame, table, registry=None) -> pd.DataFrame:
    """Each row's difference from the table's ``baseline`` row, per column, with a verdict.

    The verdict is :func:`kddbench.metrics.verdict` (the rule ``compare`` uses), the noise
    allowed being twice the standard error of the difference of means (sqrt(s1^2/n1 +
    s2^2/n2), seeds as samples), the direction the one the rows' task declares for the metric
    (``TaskSpec.metrics``).  With one seed on either side there is no spread to judge by, and
    the verdict says so; so does a metric no task declares a direction for.
    """
    from .metrics import verdict as judge

    ok = _table_rows(df, table) if table.baseline else None
    if ok is None:
        return pd.DataFrame()
    try:
        higher = metric_direction(ok, table.metric, registry)
        undeclared = None
    except KddbenchError:
        higher, undeclared = None, "no declared direction: no verdict"
    keys = list(table.rows) + list(table.columns)
    stats = ok.groupby(keys, sort=False)[table.metric].agg(["mean", "std", "count"])
    is_base = [_matches(dict(zip(keys, k if isinstance(k, tuple) else (k,))), table.baseline)
               for k in stats.index]
    base = stats[is_base]
    if base.empty:
        return pd.DataFrame()
    base_by_col = {k[len(table.rows):] if isinstance(k, tuple) else (): r
                   for k, r in base.iterrows()}
    out: dict[tuple, dict[str, str]] = {}
    for key, r in stats[[not b for b in is_base]].iterrows():
        key = key if isinstance(key, tuple) else (key,)
        row_key, col_key = key[:len(table.rows)], key[len(table.rows):]
        b = base_by_col.get(col_key)
        if b is None:
            continue
        diff = r["mean"] - b["mean"]
        if r["count"] < 2 or b["count"] < 2:
            verdict = "one seed: no verdict"
        elif undeclared:
            verdict = undeclared
        else:
            se = math.sqrt(r["std"] ** 2 / r["count"] + b["std"] ** 2 / b["count"])
            verdict = judge(diff, 2 * se, higher)
        col = _column_label(table, col_key)
        out.setdefault(row_key, {})[col] = f"{diff:+.{table.digits}f} ({verdict})"
    return _row_frame(out, table)


def paired_versus_baseline(df: pd.DataFrame, table, registry=None) -> pd.DataFrame:
    """Each row's per-seed difference from the baseline row, paired by seed: the mean of
    ``row(seed) - baseline(seed)`` over the seeds both have, ± its standard error, with the
    same verdict rule at twice that error.  A seed fixes every random stream a cell draws
    from (the evaluation network's initialisation and batch order, a set initialised from the
    same real images as the baseline's), so the pairs share their noise and the per-seed
    difference is what the method itself changes.  Needs two shared seeds."""
    from .metrics import verdict as judge

    ok = _table_rows(df, table) if table.baseline else None
    if ok is None or "seed" not in ok:
        return pd.DataFrame()
    try:
        higher, undeclared = metric_direction(ok, table.metric, registry), None
    except KddbenchError:
        higher, undeclared = None, "no declared direction: no verdict"
    keys = list(table.rows) + list(table.columns)
    values = {}
    for key, group in ok.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        values[key] = group.groupby("seed")[table.metric].mean().to_dict()
    base = {k[len(table.rows):]: v for k, v in values.items()
            if _matches(dict(zip(keys, k)), table.baseline)}
    out: dict[tuple, dict[str, str]] = {}
    for key, by_seed in values.items():
        row_key, col_key = key[:len(table.rows)], key[len(table.rows):]
        b = base.get(col_key)
        if b is None or _matches(dict(zip(keys, key)), table.baseline):
            continue
        diffs = [by_seed[s] - b[s] for s in sorted(set(by_seed) & set(b))]
        if len(diffs) < 2:
            continue
        mean = sum(diffs) / len(diffs)
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
        verdict = undeclared or judge(mean, 2 * se, higher)
        col = _column_label(table, col_key)
        out.setdefault(row_key, {})[col] = (f"{mean:+.{table.digits}f} ± {se:.{table.digits}f}"
                                            f" (n={len(diffs)}, {verdict})")
    return _row_frame(out, table)


def versus_paper(df: pd.DataFrame, table, references: Sequence) -> pd.DataFrame:
    """One line per table entry that has a published number: ours, the paper's, the
    difference, and why they differ (the reference's ``note``) with its ``source``."""
    grouped = _grouped(df, table, references)
    if grouped is None:
        return pd.DataFrame()
    keys = list(table.rows) + list(table.columns)
    lines = []
    for key, stats in grouped.iterrows():
        ref = stats["reference"]
        if ref is None:
            continue
        key = key if isinstance(key, tuple) else (key,)
        lines.append({**dict(zip(keys, key)),
                      "ours": _fmt(stats["mean"], stats["std"], int(stats["count"]),
                                   table.digits),
                      "paper": _published(ref, table.digits),
                      "ours − paper": f"{stats['mean'] - ref.value:+.{table.digits}f}",
                      "why they differ": ref.note or "—",
                      "source": ref.source or "—"})
    return pd.DataFrame(lines)


def to_markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_no finished results yet_\n"
    return frame.to_markdown(index=False, disable_numparse=True) + "\n"


def failures(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "status" not in df:
        return pd.DataFrame()
    bad = df[df["status"] != "ok"]
    cols = [c for c in ["experiment", "cell_id", "seed", "error"] if c in bad]
    return bad[cols]


def table_cells(suite, table) -> list:
    """The suite's cells a table draws from (its experiments, its ``where``)."""
    exps = set(table.experiments or [])
    return [c for c in getattr(suite, "cells", [])
            if (not exps or c.experiment in exps)
            and (not table.where or matches(cell_row(c), table.where))]


def _seeds_text(seeds: Sequence[int]) -> str:
    if not seeds:
        return "no seeds"
    if len(seeds) > 4 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        listed = f"{seeds[0]}–{seeds[-1]}"
    else:
        listed = ", ".join(map(str, seeds))
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}: {listed}"


def _values_text(axis: str, values: list[str]) -> str:
    text = ", ".join(values)
    if len(values) <= 6 and len(text) <= 60:
        return f"{axis} {text}"
    return f"{axis}: 1 value" if len(values) == 1 else f"{axis}: {len(values)} values"


def scope_lines(suite) -> list[str]:
    """What ran, per experiment, derived from the suite's cells (never from its prose): the
    seeds, the values of every axis, the protocols; and the ``--set`` overrides that shaped
    them, since a budget text written in the suite file does not follow them."""
    by_exp: dict[str, list] = {}
    for cell in getattr(suite, "cells", []):
        by_exp.setdefault(cell.experiment, []).append(cell)
    if not by_exp:
        return []
    overrides = list(getattr(suite, "overrides", ()) or ())
    head = "**As run** (derived from the suite's cells"
    if overrides:
        head += (", with " + ", ".join(f"`--set {o}`" for o in overrides)
                 + " applied: where the budget text above disagrees, this is what ran")
    lines = [head + "):", ""]
    for exp, cells in by_exp.items():
        parts = [_seeds_text(sorted({c.seed for c in cells}))]
        axes: list[str] = []
        for cell in cells:
            axes += [a for a in cell.axes if a not in axes]
        for axis in axes:
            values = list(dict.fromkeys(label(c.axes.get(axis)) for c in cells
                                        if c.axes.get(axis) is not None))
            if values:
                parts.append(_values_text(axis, values))
        protocols = list(dict.fromkeys(f"`{c.protocol}`" for c in cells))
        parts.append(f"protocol{'s' if len(protocols) > 1 else ''} {', '.join(protocols)}")
        lines.append(f"- `{exp}` ({len(cells)} cells): " + "; ".join(parts))
    return lines + [""]


def render_report(suite, df: pd.DataFrame, references: Sequence = (),
                  figures: Mapping[str, str] | None = None) -> str:
    """The whole Markdown report of a suite: budget, protocols, tables, failures.

    ``figures`` maps a table's name to the file name of its figure, shown under the table."""
    figures = figures or {}
    lines = [f"# {suite.name}", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    if suite.budget:
        lines += ["**Budget used:** " + suite.budget.strip(), ""]
    if not df.empty:
        env_cols = [c for c in ("device", "torch", "git") if c in df]
        if env_cols:
            env = df[env_cols].dropna().drop_duplicates().astype(str)
            lines += ["Produced on: " + "; ".join(", ".join(f"{c} {r[c]}" for c in env_cols)
                                                   for _, r in env.iterrows()), ""]
        n_ok = int((df["status"] == "ok").sum())
        n_bad = len(df) - n_ok
        lines += [f"Cells finished: {n_ok} of the suite's {len(suite.cells)}"
                  + (f" ({n_bad} failed)" if n_bad else "")
                  + ("" if n_ok == len(suite.cells) else
                     " — a partial report: `kddbench run` resumes the rest") + ".", ""]
        if "wall_time_s" in df and df["wall_time_s"].notna().any():
            lines += [f"Compute: {df['wall_time_s'].sum():.0f} s summed over cells "
                      f"(each cell's wall time, everything it computed included).", ""]
    lines += scope_lines(suite)
    used = sorted(set(df["protocol"])) if "protocol" in df and not df.empty else []
    if used:
        lines += ["## Protocols", ""]
        for name in used:
            recipe = suite.protocols.get(name, {})
            lines.append(f"- `{name}`: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
        selects = sorted({str(suite.protocols.get(n, {}).get("select", "last")) for n in used})
        tested = ("after the last epoch" if selects == ["last"] else
                  f"on the model each protocol's `select` ({', '.join(selects)}) chooses")
        lines += ["", "Per-cell recipe overrides are in `results.csv` (column `recipe`); test "
                  f"metrics are measured {tested}, never at the best epoch on the test set.", ""]
    for table in suite.tables:
        lines += [f"## {table.title or table.name}", ""]
        if table.note:
            lines += [table.note.strip(), ""]
        seeds = sorted({c.seed for c in table_cells(suite, table)})
        lines += [f"Metric: `{table.metric}`, mean ± std over the seeds of each entry "
                  f"({_seeds_text(seeds)}; n = seeds finished)."
                  + (" `[paper x]`: the published number." if references else ""), ""]
        lines.append(to_markdown(leaderboard(df, table, references)))
        if table.name in figures:
            lines += [f"![{table.title or table.name}]({figures[table.name]})", ""]
        versus = versus_baseline(df, table)
        if not versus.empty:
            base = ", ".join(f"{k} = {v}" for k, v in table.baseline.items())
            lines += [f"Difference from the baseline row ({base}); `better`/`worse`: beyond "
                      "twice the standard error over seeds.", "", to_markdown(versus)]
            paired = paired_versus_baseline(df, table)
            if not paired.empty:
                lines += ["The same, paired by seed: the mean per-seed difference ± its "
                          "standard error (a seed fixes the evaluation network, its batch "
                          "order and any real images a set starts from, so a pair shares its "
                          "noise); `better`/`worse`: beyond twice that error.", "",
                          to_markdown(paired)]
        published = versus_paper(df, table, references)
        if not published.empty:
            lines += ["Against the published numbers: what each difference comes from.", "",
                      to_markdown(published)]
    lines += render_sections(getattr(suite, "sections", []), df, suite)
    bad = failures(df)
    if not bad.empty:
        lines += ["## Failed cells", "", to_markdown(bad)]
    return "\n".join(lines)


def budget_figure(df: pd.DataFrame, table, references: Sequence, out_dir: Path) -> Path | None:
    """``plot_<table>.png`` in ``out_dir``: the table's metric against its one numeric column
    axis (a budget such as IPC), one line per row; ``None`` when the table has no such shape."""
    from .plots import curve_points, save_budget_curve

    lines = curve_points(_grouped(df, table, references), table)
    if not lines:
        return None
    return save_budget_curve(Path(out_dir) / f"plot_{table.name}.png", lines,
                             xlabel=table.columns[0], ylabel=table.metric,
                             title=table.title or table.name)


def write_reports(suite, out_dir: str | Path) -> pd.DataFrame:
    """Rebuild ``results.csv``, ``leaderboard.md`` and one CSV per table from the records."""
    out = Path(out_dir)
    store = ResultStore(out)
    order = {c.cell_id: i for i, c in enumerate(suite.cells)}
    # a record is this suite's cell by its id, whichever suite computed it (a subset run first,
    # another suite with the same cell): its experiment is the one this suite names it in
    experiment = {c.cell_id: c.experiment for c in suite.cells}
    df = tidy({**r, "experiment": experiment[r["cell_id"]]} for r in store.records()
              if r.get("cell_id") in order)
    if not df.empty:  # rows and columns of every table follow the suite's own order
        df = df.sort_values("cell_id", key=lambda ids: ids.map(order), kind="stable")
        df = df.reset_index(drop=True)
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    figures = {}
    for table in suite.tables:
        path = budget_figure(df, table, suite.references, out)
        if path is not None:
            figures[table.name] = path.name
    atomic_write_text(out / "leaderboard.md",
                      render_report(suite, df, suite.references, figures))
    for table in suite.tables:
        frame = leaderboard(df, table, suite.references)
        atomic_write_text(out / f"leaderboard_{table.name}.csv", frame.to_csv(index=False))
    write_section_files(getattr(suite, "sections", []), df, out, suite)
    return df
