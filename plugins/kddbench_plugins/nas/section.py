"""The ``[[nas]]`` report section: validation of its entries and their Markdown and CSV."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kddbench.sections import key_problems, plain_name

KEYS = ("name", "title", "note", "proxy", "target", "by", "metric", "top_k", "group")
DEFAULT_BY = "eval_arch"
DEFAULT_GROUP = ("dataset", "method", "ipc")


@dataclass
class NASEntry:
    """Architecture search on a proxy set: rank the candidates (values of axis ``by``) by their
    score after training on each proxy configuration of experiment ``proxy`` (one per value of
    the ``group`` axes) and compare with their ranking after training on the data of
    experiment ``target``."""

    name: str
    proxy: str
    target: str
    by: str = DEFAULT_BY
    metric: str = "accuracy"
    top_k: list[int] = field(default_factory=lambda: [5, 10, 20])
    group: list[str] = field(default_factory=lambda: list(DEFAULT_GROUP))
    title: str = ""
    note: str = ""
    higher_is_better: bool = True  # as the experiments' task declares ``metric``


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class NASSection:
    """``[[nas]]`` entries: ``name``, ``proxy`` and ``target`` (experiment names), ``by`` (the
    candidate axis, default ``eval_arch``), ``group`` (proxy axes, one row per value; default
    those of dataset/method/ipc the proxy has), ``top_k``, ``metric``, ``title``, ``note``."""

    def parse(self, entry: Mapping[str, Any], path: str, scope):
        problems = key_problems(path, entry, KEYS, ("name", "proxy", "target"))
        if "name" in entry and not plain_name(entry["name"]):
            problems.append((f"{path}.name", f"{entry['name']!r} is not a plain name (letters, "
                             "digits, '_', '.', '-'): it names the section's CSV file"))
        for key in ("title", "note", "metric", "by"):
            if key in entry and not isinstance(entry[key], str):
                problems.append((f"{path}.{key}", f"expected a string, got {entry[key]!r}"))
        for key in ("proxy", "target"):
            if key in entry:
                problems += scope.experiment(entry[key], f"{path}.{key}")
        top_k = _as_list(entry.get("top_k", NASEntry("", "", "").top_k))
        if not top_k or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 3
                                for k in top_k):
            problems.append((f"{path}.top_k", "a list of integers >= 3 (a rank correlation "
                             f"needs three candidates), got {entry.get('top_k')!r}"))
        if problems:
            return None, problems
        proxy, target = str(entry["proxy"]), str(entry["target"])
        by = str(entry.get("by", DEFAULT_BY))
        problems += scope.axis(by, f"{path}.by", [proxy, target])
        if "group" in entry:
            group = _as_list(entry["group"])
            for i, axis in enumerate(group):
                problems += scope.axis(axis, f"{path}.group[{i}]", [proxy])
        else:  # the default: those of the usual grouping axes the proxy has
            group = [g for g in DEFAULT_GROUP if g in scope.axes_of([proxy])]
        metric = str(entry.get("metric", "accuracy"))
        problems += scope.metric(metric, f"{path}.metric", [proxy, target])
        higher = scope.direction(metric, [target])
        if higher is None:
            problems.append((f"{path}.metric", f"{metric!r} has no better side (its task "
                             "declares no direction), so it cannot rank candidates"))
        if by in group:
            problems.append((f"{path}.group", f"{by!r} is the candidate axis (`by`); it cannot "
                             "also group the proxies"))
        if problems:
            return None, problems
        problems += scope.pooling(f"{path}.group", [*group, by], [proxy],
                                  what=f"a proxy ranking (experiment {proxy!r})")
        problems += scope.pooling(f"{path}.target", [by], [target],
                                  what=f"the target ranking (experiment {target!r})")
        if problems:
            return None, problems
        return NASEntry(str(entry["name"]), proxy, target, by, metric, [int(k) for k in top_k],
                        [str(g) for g in group], str(entry.get("title", "")),
                        str(entry.get("note", "")), bool(higher)), []

    def markdown(self, spec: NASEntry, df, suite) -> str:
        from .ranking import nas_table, rank_points

        lines = [f"## {spec.title or spec.name}", ""]
        if spec.note:
            lines += [spec.note.strip(), ""]
        lines += [f"Candidates: the values of `{spec.by}`; proxy: experiment `{spec.proxy}`; "
                  f"target: experiment `{spec.target}`. rho = Spearman rank correlation of "
                  f"`{spec.metric}`, top-k = the k best candidates of the target ranking.", ""]
        frame = nas_table(df, spec)
        lines.append(frame.to_markdown(index=False, floatfmt=".3g", disable_numparse=False)
                     + "\n" if not frame.empty else "_no finished results yet_\n")
        if rank_points(df, spec):
            lines += [f"![{spec.title or spec.name}: proxy rank against target rank]"
                      f"({self.figure_name(spec)})", "",
                      "Each point is a candidate: its rank after training on the target data "
                      "against its rank after training on the proxy (1 = best); on the dashed "
                      "diagonal a proxy would rank it exactly as the target data does.", ""]
        return "\n".join(lines)

    @staticmethod
    def figure_name(spec: NASEntry) -> str:
        return f"nas_{spec.name}.png"

    def write(self, spec: NASEntry, df, out_dir, suite) -> list[Path]:
        from kddbench.store import atomic_write_text

        from .ranking import nas_table, rank_points, save_rank_scatter

        path = Path(out_dir) / f"nas_{spec.name}.csv"
        atomic_write_text(path, nas_table(df, spec).to_csv(index=False))
        paths = [path]
        points = rank_points(df, spec)
        if points:
            paths.append(save_rank_scatter(Path(out_dir) / self.figure_name(spec), points,
                                           spec.title or spec.name))
        return paths
