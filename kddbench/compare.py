"""The regression gate: compare a current results table with a baseline.

Rows are joined on ``config_id`` (the cell identity without the seed), aggregated over seeds, and
a metric is a regression only when it moved in the bad direction by more than
``max(tolerance, k * seed spread)``, where the spread is the larger standard deviation of the two
sides.  Rows whose plugin or protocol versions differ are never compared: they are listed as
"not comparable" and make the comparison fail with exit status 2 unless ``allow_version_change``.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from .errors import KddbenchError

LOWER_IS_BETTER = ("misclassified", "*time*", "size_mb", "params", "*loss*", "*seconds*")
DEFAULT_METRICS = ("accuracy",)
LABEL_COLUMNS = ("experiment", "task", "dataset", "method", "ipc", "arch", "eval_arch",
                 "student", "teacher", "kd_method")


@dataclass
class Comparison:
    rows: pd.DataFrame
    regressions: int
    improvements: int
    not_comparable: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.not_comparable.empty:
            return 2
        return 1 if self.regressions else 0


def tolerance_for(metric: str, tolerances: Mapping[str, float], default: float) -> float:
    """The tolerance of the longest (most specific) pattern matching ``metric``."""
    best, best_len = default, -1
    for pattern, value in tolerances.items():
        if fnmatch.fnmatchcase(metric, pattern) and len(pattern) > best_len:
            best, best_len = float(value), len(pattern)
    return best


def lower_is_better(metric: str) -> bool:
    return any(fnmatch.fnmatchcase(metric, p) for p in LOWER_IS_BETTER)


def parse_tolerances(items: Sequence[str]) -> tuple[float, dict[str, float]]:
    """``["2.0", "macro_f1=3", "*time*=inf"]`` -> (default 2.0, {pattern: tolerance})."""
    default, patterns = 1.0, {}
    for item in items:
        if "=" in item:
            pat, _, val = item.partition("=")
            patterns[pat.strip()] = float(val)
        else:
            default = float(item)
    return default, patterns


def _aggregate(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    if "status" in df:
        df = df[df["status"] == "ok"]
    present = [m for m in metrics if m in df]
    labels = [c for c in LABEL_COLUMNS if c in df]
    agg = {m: ["mean", "std", "count"] for m in present}
    grouped = df.groupby("config_id").agg(agg)
    grouped.columns = [f"{m}:{s}" for m, s in grouped.columns]
    first = df.groupby("config_id")[labels + ["versions"]].first()
    return first.join(grouped)


def compare(baseline: pd.DataFrame, current: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS,
            tolerance: float = 1.0, tolerances: Mapping[str, float] | None = None,
            spread_k: float = 2.0, allow_version_change: bool = False) -> Comparison:
    for name, df in (("baseline", baseline), ("current", current)):
        if "config_id" not in df:
            raise KddbenchError(f"{name} has no config_id column: pass a results.csv written "
                                "by kddbench (or a report directory)")
    tolerances = dict(tolerances or {})
    base = _aggregate(baseline, metrics)
    cur = _aggregate(current, metrics)
    # configs whose identity changed only by versions are matched by their labels
    joined = base.merge(cur, how="inner", left_index=True, right_index=True,
                        suffixes=(":base", ":cur"))
    missing = sorted(set(base.index) - set(cur.index))
    not_comparable = _version_changes(base, cur)
    rows, regressions, improvements = [], 0, 0
    for config_id, r in joined.iterrows():
        for m in metrics:
            if f"{m}:mean:base" not in r or f"{m}:mean:cur" not in r:
                continue
            b, c = r[f"{m}:mean:base"], r[f"{m}:mean:cur"]
            if pd.isna(b) or pd.isna(c):
                continue
            spread = max(_nz(r[f"{m}:std:base"]), _nz(r[f"{m}:std:cur"]))
            allowed = max(tolerance_for(m, tolerances, tolerance), spread_k * spread)
            delta = c - b
            worse = -delta if not lower_is_better(m) else delta
            verdict = "ok"
            if worse > allowed:
                verdict, regressions = "REGRESSION", regressions + 1
            elif -worse > allowed:
                verdict, improvements = "improved", improvements + 1
            label = {k.split(":")[0]: r[k] for k in r.index
                     if k.endswith(":base") and k.split(":")[0] in LABEL_COLUMNS}
            rows.append({**label, "metric": m, "baseline": b, "current": c, "delta": delta,
                         "allowed": allowed, "n": f"{int(r[f'{m}:count:base'])}/"
                         f"{int(r[f'{m}:count:cur'])}", "verdict": verdict,
                         "config_id": config_id})
    if allow_version_change:
        not_comparable = pd.DataFrame()
    return Comparison(pd.DataFrame(rows), regressions, improvements, not_comparable, missing)


def _nz(x) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _version_changes(base: pd.DataFrame, cur: pd.DataFrame) -> pd.DataFrame:
    """Configs present on both sides under the same labels but with different versions."""
    labels = [c for c in LABEL_COLUMNS if c in base and c in cur]
    if not labels:
        return pd.DataFrame()
    b = base.reset_index()[labels + ["versions", "config_id"]].astype(str)
    c = cur.reset_index()[labels + ["versions", "config_id"]].astype(str)
    merged = b.merge(c, on=labels, suffixes=("_base", "_cur"))
    changed = merged[(merged["versions_base"] != merged["versions_cur"])]
    # a config kept under both versions is comparable through its own id
    changed = changed[~changed["config_id_base"].isin(c["config_id"])]
    return changed[labels + ["versions_base", "versions_cur"]].drop_duplicates()


def format_comparison(result: Comparison, digits: int = 2) -> str:
    lines = []
    if not result.rows.empty:
        from .report import _label

        shown = result.rows.drop(columns=["config_id"]).copy()
        for col in LABEL_COLUMNS:
            if col in shown:
                shown[col] = shown[col].map(_label)
        for col in ("baseline", "current", "delta", "allowed"):
            shown[col] = shown[col].map(lambda v: f"{v:.{digits}f}")
        lines.append(shown.to_markdown(index=False, disable_numparse=True))
    else:
        lines.append("no configuration is present in both tables")
    if not result.not_comparable.empty:
        lines += ["", "NOT COMPARABLE (plugin or protocol versions differ):",
                  result.not_comparable.to_markdown(index=False, disable_numparse=True)]
    if result.missing:
        lines += ["", f"{len(result.missing)} baseline configuration(s) missing from current: "
                  + ", ".join(result.missing[:10])]
    lines += ["", f"{result.regressions} regression(s), {result.improvements} improvement(s), "
              f"{len(result.rows)} comparison(s)"]
    return "\n".join(lines) + "\n"
