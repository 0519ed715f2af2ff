"""Rank agreement between a proxy search and the target search, from the tidy results."""
from __future__ import annotations

import pandas as pd

from kddbench.sections import label


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 items."""
    if len(a) < 3:
        return float("nan")
    return float(a.rank().corr(b.rank()))


def nas_table(df: pd.DataFrame, spec) -> pd.DataFrame:
    """Rank correlation between proxy-trained and target-trained candidate architectures.

    One row per proxy configuration (``spec.group`` axes of the proxy experiment): Spearman's
    rho over all candidates and over the top-k candidates of the target ranking, the target
    score of the candidate the proxy would pick against the best one, and the training time
    and stored images each search costs (summed over candidates, mean over seeds).  "Best"
    follows ``spec.higher_is_better`` (the metric's declared direction).
    """
    higher = getattr(spec, "higher_is_better", True)
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty or spec.metric not in ok:
        return pd.DataFrame()
    mean = lambda frame, col: frame.groupby(spec.by)[col].mean()  # noqa: E731  (over seeds)
    target = ok[ok["experiment"] == spec.target]
    proxy = ok[ok["experiment"] == spec.proxy]
    if target.empty or proxy.empty:
        return pd.DataFrame()
    t_score = mean(target, spec.metric)
    t_time = target.groupby([spec.by, "seed"])["train_time_s"].first().groupby("seed").sum()
    group = [g for g in spec.group if g in proxy]
    rows = []
    for key, frame in proxy.groupby(group, dropna=False, sort=False) if group else [((), proxy)]:
        key = key if isinstance(key, tuple) else (key,)
        p_score = mean(frame, spec.metric)
        common = t_score.index.intersection(p_score.index)
        t, p = t_score[common], p_score[common]
        row = {g: label(v) for g, v in zip(group, key)}
        row["candidates"] = len(common)
        row["rho (all)"] = spearman(p, t)
        for k in spec.top_k:
            top = t.sort_values(ascending=not higher).index[:k]
            row[f"rho top-{k}"] = spearman(p[top], t[top]) if len(common) >= k else float("nan")
        chosen = (p.idxmax() if higher else p.idxmin()) if len(p) else None
        row["picked"] = chosen
        row[f"picked {spec.metric} (target)"] = t.get(chosen, float("nan"))
        row[f"best {spec.metric} (target)"] = (t.max() if higher else t.min()) if len(t) \
            else float("nan")
        per_seed = frame.groupby([spec.by, "seed"])["train_time_s"].first().groupby("seed").sum()
        row["search time s (proxy)"] = per_seed.mean()
        row["search time s (target)"] = t_time.mean()
        if "n_train" in frame:
            row["images (proxy)"] = frame["n_train"].max()
            row["images (target)"] = target["n_train"].max()
        rows.append(row)
    return pd.DataFrame(rows)
