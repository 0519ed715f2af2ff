"""The small, typed records that plugins hand to kddbench.

Every registration hook (see :mod:`kddbench.hookspecs`) yields instances of these classes.  They
are cheap to build: ``factory`` is either a callable or a lazy ``"package.module:attribute"``
string, so listing plugins imports nothing heavy (no torch).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

FAMILIES = ("dataset", "architecture", "kd_method", "condenser", "task", "executor", "reporter")


@dataclass(frozen=True)
class PluginSpec:
    """What every plugin family has in common.

    name:        the name used in suite files (lower case, ``-`` allowed, ``:`` reserved for
                 prefix families such as ``timm:<model>``).
    factory:     a callable, or ``"module:attr"`` resolved on first use.
    description: one line, shown by ``kddbench list``.
    version:     bump it whenever the plugin's numbers may change; it is recorded with every
                 result and ``kddbench compare`` refuses to compare different versions.
    options:     the options a suite may set, with their defaults. Suite validation rejects
                 unknown option names and values of the wrong type before anything runs.
    aliases:     other accepted names (documented abbreviations from papers).
    prefix:      when true the spec also answers every name ``"<name>:<anything>"``.
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    version: str = "1"
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    prefix: bool = False
    family = "plugin"

    def load(self) -> Callable[..., Any]:
        """Resolve ``factory`` (importing its module if it is a string)."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = str(self.factory).partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (already validated by the suite loader)."""
        merged = dict(self.options)
        merged.update(given or {})
        return merged


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """A data set. ``factory(root: Path, download: bool, **options) -> kddbench.data.DataSplits``."""

    family = "dataset"
    offline: bool = False  # usable with no download (shipped in a package, or synthetic)


@dataclass(frozen=True)
class ArchitectureSpec(PluginSpec):
    """A network. ``factory(channels, num_classes, image_size, **options) -> nn.Module``.

    The module must implement ``forward_features(x) -> (logits, {stage_name: tensor})``; the
    helpers in :mod:`kddbench.nn` add it to any module.
    """

    family = "architecture"


@dataclass(frozen=True)
class KDMethodSpec(PluginSpec):
    """A knowledge-distillation loss. ``factory(teacher, student, **options) -> KDLoss``.

    See :class:`kddbench.kd.KDLoss` for the interface the training loop calls.
    """

    family = "kd_method"


@dataclass(frozen=True)
class CondenserSpec(PluginSpec):
    """A condensation method. ``factory(request: CondenseRequest, **options) -> SyntheticSet``.

    uses_ipc:   false for methods whose output does not depend on the budget (``full``); the
                suite expands them once instead of once per IPC.
    cacheable:  false where keeping the output in the artifact cache is pointless.
    """

    family = "condenser"
    uses_ipc: bool = True
    cacheable: bool = True  # false where storing the output is pointless (``full``)


@dataclass(frozen=True)
class TaskSpec(PluginSpec):
    """An experiment kind. ``factory(cell: Cell, ctx: RunContext) -> dict[str, float]``.

    axes: the cell keys this task understands (beyond task/seed/protocol/options); the suite
          loader rejects any other key with a "did you mean" hint.
    required: the subset of ``axes`` every experiment of this task must set.
    plugin_axes: which axes name plugins of which family, e.g. ``{"dataset": "dataset"}``.
    reserved: values a plugin axis accepts besides plugin names, e.g. ``{"kd_method":
          ("teacher", "none")}``; they are passed through as they are (no options, no version).
    protocol_axes: axes whose values name a suite protocol (e.g. ``teacher_protocol``); the
          loader checks the name and stores the resolved recipe in the cell's options under
          ``"protocol:<name>"``, so a change to that protocol changes the cell's identity.
    """

    family = "task"
    axes: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    plugin_axes: Mapping[str, str] = field(default_factory=dict)
    reserved: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    protocol_axes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutorSpec(PluginSpec):
    """Runs cells. ``factory(settings, registry, **options) -> executor`` with
    ``map(cells, suite_name) -> iterator of (cell, record)``; out-of-process executors run
    :class:`kddbench.runner.CellJob` remotely (see ``kddbench_plugins.executors.submitit_executor``)."""

    family = "executor"


@dataclass(frozen=True)
class ReporterSpec(PluginSpec):
    """Receives every finished record. ``factory(out_dir: Path) -> callable(record: dict)``."""

    family = "reporter"
