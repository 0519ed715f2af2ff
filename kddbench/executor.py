"""The executor contract: what an executor plugin receives, what it must do, what it may use.

An executor runs cells.  A plugin registers one with ``kddbench_executors`` (an
:class:`~kddbench.specs.ExecutorSpec`); its factory is called as::

    executor = factory(settings: RunSettings, registry: Registry | None, **options)

where ``options`` are the ones the spec declares, given inline on the command line
(``--executor 'submitit[gpus=1,timeout_min=600]'``); a factory called from Python checks them
with :func:`executor_options`.  The runner then calls::

    for cell, record in executor.map(cells, suite_name): ...

``cells`` is an iterable the runner fills lazily (it claims each cell as the executor takes
it, so take a cell only when it can start; do not call ``len``), and it may hold
:class:`~kddbench.artifacts.ArtifactRequest` items (the artifacts the cells declare, built
before them): treat them like cells -- ``item.to_dict()``, ``item.label()``, ``job.failed``.
An executor may have a ``close()`` method; the runner calls it after the last ``map``.

An executor whose ``map`` takes one item from ``cells`` whenever it can start one, and never
reads ahead, may say so with a class attribute ``lazy = True`` (the in-process and process-pool
executors do).  The runner then hands it the cells and their artifacts together, each as soon
as what it needs is built (:mod:`kddbench.schedule`), and ``cells`` may yield :data:`WAIT`:
nothing can start until an item already running finishes -- start nothing for it, and take
again after yielding the next finished item.  Without ``lazy`` the artifacts come first, wave by
wave, then the cells.
``map`` (see :class:`Executor`) yields each cell with its record as the cell finishes, in any
order, once per cell; it never raises for a failing cell (its record says ``status: error``),
and on Ctrl-C (an exception thrown into the generator) it stops or cancels the cells not yet
started and re-raises.  The runner stores each record as it arrives, so an interrupted run keeps
every finished cell.

An out-of-process backend (a process pool, a Slurm job array, a Ray cluster) sends a
:class:`CellJob` -- ``CellJob.for_this_run(settings, suite_name)``, picklable -- and calls it
remotely with ``cell.to_dict()``: it rebuilds the same plugins and run context in the worker and
returns the record.  When the worker dies before returning, ``job.failed(cell, exc)`` is the
record to yield.  Records are per-cell files, so nothing else has to travel back.
``kddbench_plugins.executors.submitit_executor`` and ``ray_executor`` are worked examples.

Nothing here imports torch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

from .cells import Cell

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Registry


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


#: what a lazy executor's ``cells`` yields while nothing can start (see the module docstring)
WAIT = _Wait()


@dataclass
class RunSettings:
    """Everything a worker needs to rebuild a run context (picklable)."""

    device: str = "auto"
    data_root: str | None = None
    download: bool | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    threads: int | None = None
    out_dir: str | None = None


@runtime_checkable
class Executor(Protocol):
    """What an executor's factory returns (see the module docstring for the whole contract)."""

    def map(self, cells: Sequence[Cell], suite_name: str) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Run ``cells``; yield ``(cell, record)`` for each as it finishes, never raising for a
        failing cell."""
        ...  # pragma: no cover


class ExecutorFactory(Protocol):
    """The ``factory`` of an :class:`~kddbench.specs.ExecutorSpec`."""

    def __call__(self, settings: RunSettings, registry: Registry | None = None,
                 **options: Any) -> Executor: ...  # pragma: no cover


_WORKER: dict[str, Any] = {}


@dataclass
class CellJob:
    """``record = CellJob(...)(cell_dict)``: runs one cell in whatever process calls it.

    This is the whole contract between the runner and an out-of-process executor (a process
    pool, a Slurm job, a Ray task): it is picklable, rebuilds the plugin registry and the run
    context in the worker the first time it is called there (the same plugins and settings as
    the parent), and returns the cell's record; it never raises for a failing cell.
    """

    settings: RunSettings
    suite_name: str
    plugin_args: tuple = ()

    @classmethod
    def for_this_run(cls, settings: RunSettings, suite_name: str) -> "CellJob":
        from .plugins import registry_args

        return cls(settings, suite_name, registry_args())

    def setup(self) -> None:
        key = (repr(self.settings), repr(self.plugin_args))
        if _WORKER.get("key") == key:
            return
        from . import plugins
        from .runner import environment, make_context

        with warnings.catch_warnings():  # the parent already warned about broken plugins
            warnings.simplefilter("ignore", plugins.PluginLoadWarning)
            registry = plugins.configure(*self.plugin_args)
        _WORKER["ctx"] = make_context(self.settings, registry)
        _WORKER["env"] = environment(registry, str(_WORKER["ctx"].device))
        _WORKER["key"] = key

    def __call__(self, cell_dict: dict[str, Any]) -> dict[str, Any]:
        """``cell_dict`` is ``item.to_dict()`` of a cell or of an artifact request."""
        from .runner import execute, item_from_dict

        self.setup()
        return execute(item_from_dict(cell_dict), _WORKER["ctx"], self.suite_name,
                       _WORKER["env"])

    def failed(self, cell: Cell, exc: BaseException) -> dict[str, Any]:
        """The record of a cell (or an artifact request) whose worker died before it could
        write one."""
        from .runner import failed_item

        return failed_item(cell, self.suite_name, exc)


def executor_options(name: str, given: dict[str, Any],
                     declared: dict[str, Any]) -> dict[str, Any]:
    """An executor's options: its ``declared`` defaults updated by those ``given``, checked by
    :func:`kddbench.options.resolve` (an unknown name or a bad value is a
    :class:`KddbenchError` naming the real options: typos fail early)."""
    from .options import resolve

    return resolve(declared, given, owner=f"executor {name!r}")
