"""Report sections: plugin-contributed parts of a suite file and of its report.

A section type is a :class:`kddbench.specs.SectionSpec` registered through the
``kddbench_report_sections`` hook.  It owns one top-level key of suite files, an array of
tables (``[[ranking]]`` for ``key = "ranking"``), and its factory returns an object with::

    parse(entry, path, scope) -> (parsed, problems)
        validate one entry (a mapping) at ``kddbench validate`` time; ``problems`` is a list
        of ``(key.path, message)``; ``parsed`` is whatever ``markdown``/``write`` take back
        (ignored when there are problems).  ``scope`` (:class:`SectionScope`) knows the suite's
        experiments, their axes and their expanded cells, and checks names against them.
    markdown(parsed, df, suite) -> str
        the section's Markdown, heading included, from the tidy results table
        (:func:`kddbench.report.tidy`; finished and failed rows alike).
    write(parsed, df, out_dir, suite) -> list[Path]        (optional)
        extra files beside the report: CSVs, figures.
    implicit(experiments) -> list[entry]                   (optional)
        the entries a task contributes when it names the section in ``TaskSpec.sections`` and
        the suite writes no entry of that key; ``experiments`` are the names of the suite's
        experiments of that task.

This module imports neither torch nor pandas: validation stays cheap.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .errors import unknown_message

CORE_KEYS = ("suite", "protocols", "experiments", "tables", "references")
# Columns every tidy results row has besides the axes: a table may show them too.
ID_AXES = ("experiment", "task", "protocol", "seed")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Problem = tuple[str, str]


def label(value: Any) -> str:
    """How a value reads in a report: ``None`` as ``—``, ``10.0`` as ``10``, lists joined
    by ``+`` (as the tidy table stores them)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """``row`` has, for every key of ``where``, the value (or one of the values) it lists."""
    for key, wanted in where.items():
        wanted_list = wanted if isinstance(wanted, list) else [wanted]
        if label(row.get(key)) not in [label(w) for w in wanted_list]:
            return False
    return True


def key_problems(path: str, entry: Mapping[str, Any], allowed: Iterable[str],
                 required: Iterable[str] = ()) -> list[Problem]:
    """Unknown keys (with did-you-mean) and missing required keys of one entry."""
    allowed = list(allowed)
    out: list[Problem] = []
    for key in entry:
        if key not in allowed:
            out.append((f"{path}.{key}", unknown_message("key", key, allowed, listing="allowed",
                                                         say_name=False)))
    for key in required:
        if key not in entry:
            out.append((f"{path}.{key}", "missing"))
    return out


def plain_name(value: Any) -> bool:
    """A name usable in a file name: letters, digits, ``_.-``, no separators, no ``..``."""
    return isinstance(value, str) and bool(_PLAIN_NAME.match(value)) and ".." not in value


@dataclass
class ExperimentScope:
    task: str
    axes: tuple[str, ...]
    cells: list = field(default_factory=list)


@dataclass
class SectionScope:
    """What a section entry may refer to: the suite's experiments, their axes, their cells."""

    experiments: dict[str, ExperimentScope]
    registry: Any = None

    def experiment(self, name: Any, path: str) -> list[Problem]:
        if isinstance(name, str) and name in self.experiments:
            return []
        return [(path, unknown_message("experiment", str(name), self.experiments))]

    def axes_of(self, experiments: Iterable[str] | None = None) -> list[str]:
        """The axes of these experiments (all of the suite's when ``None``), then the columns
        every row has (experiment, task, protocol, seed)."""
        names = list(self.experiments) if not experiments else list(experiments)
        axes: list[str] = []
        for name in names:
            for axis in getattr(self.experiments.get(name), "axes", ()):
                if axis not in axes:
                    axes.append(axis)
        return axes + [a for a in ID_AXES if a not in axes]

    def axis(self, name: Any, path: str, experiments: Iterable[str] | None = None,
             every: bool = True) -> list[Problem]:
        """A problem unless ``name`` is an axis of every one of ``experiments`` (of at least
        one of them with ``every=False``); unknown names get a did-you-mean."""
        if not isinstance(name, str):
            return [(path, f"expected an axis name (a string), got {name!r}")]
        names = list(self.experiments) if not experiments else list(experiments)
        if not names:
            return []
        known = [n for n in names if n in self.experiments]
        if not known:
            return []
        lacking = [n for n in known if name not in self.axes_of([n])]
        if len(lacking) == len(known):
            return [(path, unknown_message("axis", name, self.axes_of(known),
                                           listing=f"axes of {', '.join(known)}"))]
        if lacking and every:
            return [(path, f"axis {name!r} is not an axis of experiment(s) "
                     f"{', '.join(lacking)}")]
        return []

    def metric(self, name: Any, path: str,
               experiments: Iterable[str] | None = None) -> list[Problem]:
        """A problem unless every task of ``experiments`` that declares its metrics
        (``TaskSpec.metrics``) declares ``name`` (a name, or a pattern such as ``*_time_s``)."""
        from .metrics import find

        if not isinstance(name, str):
            return [(path, f"expected a metric name (a string), got {name!r}")]
        names = list(self.experiments) if not experiments else list(experiments)
        tasks = list(dict.fromkeys(self.experiments[n].task for n in names
                                   if n in self.experiments))
        for task in tasks:
            try:
                declared = tuple(getattr(self.registry.get("task", task), "metrics", ()) or ())
            except Exception:  # an unknown task is reported with its experiment
                continue
            if declared and find(name, declared) is None:
                return [(path, unknown_message("metric", name, [m.name for m in declared],
                                               listing=f"metrics of task {task!r}"))]
        return []

    def direction(self, name: str, experiments: Iterable[str] | None = None) -> bool | None:
        """Whether higher ``name`` is better, as the experiments' tasks declare it (``True``
        when no task declares it: the reports' long-standing reading of a score)."""
        from .metrics import find

        names = list(self.experiments) if not experiments else list(experiments)
        for n in names:
            try:
                declared = getattr(self.registry.get("task", self.experiments[n].task),
                                   "metrics", ())
            except Exception:
                continue
            spec = find(name, declared or ())
            if spec is not None:
                return spec.higher_is_better
        return True

    def cells(self, experiments: Iterable[str] | None = None) -> list:
        names = list(self.experiments) if not experiments else list(experiments)
        return [c for n in names for c in getattr(self.experiments.get(n), "cells", [])]

    def pooling(self, path: str, shown: Sequence[str], experiments: Iterable[str] | None = None,
                where: Mapping[str, Any] | None = None, pooled: Sequence[str] = ("seed",),
                what: str = "one table entry") -> list[Problem]:
        """Problems for cells that would be averaged into one entry although they differ in
        something the entry does not show.  Entries are keyed by the labels of the ``shown``
        axes; seeds (``pooled``) are averaged on purpose.  Any other axis whose values differ
        within one entry is named, with its values; cells that agree on every axis but differ
        in their recipe or options (e.g. two experiments with different protocols) are named
        by experiment and protocol.  The experiment and protocol names are labels, not part of
        a cell's identity: cells of two experiments with one configuration (more seeds of the
        same thing, say) pool like the seeds of one."""
        groups: dict[tuple, list] = {}
        for cell in self.cells(experiments):
            row = cell_row(cell)
            if where and not matches(row, where):
                continue
            groups.setdefault(tuple(label(row.get(a)) for a in shown), []).append(cell)
        ignore = set(shown) | set(pooled) | {"experiment", "protocol"}
        hidden: dict[str, set[str]] = {}
        configs: dict[tuple, set] = {}
        for key, members in groups.items():
            rows = [cell_row(c) for c in members]
            axes = {a for r in rows for a in r} - ignore - {"task"}
            differing = False
            for axis in sorted(axes):
                values = {label(r.get(axis)) for r in rows}
                if len(values) > 1:
                    hidden.setdefault(axis, set()).update(values)
                    differing = True
            if not differing and len({c.config_id for c in members}) > 1:
                configs[key] = {(c.experiment, c.protocol) for c in members}
        out: list[Problem] = []
        for axis, values in hidden.items():
            out.append((path, f"{what} would average cells that differ in {axis!r} "
                        f"({', '.join(sorted(values))}); show {axis!r} in the rows or "
                        f"columns, or keep one value with `where`"))
        for key, which in list(configs.items())[:1]:
            exps = sorted({e for e, _ in which})
            protos = sorted({p for _, p in which})
            detail = (f"experiments {', '.join(exps)}" if len(exps) > 1 else
                      f"protocols {', '.join(protos)}" if len(protos) > 1 else
                      f"experiment {exps[0]}")
            out.append((path, f"{what} ({', '.join(f'{a}={v}' for a, v in zip(shown, key))}) "
                        f"would average cells with different recipes or options ({detail}); "
                        "show 'experiment' or 'protocol' in the rows or columns, or narrow "
                        "`experiments`/`where`"))
        return out


    def values(self, path: str, axis: str, wanted: Any, experiments: Iterable[str] | None = None,
               what: str = "") -> list[Problem]:
        """A problem for each of ``wanted`` (a value or a list) that no cell of ``experiments``
        has on ``axis``: a filter that matches nothing would leave a silently empty table."""
        cells = self.cells(experiments)
        if not cells:
            return []
        seen = {label(cell_row(c).get(axis)) for c in cells}
        out = []
        for value in wanted if isinstance(wanted, list) else [wanted]:
            if label(value) not in seen:
                out.append((path, unknown_message(what or f"value of {axis!r}", label(value),
                                                  sorted(seen), listing="values of its cells")))
        return out


def cell_row(cell) -> dict[str, Any]:
    """A cell as a results row would key it: its axes, experiment, task, protocol, seed."""
    row = dict(cell.axes)
    row.update({"experiment": cell.experiment, "task": cell.task, "protocol": cell.protocol,
                "seed": cell.seed})
    return row


@dataclass
class ParsedSection:
    """One validated entry of a section key, ready to render."""

    key: str
    index: int
    spec: Any
    section: Any
    entry: Any
    implicit: bool = False

    @property
    def path(self) -> str:
        return f"{self.key}[{self.index}]"


def section_specs(registry) -> dict[str, Any]:
    """Registered section types by the suite key they own."""
    specs = getattr(registry, "specs", {}).get("section", {})
    return {spec.suite_key: spec for spec in specs.values()}


def section_keys(registry) -> list[str]:
    """The top-level suite keys that section plugins own (core keys excluded)."""
    return [k for k in section_specs(registry) if k not in CORE_KEYS]


def experiment_scope(raw_suite: Mapping[str, Any], registry,
                     experiment_names: Iterable[str] = (), cells: Iterable = ()) -> SectionScope:
    """The scope entries are checked against: each named experiment with its task's axes
    (read from ``raw_suite`` and the registry) and its expanded ``cells``."""
    names = list(experiment_names)
    by_name: dict[str, ExperimentScope] = {}
    raw_exps = raw_suite.get("experiments", [])
    for i, exp in enumerate(raw_exps if isinstance(raw_exps, list) else []):
        if not isinstance(exp, Mapping):
            continue
        name = str(exp.get("name", f"experiment{i}"))
        if names and name not in names:
            continue
        task_name = exp.get("task")
        axes: tuple[str, ...] = ()
        try:
            axes = tuple(registry.get("task", task_name).axes)
        except Exception:  # an unknown task is the suite's problem, reported there
            pass
        by_name.setdefault(name, ExperimentScope(str(task_name), axes))
    for name in names:
        by_name.setdefault(name, ExperimentScope("", ()))
    for cell in cells:
        if cell.experiment in by_name:
            by_name[cell.experiment].cells.append(cell)
    return SectionScope(by_name, registry)


def parse_sections(raw_suite: Mapping[str, Any], registry, experiment_names: Iterable[str],
                   cells: Iterable = ()) -> tuple[list[ParsedSection], list[Problem]]:
    """Validate every section entry of a suite: the ``[[key]]`` entries of each registered
    section type, and the sections the suite's tasks always contribute.

    Returns the parsed sections in suite order and the problems as ``(key.path, message)``.
    ``cells`` (the suite's expanded cells) let sections refuse entries that would average
    cells differing in an axis they do not show."""
    specs = section_specs(registry)
    scope = experiment_scope(raw_suite, registry, experiment_names, cells)
    parsed: list[ParsedSection] = []
    problems: list[Problem] = []
    for key, spec in specs.items():
        if key in CORE_KEYS:
            problems.append((key, f"section plugin {spec.name!r} claims the core suite key "
                             f"{key!r}; it is ignored"))
            continue
        if key not in raw_suite:
            continue
        items = raw_suite[key]
        if not isinstance(items, list):
            problems.append((key, f"expected an array of tables ([[{key}]] entries), got "
                             f"{type(raw_suite[key]).__name__}"))
            continue
        section = _load(spec, key, problems)
        if section is None:
            continue
        for i, entry in enumerate(items):
            path = f"{key}[{i}]"
            if not isinstance(entry, Mapping):
                problems.append((path, f"expected a table, got {type(entry).__name__}"))
                continue
            value, found = _parse(section, spec, entry, path, scope)
            problems.extend(found)
            if not found:
                parsed.append(ParsedSection(key, i, spec, section, value))
    parsed.extend(_task_sections(raw_suite, registry, specs, scope, problems))
    return parsed, problems


def _task_sections(raw_suite, registry, specs, scope: SectionScope,
                   problems: list[Problem]) -> list[ParsedSection]:
    """The sections the suite's tasks name in ``TaskSpec.sections``, for keys the suite
    writes no entry of."""
    by_task: dict[str, list[str]] = {}
    for name, exp in scope.experiments.items():
        by_task.setdefault(exp.task, []).append(name)
    out: list[ParsedSection] = []
    for task_name, exps in by_task.items():
        try:
            task = registry.get("task", task_name)
        except Exception:
            continue
        for section_name in getattr(task, "sections", ()):
            spec = next((s for s in specs.values() if s.name == section_name), None)
            if spec is None:
                available = [s.name for s in specs.values()]
                problems.append((f"experiments ({', '.join(exps)})",
                                 f"task {task_name!r} names "
                                 + unknown_message("report section", section_name, available)))
                continue
            if spec.suite_key in raw_suite:
                continue  # the suite writes its own entries
            section = _load(spec, spec.suite_key, problems)
            if section is None:
                continue
            implicit = getattr(section, "implicit", None)
            if implicit is None:
                problems.append((spec.suite_key, f"task {task_name!r} names section "
                                 f"{spec.name!r}, which has no implicit entries"))
                continue
            try:
                entries = list(implicit(list(exps)))
            except Exception as exc:  # a broken plugin is reported, never a traceback
                problems.append((spec.suite_key, f"report section {spec.name!r}: implicit() "
                                 f"failed: {type(exc).__name__}: {exc}"))
                continue
            for i, entry in enumerate(entries):
                path = f"{spec.suite_key}[{i}] (from task {task_name!r})"
                value, found = _parse(section, spec, entry, path, scope)
                problems.extend(found)
                if not found:
                    out.append(ParsedSection(spec.suite_key, i, spec, section, value, True))
    return out


def _load(spec, key: str, problems: list[Problem]):
    """The section object of ``spec``, or ``None`` with a problem when its plugin is broken."""
    try:
        return spec.load()()
    except Exception as exc:
        problems.append((key, f"report section {spec.name!r} failed to load: "
                         f"{type(exc).__name__}: {exc}"))
        return None


def _parse(section, spec, entry, path: str, scope) -> tuple[Any, list[Problem]]:
    """``section.parse`` with a broken plugin contained: an exception or a malformed answer
    is one problem naming the section, never a traceback."""
    from .errors import KddbenchError

    try:
        value, found = section.parse(entry, path, scope)
        found = [(str(where), str(message)) for where, message in found]
    except KddbenchError as exc:
        return None, [(path, str(exc))]
    except Exception as exc:
        return None, [(path, f"report section {spec.name!r} failed on this entry: "
                       f"{type(exc).__name__}: {exc}")]
    return value, found


def render_sections(sections: Sequence[ParsedSection], df, suite) -> list[str]:
    """The Markdown of every parsed section, in order; a section whose plugin fails says so
    in its place (with a warning) instead of taking the whole report down."""
    out = []
    for s in sections:
        try:
            out.append(s.section.markdown(s.entry, df, suite))
        except Exception as exc:
            message = (f"report section {s.spec.name!r} ({s.path}) failed: "
                       f"{type(exc).__name__}: {exc}")
            warnings.warn(message, stacklevel=2)
            out.append(f"## {s.path}\n\n_{message}_\n")
    return out


def write_section_files(sections: Sequence[ParsedSection], df, out_dir, suite) -> list:
    """Every file the parsed sections write beside the report (a failing one is a warning)."""
    paths = []
    for s in sections:
        write = getattr(s.section, "write", None)
        if write is None:
            continue
        try:
            paths.extend(write(s.entry, df, out_dir, suite) or ())
        except Exception as exc:
            warnings.warn(f"report section {s.spec.name!r} ({s.path}) could not write its "
                          f"files: {type(exc).__name__}: {exc}", stacklevel=2)
    return paths


TABLE_ROLES = ("rows", "columns")


def table_problems(items: Any, scope: SectionScope) -> list[Problem]:
    """What a ``[[tables]]`` entry gets wrong about the experiments it draws from.

    ``rows``, ``columns`` and the keys of ``where`` and ``baseline`` must name axes of the
    table's experiments (all of the suite's when it names none) or the columns every row has
    (``experiment``, ``task``, ``protocol``, ``seed``); the values of ``where`` and
    ``baseline`` must be values some cell has; ``metric`` must be one the experiments' tasks
    declare (``TaskSpec.metrics``; a task that declares none is not checked).  A table never averages cells that differ in
    something it does not show: one entry of the table (its row and column labels) may hold
    several seeds of one configuration, nothing else; an entry that would pool cells differing
    in a hidden axis, or with different recipes or options, is refused with the axis named,
    so the suite shows it (``rows``/``columns``) or keeps one value (``where``).  ``name``
    names the table's files, so it is a plain name."""
    out: list[Problem] = []
    if not isinstance(items, list):
        return out  # the suite reports the wrong shape
    for i, table in enumerate(items):
        path = f"tables[{i}]"
        if not isinstance(table, Mapping):
            continue
        if "name" in table and not plain_name(table["name"]):
            out.append((f"{path}.name", f"{table['name']!r} is not a plain name (letters, "
                        "digits, '_', '.', '-'): it names the table's CSV and figure files"))
        exps = table.get("experiments", [])
        exps = [e for e in (exps if isinstance(exps, list) else [exps])
                if isinstance(e, str) and e in scope.experiments]
        if table.get("experiments") and not exps:
            continue  # unknown experiments are reported by the suite
        shown: list[str] = []
        found: list[Problem] = []
        for role in TABLE_ROLES:
            value = table.get(role, [])
            keys = value if isinstance(value, list) else [value]
            if role == "rows" and "rows" in table and not keys:
                found.append((f"{path}.rows", "at least one row axis"))
            for j, key in enumerate(keys):
                where = f"{path}.{role}[{j}]" if isinstance(value, list) else f"{path}.{role}"
                problems = scope.axis(key, where, exps, every=False)
                if not problems and key in shown:
                    problems = [(where, f"axis {key!r} is shown twice (rows and columns "
                                 "hold each axis once)")]
                found += problems
                if not problems:
                    shown.append(key)
        for role in ("where", "baseline"):
            filt = table.get(role, {})
            if not isinstance(filt, Mapping):
                found.append((f"{path}.{role}", f"expected a table of axis = value(s), got "
                              f"{filt!r}"))
                continue
            for key, wanted in filt.items():
                problems = scope.axis(key, f"{path}.{role}.{key}", exps, every=False)
                found += problems or scope.values(f"{path}.{role}.{key}", key, wanted, exps)
        found += scope.metric(table.get("metric", "accuracy"), f"{path}.metric", exps)
        out += found
        if found:
            continue
        where = table.get("where", {})
        out += scope.pooling(path, shown, exps or None, where=where,
                             what=f"table {table.get('name', i)!r}: one entry")
    return out
