"""The ``[[nas]]`` report section: validation of its entries and their Markdown and CSV."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kddbench.sections import key_problems, plain_name

KEYS = ("name", "title", "note", "proxy", "target", "by", "metric", "top_k", "group", "set_time")
DEFAULT_BY = "eval_arch"  # the ``condense`` task's; ``candidate`` where the experiments have it
CANDIDATE_AXIS = "candidate"
DEFAULT_GROUP = ("dataset", "method", "ipc")


@dataclass
class NASEntry:
    """Architecture search on a proxy set: rank the candidates (values of axis ``by``) by their
    score after training on each proxy configuration of experiment ``proxy`` (one per value of
    the ``group`` axes; ``proxy`` may be a list of experiments, one row each per
    configuration) and compare with their ranking after training on the data of experiment
    ``target``."""

    name: str
    proxy: str | list[str]
    target: str
    by: str = DEFAULT_BY
    metric: str = "accuracy"
    top_k: list[int] = field(default_factory=lambda: [5, 10, 20])
    group: list[str] = field(default_factory=lambda: list(DEFAULT_GROUP))
    title: str = ""
    note: str = ""
    higher_is_better: bool = True  # as the experiments' task declares ``metric``
    set_time: bool = False  # also show each proxy set's making time and the speed-up with it

    @property
    def proxies(self) -> list[str]:
        return [self.proxy] if isinstance(self.proxy, str) else list(self.proxy)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class NASSection:
    """``[[nas]]`` entries: ``name``, ``proxy`` (an experiment name or a list of them) and
    ``target`` (an experiment name), ``by`` (the candidate axis, default ``candidate`` where the
    experiments have it, else ``eval_arch``), ``group`` (proxy axes, one row per value; default
    those of dataset/method/ipc the proxies have, after ``experiment`` with several proxies),
    ``top_k``, ``metric``, ``title``, ``note``, ``set_time`` (true: also the seconds each proxy
    set took to make, once per set, and the speed-up with them counted)."""

    def parse(self, entry: Mapping[str, Any], path: str, scope):
        problems = key_problems(path, entry, KEYS, ("name", "proxy", "target"))
        if "name" in entry and not plain_name(entry["name"]):
            problems.append((f"{path}.name", f"{entry['name']!r} is not a plain name (letters, "
                             "digits, '_', '.', '-'): it names the section's CSV file"))
        if "set_time" in entry and not isinstance(entry["set_time"], bool):
            problems.append((f"{path}.set_time", f"expected true or false, got "
                             f"{entry['set_time']!r}"))
        for key in ("title", "note", "metric", "by"):
            if key in entry and not isinstance(entry[key], str):
                problems.append((f"{path}.{key}", f"expected a string, got {entry[key]!r}"))
        if "target" in entry:
            problems += scope.experiment(entry["target"], f"{path}.target")
        if "proxy" in entry:
            proxies = _as_list(entry["proxy"])
            if not proxies:
                problems.append((f"{path}.proxy", "an empty list: name at least one experiment"))
            for i, name in enumerate(proxies):
                where = f"{path}.proxy" if isinstance(entry["proxy"], str) else f"{path}.proxy[{i}]"
                problems += scope.experiment(name, where)
                if name == entry.get("target"):
                    problems.append((where, f"{name!r} is the target; a proxy is another "
                                     "experiment"))
        top_k = _as_list(entry.get("top_k", NASEntry("", "", "").top_k))
        if not top_k or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 3
                                for k in top_k):
            problems.append((f"{path}.top_k", "a list of integers >= 3 (a rank correlation "
                             f"needs three candidates), got {entry.get('top_k')!r}"))
        if problems:
            return None, problems
        proxies, target = [str(p) for p in _as_list(entry["proxy"])], str(entry["target"])
        proxy = proxies[0] if isinstance(entry["proxy"], str) else proxies
        default_by = CANDIDATE_AXIS if CANDIDATE_AXIS in scope.axes_of([*proxies, target]) \
            else DEFAULT_BY
        by = str(entry.get("by", default_by))
        problems += scope.axis(by, f"{path}.by", [*proxies, target])
        if "group" in entry:
            group = _as_list(entry["group"])
            for i, axis in enumerate(group):
                problems += scope.axis(axis, f"{path}.group[{i}]", proxies, every=False)
        else:  # the default: those of the usual grouping axes the proxies have
            group = [g for g in DEFAULT_GROUP if g in scope.axes_of(proxies)]
        if len(proxies) > 1 and "experiment" not in group:
            group = ["experiment", *group]
        metric = str(entry.get("metric", "accuracy"))
        problems += scope.metric(metric, f"{path}.metric", [*proxies, target])
        higher = scope.direction(metric, [target])
        if higher is None:
            problems.append((f"{path}.metric", f"{metric!r} has no better side (its task "
                             "declares no direction), so it cannot rank candidates"))
        if by in group:
            problems.append((f"{path}.group", f"{by!r} is the candidate axis (`by`); it cannot "
                             "also group the proxies"))
        if problems:
            return None, problems
        for name in proxies:
            problems += scope.pooling(f"{path}.group", [*group, by], [name],
                                      what=f"a proxy ranking (experiment {name!r})")
        problems += scope.pooling(f"{path}.target", [by], [target],
                                  what=f"the target ranking (experiment {target!r})")
        if problems:
            return None, problems
        return NASEntry(str(entry["name"]), proxy, target, by, metric, [int(k) for k in top_k],
                        [str(g) for g in group], str(entry.get("title", "")),
                        str(entry.get("note", "")), bool(higher),
                        bool(entry.get("set_time", False))), []

    def markdown(self, spec: NASEntry, df, suite) -> str:
        from .ranking import nas_table, rank_points

        lines = [f"## {spec.title or spec.name}", ""]
        if spec.note:
            lines += [spec.note.strip(), ""]
        lines += [f"Candidates: the values of `{spec.by}`; proxy: experiment `{'`, `'.join(spec.proxies)}`; "
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
