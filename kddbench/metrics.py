"""Metrics declare themselves: which way is better, their unit and how many digits to show.

A task lists the metrics its cells report in ``TaskSpec.metrics``, as :class:`MetricSpec` entries
whose ``name`` is a metric name or an :mod:`fnmatch` pattern (``"*_time_s"``); the most specific
(longest) matching name wins.  Nothing in kddbench guesses a direction from a metric's name:
``kddbench compare`` and the leaderboards ask the declaring task, through :func:`find`.

One rule decides every comparison, :func:`verdict`: a change is ``better`` or ``worse`` only when
it exceeds what is allowed (a tolerance, or a noise estimate), otherwise it is ``within noise``.

Example::

    from kddbench.metrics import MetricSpec

    TaskSpec("train", "my_pkg.tasks:train", axes=("dataset", "arch"),
             metrics=(MetricSpec("accuracy", unit="%", description="top-1 on the test set"),
                      MetricSpec("*_time_s", higher_is_better=False, unit="s")))

This module is cheap to import (no pandas, no torch).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

BETTER, WORSE, NOISE, CHANGED = "better", "worse", "within noise", "changed"


@dataclass(frozen=True)
class MetricSpec:
    """One metric (or a family of metrics, when ``name`` is a pattern) a task reports.

    name:             a metric name, or an fnmatch pattern such as ``"*_time_s"``.
    higher_is_better: the direction of improvement; ``None`` for numbers with no better side
                      (counts of epochs or images: any change beyond the tolerance is a
                      ``changed`` verdict, which the gate treats as a failure).
    unit:             shown in headers, e.g. ``"%"``, ``"s"``, ``"MB"``.
    digits:           decimals when printed.
    description:      one line for the docs and ``kddbench show``.
    """

    name: str
    higher_is_better: bool | None = True
    unit: str = ""
    digits: int = 2
    description: str = ""

    def matches(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.name)


def find(metric: str, specs: Iterable[MetricSpec]) -> MetricSpec | None:
    """The declaration of ``metric`` among ``specs``: its exact name, else the longest
    matching pattern; ``None`` when nothing declares it."""
    best: MetricSpec | None = None
    for spec in specs:
        if spec.name == metric:
            return spec
        if spec.matches(metric) and (best is None or len(spec.name) > len(best.name)):
            best = spec
    return best


def verdict(delta: float, allowed: float, higher_is_better: bool | None = True) -> str:
    """The one verdict rule: ``"better"``, ``"worse"`` or ``"within noise"``.

    ``delta`` is new minus old; a change counts only when its size exceeds ``allowed`` (a
    tolerance, or twice a standard error: the caller decides what noise is).  For a metric with
    no direction (``higher_is_better=None``) a change beyond ``allowed`` is ``"changed"``.
    """
    if delta is None or math.isnan(delta):
        return NOISE if allowed == math.inf else CHANGED
    if abs(delta) <= allowed:
        return NOISE
    if higher_is_better is None:
        return CHANGED
    good = delta if higher_is_better else -delta
    return BETTER if good > 0 else WORSE


def task_metrics(registry, task: str) -> tuple[MetricSpec, ...] | None:
    """The metrics task ``task`` declares, or ``None`` when no installed plugin provides it."""
    try:
        spec = registry.get("task", task)
    except KeyError:
        return None
    return tuple(getattr(spec, "metrics", ()) or ())


def direction(metric: str, task: str | None, registry,
              overrides: Mapping[str, bool] | None = None) -> bool | None:
    """Whether higher ``metric`` is better in cells of ``task``.

    An explicit ``overrides`` entry (``{metric name or pattern: higher_is_better}``) wins;
    otherwise the task's declaration.  Raises :class:`kddbench.errors.KddbenchError` naming the
    metric when neither says.
    """
    from .errors import KddbenchError

    if overrides:
        hit = find(metric, [MetricSpec(k, v) for k, v in overrides.items()])
        if hit is not None:
            return hit.higher_is_better
    if task is None:
        raise KddbenchError(
            f"metric {metric!r}: the results have no task column to ask which way is better; "
            f"pass --higher-is-better {metric} or --lower-is-better {metric}")
    declared = task_metrics(registry, task)
    if declared is None:
        raise KddbenchError(
            f"metric {metric!r}: no installed plugin provides task {task!r}, so nothing declares "
            f"which way is better; install it, or pass --higher-is-better {metric} or "
            f"--lower-is-better {metric}")
    spec = find(metric, declared)
    if spec is None:
        raise KddbenchError(
            f"metric {metric!r} is not declared by task {task!r} (its metrics: "
            f"{', '.join(s.name for s in declared) or 'none'}); declare it in the task's "
            f"TaskSpec.metrics, or pass --higher-is-better {metric} or --lower-is-better {metric}")
    return spec.higher_is_better


def _protocol_metrics() -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("accuracy", True, "%", 2, "top-1 accuracy on the real test set"),
        MetricSpec("macro_f1", True, "%", 2, "macro-averaged F1 on the real test set"),
        MetricSpec("misclassified", False, "images", 0, "test images classified wrongly"),
        MetricSpec("*_time_s", False, "s", 2, "wall-clock seconds of one stage of the cell"),
        MetricSpec("train_images_per_s", True, "images/s", 0, "training throughput"),
        MetricSpec("params", False, "", 0, "parameters of the trained network"),
        MetricSpec("size_mb", False, "MB", 3, "size of the trained network's weights"),
        MetricSpec("train_bytes", False, "B", 0, "bytes of the training images"),
        MetricSpec("n_train", None, "images", 0, "training images the network saw per epoch"),
        MetricSpec("epochs", None, "", 0, "training epochs"),
    )


#: What :func:`kddbench.protocol.train_and_evaluate` reports; a task that trains and tests with
#: the shared protocol adds these to its own ``metrics``.
PROTOCOL_METRICS: tuple[MetricSpec, ...] = _protocol_metrics()
