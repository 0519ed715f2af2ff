"""Figures derived from the stored results: accuracy against budget, one line per method."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence


def _number(label: Any) -> float | None:
    try:
        value = float(label)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def curve_points(grouped, table) -> dict[str, list[tuple[float, float, float, float | None]]]:
    """``{row label: [(x, mean, std, published or None), ...]}`` for a table whose one column
    axis is numeric (a budget such as ``ipc``); ``{}`` when the table is not of that shape or
    no line has two points.  ``grouped`` is the per-(rows, column) summary of the report."""
    if grouped is None or len(table.columns) != 1:
        return {}
    lines: dict[str, list[tuple[float, float, float, float | None]]] = {}
    for key, stats in grouped.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        x = _number(key[-1])
        if x is None:
            continue
        name = " / ".join(str(k) for k in key[:-1])
        std = stats["std"] if stats["count"] > 1 and stats["std"] == stats["std"] else 0.0
        ref = stats["reference"]
        lines.setdefault(name, []).append(
            (x, float(stats["mean"]), float(std), None if ref is None else float(ref.value)))
    return {name: sorted(points) for name, points in lines.items() if len(points) > 1}


def save_budget_curve(path: Path, lines: Mapping[str, Sequence[tuple]], xlabel: str,
                      ylabel: str, title: str) -> Path:
    """Mean ± std over seeds against the budget, log-scaled x; the published number of each
    point, where there is one, as a hollow marker of the line's colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    any_published = False
    for name, points in lines.items():
        xs, means, stds, published = zip(*points)
        line = ax.errorbar(xs, means, yerr=stds, marker="o", markersize=4, capsize=3,
                           linewidth=1.2, label=name)
        colour = line[0].get_color()
        pub = [(x, p) for x, p in zip(xs, published) if p is not None]
        if pub:
            any_published = True
            ax.scatter(*zip(*pub), marker="D", s=30, facecolors="none", edgecolors=colour)
    xs_all = sorted({p[0] for points in lines.values() for p in points})
    if xs_all and xs_all[0] > 0 and xs_all[-1] / xs_all[0] >= 10:
        ax.set_xscale("log")
    ax.set_xticks(xs_all)
    ax.set_xticklabels([f"{x:g}" for x in xs_all])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("\n(hollow diamonds: published numbers)" if any_published else ""),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
