"""Run cells as Ray tasks: on a local Ray instance, or on a running Ray cluster.

``kddbench run SUITE --executor 'ray[address=auto,gpus=1]'`` sends one task per unfinished
cell to the cluster and stores each record as its task ends.  A task whose worker or node dies
is retried by Ray (``max_retries``); condensation methods checkpoint through the artifact cache,
so a retried cell resumes where it stopped when the cache sits on a shared filesystem.  With no
``address`` (and no ``RAY_ADDRESS`` in the environment) a local Ray instance is started for the
run and stopped after it, which is how the tests exercise this executor.  Every node needs
kddbench (and any ``--plugin`` file, at the same path) installed, as for Slurm.

Needs ``pip install ray`` (or ``pip install 'kddbench[ray]'``).
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import replace
from typing import Any, Iterable

from kddbench.errors import KddbenchError
from kddbench.options import Float, Int
from kddbench.executor import CellJob, executor_options

OPTIONS: dict[str, Any] = {
    "address": "",       # "" : RAY_ADDRESS, else a local instance; "auto"; "ray://head:10001"
    "cpus": Int(1, min=1, doc="CPU cores per task (also its torch threads)"),
    "gpus": Float(0.0, min=0, doc="GPUs per task; fractions share a GPU between cells"),
    "max_retries": Int(2, min=0, doc="resubmissions of a task whose worker or node died"),
}


def _ray():
    try:
        import ray
    except ImportError:
        raise KddbenchError("the ray executor needs the ray package: pip install ray "
                            "(or pip install 'kddbench[ray]')") from None
    return ray


def _no_cluster(address: str | None, why: BaseException) -> KddbenchError:
    return KddbenchError(f"ray executor: cannot reach the Ray cluster at {address!r} ({why}); "
                         "start it with `ray start --head`, fix address=, or leave address= "
                         "out to run on a local Ray instance")


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of reconnecting, when ``host:port`` is down."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise _no_cluster(address, exc) from None


def run_cell(job: CellJob, cell_dict: dict[str, Any]) -> dict[str, Any]:
    """The body of one Ray task (a module-level function, so workers import it by name)."""
    return job(cell_dict)


class RayExecutor:
    """Cells as Ray tasks; records come back in the order the tasks finish."""

    def __init__(self, settings, registry=None, **options: Any):
        self.settings = settings
        self.options = executor_options("ray", options, OPTIONS)

    def _connect(self) -> bool:
        """Connect to (or start) Ray; True when this run started it and must stop it."""
        ray = _ray()
        if ray.is_initialized():  # a notebook that already called ray.init()
            return False
        address = self.options["address"] or os.environ.get("RAY_ADDRESS") or None
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        except ConnectionError as exc:  # address=auto with no cluster running here
            raise _no_cluster(address, exc) from None
        return True

    def map(self, cells: Iterable, suite_name: str):
        cells = list(cells)  # the runner claims each cell as it is taken: all of them here
        if not cells:
            return
        ray = _ray()
        o = self.options
        settings = self.settings
        if not settings.threads:  # one torch thread per core the task asked for
            settings = replace(settings, threads=max(1, int(float(o["cpus"]))))
        job = CellJob.for_this_run(settings, suite_name)
        started = self._connect()
        try:
            task = ray.remote(run_cell).options(
                num_cpus=float(o["cpus"]), num_gpus=float(o["gpus"]),
                max_retries=int(o["max_retries"]))
            job_ref = ray.put(job)
            pending = {task.remote(job_ref, cell.to_dict()): cell for cell in cells}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        cell = pending.pop(ref)
                        try:
                            record = ray.get(ref)
                        except Exception as exc:  # worker died beyond retries, cancelled, ...
                            record = job.failed(cell, exc)
                        yield cell, record
            except BaseException:
                for ref in pending:  # Ctrl-C: do not leave the rest queued on the cluster
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # noqa: BLE001 - best effort on the way out
                        pass
                raise
        finally:
            if started:
                ray.shutdown()
