"""Typed plugin options: declarations, the one validator and the one merger.

A spec's ``options`` mapping holds, per option name, either a plain default (its kind is
inferred: ``3`` is an int, ``0.5`` a float, ``"relu"`` a string, ``True`` a bool) or an
:class:`Option` built with one of the helpers::

    options = {"iterations": Int(1000, min=1, smoke=2, doc="optimisation steps"),
               "lr": Float(0.01, min=0),
               "init": Choice("real", ("real", "noise")),
               "augment": Choice("dsa", ("none", "dsa"), family="augmentation")}

:func:`check_option` / :func:`check_options` say what is wrong with given values (one message
each, with a did-you-mean for a misspelt choice); :func:`resolve` merges given values over the
declared defaults and returns plain values (never :class:`Option` objects), so what a cell
stores and hashes is exactly what a suite wrote.  The suite loader, ``PluginSpec.resolve_options``
(and so the run context) and the executors all use these two functions.

Nothing here imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import KddbenchError, did_you_mean, unknown_message

KINDS = ("int", "float", "bool", "str", "choice", "any")


@dataclass(frozen=True)
class Option:
    """One declared option.

    default: the value used when a suite sets none (also what cells store then).
    kind:    int | float | bool | str | choice | any.  Ints are accepted where a float goes
             (and kept as written); booleans are never numbers.
    min/max: inclusive bounds of a number.
    above:   an exclusive lower bound (``above=0``: strictly positive).
    choices: the allowed values of a ``choice``.
    family:  a plugin family whose registered names are the choices when a registry has that
             family (e.g. ``"augmentation"``); ``choices`` is the fallback otherwise.
    where:   ``(attribute, value)`` pairs the family's specs must have to count as choices
             (e.g. ``(("level", "batch"),)``: batch augmentations only).
    doc:     one line for ``kddbench show``.
    smoke:   the value a smoke run (a tiny budget) uses for a budget knob (iterations, epochs).
    keyed:   false for an option that cannot change what is computed (how often a checkpoint
             is written): artifact keys leave it out (:func:`keyed_options`), so changing it
             reuses stored results.
    later:   an option added after the plugin's results were first stored: while it holds its
             default it is left out of the resolved options (:func:`resolve`), hence out of
             cell identities and artifact keys, and the factory's own default applies (it
             must be the same value; the conformance kit checks), so the cells computed
             before it existed keep their identities (the recipe's later keys do the same).
    """

    default: Any
    kind: str = "any"
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()
    family: str | None = None
    doc: str = ""
    smoke: Any = None
    above: float | None = None
    where: tuple[tuple[str, Any], ...] = ()
    keyed: bool = True
    later: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option kind must be one of {KINDS}, not {self.kind!r}")
        object.__setattr__(self, "choices", tuple(self.choices))

    def describe(self) -> str:
        """``int >= 1``, ``one of real, noise``, ... (for messages and ``kddbench show``)."""
        if self.kind in ("int", "float"):
            bounds = []
            if self.above is not None and self.max is not None:
                return f"{self.kind} in ({_fmt(self.above)}, {_fmt(self.max)}]"
            if self.min is not None and self.max is not None:
                return f"{self.kind} in [{_fmt(self.min)}, {_fmt(self.max)}]"
            if self.above is not None:
                bounds.append(f"> {_fmt(self.above)}")
            if self.min is not None:
                bounds.append(f">= {_fmt(self.min)}")
            if self.max is not None:
                bounds.append(f"<= {_fmt(self.max)}")
            return " ".join([self.kind] + bounds)
        if self.kind == "choice":
            if self.family:
                return f"a registered {self.family} name"
            return "one of " + ", ".join(map(str, self.choices))
        return self.kind

    def __repr__(self) -> str:
        return f"{self.default!r} ({self.describe()})"


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def Int(default: int, min: int | None = None, max: int | None = None, smoke: int | None = None,
        doc: str = "", keyed: bool = True, later: bool = False) -> Option:
    """An integer option, optionally bounded (inclusive)."""
    return Option(default, "int", min, max, doc=doc, smoke=smoke, keyed=keyed, later=later)


def Float(default: float, min: float | None = None, max: float | None = None,
          smoke: float | None = None, doc: str = "", above: float | None = None,
          later: bool = False) -> Option:
    """A finite number (ints accepted), optionally bounded (``min``/``max`` inclusive,
    ``above`` exclusive)."""
    return Option(default, "float", min, max, doc=doc, smoke=smoke, above=above, later=later)


def Bool(default: bool, doc: str = "") -> Option:
    return Option(default, "bool", doc=doc)


def Str(default: str, doc: str = "") -> Option:
    return Option(default, "str", doc=doc)


def Choice(default: Any, choices: Iterable[Any] = (), family: str | None = None,
           doc: str = "", where: Mapping[str, Any] | None = None, later: bool = False) -> Option:
    """One of ``choices`` (or of the names registered in ``family``, when there is one, whose
    specs have the attributes ``where`` names)."""
    return Option(default, "choice", choices=tuple(choices), family=family, doc=doc,
                  where=tuple(sorted((where or {}).items())), later=later)


def declaration(value: Any) -> Option:
    """The :class:`Option` for a declared entry: itself, or a plain default's inferred kind."""
    if isinstance(value, Option):
        return value
    if isinstance(value, bool):
        return Option(value, "bool")
    if isinstance(value, int):
        return Option(value, "int")
    if isinstance(value, float):
        return Option(value, "float")
    if isinstance(value, str):
        return Option(value, "str")
    return Option(value, "any")


def keyed_options(declared: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` less the options ``declared`` with ``keyed=False`` (what an artifact key
    holds of a plugin's options)."""
    return {k: v for k, v in values.items()
            if k not in declared or declaration(declared[k]).keyed}


def default_of(value: Any) -> Any:
    """The plain default of a declared entry."""
    return value.default if isinstance(value, Option) else value


def defaults(declared: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option's plain default."""
    return {k: default_of(v) for k, v in declared.items()}


def smoke_values(declared: Mapping[str, Any]) -> dict[str, Any]:
    """The options a smoke run sets (those declared with a ``smoke`` value)."""
    return {k: v.smoke for k, v in declared.items()
            if isinstance(v, Option) and v.smoke is not None}


def _family_names(registry: Any, family: str | None,
                  where: tuple[tuple[str, Any], ...] = ()) -> list[str] | None:
    """Registered names (and aliases) of ``family`` whose specs match ``where``, or None when
    the registry has no such family."""
    if registry is None or not family:
        return None
    specs = getattr(registry, "specs", {}).get(family)
    if not specs:
        return None
    keep = {name for name, spec in specs.items()
            if all(getattr(spec, attr, value) == value for attr, value in where)}
    aliases = getattr(registry, "aliases", {}).get(family, {})
    return sorted(keep | {alias for alias, name in aliases.items() if name in keep})


def choices_of(option: Option, registry: Any = None) -> tuple[Any, ...]:
    """The values a ``choice`` option accepts with this registry: the names registered in its
    family when the registry has that family (plus the default), else its ``choices``."""
    names = _family_names(registry, option.family, option.where)
    if names is None:
        return option.choices
    return tuple(names) + ((option.default,) if option.default not in names else ())


def check_option(option: Any, value: Any, registry: Any = None) -> str | None:
    """What is wrong with ``value`` for a declared entry, as ``"expected <what>, got <value>"``
    (None when it is fine)."""
    opt = declaration(option)
    kind = opt.kind
    if kind == "any":
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else f"expected bool (true or false), got {value!r}"
    if kind == "str":
        return None if isinstance(value, str) else f"expected str, got {value!r}"
    if kind == "choice":
        choices = choices_of(opt, registry)
        if not choices:  # a family with nothing registered and no fallback: accept names
            return None if isinstance(value, str) else f"expected a name, got {value!r}"
        if any(value == c and type(value) is type(c) for c in choices):
            return None
        return (f"expected one of {', '.join(map(str, choices))}, got {value!r}"
                + did_you_mean(value, choices))
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"expected {opt.describe()}, got {value!r}"
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {opt.describe()}, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite {opt.describe()}, got {value!r}"
    if (opt.min is not None and value < opt.min or opt.max is not None and value > opt.max
            or opt.above is not None and value <= opt.above):
        return f"expected {opt.describe()}, got {value!r}"
    return None


def check_options(declared: Mapping[str, Any], given: Mapping[str, Any] | None,
                  owner: str = "", registry: Any = None) -> list[tuple[str, str]]:
    """``(option name, message)`` for every unknown name or bad value in ``given``."""
    problems: list[tuple[str, str]] = []
    if given is None:
        return problems
    if not isinstance(given, Mapping):
        return [("", f"expected a table of option = value, got {given!r}")]
    for key, value in given.items():
        if key not in declared:
            problems.append((str(key), unknown_message(
                f"option of {owner}" if owner else "option", key, declared, listing="options",
                say_name=False)))
            continue
        message = check_option(declared[key], value, registry)
        if message:
            problems.append((str(key), message))
    return problems


def resolve(declared: Mapping[str, Any], given: Mapping[str, Any] | None = None, owner: str = "",
            registry: Any = None, check: bool = True) -> dict[str, Any]:
    """Plain defaults of ``declared`` overlaid with ``given`` (validated unless ``check`` is
    false; a problem raises :class:`KddbenchError` naming every bad option)."""
    if check:
        problems = check_options(declared, given, "", registry)  # owner leads the message
        if problems:
            where = f"{owner}: " if owner else ""
            raise KddbenchError(where + "; ".join(
                f"option {k!r}: {m}" if k else m for k, m in problems))
    merged = defaults(declared)
    merged.update(given or {})
    return {k: v for k, v in merged.items() if not _later_at_default(declared.get(k), v)}


def _later_at_default(declared: Any, value: Any) -> bool:
    """A ``later`` option holding its default (left out of resolved options)."""
    return (isinstance(declared, Option) and declared.later and value == declared.default
            and isinstance(value, bool) == isinstance(declared.default, bool))
