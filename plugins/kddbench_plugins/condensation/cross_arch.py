"""Cross-architecture generalisation: the ``cross_arch`` task and its ``[[cross_arch]]`` section.

A cell evaluates one condensed set — made by any method at any budget on ``distill_arch`` — on
one ``eval_arch`` with the shared protocol.  The set is the condensation family's artifact (the
same key as the ``condense`` task's), so a set condensed once serves every architecture of the
pool and every suite on the same cache: it is computed only when no run has stored it yet
(the task declares it, so the runner builds it once, before the pool's cells, and
``kddbench release`` can ship it with the report).

The section lays the cells out as the DC papers' cross-architecture tables do: methods (and
budgets) as rows, evaluation architectures as columns, the distillation architecture's column
marked, then the same matrix as the change from the distillation architecture's accuracy,
paired seed by seed.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from kddbench.sections import key_problems, label

from .task import run as condense_run


def run(cell, ctx) -> dict:
    before = ctx.artifacts.hits
    metrics = condense_run(cell, ctx)
    metrics["set_reused"] = int(ctx.artifacts.hits > before)
    return metrics


KEYS = ("experiment", "metric", "title", "note", "digits")


def _fmt(values, digits: int) -> str:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f} (n=1)"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


class CrossArchSection:
    """``[[cross_arch]]`` entries: ``experiment`` (a cross_arch experiment; implicit for each
    one), ``metric`` (default accuracy), ``title``, ``note``, ``digits``."""

    def parse(self, entry: Mapping[str, Any], path: str, scope):
        problems = key_problems(path, entry, KEYS, ("experiment",))
        if "experiment" in entry:
            problems += scope.experiment(entry["experiment"], f"{path}.experiment")
            if not problems:
                for axis in ("method", "distill_arch", "eval_arch"):
                    problems += scope.axis(axis, f"{path}.experiment", [entry["experiment"]])
        metric = entry.get("metric", "accuracy")
        if not isinstance(metric, str):
            problems.append((f"{path}.metric", f"expected a metric name, got {metric!r}"))
        elif "experiment" in entry and not problems:
            problems += scope.metric(metric, f"{path}.metric", [entry["experiment"]])
        digits = entry.get("digits", 2)
        if not isinstance(digits, int) or isinstance(digits, bool) or not 0 <= digits <= 6:
            problems.append((f"{path}.digits", f"an integer in [0, 6], got {digits!r}"))
        return (None if problems else dict(entry)), problems

    def implicit(self, experiments):
        return [{"experiment": name} for name in experiments]

    def markdown(self, parsed, df, suite) -> str:
        metric = parsed.get("metric", "accuracy")
        digits = int(parsed.get("digits", 2))
        title = parsed.get("title") or f"Cross-architecture {metric} ({parsed['experiment']})"
        lines = [f"## {title}", ""]
        rows = df[(df["experiment"] == parsed["experiment"])]
        if "status" in rows:
            rows = rows[rows["status"] == "ok"]
        if rows.empty or metric not in rows:
            return "\n".join(lines + ["no finished cells yet", ""])
        group = [a for a in ("dataset", "method", "ipc", "distill_arch") if a in rows]
        archs = sorted({label(a) for a in rows["eval_arch"]})
        table = {}
        for _, r in rows.iterrows():
            key = tuple(label(r[g]) for g in group)
            table.setdefault(key, {}).setdefault(label(r["eval_arch"]), {})[int(r["seed"])] = \
                float(r[metric])
        head = [*group, *archs]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in sorted(table):
            distill = key[group.index("distill_arch")] if "distill_arch" in group else None
            cells = [_fmt(list(table[key].get(a, {}).values()), digits)
                     + (" †" if a == distill else "") for a in archs]
            lines.append("| " + " | ".join([*key, *cells]) + " |")
        lines += ["", "† the distillation architecture. Change from it, seed by seed "
                  "(same set, same seed; negative = worse):", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in sorted(table):
            distill = key[group.index("distill_arch")] if "distill_arch" in group else None
            base = table[key].get(distill, {})
            cells = []
            for a in archs:
                here = table[key].get(a, {})
                diffs = [here[s] - base[s] for s in here if s in base]
                cells.append("—" if a == distill or not diffs else _fmt(diffs, digits))
            lines.append("| " + " | ".join([*key, *cells]) + " |")
        if parsed.get("note"):
            lines += ["", str(parsed["note"]).strip()]
        return "\n".join(lines) + "\n"
