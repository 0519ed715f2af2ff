"""The small, typed records that plugins hand to kddbench.

Every registration hook (see :mod:`kddbench.hookspecs`) yields instances of these classes.  They
are cheap to build: ``factory`` is either a callable or a lazy ``"package.module:attribute"``
string, so listing plugins imports nothing heavy (no torch).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

#: Every spec class of a plugin family, by family name, in definition order (filled by
#: :meth:`PluginSpec.__init_subclass__`).  A new family is one spec class here (with ``family``,
#: ``hook``, ``title`` and ``singular``) plus its hook in :mod:`kddbench.hookspecs`.
SPEC_CLASSES: dict[str, type["PluginSpec"]] = {}


def spec_classes() -> dict[str, type["PluginSpec"]]:
    """``{family: spec class}`` of every plugin family, in the order ``kddbench list`` shows."""
    return dict(SPEC_CLASSES)


def __getattr__(name: str):  # FAMILIES stays importable, derived from the spec classes
    if name == "FAMILIES":
        return tuple(SPEC_CLASSES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    Class attributes (the family's metadata, one place for each): ``family`` (its name in the
    registry), ``hook`` (the registration hook that yields these specs), ``title`` (plural, as
    ``kddbench list`` heads it) and ``singular`` (as error messages name one).
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    version: str = "1"
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    prefix: bool = False
    family: ClassVar[str] = "plugin"
    hook: ClassVar[str] = ""
    title: ClassVar[str] = "plugins"
    singular: ClassVar[str] = "plugin"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("hook"):  # a family's own spec class (not a plugin's subclass of one)
            known = SPEC_CLASSES.get(cls.family)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"two spec classes for the family {cls.family!r}: "
                                f"{known.__qualname__} and {cls.__qualname__}")
            SPEC_CLASSES[cls.family] = cls

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
        """Plain defaults overlaid with ``given``, checked by :func:`kddbench.options.resolve`
        (an unknown name or a bad value is a :class:`KddbenchError`)."""
        from .options import resolve

        return resolve(self.options, given, owner=f"{self.singular} {self.name!r}")


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """A data set. ``factory(root: Path, download: bool, **options) -> kddbench.data.DataSplits``."""

    family = "dataset"
    hook = "kddbench_datasets"
    title = "datasets"
    singular = "dataset"
    offline: bool = False  # usable with no download (shipped in a package, or synthetic)
    # what augmentations must know of this data set, e.g. ("no_flip",): a mirrored image is
    # another class (digits); copied to DataSplits.traits when the data set is loaded
    traits: tuple[str, ...] = ()
    # smoke runs: ``"module:function"`` (or a callable) ``(root, per_class=2, seed=0)`` writing
    # a few images per class in this data set's real on-disk format under ``root``
    standin: Callable[..., Any] | str | None = None
    # (training images, test images) of the whole data set, for cost estimates before loading
    sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class ArchitectureSpec(PluginSpec):
    """A network. ``factory(channels, num_classes, image_size, **options) -> nn.Module``.

    The module must implement ``forward_features(x) -> (logits, {stage_name: tensor})``; the
    helpers in :mod:`kddbench.nn` add it to any module.
    """

    family = "architecture"
    hook = "kddbench_architectures"
    title = "architectures"
    singular = "architecture"


@dataclass(frozen=True)
class KDMethodSpec(PluginSpec):
    """A knowledge-distillation loss. ``factory(teacher, student, **options) -> KDLoss``.

    See :class:`kddbench.kd.KDLoss` for the interface the training loop calls.
    """

    family = "kd_method"
    hook = "kddbench_kd_methods"
    title = "knowledge-distillation methods"
    singular = "KD method"


@dataclass(frozen=True)
class CondenserSpec(PluginSpec):
    """A condensation method. ``factory(request: CondenseRequest, **options) -> SyntheticSet``.

    uses_ipc:   false for methods whose output does not depend on the budget (``full``); the
                suite expands them once instead of once per IPC.
    cacheable:  false where keeping the output in the artifact cache is pointless.
    """

    family = "condenser"
    hook = "kddbench_condensers"
    title = "condensation methods"
    singular = "condensation method"
    uses_ipc: bool = True
    cacheable: bool = True  # false where storing the output is pointless (``full``)
    # ``"module:function"`` (or a callable) ``(args: dict, registry) -> [ArtifactRequest, ...]``:
    # what the method needs built before it runs (e.g. expert trajectories); ``args`` are the
    # condensed-set request's (kddbench.artifacts)
    artifacts: Callable[..., Any] | str | None = None
    # ``"module:function"`` (or a callable) ``(options, ipc, data) -> image passes`` of the
    # method on its distillation network (kddbench.cost); None: not estimated
    cost: Callable[..., Any] | str | None = None


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
          Typed declaration instead of the four fields above: ``axes`` as a mapping of
          :class:`kddbench.axes.Axis` (``PluginAxis``, ``IntAxis``, ``ProtocolAxis``, ...);
          ``required``, ``plugin_axes``, ``reserved`` and ``protocol_axes`` are then derived,
          ``axes`` becomes the tuple of names and ``axis_types`` holds the declarations
          (the older style gets untyped ``Axis()`` entries there).
    rules: declarative rules applied to every expanded cell, e.g.
          ``kddbench.axes.AxisUnused("ipc", by="method", flag="uses_ipc")``.
    sections: report sections (:class:`SectionSpec` names) this task always contributes: each
          suite that runs the task gets them for its experiments unless it writes its own
          entries for that section's key.
    metrics: the metrics its cells report, as :class:`kddbench.metrics.MetricSpec` entries (a name
          or an fnmatch pattern each, the longest match wins): which way is better, unit, digits.
          ``kddbench compare`` takes each metric's direction from here and refuses to gate a
          metric the task does not declare.
    """

    family = "task"
    hook = "kddbench_tasks"
    title = "tasks"
    singular = "task"
    axes: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    plugin_axes: Mapping[str, str] = field(default_factory=dict)
    reserved: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    protocol_axes: tuple[str, ...] = ()
    rules: tuple = ()
    axis_types: Mapping[str, Any] = field(default_factory=dict)
    sections: tuple[str, ...] = ()
    metrics: tuple = ()
    # ``"module:function"`` (or a callable) ``(cell, info) -> [kddbench.cost.Work, ...]``: the
    # image passes a cell costs, for ``kddbench run --dry-run`` (kddbench.cost)
    cost: Callable[..., Any] | str | None = None
    # ``"module:function"`` (or a callable) ``(cell, registry) -> [ArtifactRequest, ...]``: the
    # artifacts a cell needs, built once each by the runner before the cells (kddbench.artifacts)
    artifacts: Callable[..., Any] | str | None = None

    def __post_init__(self):
        from .axes import normalise

        typed = normalise(self.axes, tuple(self.required), dict(self.plugin_axes),
                          dict(self.reserved), tuple(self.protocol_axes))
        set_ = object.__setattr__
        set_(self, "axis_types", typed)
        set_(self, "axes", tuple(typed))
        set_(self, "required", tuple(n for n, a in typed.items() if a.required))
        set_(self, "plugin_axes", {n: a.family for n, a in typed.items() if a.kind == "plugin"})
        set_(self, "reserved", {n: a.reserved for n, a in typed.items() if a.reserved})
        set_(self, "protocol_axes", tuple(n for n, a in typed.items() if a.kind == "protocol"))
        set_(self, "rules", tuple(self.rules))


@dataclass(frozen=True)
class ExecutorSpec(PluginSpec):
    """Runs cells. ``factory(settings, registry, **options) -> executor`` with
    ``map(cells, suite_name) -> iterator of (cell, record)``: the contract is
    :mod:`kddbench.executor` (out-of-process executors run its ``CellJob`` remotely)."""

    family = "executor"
    hook = "kddbench_executors"
    title = "executors"
    singular = "executor"


@dataclass(frozen=True)
class AugmentationSpec(PluginSpec):
    """An augmentation. ``level = "batch"``: ``factory(data: DataSplits, **options) -> fn`` with
    ``fn(x, generator) -> x'`` on a normalised (N, C, H, W) batch on the device, all randomness
    from ``generator`` (or ``None`` for no augmentation).  An augmentation that methods apply
    "Siamese" (the same draw to two batches) also offers ``sample_params(n, generator)`` and
    ``apply(x, params, groups=None)``.  It reads what it must know of the data set from
    ``data.traits`` (e.g. ``"no_flip"``), never from its name.

    ``level = "dataset"``: a transform fitted once on the training set: ``factory(data,
    **options)`` returns an object with ``fit(x_train) -> dict of tensors`` and
    ``apply(state, x) -> x'``; ``RunContext.transform(name, data)`` fits it once (an artifact)
    and returns the transformed splits.
    """

    family = "augmentation"
    hook = "kddbench_augmentations"
    title = "augmentations"
    singular = "augmentation"
    level: str = "batch"


@dataclass(frozen=True)
class ReporterSpec(PluginSpec):
    """Receives every finished record. ``factory(out_dir: Path) -> callable(record: dict)``."""

    family = "reporter"
    hook = "kddbench_reporters"
    title = "reporters"
    singular = "reporter"


@dataclass(frozen=True)
class SectionSpec(PluginSpec):
    """A report section type that owns one top-level key of suite files.

    key:     the suite key it owns (``"nas"`` for ``[[nas]]`` entries); defaults to ``name``.
             It may not be a core key (``suite``, ``protocols``, ``experiments``, ``tables``,
             ``references``).
    factory: ``factory() -> section``, an object with ``parse(entry, path, scope)`` (validate one
             entry: ``(parsed, [(key.path, message), ...])``), ``markdown(parsed, df, suite)``
             (the section's Markdown from the tidy results) and optionally ``write(parsed, df,
             out_dir, suite) -> [paths]`` (CSVs, figures) and ``implicit(experiments) ->
             [entry, ...]`` (what a task naming this section in ``TaskSpec.sections``
             contributes when the suite has no entry).  See :mod:`kddbench.sections`.
    """

    family = "section"
    hook = "kddbench_report_sections"
    title = "report sections"
    singular = "report section"
    key: str = ""

    @property
    def suite_key(self) -> str:
        return self.key or self.name
