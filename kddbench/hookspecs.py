"""The kddbench plugin contract.

Every capability of kddbench, the built-in ones included, is registered through these hooks.
A plugin is any module (or object) with functions named like the hooks below and decorated
with :data:`hookimpl`; it is found through the ``kddbench`` entry-point group::

    # pyproject.toml of a third-party package
    [project.entry-points.kddbench]
    mymethod = "kddbench_mymethod.plugin"

or loaded from a file with ``kddbench --plugin path/to/plugin.py ...``.

All registration hooks are *collecting* hooks: kddbench calls every implementation and
concatenates what they return (an iterable of specs).  Two specs of one family with the same
name are an error, whoever registered them.  Factories may be lazy ``"module:attr"`` strings so
that ``kddbench list`` imports nothing heavy.
"""
from __future__ import annotations

from typing import Any, Iterable

import pluggy

from .specs import (
    ArchitectureSpec,
    AugmentationSpec,
    CondenserSpec,
    DatasetSpec,
    ExecutorSpec,
    KDMethodSpec,
    ReporterSpec,
    SectionSpec,
    TaskSpec,
)

PROJECT = "kddbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kddbench_datasets() -> Iterable[DatasetSpec]:
    """Register data sets (collecting hook: every implementation is called).

    Example::

        @hookimpl
        def kddbench_datasets():
            yield DatasetSpec("my-digits", "my_pkg.data:load", description="...", offline=True)

    ``load(root: pathlib.Path, download: bool, **options)`` returns a
    :class:`kddbench.data.DataSplits` with train/test tensors (N, C, H, W), already normalised.
    """


@hookspec
def kddbench_architectures() -> Iterable[ArchitectureSpec]:
    """Register network architectures (collecting hook).

    Example::

        @hookimpl
        def kddbench_architectures():
            yield ArchitectureSpec("tiny", "my_pkg.nets:tiny", options={"width": 32})

    ``tiny(channels, num_classes, image_size, width=32)`` returns an ``nn.Module`` that also has
    ``forward_features(x) -> (logits, {stage: tensor})``; :func:`kddbench.nn.with_features`
    adds that to any module from a list of submodule names.
    """


@hookspec
def kddbench_kd_methods() -> Iterable[KDMethodSpec]:
    """Register knowledge-distillation methods (collecting hook).

    Example::

        @hookimpl
        def kddbench_kd_methods():
            yield KDMethodSpec("response", "my_pkg.kd:Response", options={"T": 4.0})

    The factory is called as ``factory(teacher, student, **options)`` and returns a
    :class:`kddbench.kd.KDLoss`; the shared training loop owns optimisation.
    """


@hookspec
def kddbench_condensers() -> Iterable[CondenserSpec]:
    """Register dataset condensation methods (collecting hook).

    Example::

        @hookimpl
        def kddbench_condensers():
            yield CondenserSpec("random", "my_pkg.coreset:random", description="...")

    ``random(request: kddbench.condense.CondenseRequest, **options)`` returns a
    :class:`kddbench.condense.SyntheticSet`.  It must draw all randomness from
    ``request.generator`` (seeded from the cell) so a re-run gives the same set.
    """


@hookspec
def kddbench_augmentations() -> Iterable[AugmentationSpec]:
    """Register augmentations (collecting hook).

    Example::

        @hookimpl
        def kddbench_augmentations():
            yield AugmentationSpec("cutout", "my_pkg.aug:cutout", options={"size": 8})

    ``cutout(data, size=8)`` returns ``fn(x, generator) -> x'`` (batched, on the device, all
    randomness from ``generator``) or ``None``; it reads ``data.traits`` (e.g. ``"no_flip"``)
    for what it must know of the data set.  ``level="dataset"`` registers a transform fitted once
    on the training set (see :class:`kddbench.specs.AugmentationSpec`).
    """


@hookspec
def kddbench_tasks() -> Iterable[TaskSpec]:
    """Register experiment kinds (collecting hook).

    Example::

        @hookimpl
        def kddbench_tasks():
            yield TaskSpec("train", "my_pkg.tasks:train", axes=("dataset", "arch"),
                           required=("dataset", "arch"), plugin_axes={"dataset": "dataset",
                           "arch": "architecture"})

    ``train(cell: kddbench.cells.Cell, ctx: kddbench.context.RunContext)`` returns a flat
    ``dict`` of metric name -> number for that cell.
    """


@hookspec
def kddbench_executors() -> Iterable[ExecutorSpec]:
    """Register executors that run cells (collecting hook).

    Example::

        @hookimpl
        def kddbench_executors():
            yield ExecutorSpec("slurm", "my_pkg.slurm:SlurmExecutor")

    ``SlurmExecutor(settings, registry, **options)`` returns a :class:`kddbench.executor.Executor`
    (``map(cells, suite_name) -> iterator of (cell, record)``); the whole contract, and the
    picklable ``CellJob`` that out-of-process backends send, is in :mod:`kddbench.executor`.
    """


@hookspec
def kddbench_reporters() -> Iterable[ReporterSpec]:
    """Register result reporters, e.g. an experiment tracker (collecting hook).

    Example::

        @hookimpl
        def kddbench_reporters():
            yield ReporterSpec("print", "my_pkg.report:printer")

    ``printer(out_dir)`` returns a callable that receives each finished record (a dict);
    ``kddbench run --reporter print`` switches it on.
    """


@hookspec
def kddbench_report_sections() -> Iterable[SectionSpec]:
    """Register report section types, each owning a top-level suite key (collecting hook).

    Example::

        @hookimpl
        def kddbench_report_sections():
            yield SectionSpec("ranking", "my_pkg.section:RankingSection", key="ranking")

    A suite then holds ``[[ranking]]`` entries; ``RankingSection()`` validates each one at
    ``kddbench validate`` time and renders it into the report (see :mod:`kddbench.sections`).
    A task may name the sections it always contributes in ``TaskSpec.sections``.
    """


@hookspec
def kddbench_record_finished(record: dict[str, Any]) -> None:
    """Called with every stored record, success or failure (collecting hook; return ignored).

    Example::

        @hookimpl
        def kddbench_record_finished(record):
            print(record["cell_id"], record["status"])
    """
