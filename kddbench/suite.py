"""Suite files: TOML in, validated cells out.

A suite declares experiments as cross-products of axes.  Everything is checked before any
compute, and every problem is reported at once as ``file: key.path: message``.  See
CONTRIBUTING.md ("Suite files") for the format; ``suites/quickstart.toml`` is an example.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import names
from .cells import Cell
from .errors import KddbenchError, suggest
from .plugins import Registry, get_registry
from .protocol import PROTOCOL_VERSION, RECIPE_KEYS, Recipe
from .sections import parse_sections, section_keys

SUITE_KEYS = ("suite", "protocols", "experiments", "tables", "references")  # + section keys
SUITE_META_KEYS = ("name", "description", "budget")
EXPERIMENT_KEYS = ("name", "task", "description", "protocol", "recipe", "seeds", "options",
                   "overrides")
OVERRIDE_KEYS = ("match", "protocol", "recipe", "options", "skip")
TABLE_KEYS = ("name", "title", "experiments", "where", "rows", "columns", "metric", "digits",
              "reference", "note", "baseline")
REFERENCE_KEYS = ("match", "metric", "value", "std", "source", "note")
DEFAULT_PROTOCOL = "default"
PROTOCOL_OPTION_PREFIX = "protocol:"  # cell.options key of a recipe named by a protocol axis


class SuiteError(KddbenchError):
    """Every problem found in a suite file, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class TableSpec:
    name: str
    rows: list[str]
    columns: list[str]
    metric: str = "accuracy"
    title: str = ""
    experiments: list[str] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)
    digits: int = 2
    reference: bool = True
    note: str = ""
    baseline: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reference:
    match: dict[str, Any]
    metric: str
    value: float
    std: float | None = None
    source: str = ""
    note: str = ""


@dataclass
class Suite:
    name: str
    path: Path | None
    description: str
    budget: str
    cells: list[Cell]
    tables: list[TableSpec]
    references: list[Reference]
    sections: list  # kddbench.sections.ParsedSection, in suite order
    protocols: dict[str, dict[str, Any]]
    raw: dict[str, Any]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.source}: {path}: {message}")

    def unknown_keys(self, path: str, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                hint = suggest(key, allowed)
                self.add(f"{path}.{key}" if path else key,
                         "unknown key" + (f"; did you mean {hint!r}?" if hint else "")
                         + f" (allowed: {', '.join(allowed)})")

    def raise_if_any(self) -> None:
        if self.items:
            raise SuiteError(self.items)


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, lists, else a string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides; ``experiments.*.seeds=[0]`` sets every experiment."""
    for item in overrides:
        if "=" not in item:
            raise KddbenchError(f"override {item!r} is not of the form key.path=value")
        path, _, text = item.partition("=")
        keys = path.strip().split(".")
        _set_path(raw, keys, parse_value(text.strip()), item)
    return raw


def _set_path(node: Any, keys: list[str], value: Any, item: str) -> None:
    key, rest = keys[0], keys[1:]
    if isinstance(node, list):
        targets = node if key == "*" else [node[int(key)]] if key.isdigit() and int(key) < len(
            node) else None
        if targets is None:
            raise KddbenchError(f"override {item!r}: no list item {key!r}")
        for target in targets:
            _set_path(target, rest, value, item) if rest else None
        return
    if not rest:
        node[key] = value
        return
    _set_path(node.setdefault(key, {}), rest, value, item)


def load_suite(path: str | Path, overrides: Iterable[str] = (),
               registry: Registry | None = None) -> Suite:
    """Read, validate and expand a suite file (raises :class:`SuiteError` listing every problem)."""
    path = Path(path)
    if not path.exists():
        raise KddbenchError(f"suite file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{path}: not valid TOML: {exc}"]) from None
    raw = apply_overrides(raw, overrides)
    return build_suite(raw, str(path), registry or get_registry(), path)


def build_suite(raw: dict[str, Any], source: str, registry: Registry,
                path: Path | None = None) -> Suite:
    problems = _Problems(source)
    problems.unknown_keys("", raw, SUITE_KEYS + tuple(section_keys(registry)))
    meta = raw.get("suite", {})
    problems.unknown_keys("suite", meta, SUITE_META_KEYS)
    name = str(meta.get("name") or (path.stem if path else "suite"))
    protocols = _resolve_protocols(raw.get("protocols", {}), problems)
    cells: list[Cell] = []
    experiments = raw.get("experiments", [])
    if not experiments:
        problems.add("experiments", "a suite needs at least one [[experiments]] table")
    names_seen: set[str] = set()
    for i, exp in enumerate(experiments):
        exp_name = str(exp.get("name", f"experiment{i}"))
        if exp_name in names_seen:
            problems.add(f"experiments[{i}].name", f"duplicate experiment name {exp_name!r}")
        names_seen.add(exp_name)
        cells.extend(_expand_experiment(exp, f"experiments[{i}]", exp_name, protocols, registry,
                                        problems))
    seen: dict[str, Cell] = {}
    for cell in cells:
        seen.setdefault(cell.cell_id, cell)
    tables = _parse_tables(raw.get("tables", []), names_seen, problems)
    references = _parse_references(raw.get("references", []), problems)
    sections, found = parse_sections(raw, registry, names_seen, list(seen.values()))
    for where, message in found:
        problems.add(where, message)
    problems.raise_if_any()
    return Suite(name, path, str(meta.get("description", "")), str(meta.get("budget", "")),
                 list(seen.values()), tables, references, sections, protocols, raw)


def _resolve_protocols(table: Mapping[str, Any], problems: _Problems) -> dict[str, dict]:
    resolved: dict[str, dict[str, Any]] = {DEFAULT_PROTOCOL: Recipe().as_dict()}
    allowed = ("base", "description") + RECIPE_KEYS

    def resolve(name: str, stack: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        if name in stack:
            problems.add(f"protocols.{name}.base", f"circular base chain {' -> '.join(stack)}")
            return Recipe().as_dict()
        body = table[name]
        problems.unknown_keys(f"protocols.{name}", body, allowed)
        base_name = body.get("base", DEFAULT_PROTOCOL)
        if base_name not in table and base_name != DEFAULT_PROTOCOL:
            _unknown(problems, f"protocols.{name}.base", "protocol", base_name,
                     list(table) + [DEFAULT_PROTOCOL])
            base = Recipe().as_dict()
        else:
            base = resolve(base_name, stack + (name,))
        merged = dict(base)
        merged.update({k: v for k, v in body.items() if k in RECIPE_KEYS})
        _check_recipe(merged, f"protocols.{name}", problems)
        resolved[name] = merged
        return merged

    for name in table:
        if not isinstance(table[name], Mapping):
            problems.add(f"protocols.{name}", "must be a table of recipe keys")
            continue
        resolve(name, ())
    return resolved


def _check_recipe(recipe: Mapping[str, Any], path: str, problems: _Problems) -> None:
    defaults = Recipe().as_dict()
    for key, value in recipe.items():
        if key in defaults and not _same_type(defaults[key], value):
            problems.add(f"{path}.{key}",
                         f"expected {type(defaults[key]).__name__}, got {value!r}")


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, int):
        return isinstance(value, int)
    if default is None:
        return True
    return isinstance(value, type(default))


def _unknown(problems: _Problems, path: str, kind: str, name: Any, choices: Iterable[str]):
    choices = sorted(set(map(str, choices)))
    hint = suggest(str(name), choices)
    problems.add(path, f"unknown {kind} {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                 + f" (available: {', '.join(choices)})")


def _expand_experiment(exp: Mapping[str, Any], path: str, name: str,
                       protocols: dict[str, dict], registry: Registry,
                       problems: _Problems) -> list[Cell]:
    task_name = exp.get("task")
    if task_name is None:
        problems.add(f"{path}.task", "missing (every experiment names a task: "
                     f"{', '.join(registry.names('task'))})")
        return []
    try:
        task = registry.get("task", task_name)
    except KeyError:
        _unknown(problems, f"{path}.task", "task", task_name, registry.names("task"))
        return []
    axis_keys = [k for k in exp if k not in EXPERIMENT_KEYS]
    for key in axis_keys:
        if key not in task.axes:
            allowed = list(EXPERIMENT_KEYS) + list(task.axes)
            hint = suggest(key, allowed)
            problems.add(f"{path}.{key}", f"unknown key for task {task.name!r}"
                         + (f"; did you mean {hint!r}?" if hint else "")
                         + f" (allowed: {', '.join(allowed)})")
    for key in task.required:
        if key not in exp:
            problems.add(f"{path}.{key}", f"missing (task {task.name!r} requires "
                         f"{', '.join(task.required)})")
    axes: dict[str, list[Any]] = {k: _as_list(exp[k]) for k in task.axes if k in exp}
    # plugin names: validate and canonicalise (aliases -> names)
    for axis, family in task.plugin_axes.items():
        if axis not in axes:
            continue
        canon = []
        for value in axes[axis]:
            if value is None or value in task.reserved.get(axis, ()):
                canon.append(value)
                continue
            try:
                variants = names.expand(str(value))
            except KddbenchError as exc:
                problems.add(f"{path}.{axis}", str(exc))
                continue
            for variant in variants:
                try:
                    canon.append(registry.canonical(family, variant))
                except KeyError as exc:
                    problems.add(f"{path}.{axis}", str(exc))
                    continue
                _check_inline_options(variant, registry.get(family, variant),
                                      f"{path}.{axis}", problems)
        axes[axis] = canon
    for axis in task.protocol_axes:
        for value in axes.get(axis, []):
            if value not in protocols:
                _unknown(problems, f"{path}.{axis}", "protocol", value, protocols)
    seeds = exp.get("seeds", [0])
    seeds = list(range(seeds)) if isinstance(seeds, int) else _as_list(seeds)
    if not seeds or not all(isinstance(s, int) for s in seeds):
        problems.add(f"{path}.seeds", "a list of integers, or a count")
        seeds = [0]
    options = exp.get("options", {})
    named_plugins = {names.split(v)[0] for axis in task.plugin_axes for v in axes.get(axis, [])
                     if v is not None and v not in task.reserved.get(axis, ())}
    _check_options(options, f"{path}.options", named_plugins, task, registry, problems)
    overrides = exp.get("overrides", [])
    for j, ov in enumerate(overrides):
        opath = f"{path}.overrides[{j}]"
        problems.unknown_keys(opath, ov, OVERRIDE_KEYS)
        for key in ov.get("match", {}):
            if key not in task.axes and key != "seed":
                _unknown(problems, f"{opath}.match.{key}", "axis", key, list(task.axes) + ["seed"])
        if "protocol" in ov and ov["protocol"] not in protocols:
            _unknown(problems, f"{opath}.protocol", "protocol", ov["protocol"], protocols)
        _check_recipe(ov.get("recipe", {}), f"{opath}.recipe", problems)
        problems.unknown_keys(f"{opath}.recipe", ov.get("recipe", {}), RECIPE_KEYS)
        _check_options(ov.get("options", {}), f"{opath}.options", named_plugins, task, registry,
                       problems)
    protocol_name = exp.get("protocol", DEFAULT_PROTOCOL)
    if protocol_name not in protocols:
        _unknown(problems, f"{path}.protocol", "protocol", protocol_name, protocols)
        return []
    problems.unknown_keys(f"{path}.recipe", exp.get("recipe", {}), RECIPE_KEYS)
    _check_recipe(exp.get("recipe", {}), f"{path}.recipe", problems)
    if problems.items:
        return []
    cells = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys), seeds):
        values = dict(zip(keys, combo[:-1]))
        seed = int(combo[-1])
        for axis, family in task.plugin_axes.items():
            spec = registry.get(family, values[axis]) if values.get(axis) and values[axis] \
                not in task.reserved.get(axis, ()) else None
            if family == "condenser" and spec is not None and not spec.uses_ipc:
                values["ipc"] = None
        proto, recipe_over, opts, skip = protocol_name, dict(exp.get("recipe", {})), {}, False
        opts = {k: dict(v) for k, v in options.items()}
        for ov in overrides:
            if all(_matches(values.get(k) if k != "seed" else seed, v)
                   for k, v in ov.get("match", {}).items()):
                proto = ov.get("protocol", proto)
                recipe_over.update(ov.get("recipe", {}))
                for plugin, vals in ov.get("options", {}).items():
                    opts.setdefault(plugin, {}).update(vals)
                skip = skip or bool(ov.get("skip", False))
        if skip:
            continue
        recipe = dict(protocols[proto])
        recipe.update(recipe_over)
        cell_options, versions = {}, {"protocol": PROTOCOL_VERSION, f"task:{task.name}": task.version}
        for axis, family in task.plugin_axes.items():
            for value in _as_list(values.get(axis)):
                if value is None or value in task.reserved.get(axis, ()):
                    continue
                spec = registry.get(family, value)
                versions[f"{family}:{spec.name}"] = spec.version
                if spec.options:
                    cell_options[spec.name] = spec.resolve_options(opts.get(spec.name))
        for axis in task.protocol_axes:
            if values.get(axis) is not None:
                cell_options[PROTOCOL_OPTION_PREFIX + values[axis]] = dict(protocols[values[axis]])
        cells.append(Cell(name, task.name, values, cell_options, recipe, proto, versions, seed))
    return cells


def _check_inline_options(name: str, spec, path: str, problems: _Problems) -> None:
    """Options written inline in a name (``convnet[width=64]``) must exist, with their types."""
    for key, value in names.parse(name)[1].items():
        if key not in spec.options:
            hint = suggest(key, list(spec.options))
            problems.add(path, f"{name!r}: unknown option {key!r} of {spec.name!r}"
                         + (f"; did you mean {hint!r}?" if hint else "")
                         + f" (options: {', '.join(spec.options) or 'none'})")
        elif not _same_type(spec.options[key], value):
            problems.add(path, f"{name!r}: option {key!r} expects "
                         f"{type(spec.options[key]).__name__}, got {value!r}")


def _matches(actual: Any, wanted: Any) -> bool:
    return actual in wanted if isinstance(wanted, list) else actual == wanted


def _check_options(options: Mapping[str, Any], path: str, named: set, task, registry: Registry,
                   problems: _Problems) -> None:
    for plugin, values in options.items():
        spec = None
        for family in set(task.plugin_axes.values()):
            try:
                spec = registry.get(family, plugin)
                break
            except KeyError:
                continue
        if spec is None or spec.name not in named:
            _unknown(problems, f"{path}.{plugin}", "plugin in this experiment", plugin,
                     sorted(str(n) for n in named if n))
            continue
        if not isinstance(values, Mapping):
            problems.add(f"{path}.{plugin}", "must be a table of option = value")
            continue
        for key, value in values.items():
            if key not in spec.options:
                hint = suggest(key, list(spec.options))
                problems.add(f"{path}.{plugin}.{key}", f"unknown option of {spec.name!r}"
                             + (f"; did you mean {hint!r}?" if hint else "")
                             + f" (options: {', '.join(spec.options) or 'none'})")
            elif not _same_type(spec.options[key], value):
                problems.add(f"{path}.{plugin}.{key}",
                             f"expected {type(spec.options[key]).__name__}, got {value!r}")


def _check_entry(problems: _Problems, path: str, entry: Mapping[str, Any],
                 allowed: Iterable[str], required: Iterable[str]) -> None:
    """Unknown keys (with suggestions) and missing required keys of one table entry."""
    problems.unknown_keys(path, entry, allowed)
    for key in required:
        if key not in entry:
            problems.add(f"{path}.{key}", "missing")


def _parse_tables(items: list, experiments: set[str], problems: _Problems) -> list[TableSpec]:
    tables = []
    for i, t in enumerate(items):
        path = f"tables[{i}]"
        _check_entry(problems, path, t, TABLE_KEYS, ("name", "rows", "columns"))
        for exp in _as_list(t.get("experiments", [])):
            if exp not in experiments:
                _unknown(problems, f"{path}.experiments", "experiment", exp, experiments)
        for key in t.get("baseline", {}):
            if key not in _as_list(t.get("rows", [])):
                problems.add(f"{path}.baseline.{key}", "baseline keys must be row keys "
                             f"({', '.join(map(str, _as_list(t.get('rows', []))))})")
        if problems.items:
            continue
        tables.append(TableSpec(
            name=str(t["name"]), rows=_as_list(t["rows"]), columns=_as_list(t["columns"]),
            metric=str(t.get("metric", "accuracy")), title=str(t.get("title", "")),
            experiments=_as_list(t.get("experiments", [])), where=dict(t.get("where", {})),
            digits=int(t.get("digits", 2)), reference=bool(t.get("reference", True)),
            note=str(t.get("note", "")), baseline=dict(t.get("baseline", {}))))
    return tables


def _parse_references(items: list, problems: _Problems) -> list[Reference]:
    refs = []
    for i, r in enumerate(items):
        path = f"references[{i}]"
        problems.unknown_keys(path, r, REFERENCE_KEYS)
        if "match" not in r or "value" not in r:
            problems.add(path, "a reference needs match = {...} and value")
            continue
        refs.append(Reference(dict(r["match"]), str(r.get("metric", "accuracy")),
                              float(r["value"]), r.get("std"), str(r.get("source", "")),
                              str(r.get("note", ""))))
    return refs
