"""The regression gate: compare a current results table with a baseline, cell by cell.

Cells are seed-deterministic, so each baseline cell is paired with the current cell of the same
identity (``config_id`` and ``seed``) and every pair is judged on its own: a configuration
regresses when any one of its seeds moved in the bad direction by more than the metric's
tolerance (``--tolerance``, per metric pattern, the longest pattern wins).  Which direction is
bad comes from the task that declares the metric (:class:`kddbench.metrics.MetricSpec` in
``TaskSpec.metrics``), never from the metric's name; :func:`kddbench.metrics.verdict` is the
rule.  Rows are labelled by their own axes (the columns the records' ``axes`` became).

The gate fails closed: it passes only when every finished baseline cell was compared.  The exit
status (:class:`kddbench.errors.ExitCode`) is

* ``REGRESSION`` (1) when a configuration got worse (or a metric with no direction changed);
* ``NOT_COMPARABLE`` (5) when a configuration is present under other plugin or protocol
  versions (``allow_version_change`` pairs those on their axes and seeds instead);
* ``NOTHING_COMPARED`` (4) when nothing was compared, a metric column is absent, a table is
  empty or holds only failed cells, a baseline configuration has no finished seed on either
  side, or a baseline cell is missing from the current results (``allow_missing`` turns a
  missing cell or configuration into a warning);
* ``OK`` (0) otherwise.

This module imports pandas only when it compares (``import kddbench`` stays cheap).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from . import metrics as metrics_mod
from .errors import ExitCode, KddbenchError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_METRICS = ("accuracy",)
DEFAULT_TOLERANCE = 1.0
#: tidy columns that are neither axes nor metrics (see :func:`kddbench.report.tidy`)
PROVENANCE_COLUMNS = ("versions", "options", "recipe", "device", "git", "torch", "wall_time_s",
                      "error", "axes")
REGRESSION, IMPROVED, OK, CHANGED = "REGRESSION", "improved", "ok", "CHANGED"


@dataclass
class Comparison:
    """What the gate found.

    rows:           one row per compared configuration and metric (labels, ``metric``, paired
                    ``seeds``, ``baseline``/``current`` means, mean ``delta``, the ``worst`` seed's
                    delta, ``allowed``, ``verdict``).
    pairs:          one row per compared cell and metric (``seed``, both values, its verdict).
    problems:       why the gate cannot pass although nothing regressed (one line each).
    warnings:       what was let through on request (``allow_missing``, ``allow_version_change``).
    not_comparable: configurations present on both sides under different versions.
    """

    rows: "pd.DataFrame"
    regressions: int
    improvements: int
    not_comparable: "pd.DataFrame" = None  # type: ignore[assignment]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pairs: "pd.DataFrame" = None  # type: ignore[assignment]
    allow_version_change: bool = False

    def __post_init__(self):
        import pandas as pd

        if self.not_comparable is None:
            self.not_comparable = pd.DataFrame()
        if self.pairs is None:
            self.pairs = pd.DataFrame()

    @property
    def exit_code(self) -> ExitCode:
        if self.regressions:
            return ExitCode.REGRESSION
        if not self.not_comparable.empty and not self.allow_version_change:
            return ExitCode.NOT_COMPARABLE
        if self.problems or self.rows.empty:
            return ExitCode.NOTHING_COMPARED
        return ExitCode.OK

    @property
    def reasons(self) -> list[str]:
        """One line per reason the gate did not pass (empty when it passed)."""
        out = ["nothing was compared"] if self.rows.empty else []
        if self.regressions:
            out.append(f"{self.regressions} regression(s)")
        if not self.not_comparable.empty and not self.allow_version_change:
            out.append(f"{len(self.not_comparable)} configuration(s) present under other plugin "
                       "or protocol versions (--allow-version-change compares them anyway)")
        return out + self.problems


# ---------------------------------------------------------------------------------------------
# tolerances and directions


def tolerance_for(metric: str, tolerances: Mapping[str, float], default: float) -> float:
    """The tolerance of the longest (most specific) pattern matching ``metric``."""
    best, best_len = default, -1
    for pattern, value in tolerances.items():
        if fnmatch.fnmatchcase(metric, pattern) and len(pattern) > best_len:
            best, best_len = float(value), len(pattern)
    return best


def parse_tolerances(items: Sequence[str]) -> tuple[float, dict[str, float]]:
    """``["2.0", "macro_f1=3", "*time*=inf"]`` -> (default 2.0, {pattern: tolerance})."""
    default, patterns = DEFAULT_TOLERANCE, {}
    for item in items:
        pat, eq, val = str(item).rpartition("=")
        try:
            number = float(val)
        except ValueError:
            number = float("nan")
        if math.isnan(number) or number < 0 or (eq and not pat.strip()):
            raise KddbenchError(f"--tolerance {item!r}: expected POINTS or PATTERN=POINTS with "
                                "POINTS a number >= 0 (or inf)")
        if eq:
            patterns[pat.strip()] = number
        else:
            default = number
    return default, patterns


def parse_directions(higher: Sequence[str] = (), lower: Sequence[str] = ()) -> dict[str, bool]:
    """``--higher-is-better``/``--lower-is-better`` patterns -> ``{pattern: higher_is_better}``."""
    both = sorted(set(higher) & set(lower))
    if both:
        raise KddbenchError(f"metric {both[0]!r} is named both higher- and lower-is-better")
    return {**{m: True for m in higher}, **{m: False for m in lower}}


# ---------------------------------------------------------------------------------------------
# reading and checking tables


def read_table(path: str | Path, role: str = "table") -> "pd.DataFrame":
    """A results table from a report directory (its records) or a ``results.csv`` file.

    Anything that is not one (a binary file, a CSV that does not parse) is a
    :class:`KddbenchError` naming the file; an empty file is an empty table (what a run that
    finished no cell writes), which :func:`compare` reports as nothing compared.
    """
    import pandas as pd

    if str(path).startswith("history:"):  # the last good entry of a regression history
        from .history import baseline_table

        return baseline_table(str(path)[len("history:"):])
    path = Path(path)
    if path.is_dir():
        from .report import tidy
        from .store import ResultStore

        records = list(ResultStore(path).records())
        if records:  # the records name their own axes: keep that in an ``axes`` column
            df = tidy(records)
            axes = {r.get("cell_id"): ";".join(r.get("axes", {})) for r in records}
            df["axes"] = df["cell_id"].map(axes)
            return df
        if (path / "results.csv").is_file():
            return read_table(path / "results.csv", role)
        raise KddbenchError(f"{role} {path}: a directory with neither records nor results.csv")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KddbenchError(f"{role} {path}: cannot read it ({exc.strerror or exc})") from None
    if b"\0" in raw[:65536]:
        raise KddbenchError(f"{role} {path}: a binary file, not a results CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KddbenchError(f"{role} {path}: not UTF-8 text, not a results CSV") from None
    if not text.strip():
        return pd.DataFrame()
    import io

    try:
        return pd.read_csv(io.StringIO(text), dtype={"cell_id": str, "config_id": str},
                           low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KddbenchError(f"{role} {path}: not a results CSV ({first})") from None


def check_table(df: "pd.DataFrame", role: str) -> "pd.DataFrame":
    """The table with typed identity columns, or a :class:`KddbenchError` saying what is wrong.
    An empty table passes (it has nothing to compare, which :func:`compare` reports)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise KddbenchError(f"{role}: expected a results table (a DataFrame or a CSV path), "
                            f"not {type(df).__name__}")
    if df.empty and not len(df.columns):
        return df
    missing = [c for c in ("config_id", "seed") if c not in df.columns]
    if missing:
        raise KddbenchError(f"{role} has no {' or '.join(missing)} column: pass a results.csv "
                            "written by kddbench (or a report directory)")
    df = df.copy()
    if df.empty:
        return df
    ids = df["config_id"]
    if ids.isna().any():
        raise KddbenchError(f"{role}: row {int(ids.isna().values.argmax()) + 2} has no config_id")
    df["config_id"] = ids.astype(str)
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != seeds.round())
    if bad.any():
        row = int(bad.values.argmax())
        raise KddbenchError(f"{role}: seed {df['seed'].iloc[row]!r} (row {row + 2}) is not an "
                            "integer")
    df["seed"] = seeds.astype("int64")
    df["status"] = df["status"].astype(str) if "status" in df else "ok"
    dup = df.duplicated(["config_id", "seed"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise KddbenchError(f"{role}: cell config_id={first['config_id']} seed={first['seed']} "
                            "appears more than once (concatenated tables?)")
    return df


def _numeric(df: "pd.DataFrame", metric: str, role: str) -> "pd.Series":
    import pandas as pd

    col = df[metric]
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna() & (col.astype(str).str.strip() != "")
    if bad.any():
        row = int(bad.values.argmax())
        raise KddbenchError(f"{role}: metric {metric!r} holds {col.iloc[row]!r} (row {row + 2}), "
                            "not a number")
    return values


# ---------------------------------------------------------------------------------------------
# axes (labels)


def _core_columns() -> set[str]:
    from .report import ID_COLUMNS

    return set(ID_COLUMNS) | set(PROVENANCE_COLUMNS)


def _task_axes(registry, task: str) -> list[str] | None:
    try:
        spec = registry.get("task", task)
    except KeyError:
        return None
    axes = getattr(spec, "axes", ()) or ()
    if isinstance(axes, Mapping):
        return [str(k) for k in axes]
    return [a if isinstance(a, str) else str(getattr(a, "name", a)) for a in axes]


def axis_columns(df: "pd.DataFrame", registry=None) -> list[str]:
    """The columns of ``df`` that are its cells' axes, in table order.

    A table with an ``axes`` column (axis names joined by ``;``) says it itself; otherwise the
    axes are those the rows' tasks declare.  Cells of a task no installed plugin provides are
    labelled by their experiment only.
    """
    if df.empty:
        return []
    names: set[str] = set()
    if "axes" in df.columns:
        for value in df["axes"].dropna().astype(str):
            names.update(n for n in value.replace(",", ";").split(";") if n)
    elif "task" in df.columns:
        for task in df["task"].dropna().astype(str).unique():
            if registry is None:
                from .plugins import get_registry

                registry = get_registry()
            names.update(_task_axes(registry, task) or ())
    core = _core_columns()
    return [c for c in df.columns if c in names and c not in core]


def _key(value: Any) -> str:
    from .report import _label

    return _label(value)


def _describe(labels: Mapping[str, Any], config_id: str) -> str:
    shown = " ".join(f"{k}={_key(v)}" for k, v in labels.items()
                     if k not in ("experiment", "task") and _key(v) != "—")
    head = str(labels.get("experiment", "")) or "config"
    return f"{head}[{shown}] ({config_id})" if shown else f"{head} ({config_id})"


# ---------------------------------------------------------------------------------------------
# the comparison


def compare(baseline: "pd.DataFrame", current: "pd.DataFrame",
            metrics: Sequence[str] = DEFAULT_METRICS, tolerance: float = DEFAULT_TOLERANCE,
            tolerances: Mapping[str, float] | None = None, allow_version_change: bool = False,
            allow_missing: bool = False, directions: Mapping[str, bool] | None = None,
            registry=None) -> Comparison:
    """Pair every finished baseline cell with the current cell of the same identity and judge
    each pair with :func:`kddbench.metrics.verdict` (see the module docstring).

    ``tolerance`` is the allowed change per cell (in the metric's units) and ``tolerances``
    ``{pattern: allowed}`` refines it per metric; ``directions`` ``{pattern: higher_is_better}``
    overrides the tasks' declarations (needed only for a metric no installed task declares).
    """
    import pandas as pd

    metrics = list(dict.fromkeys(metrics or DEFAULT_METRICS))
    tolerances = dict(tolerances or {})
    base = check_table(baseline, "baseline")
    cur = check_table(current, "current")
    problems: list[str] = []
    warnings: list[str] = []

    for role, df in (("baseline", base), ("current", cur)):
        if df.empty:
            problems.append(f"{role} results are empty: no cells")
        elif not (df["status"] == "ok").any():
            problems.append(f"{role} results hold only failed cells ({len(df)})")
    present = []
    for m in metrics:
        absent = [role for role, df in (("baseline", base), ("current", cur))
                  if not df.empty and m not in df.columns]
        if absent:
            problems.append(f"metric {m!r}: no such column in the {' and '.join(absent)} "
                            "results")
        elif not base.empty and not cur.empty:
            present.append(m)
    if any(df.empty or not (df["status"] == "ok").any() for df in (base, cur)):
        return Comparison(pd.DataFrame(), 0, 0, problems=problems)
    for m in present:
        base[m] = _numeric(base, m, "baseline")
        cur[m] = _numeric(cur, m, "current")

    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    axes = axis_columns(base, registry)
    axes += [c for c in axis_columns(cur, registry) if c not in axes]
    label_cols = [c for c in ("experiment", "task") if c in base.columns] + axes

    def labels_of(rows: pd.DataFrame) -> dict[str, Any]:
        first = rows.iloc[0]
        return {c: first[c] if c in rows.columns else None for c in label_cols}

    def label_key(labels: Mapping[str, Any]) -> tuple:
        return tuple(_key(labels.get(c)) for c in label_cols)

    cur_groups = {cid: g for cid, g in cur.groupby("config_id", sort=False)}
    cur_by_labels: dict[tuple, list[str]] = {}
    for cid, g in cur_groups.items():
        cur_by_labels.setdefault(label_key(labels_of(g)), []).append(cid)

    def versions_of(rows: pd.DataFrame) -> str:
        return str(rows["versions"].iloc[0]) if "versions" in rows.columns else ""

    rows, pairs, not_comparable = [], [], []
    base_ids = set(base["config_id"])
    claimed = set(base_ids)  # current configurations the baseline accounts for
    regressions = improvements = 0
    direction_cache: dict[tuple, bool | None] = {}
    digits_cache: dict[tuple, int] = {}
    for m in present:
        if base.loc[base["status"] == "ok", m].isna().all():
            problems.append(f"metric {m!r}: no finished baseline cell reports it")

    for cid, bgroup in base.groupby("config_id", sort=False):
        labels = labels_of(bgroup)
        name = _describe(labels, cid)
        bok = bgroup[bgroup["status"] == "ok"]
        if bok.empty:
            problems.append(f"baseline configuration {name} has no finished seed: refresh the "
                            "baseline")
            continue
        target = cid
        if cid not in cur_groups:
            others = [o for o in cur_by_labels.get(label_key(labels), []) if o not in base_ids]
            changed = [o for o in others if versions_of(cur_groups[o]) != versions_of(bgroup)]
            claimed.update(others)
            if changed:
                not_comparable.append({**{c: labels.get(c) for c in label_cols},
                                       "versions_base": versions_of(bgroup),
                                       "versions_cur": versions_of(cur_groups[changed[0]])})
                if not allow_version_change:
                    continue
                if len(changed) > 1:
                    problems.append(f"baseline configuration {name} matches {len(changed)} "
                                    "current configurations under other versions: cannot pair")
                    continue
                warnings.append(f"{name}: compared with {changed[0]} although versions differ")
                target = changed[0]
            else:
                why = (f" (current holds the same axes as {', '.join(others)}: its options or "
                       "recipe changed)") if others else ""
                text = f"baseline configuration {name} is missing from the current results{why}"
                (warnings if allow_missing else problems).append(text)
                continue
        cgroup = cur_groups[target]
        cok = cgroup[cgroup["status"] == "ok"]
        if cok.empty:
            problems.append(f"baseline configuration {name} has no finished seed in the current "
                            f"results ({len(cgroup)} failed)")
            continue
        cseeds = set(cok["seed"])
        lost = [int(s) for s in bok["seed"] if s not in cseeds]
        if lost:
            failed = set(cgroup["seed"]) - cseeds
            text = f"{name}: baseline seed(s) {', '.join(map(str, lost))} " + (
                "not finished" if set(lost) <= failed else "missing") + " in the current results"
            (warnings if allow_missing else problems).append(text)
        b_by_seed = bok.set_index("seed")
        c_by_seed = cok.set_index("seed")
        seeds = [int(s) for s in bok["seed"] if s in cseeds]
        task = str(labels.get("task")) if labels.get("task") is not None else None
        for m in present:
            bvals = b_by_seed[m]
            if bvals.isna().all():
                continue  # this configuration does not report the metric
            if (task, m) not in direction_cache:
                direction_cache[(task, m)] = metrics_mod.direction(m, task, registry, directions)
                spec = metrics_mod.find(m, metrics_mod.task_metrics(registry, task) or ()) \
                    if registry is not None and task is not None else None
                digits_cache[(task, m)] = spec.digits if spec is not None else 2
            higher = direction_cache[(task, m)]
            allowed = tolerance_for(m, tolerances, tolerance)
            deltas, verdicts = [], []
            for s in seeds:
                b, c = bvals.loc[s], c_by_seed[m].loc[s]
                if pd.isna(b):
                    continue
                if pd.isna(c):
                    problems.append(f"{name} seed {s}: the current cell reports no {m!r}")
                    continue
                delta = float(c) - float(b)
                v = metrics_mod.verdict(delta, allowed, higher)
                deltas.append((s, delta))
                verdicts.append(v)
                pairs.append({"config_id": cid, "seed": s, "metric": m, "baseline": float(b),
                              "current": float(c), "delta": delta, "allowed": allowed,
                              "verdict": v})
            if not deltas:
                continue
            worst_seed, worst = _worst(deltas, higher)
            if metrics_mod.WORSE in verdicts:
                verdict = REGRESSION
            elif metrics_mod.CHANGED in verdicts:
                verdict = CHANGED
            elif all(v == metrics_mod.BETTER for v in verdicts):
                verdict = IMPROVED
            else:
                verdict = OK
            regressions += verdict in (REGRESSION, CHANGED)
            improvements += verdict == IMPROVED
            used = [s for s, _ in deltas]
            rows.append({**{c: labels.get(c) for c in label_cols}, "metric": m,
                         "seeds": len(used),
                         "baseline": float(bvals.loc[used].mean()),
                         "current": float(c_by_seed[m].loc[used].mean()),
                         "delta": float(pd.Series([d for _, d in deltas]).mean()),
                         "worst": worst, "worst_seed": worst_seed, "allowed": allowed,
                         "verdict": verdict, "digits": digits_cache[(task, m)],
                         "config_id": cid})
    new = [cid for cid in cur_groups if cid not in claimed]
    if new:
        warnings.append(f"{len(new)} current configuration(s) have no baseline and were not "
                        "gated (refresh the baseline to gate them)")
    if allow_version_change and not_comparable:
        warnings.append(f"{len(not_comparable)} configuration(s) compared across plugin or "
                        "protocol versions")
    return Comparison(pd.DataFrame(rows), regressions, improvements,
                      pd.DataFrame(not_comparable), problems, warnings, pd.DataFrame(pairs),
                      allow_version_change)


def _worst(deltas: list[tuple[int, float]], higher: bool | None) -> tuple[int, float]:
    """The seed whose change is worst: the most negative for higher-is-better metrics, the
    most positive for lower-is-better ones, the largest in size for metrics with no direction."""
    def badness(item):
        d = item[1]
        if math.isnan(d):
            return math.inf
        return -d if higher else d if higher is False else abs(d)

    return max(deltas, key=badness)


# ---------------------------------------------------------------------------------------------
# printing


def format_comparison(result: Comparison) -> str:
    """The gate's report: a table of compared configurations, then what kept it from passing."""
    from .report import _label

    lines = []
    if not result.rows.empty:
        shown = result.rows.copy()
        fmt = {}
        for col in ("baseline", "current", "delta", "allowed"):
            fmt[col] = [_num(v, d, signed=col == "delta") for v, d in
                        zip(shown[col], shown["digits"])]
        worst = [f"{_num(w, d, signed=True)} (seed {s})" for w, s, d in
                 zip(shown["worst"], shown["worst_seed"], shown["digits"])]
        for col, values in fmt.items():
            shown[col] = values
        shown["worst seed"] = worst
        shown = shown.drop(columns=["config_id", "digits", "worst", "worst_seed"])
        labels = [c for c in shown.columns if c not in
                  ("metric", "seeds", "baseline", "current", "delta", "worst seed", "allowed",
                   "verdict")]
        labels = [c for c in labels if shown[c].map(_label).ne("—").any() and c != "task"]
        shown = shown[labels + ["metric", "seeds", "baseline", "current", "delta", "worst seed",
                                "allowed", "verdict"]]
        for col in labels:
            shown[col] = shown[col].map(_label)
        shown["seeds"] = shown["seeds"].map(str)
        lines.append(shown.to_markdown(index=False, disable_numparse=True))
    if not result.not_comparable.empty:
        nc = result.not_comparable.copy()
        for col in nc.columns:
            nc[col] = nc[col].map(_label)
        head = ("VERSIONS DIFFER (compared anyway: --allow-version-change):"
                if result.allow_version_change else
                "NOT COMPARABLE (plugin or protocol versions differ):")
        lines += ["", head,
                  nc.to_markdown(index=False, disable_numparse=True)]
    if result.warnings:
        lines += [""] + [f"warning: {w}" for w in result.warnings]
    reasons = result.reasons
    lines += [""] + [f"FAIL: {r}" for r in reasons if not r.endswith("regression(s)")]
    pairs = len(result.pairs)
    lines.append(f"{result.regressions} regression(s), {result.improvements} improvement(s), "
                 f"{len(result.rows)} comparison(s) ({pairs} cell pair(s)): "
                 + ("PASS" if int(result.exit_code) == 0 else
                    f"FAIL (exit {int(result.exit_code)} {result.exit_code.name})"))
    return "\n".join(ln for i, ln in enumerate(lines)
                     if not (ln == "" and i and lines[i - 1] == "")) + "\n"


def _num(value: float, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf"
    return f"{value:+.{int(digits)}f}" if signed else f"{value:.{int(digits)}f}"
