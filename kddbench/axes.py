"""Typed task axes and the declarative rules a task applies to its cells.

A task (:class:`kddbench.specs.TaskSpec`) declares its axes by name::

    axes={"dataset": PluginAxis("dataset", required=True),
          "method": PluginAxis("condenser", required=True),
          "ipc": IntAxis(min=1),
          "teacher_protocol": ProtocolAxis()},
    rules=(AxisUnused("ipc", by="method", flag="uses_ipc"),)

The suite loader checks every value of an experiment's axes against these declarations before
anything runs (a plugin axis takes registered names, inline options and the axis's reserved
values; an int axis takes integers within its bounds; a protocol axis names a suite protocol;
no axis takes an empty list) and then applies the rules to each expanded cell.  Nothing here
knows a family, task or axis by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

AXIS_KINDS = ("plugin", "int", "protocol", "str", "any")


@dataclass(frozen=True)
class Axis:
    """One axis of a task.

    kind:     plugin (names a plugin of ``family``) | int | protocol (names a suite protocol)
              | str | any (no check: axes declared the old way, as a bare name).
    family:   the plugin family of a ``plugin`` axis.
    min/max:  inclusive bounds of an ``int`` axis.
    reserved: values a ``plugin`` axis accepts besides plugin names (e.g. a role such as
              ``"teacher"``); they pass through as they are (no options, no version).
    required: every experiment of the task sets it.
    doc:      one line for ``kddbench show``.
    space:    a ``plugin`` axis's declared search space: names with ``|`` alternatives
              (``"convnet[depth=1|2,width=32|64]"``), what a suite's ``axis = {sample = k}``
              draws from when it names no ``space`` of its own (:func:`kddbench.names.sample`).
    """

    kind: str = "any"
    family: str | None = None
    min: int | None = None
    max: int | None = None
    reserved: tuple[str, ...] = ()
    required: bool = False
    doc: str = ""
    space: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in AXIS_KINDS:
            raise ValueError(f"axis kind must be one of {AXIS_KINDS}, not {self.kind!r}")
        if self.kind == "plugin" and not self.family:
            raise ValueError("a plugin axis names its family")
        object.__setattr__(self, "reserved", tuple(self.reserved))
        object.__setattr__(self, "space", (self.space,) if isinstance(self.space, str)
                           else tuple(self.space))

    def describe(self) -> str:
        if self.kind == "plugin":
            extra = f" or {', '.join(self.reserved)}" if self.reserved else ""
            article = "an" if self.family[:1] in "aeiou" else "a"
            return f"{article} {self.family} name{extra}"
        if self.kind == "int":
            if self.min is not None and self.max is not None:
                return f"an integer in [{self.min}, {self.max}]"
            if self.min is not None:
                return f"an integer >= {self.min}"
            if self.max is not None:
                return f"an integer <= {self.max}"
            return "an integer"
        return {"protocol": "a protocol name", "str": "a string"}.get(self.kind, "a value")


def PluginAxis(family: str, reserved: tuple[str, ...] = (), required: bool = False,
               doc: str = "", space: str | tuple[str, ...] = ()) -> Axis:
    return Axis("plugin", family=family, reserved=tuple(reserved), required=required, doc=doc,
                space=space)


def IntAxis(min: int | None = None, max: int | None = None, required: bool = False,
            doc: str = "") -> Axis:
    return Axis("int", min=min, max=max, required=required, doc=doc)


def ProtocolAxis(required: bool = False, doc: str = "") -> Axis:
    return Axis("protocol", required=required, doc=doc)


def StrAxis(required: bool = False, doc: str = "") -> Axis:
    return Axis("str", required=required, doc=doc)


@dataclass(frozen=True)
class AxisUnused:
    """Rule: axis ``axis`` is set to None in every cell whose plugin named by axis ``by`` has a
    false attribute ``flag`` (e.g. a method whose output does not depend on the budget), so
    such a method expands once instead of once per value of ``axis``."""

    axis: str
    by: str
    flag: str

    def describe(self) -> str:
        return (f"{self.axis} is unused (None) where the plugin named by {self.by} has "
                f"{self.flag} false")

    def axes_named(self) -> tuple[str, ...]:
        return (self.axis, self.by)

    def apply(self, values: dict[str, Any], spec_of: Callable[[str], Any]) -> None:
        spec = spec_of(self.by)
        if spec is not None and not getattr(spec, self.flag, True):
            values[self.axis] = None


def normalise(axes: Any, required: tuple[str, ...], plugin_axes: Mapping[str, str],
              reserved: Mapping[str, tuple[str, ...]], protocol_axes: tuple[str, ...]
              ) -> dict[str, Axis]:
    """Typed axes from either declaration style: a mapping of :class:`Axis` (or of family
    names, meaning plugin axes), or the older tuple of names plus ``plugin_axes`` etc."""
    typed: dict[str, Axis] = {}
    if isinstance(axes, Mapping):
        for name, axis in axes.items():
            if isinstance(axis, str):
                axis = PluginAxis(axis)
            if not isinstance(axis, Axis):
                raise TypeError(f"axis {name!r}: expected an Axis, got {axis!r}")
            typed[name] = axis
    else:
        for name in axes:
            if name in plugin_axes:
                typed[name] = PluginAxis(plugin_axes[name], reserved.get(name, ()))
            elif name in protocol_axes:
                typed[name] = ProtocolAxis()
            else:
                typed[name] = Axis()
    for name in required:
        if name in typed and not typed[name].required:
            a = typed[name]
            typed[name] = Axis(a.kind, a.family, a.min, a.max, a.reserved, True, a.doc, a.space)
    return typed
