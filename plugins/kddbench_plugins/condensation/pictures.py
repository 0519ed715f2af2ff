"""Pictures of a synthesised set (at initialisation and at the end) and its loss curve.

Written beside a suite's report, under ``<report dir>/pictures/``::

    <dataset>_<method>_ipc<k>_seed<s>[_<tag>]_init.png    one row per class
    <dataset>_<method>_ipc<k>_seed<s>[_<tag>]_final.png
    <dataset>_<method>_ipc<k>_seed<s>[_<tag>]_curve.png   loss (and parts) per iteration

``<tag>`` is a short hash of the method options that differ from their defaults and of an
explicit ``distill_arch``, so two configurations never overwrite each other's pictures.
Matplotlib draws through its Agg canvas directly (no global backend switch).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from kddbench.cells import short_hash
from kddbench.data import denormalise

MAX_PER_CLASS = 10  # columns shown per class


def picture_stem(cell, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    method = cell["method"]
    changed = {k: v for k, v in options.items() if defaults.get(k) != v}
    stem = f"{cell['dataset']}_{method}_ipc{cell.get('ipc')}_seed{cell.seed}"
    extra = {}
    if changed:
        extra["options"] = changed
    if cell.get("distill_arch"):
        extra["distill_arch"] = cell.get("distill_arch")
    if extra:
        stem += "_" + short_hash(extra, 6)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", stem)


def mosaic(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mean: Sequence[float],
           std: Sequence[float], per_class: int = MAX_PER_CLASS) -> torch.Tensor:
    """(rows * H, cols * W, C) in [0, 1]: row k holds up to ``per_class`` images of class k."""
    x = denormalise(images.detach().float().cpu(), mean, std).clamp(0, 1)
    labels = labels.detach().cpu()
    if labels.dim() == 2:
        labels = labels.argmax(1)
    n, c, h, w = x.shape
    counts = torch.bincount(labels, minlength=num_classes)
    cols = max(1, min(per_class, int(counts.max()) if n else 1))
    grid = torch.ones(num_classes, cols, c, h, w)
    for k in range(num_classes):
        members = x[labels == k][:cols]
        grid[k, :members.shape[0]] = members
    # (rows, cols, C, H, W) -> (rows*H, cols*W, C)
    return grid.permute(0, 3, 1, 4, 2).reshape(num_classes * h, cols * w, c)


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def save_grid(path: Path, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
              mean: Sequence[float], std: Sequence[float], title: str) -> Path:
    grid = mosaic(images, labels, len(classes), mean, std)
    rows, cols = len(classes), grid.shape[1] // images.shape[-1]
    fig = _figure(min(2.0 + 0.6 * cols, 14.0), min(1.0 + 0.45 * rows, 40.0))
    ax = fig.add_subplot(1, 1, 1)
    arr = grid.numpy()
    if arr.shape[2] == 1:
        ax.imshow(arr[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(arr, interpolation="nearest")
    h = images.shape[-2]
    ax.set_yticks([h * (k + 0.5) for k in range(rows)])
    ax.set_yticklabels([str(c) for c in classes], fontsize=7)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def save_curve(path: Path, curve: list[dict[str, float]], title: str) -> Path:
    steps = [row.get("step", i) for i, row in enumerate(curve)]
    keys = [k for k in curve[0] if k != "step"] if curve else []
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    finite: list[float] = []
    for key in keys:
        values = [row.get(key, math.nan) for row in curve]
        finite += [v for v in values if v == v and abs(v) != math.inf]
        ax.plot(steps, values, label=key, linewidth=1)
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:  # spans decades
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    if len(keys) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_pictures(out_dir: Path, cell, options: Mapping[str, Any],
                   defaults: Mapping[str, Any], data, syn) -> list[Path]:
    """The init/final grids and the curve of ``syn`` (a synthesised set with a curve);
    ``options`` are the method's options in this cell, ``defaults`` the method's defaults."""
    stem = picture_stem(cell, options, defaults)
    folder = Path(out_dir) / "pictures"
    label = f"{cell['dataset']} {cell['method']} IPC {cell.get('ipc')} seed {cell.seed}"
    return [
        save_grid(folder / f"{stem}_init.png", syn.init_images, syn.labels, data.classes,
                  data.mean, data.std, f"{label}: initialisation"),
        save_grid(folder / f"{stem}_final.png", syn.images, syn.labels, data.classes,
                  data.mean, data.std, f"{label}: final"),
        save_curve(folder / f"{stem}_curve.png", syn.curve, f"{label}: matching loss"),
    ]
