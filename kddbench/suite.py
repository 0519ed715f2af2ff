"""Suite files: TOML in, validated cells out.

A suite declares experiments as cross-products of axes.  Everything is checked before any
compute, and every problem is reported at once as ``file: key.path: message``.  See
CONTRIBUTING.md ("Suite files") for the format; ``suites/quickstart.toml`` is an example.
"""
from __future__ import annotations

import itertools
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import names
from .axes import Axis
from .cells import Cell, canonical_json
from .errors import KddbenchError, suggest, unknown_message
from .options import Option, check_option, check_options
from .plugins import Registry, get_registry
from .recipe import PROTOCOL_VERSION, RECIPE_KEYS, Recipe, check_recipe
from .recipe import normalize as normalize_recipe
from .validation import TUNE_OPTION, cell_grid, check_tune
from .sections import experiment_scope, parse_sections, section_keys, table_problems

SUITE_KEYS = ("suite", "protocols", "experiments", "tables", "references")  # + section keys
SUITE_META_KEYS = ("name", "description", "budget")
EXPERIMENT_KEYS = ("name", "task", "description", "protocol", "recipe", "seeds", "options",
                   "overrides", "tune")
OVERRIDE_KEYS = ("match", "protocol", "recipe", "options", "skip")
TABLE_KEYS = ("name", "title", "experiments", "where", "rows", "columns", "metric", "digits",
              "reference", "note", "baseline")
REFERENCE_KEYS = ("match", "metric", "value", "std", "source", "note")
TABLE_TYPES = {"name": "str", "title": "str", "experiments": "strs", "where": "table",
               "rows": "strs", "columns": "strs", "metric": "str", "digits": "int",
               "reference": "bool", "note": "str", "baseline": "table"}
TABLE_AXIS_KEYS = ("experiments", "where", "rows", "columns", "baseline")
REFERENCE_TYPES = {"match": "table", "metric": "str", "value": "number", "std": "number",
                   "source": "str", "note": "str"}
MAX_CELLS_ENV = "KDDBENCH_MAX_CELLS"
DEFAULT_MAX_CELLS = 100_000
MAX_SEED_COUNT = 1_000_000_000
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
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
    overrides: tuple[str, ...] = ()  # the --set items applied to the file (for the report)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = f"{self.source}: {path}: {message}"
        self.items.append(line.replace("\r", "\\r").replace("\n", "\\n"))  # one line each

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


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str],
                    source: str = "--set") -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides.  ``*`` stands for every item of a list (or every
    entry of a table): ``experiments.*.seeds=[0]`` sets every experiment's seeds; a path may
    end on a list index (``experiments.0={...}`` replaces that item).  A path that leads
    nowhere (past a value that is not a table or list, to an item a list does not have) is a
    :class:`SuiteError` naming it."""
    for item in overrides:
        path, eq, text = str(item).partition("=")
        keys = [k.strip() for k in path.strip().split(".")]
        if not eq or not all(keys):
            raise SuiteError([f"{source}: --set {item!r}: not of the form key.path=value "
                              "(dot-separated keys, no empty key)"])
        _set_path(raw, keys, parse_value(text.strip()), item, source, "")
    return raw


def _set_path(node: Any, keys: list[str], value: Any, item: str, source: str,
              where: str) -> None:
    key, rest = keys[0], keys[1:]
    here = f"{where}.{key}" if where else key

    def fail(message: str):
        raise SuiteError([f"{source}: {here}: {message} (in --set {item!r})"])

    if isinstance(node, list):
        if key == "*":
            indices = range(len(node))
        elif key.isdigit():
            if int(key) >= len(node):
                fail(f"no item {key}: {where or 'the list'} has {len(node)} item(s), "
                     f"0 to {len(node) - 1}" if node else f"no item {key}: the list is empty")
            indices = [int(key)]
        else:
            fail(f"{where or 'this'} is a list: index it with a number or *")
        for i in indices:
            if rest:
                _set_path(node[i], rest, value, item, source, f"{where}.{i}" if where else str(i))
            else:
                node[i] = value
        return
    if not isinstance(node, dict):
        fail(f"{where} is {_type_name(node)}, not a table or a list")
    if key == "*" and "*" not in node:
        for name in list(node):
            if rest:
                _set_path(node[name], rest, value, item, source, f"{where}.{name}" if where
                          else name)
            else:
                node[name] = value
        return
    if not rest:
        node[key] = value
        return
    _set_path(node.setdefault(key, {}), rest, value, item, source, here)


def _read_suite_text(path: Path) -> str:
    if path.is_dir():
        raise SuiteError([f"{path}: is a directory, not a suite file (pass a .toml file)"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError([f"{path}: not a UTF-8 text file (byte {exc.start} is not UTF-8); "
                          "a suite is a TOML file"]) from None


def max_cells_limit(max_cells: int | None = None) -> int:
    """The most cells a suite may expand to (0: no limit): ``max_cells``, else the
    ``KDDBENCH_MAX_CELLS`` environment variable (``--force`` sets it to 0), else 100,000."""
    if max_cells is not None:
        return int(max_cells)
    text = os.environ.get(MAX_CELLS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_CELLS
    try:
        return max(0, int(text))
    except ValueError:
        raise KddbenchError(f"{MAX_CELLS_ENV}={text!r}: expected a whole number of cells "
                            "(0: no limit)") from None


def load_suite(path: str | Path, overrides: Iterable[str] = (),
               registry: Registry | None = None, max_cells: int | None = None) -> Suite:
    """Read, validate and expand a suite file (raises :class:`SuiteError` listing every problem).

    max_cells: refuse a suite that expands to more cells (default :func:`max_cells_limit`)."""
    path = Path(path)
    if not path.exists():
        raise KddbenchError(f"suite file not found: {path}")
    text = _read_suite_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{path}: not valid TOML: {exc}"]) from None
    overrides = tuple(overrides)
    raw = apply_overrides(raw, overrides, str(path))
    suite = build_suite(raw, str(path), registry or get_registry(), path, max_cells)
    suite.overrides = overrides
    return suite


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KINDS: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "number": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "table": (lambda v: isinstance(v, Mapping), "a table"),
    "tables": (lambda v: isinstance(v, list) and all(isinstance(x, Mapping) for x in v),
               "a list of tables ([[...]])"),
    "strs": (lambda v: isinstance(v, str) or isinstance(v, list) and all(
        isinstance(x, str) for x in v), "a string or a list of strings"),
    "ints": (lambda v: _is_int(v) or isinstance(v, list) and all(_is_int(x) for x in v),
             "an integer or a list of integers"),
}


def _check_types(problems: _Problems, path: str, entry: Mapping[str, Any],
                 schema: Mapping[str, str]) -> bool:
    """Each key of ``entry`` named in ``schema`` holds its kind; False if any does not."""
    ok = True
    for key, kind in schema.items():
        if key in entry:
            test, what = _KINDS[kind]
            if not test(entry[key]):
                problems.add(f"{path}.{key}" if path else key,
                             f"expected {what}, got {_type_name(entry[key])} "
                             f"{_short(entry[key])}")
                ok = False
    return ok


def _well_typed(problems: _Problems, path: str, entry: Mapping[str, Any],
                schema: Mapping[str, str]) -> dict[str, Any]:
    """``entry`` without the keys whose values are not of their kind (each one problem)."""
    out = dict(entry)
    for key in schema:
        if key in out and not _check_types(problems, path, {key: out[key]}, {key: schema[key]}):
            del out[key]
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_tables(problems: _Problems, path: str, value: Any) -> list[Mapping[str, Any]]:
    """``value`` as a list of tables (``[[path]]``); anything else is one problem."""
    if isinstance(value, list) and all(isinstance(x, Mapping) for x in value):
        return value
    if isinstance(value, list):
        for i, x in enumerate(value):
            if not isinstance(x, Mapping):
                problems.add(f"{path}[{i}]", f"expected a table, got {_type_name(x)} "
                             f"{_short(x)}")
        return [x for x in value if isinstance(x, Mapping)]
    problems.add(path, f"expected a list of tables ([[{path.rsplit('.', 1)[-1]}]]), got "
                 f"{_type_name(value)} {_short(value)}")
    return []


def _as_table(problems: _Problems, path: str, value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    problems.add(path, f"expected a table, got {_type_name(value)} {_short(value)}")
    return {}


def _check_name(problems: _Problems, name: Any, from_file: bool) -> str:
    text = name if isinstance(name, str) else str(name)
    if not isinstance(name, str) or not _PLAIN_NAME.match(text) or text in (".", ".."):
        hint = "; set [suite] name" if from_file else ""
        problems.add("suite.name", f"{_short(name)} is not a plain name (letters, digits, "
                     f"'_', '-', '.'; no path separators or '..'): it names the report "
                     f"directory; write the reports elsewhere with --out{hint}")
    return text


def build_suite(raw: dict[str, Any], source: str, registry: Registry,
                path: Path | None = None, max_cells: int | None = None) -> Suite:
    problems = _Problems(source)
    limit = max_cells_limit(max_cells)
    problems.unknown_keys("", raw, SUITE_KEYS + tuple(section_keys(registry)))
    meta = _as_table(problems, "suite", raw.get("suite", {}))
    problems.unknown_keys("suite", meta, SUITE_META_KEYS)
    _check_types(problems, "suite", meta, {"name": "str", "description": "str", "budget": "str"})
    name = _check_name(problems, meta["name"], False) if "name" in meta else _check_name(
        problems, path.stem if path else "suite", True)
    protocols = _resolve_protocols(_as_table(problems, "protocols", raw.get("protocols", {})),
                                   problems, registry)
    cells: list[Cell] = []
    experiments = _as_tables(problems, "experiments", raw.get("experiments", []))
    if not experiments and "experiments" not in raw:
        problems.add("experiments", "a suite needs at least one [[experiments]] table")
    elif not experiments and isinstance(raw.get("experiments"), list):
        problems.add("experiments", "an empty list: a suite needs at least one experiment")
    names_seen: set[str] = set()
    budget = [limit, limit]
    for i, exp in enumerate(experiments):
        exp_name = exp.get("name", f"experiment{i}")
        if not isinstance(exp_name, str):
            exp_name = str(exp_name)  # the type problem is reported with the experiment
        if exp_name in names_seen:
            problems.add(f"experiments[{i}].name", f"duplicate experiment name {exp_name!r}")
        names_seen.add(exp_name)
        cells.extend(_expand_experiment(exp, f"experiments[{i}]", exp_name, protocols, registry,
                                        problems, budget))
    seen: dict[str, Cell] = {}
    for cell in cells:
        seen.setdefault(cell.cell_id, cell)
    table_items = _as_tables(problems, "tables", raw.get("tables", []))
    tables = _parse_tables(table_items, names_seen, problems)
    scope = experiment_scope(raw, registry, names_seen, list(seen.values()))
    for where, message in table_problems(table_items, scope):
        problems.add(where, message)
    references = _parse_references(_as_tables(problems, "references",
                                              raw.get("references", [])), problems)
    sections, found = parse_sections(raw, registry, names_seen, list(seen.values()))
    for where, message in found:
        problems.add(where, message)
    problems.raise_if_any()
    return Suite(name, path, str(meta.get("description", "")), str(meta.get("budget", "")),
                 list(seen.values()), tables, references, sections, protocols, raw)


def _resolve_protocols(table: Mapping[str, Any], problems: _Problems,
                       registry: Registry | None = None) -> dict[str, dict]:
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
        _check_types(problems, f"protocols.{name}", body, {"base": "str", "description": "str"})
        base_name = body.get("base", DEFAULT_PROTOCOL)
        if not isinstance(base_name, str):
            base = Recipe().as_dict()
        elif base_name not in table and base_name != DEFAULT_PROTOCOL:
            _unknown(problems, f"protocols.{name}.base", "protocol", base_name,
                     list(table) + [DEFAULT_PROTOCOL])
            base = Recipe().as_dict()
        elif base_name != DEFAULT_PROTOCOL and not isinstance(table[base_name], Mapping):
            base = Recipe().as_dict()
        else:
            base = resolve(base_name, stack + (name,))
        merged = dict(base)
        merged.update({k: v for k, v in body.items() if k in RECIPE_KEYS})
        for key, message in check_recipe(merged, registry):
            problems.add(f"protocols.{name}.{key}", message)
        resolved[name] = normalize_recipe(merged)
        return resolved[name]

    for name in table:
        if name == DEFAULT_PROTOCOL:
            problems.add(f"protocols.{name}", f"{DEFAULT_PROTOCOL!r} is the built-in recipe; "
                         "give your protocol another name")
            continue
        if not isinstance(table[name], Mapping):
            problems.add(f"protocols.{name}", "must be a table of recipe keys")
            continue
        resolve(name, ())
    return resolved


def _check_recipe(recipe: Any, path: str, problems: _Problems,
                  registry: Registry | None = None) -> bool:
    """A partial recipe (an experiment's or an override's): a table of known keys, each
    value valid on its own (rules across keys are checked on each cell's whole recipe)."""
    if not isinstance(recipe, Mapping):
        problems.add(path, f"expected a table of recipe keys, got {_type_name(recipe)} "
                     f"{_short(recipe)}")
        return False
    before = len(problems.items)
    problems.unknown_keys(path, recipe, RECIPE_KEYS)
    for key, message in check_recipe(recipe, registry, complete=False):
        problems.add(f"{path}.{key}", message)
    return len(problems.items) == before


def _unknown(problems: _Problems, path: str, kind: str, name: Any, choices: Iterable[str]):
    choices = sorted(set(map(str, choices)))
    hint = suggest(str(name), choices)
    problems.add(path, f"unknown {kind} {_short(name)}"
                 + (f"; did you mean {hint!r}?" if hint else "")
                 + f" (available: {', '.join(choices)})")


EXPERIMENT_TYPES = {"name": "str", "task": "str", "description": "str", "protocol": "str",
                    "recipe": "table", "options": "table", "overrides": "tables",
                    "tune": "table"}
OVERRIDE_TYPES = {"match": "table", "protocol": "str", "recipe": "table", "options": "table",
                  "skip": "bool"}


def _axis_values(axis_name: str, axis: Axis, raw_value: Any, path: str, task,
                 protocols: Mapping[str, Any], registry: Registry, problems: _Problems,
                 canonical: bool = True, valid: list[Any] | None = None) -> list[Any] | None:
    """The checked values of one axis (plugin names canonical, alternatives expanded), or
    None when a value is wrong (each wrong value is one problem; ``valid`` still receives the
    values that are fine, so problems elsewhere are judged against them)."""
    where = f"{path}.{axis_name}"
    if isinstance(raw_value, Mapping) and axis.kind == "plugin":
        raw_value = _sampled_space(axis, raw_value, where, problems)
        if raw_value is None:
            return None
    values = list(raw_value) if isinstance(raw_value, list) else [raw_value]
    if not values:
        problems.add(where, f"an empty list: give at least one value ({axis.describe()})")
        return None
    out: list[Any] = []
    ok = True
    for value in values:
        if axis.kind == "plugin":
            if isinstance(value, str) and value in axis.reserved:
                out.append(value)
                continue
            if not isinstance(value, str):
                problems.add(where, f"expected {axis.describe()}, got {_type_name(value)} "
                             f"{_short(value)}")
                ok = False
                continue
            try:
                variants = names.expand(value) if canonical else [value]
            except KddbenchError as exc:
                problems.add(where, str(exc))
                ok = False
                continue
            for variant in variants:
                try:
                    spec = registry.get(axis.family, names.split(variant)[0])
                    canon = registry.canonical(axis.family, variant)
                except KeyError:
                    choices = registry.names(axis.family) + list(axis.reserved) + list(
                        getattr(registry, "aliases", {}).get(axis.family, {}))
                    problems.add(where, unknown_message(_family_label(axis.family),
                                                        names.split(variant)[0], choices))
                    ok = False
                    continue
                except KddbenchError as exc:
                    problems.add(where, str(exc))
                    ok = False
                    continue
                if not _check_inline_options(variant, spec, where, problems, registry):
                    ok = False
                out.append(canon)
        elif axis.kind == "int":
            message = check_option(Option(None, "int", axis.min, axis.max), value)
            if message:
                problems.add(where, f"expected {axis.describe()}, got {_type_name(value)} "
                             f"{_short(value)}")
                ok = False
            out.append(value)
        elif axis.kind == "protocol":
            if not isinstance(value, str):
                problems.add(where, f"expected a protocol name, got {_type_name(value)} "
                             f"{_short(value)}")
                ok = False
            elif value not in protocols:
                _unknown(problems, where, "protocol", value, protocols)
                ok = False
            out.append(value)
        elif axis.kind == "str":
            if not isinstance(value, str):
                problems.add(where, f"expected a string, got {_type_name(value)} "
                             f"{_short(value)}")
                ok = False
            out.append(value)
        else:
            if isinstance(value, (Mapping, list)):
                problems.add(where, f"expected a single value, got {_type_name(value)} "
                             f"{_short(value)}")
                ok = False
            out.append(value)
    if valid is not None:
        valid.extend(out)
    if ok and len(set(map(repr, out))) != len(out):
        dup = next(v for i, v in enumerate(out) if repr(v) in map(repr, out[:i]))
        problems.add(where, f"{dup!r} appears twice")
        ok = False
    return out if ok else None


SPACE_KEYS = ("space", "sample", "seed")


def _sampled_space(axis: Axis, table: Mapping[str, Any], where: str,
                   problems: _Problems) -> list[str] | None:
    """A plugin axis written as ``{space = ..., sample = k, seed = s}``: the names of the
    space (default: the space the task declares for the axis), or a seeded sample of ``k`` of
    them (:func:`kddbench.names.sample`); None after reporting a problem."""
    before = len(problems.items)
    problems.unknown_keys(where, table, SPACE_KEYS)
    space = table.get("space", list(axis.space))
    if isinstance(space, str):
        space = [space]
    if not isinstance(space, list) or not all(isinstance(v, str) for v in space):
        problems.add(f"{where}.space", f"expected a name or a list of names (alternatives "
                     f"with |), got {_type_name(space)} {_short(space)}")
    elif not space:
        problems.add(f"{where}.space", "no space: the task declares none for this axis, so "
                     "name one (space = \"name[key=a|b,...]\")")
    for key, low in (("sample", 1), ("seed", 0)):
        if key in table and not (_is_int(table[key]) and table[key] >= low):
            problems.add(f"{where}.{key}", f"expected an integer >= {low}, got "
                         f"{_type_name(table[key])} {_short(table[key])}")
    if len(problems.items) > before:
        return None
    try:
        return names.sample(space, table.get("sample"), table.get("seed", 0))
    except KddbenchError as exc:
        problems.add(f"{where}.space", str(exc))
        return None


def _family_label(family: str) -> str:
    try:
        from .plugins import FAMILY_SINGULAR

        return FAMILY_SINGULAR.get(family, family)
    except ImportError:  # pragma: no cover
        return family


def _seeds(exp: Mapping[str, Any], path: str, problems: _Problems) -> Sequence[int] | None:
    seeds = exp.get("seeds", [0])
    where = f"{path}.seeds"
    if _is_int(seeds):
        if not 1 <= seeds <= MAX_SEED_COUNT:
            problems.add(where, f"a count of seeds lies in [1, {MAX_SEED_COUNT:,}], got {seeds}")
            return None
        return range(seeds)  # not a list: the size is checked before anything is expanded
    if not isinstance(seeds, list) or not all(_is_int(s) for s in seeds):
        problems.add(where, f"expected a list of integers (seeds = [0, 1, 2]) or a count "
                     f"(seeds = 3), got {_type_name(seeds)} {_short(seeds)}")
        return None
    if not seeds:
        problems.add(where, "an empty list: give at least one seed (seeds = [0]) or a count")
        return None
    if any(s < 0 for s in seeds):
        problems.add(where, f"seeds are integers >= 0, got {seeds}")
        return None
    if len(set(seeds)) != len(seeds):
        problems.add(where, f"a seed appears twice in {seeds}")
        return None
    return seeds


def _expand_experiment(exp: Mapping[str, Any], path: str, name: str,
                       protocols: dict[str, dict], registry: Registry,
                       problems: _Problems, budget: list[int] | None = None) -> list[Cell]:
    before = len(problems.items)
    exp = _well_typed(problems, path, exp, EXPERIMENT_TYPES)
    if "task" not in exp and len(problems.items) > before:
        return []
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
    typed: Mapping[str, Axis] = task.axis_types
    for key in exp:
        if key not in EXPERIMENT_KEYS and key not in typed:
            allowed = list(EXPERIMENT_KEYS) + list(typed)
            hint = suggest(key, allowed)
            problems.add(f"{path}.{key}", f"unknown key for task {task.name!r}"
                         + (f"; did you mean {hint!r}?" if hint else "")
                         + f" (allowed: {', '.join(allowed)})")
    required = [k for k, a in typed.items() if a.required]
    for key in required:
        if key not in exp:
            problems.add(f"{path}.{key}", f"missing (task {task.name!r} requires "
                         f"{', '.join(required)})")
    axes: dict[str, list[Any]] = {}
    fine: dict[str, list[Any]] = {}  # the values that passed, also of axes that did not
    for key, axis in typed.items():
        if key in exp:
            fine[key] = []
            values = _axis_values(key, axis, exp[key], path, task, protocols, registry, problems,
                                  valid=fine[key])
            if values is not None:
                axes[key] = values
    seeds = _seeds(exp, path, problems)
    named_plugins = {names.split(v)[0] for k, a in typed.items() if a.kind == "plugin"
                     for v in fine.get(k, []) if isinstance(v, str) and v not in a.reserved}
    options = exp.get("options", {})
    _check_options(options, f"{path}.options", named_plugins, task, registry, problems)
    tune_grid = _check_tune(exp.get("tune", {}), f"{path}.tune", named_plugins, task, registry,
                            problems)
    overrides = exp.get("overrides", [])
    for j, ov in enumerate(overrides):
        opath = f"{path}.overrides[{j}]"
        problems.unknown_keys(opath, ov, OVERRIDE_KEYS)
        if not _check_types(problems, opath, ov, OVERRIDE_TYPES):
            continue
        match = ov.get("match", {})
        for key in list(match):
            if key == "seed":
                if not all(_is_int(s) for s in _as_list(match[key])):
                    problems.add(f"{opath}.match.seed", f"expected a seed or a list of seeds, "
                                 f"got {_short(match[key])}")
            elif key not in typed:
                _unknown(problems, f"{opath}.match.{key}", "axis", key, list(typed) + ["seed"])
            else:
                _axis_values(key, typed[key], match[key], f"{opath}.match", task, protocols,
                             registry, problems, canonical=False)
        if "protocol" in ov and ov["protocol"] not in protocols:
            _unknown(problems, f"{opath}.protocol", "protocol", ov["protocol"], protocols)
        _check_recipe(ov.get("recipe", {}), f"{opath}.recipe", problems, registry)
        _check_options(ov.get("options", {}), f"{opath}.options", named_plugins, task, registry,
                       problems)
    protocol_name = exp.get("protocol", DEFAULT_PROTOCOL)
    if protocol_name not in protocols:
        _unknown(problems, f"{path}.protocol", "protocol", protocol_name, protocols)
        return []
    _check_recipe(exp.get("recipe", {}), f"{path}.recipe", problems, registry)
    if len(problems.items) > before or seeds is None:
        return []
    keys = list(axes)
    size = len(seeds)
    for k in keys:
        size *= len(axes[k])
    if budget is not None and budget[0]:
        if size > budget[0]:
            problems.add(path, f"expands to {size:,} cells, more than the limit of "
                         f"{budget[1]:,} for the whole suite; pass --force (or set "
                         f"{MAX_CELLS_ENV}=0) to expand it anyway")
            return []
        budget[0] -= size
    match_canon = [_canonical_match(ov.get("match", {}), typed, registry) for ov in overrides]
    checked_recipes: set[str] = set()
    cells = []
    for combo in itertools.product(*(axes[k] for k in keys), seeds):
        values = dict(zip(keys, combo[:-1]))
        seed = int(combo[-1])
        for rule in task.rules:
            rule.apply(values, lambda axis: _spec_of(values, axis, typed, registry))
        proto, recipe_over, skip = protocol_name, dict(exp.get("recipe", {})), False
        opts = {k: dict(v) for k, v in options.items()}
        for ov, match in zip(overrides, match_canon):
            if all(_matches(values.get(k) if k != "seed" else seed, v)
                   for k, v in match.items()):
                proto = ov.get("protocol", proto)
                recipe_over.update(ov.get("recipe", {}))
                for plugin, vals in ov.get("options", {}).items():
                    opts.setdefault(plugin, {}).update(vals)
                skip = skip or bool(ov.get("skip", False))
        if skip:
            continue
        recipe = dict(protocols[proto])
        recipe.update(recipe_over)
        recipe = normalize_recipe(recipe)
        key = canonical_json(recipe)
        if key not in checked_recipes:  # rules across keys, on the recipe this cell trains by
            checked_recipes.add(key)
            known = set(check_recipe(protocols[proto], registry))  # reported with the protocol
            for rkey, message in check_recipe(recipe, registry):
                if (rkey, message) not in known:
                    problems.add(f"{path}.recipe.{rkey}", f"{message} (in the recipe of protocol "
                                 f"{proto!r} with this experiment's recipe and overrides)")
        cell_options = {}
        versions = {"protocol": PROTOCOL_VERSION, f"task:{task.name}": task.version}
        for axis, a in typed.items():
            if a.kind != "plugin":
                continue
            for value in _as_list(values.get(axis)):
                if value is None or value in a.reserved:
                    continue
                spec = registry.get(a.family, value)
                versions[f"{a.family}:{spec.name}"] = spec.version
                if spec.options:
                    cell_options[spec.name] = spec.resolve_options(opts.get(spec.name))
        for axis, a in typed.items():
            if a.kind == "protocol" and values.get(axis) is not None:
                cell_options[PROTOCOL_OPTION_PREFIX + values[axis]] = dict(protocols[values[axis]])
        if tune_grid:  # the grid's part that applies to this cell, part of its identity
            grid = cell_grid(tune_grid, cell_options)
            if grid and not (recipe.get("val_fraction") or recipe.get("val_per_class")):
                problems.add(f"{path}.tune", f"tuning needs a validation split in the recipe "
                             f"of protocol {proto!r} (val_fraction or val_per_class)")
            elif grid:
                cell_options[TUNE_OPTION] = grid
        cells.append(Cell(name, task.name, values, cell_options, recipe, proto, versions, seed))
    if len(problems.items) > before:
        return []
    return cells


def _spec_of(values: Mapping[str, Any], axis: str, typed: Mapping[str, Axis],
             registry: Registry):
    """The spec an axis value names in one cell (None for no value, a reserved value, or an
    axis that does not name plugins)."""
    a = typed.get(axis)
    value = values.get(axis)
    if a is None or a.kind != "plugin" or not value or value in a.reserved:
        return None
    return registry.get(a.family, value)


def _canonical_match(match: Mapping[str, Any], typed: Mapping[str, Axis],
                     registry: Registry) -> dict[str, Any]:
    """An override's ``match`` with plugin names canonical (aliases, inline option order)."""
    out = {}
    for key, wanted in match.items():
        a = typed.get(key)
        if a is not None and a.kind == "plugin":
            def canon(v):
                return v if v in a.reserved else registry.canonical(a.family, v)
            wanted = [canon(v) for v in wanted] if isinstance(wanted, list) else canon(wanted)
        out[key] = wanted
    return out


def _check_inline_options(name: str, spec, path: str, problems: _Problems,
                          registry: Registry | None = None) -> bool:
    """Options written inline in a name (``convnet[width=64]``) must exist, with valid values."""
    ok = True
    for key, message in check_options(spec.options, names.parse(name)[1], repr(spec.name),
                                      registry):
        ok = False
        if message.startswith("unknown option"):
            rest = message[len("unknown option"):].replace(f" of {spec.name!r}", "", 1)
            problems.add(path, f"{name!r}: unknown option {key!r} of {spec.name!r}{rest}")
        else:
            problems.add(path, f"{name!r}: option {key!r} "
                         + message.replace("expected", "expects", 1))
    return ok


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
            problems.add(f"{path}.{plugin}", f"must be a table of option = value, got "
                         f"{_type_name(values)} {_short(values)}")
            continue
        for key, message in check_options(spec.options, values, repr(spec.name), registry):
            problems.add(f"{path}.{plugin}.{key}", message)


def _check_tune(tune: Mapping[str, Any], path: str, named: set, task, registry: Registry,
                problems: _Problems) -> dict[str, list]:
    """An experiment's ``tune`` grid, keys canonical (:func:`kddbench.validation.check_tune`)."""
    if not tune:
        return {}
    specs = {}
    heads = {str(key).partition(".")[0] for key in tune} if isinstance(tune, Mapping) else ()
    for head in heads:
        for family in set(task.plugin_axes.values()):
            try:
                spec = registry.get(family, head)
            except KeyError:
                continue
            if spec.name in named:
                specs[head] = spec
    grid, found = check_tune(tune, path, specs, registry)
    for where, message in found:
        problems.add(where, message)
    return grid


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
        # kddbench.sections.table_problems reports bad rows/columns/where/...; skip the entry
        quiet = _Problems("")
        if not (_check_types(problems, path, t, {k: v for k, v in TABLE_TYPES.items()
                                                 if k not in TABLE_AXIS_KEYS})
                and _check_types(quiet, path, t, {k: TABLE_TYPES[k] for k in TABLE_AXIS_KEYS})):
            continue
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
        if not _check_types(problems, path, r, REFERENCE_TYPES):
            continue
        refs.append(Reference(dict(r["match"]), str(r.get("metric", "accuracy")),
                              float(r["value"]), r.get("std"), str(r.get("source", "")),
                              str(r.get("note", ""))))
    return refs
