"""Rank agreement between a proxy search and the target search, from the tidy results."""
from __future__ import annotations

import pandas as pd

from kddbench.sections import label


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 items."""
    if len(a) < 3:
        return float("nan")
    return float(a.rank().corr(b.rank()))


def _searches(df: pd.DataFrame, spec):
    """``(target rows, [(proxy key labels, proxy rows, proxy scores, target scores), ...])``
    over the candidates both searches trained (scores: mean over seeds); ``None`` when
    either search has no finished cell."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty or spec.metric not in ok:
        return None
    target = ok[ok["experiment"] == spec.target]
    proxies = getattr(spec, "proxies", [spec.proxy])
    proxy = ok[ok["experiment"].isin(proxies)]
    if target.empty or proxy.empty:
        return None
    t_score = target.groupby(spec.by)[spec.metric].mean()
    group = [g for g in spec.group if g in proxy]
    out = []
    for key, frame in proxy.groupby(group, dropna=False, sort=False) if group else [((), proxy)]:
        key = key if isinstance(key, tuple) else (key,)
        p_score = frame.groupby(spec.by)[spec.metric].mean()
        common = t_score.index.intersection(p_score.index)
        out.append(({g: label(v) for g, v in zip(group, key)}, frame, p_score[common],
                    t_score[common]))
    return target, out


def _search_time(frame: pd.DataFrame, spec) -> float:
    """Training time of one search: summed over candidates, mean over seeds."""
    return frame.groupby([spec.by, "seed"])["train_time_s"].first().groupby("seed").sum().mean()


def _set_time(frame: pd.DataFrame) -> float:
    """Seconds the search's training set took to make (a condensation), once per seed (every
    candidate shares the set), mean over seeds; 0 without the column."""
    if "condense_time_s" not in frame:
        return 0.0
    seconds = frame.groupby("seed")["condense_time_s"].max().fillna(0.0)
    return float(seconds.mean()) if len(seconds) else 0.0


def nas_table(df: pd.DataFrame, spec) -> pd.DataFrame:
    """Rank correlation between proxy-trained and target-trained candidate architectures.

    One row per proxy configuration (``spec.group`` axes of the proxy experiment): Spearman's
    rho over all candidates and over the top-k candidates of the target ranking, the target
    score of the candidate the proxy would pick against the best one, the training time and
    stored images each search costs (summed over candidates, mean over seeds) and how many
    times faster the proxy search is, by training time alone and with the time the proxy
    set took to make (condensation, once per set) added; all over the candidates both searches
    trained (a partial run compares like with like).  "Best" follows
    ``spec.higher_is_better`` (the metric's declared direction).
    """
    higher = getattr(spec, "higher_is_better", True)
    found = _searches(df, spec)
    if found is None:
        return pd.DataFrame()
    target, searches = found
    rows = []
    for labels, frame, p, t in searches:
        row = dict(labels)
        row["candidates"] = len(t)
        row["rho (all)"] = spearman(p, t)
        for k in spec.top_k:
            top = t.sort_values(ascending=not higher).index[:k]
            row[f"rho top-{k}"] = spearman(p[top], t[top]) if len(t) >= k else float("nan")
        chosen = (p.idxmax() if higher else p.idxmin()) if len(p) else None
        row["picked"] = chosen
        row[f"picked {spec.metric} (target)"] = t.get(chosen, float("nan"))
        row[f"best {spec.metric} (target)"] = (t.max() if higher else t.min()) if len(t) \
            else float("nan")
        # both searches over the same candidates (a partial run may lack some of either)
        both = target[target[spec.by].isin(t.index)]
        frame = frame[frame[spec.by].isin(t.index)]
        t_time = _search_time(both, spec)
        t_all = t_time + _set_time(both)
        p_time = _search_time(frame, spec)
        row["search time s (proxy)"] = p_time
        row["search time s (target)"] = t_time
        row["speed-up (target / proxy time)"] = t_time / p_time if p_time else float("nan")
        if getattr(spec, "set_time", False) and "condense_time_s" in frame:
            made = _set_time(frame)
            row["set time s (proxy)"] = made
            row["speed-up incl. set time"] = t_all / (p_time + made) if p_time + made \
                else float("nan")
        if "n_train" in frame:
            row["images (proxy)"] = frame["n_train"].max()
            row["images (target)"] = both["n_train"].max()
        rows.append(row)
    return pd.DataFrame(rows)


def rank_points(df: pd.DataFrame, spec) -> dict[str, list[tuple[int, int]]]:
    """``{proxy configuration: [(rank on the target data, rank on the proxy), ...]}``, one
    point per candidate, rank 1 = best (ties: the lower rank)."""
    higher = getattr(spec, "higher_is_better", True)
    found = _searches(df, spec)
    if found is None:
        return {}
    points = {}
    for labels, _, p, t in found[1]:
        if len(t) < 2:
            continue
        t_rank = t.rank(ascending=not higher, method="min").astype(int)
        p_rank = p.rank(ascending=not higher, method="min").astype(int)
        name = ", ".join(f"{k}={v}" for k, v in labels.items()) or ", ".join(
            getattr(spec, "proxies", [spec.proxy]))
        points[name] = [(int(t_rank[c]), int(p_rank[c])) for c in t.index]
    return points


def save_rank_scatter(path, points: dict[str, list[tuple[int, int]]], title: str):
    """Proxy rank against target rank, one marker series per proxy configuration, the
    diagonal (a perfect proxy) dashed; rank 1 = best at the origin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n = max(max(max(a, b) for a, b in pts) for pts in points.values())
    ax.plot([1, n], [1, n], linestyle="--", color="grey", linewidth=0.8, label="perfect proxy")
    for (name, pts), marker in zip(points.items(), "osD^v<>px*"):
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=22, marker=marker, alpha=0.75, label=name)
    ax.set_xlabel("rank when trained on the target data (1 = best)")
    ax.set_ylabel("rank when trained on the proxy")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0.5, n + 0.5)
    ax.set_ylim(0.5, n + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
