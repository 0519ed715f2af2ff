"""Run cells as Slurm jobs (or local subprocesses) through submitit.

``kddbench run SUITE --executor 'submitit[partition=gpu,gpus=1,timeout_min=240]'`` submits one
job-array task per unfinished cell and stores each record as its job ends.  Preempted or
timed-out tasks are requeued by submitit; condensation methods checkpoint through the artifact
cache, so a requeued cell resumes where it stopped.  Without Slurm (or with ``cluster=local``)
the tasks run as local subprocesses, which is how the tests exercise this executor.

Needs ``pip install submitit`` (or ``pip install 'kddbench[submitit]'``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from kddbench.errors import KddbenchError
from kddbench.options import Choice, Float, Int
from kddbench.executor import CellJob, executor_options

OPTIONS: dict[str, Any] = {
    # auto (slurm when sbatch is there, else local), slurm, local, debug
    "cluster": Choice("auto", ("auto", "slurm", "local", "debug")),
    "folder": "",            # job logs and pickles; default <report dir>/submitit
    "timeout_min": Int(240, min=1),
    "partition": "",
    "gpus": Int(0, min=0, doc="GPUs per task"),
    "cpus": Int(2, min=1, doc="CPU cores per task"),
    "mem_gb": Int(0, min=0, doc="0: the cluster's default"),
    "array_parallelism": Int(64, min=1, doc="tasks of the array running at once"),
    "poll_s": Float(5.0, above=0, doc="how often to look for finished tasks"),
    "lost_after_s": Float(60.0, above=0, doc="a Slurm task gone from squeue this long without "
                          "a result counts as failed (a task killed while accounting is off)"),
}


def slurm_queue(job_ids: Iterable[str]) -> set[str] | None:
    """The ids among ``job_ids`` that Slurm still lists (pending, running, requeued), one per
    array task; None when squeue does not answer (then nothing is judged lost)."""
    import subprocess

    ids = sorted({str(j).split("_")[0] for j in job_ids})
    if not ids:
        return set()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # squeue also fails on ids it no longer knows: ask one by one
        if len(ids) == 1:
            return set() if "Invalid job id" in out.stderr else None
        found: set[str] = set()
        for one in ids:
            part = slurm_queue([one])
            if part is None:
                return None
            found |= part
        return found
    return {line.strip() for line in out.stdout.split() if line.strip()}


class LostTasks:
    """Which pending tasks left the Slurm queue without a result.  submitit learns that a task
    ended from its result file or from sacct; with accounting off, a task killed before writing
    its result (``scancel``, the node lost, out of memory) would look pending for ever."""

    def __init__(self, after_s: float, queue=slurm_queue, clock=time.monotonic):
        self.after_s, self.queue, self.clock = float(after_s), queue, clock
        self.missing_since: dict[str, float] = {}

    def __call__(self, jobs: Iterable) -> list:
        jobs = [j for j in jobs if not j.done()]
        listed = self.queue(j.job_id for j in jobs)
        if listed is None:
            return []
        now, lost = self.clock(), []
        for j in jobs:
            if str(j.job_id) in listed:
                self.missing_since.pop(str(j.job_id), None)
                continue
            since = self.missing_since.setdefault(str(j.job_id), now)
            if now - since >= self.after_s and not j.done():
                lost.append(j)
        return lost


def _submitit():
    try:
        import submitit
    except ImportError:
        raise KddbenchError(
            "the submitit executor needs the submitit package: pip install submitit "
            "(or pip install 'kddbench[submitit]')") from None
    return submitit


class RequeueableCellJob:
    """A :class:`~kddbench.executor.CellJob` that submitit resubmits, with the same cell, when
    its task is preempted or runs out of time (submitit calls ``checkpoint`` then)."""

    def __init__(self, job: CellJob):
        self.job = job

    def __call__(self, cell_dict: dict[str, Any]) -> dict[str, Any]:
        return self.job(cell_dict)

    def checkpoint(self, cell_dict: dict[str, Any]):
        return _submitit().helpers.DelayedSubmission(self, cell_dict)


class SubmititExecutor:
    """Cells as the tasks of a submitit job array; records come back as tasks finish."""

    def __init__(self, settings, registry=None, **options: Any):
        self.settings = settings
        self.options = executor_options("submitit", options, OPTIONS)

    def _executor(self):
        submitit = _submitit()
        o = self.options
        folder = Path(o["folder"] or Path(self.settings.out_dir or ".") / "submitit")
        cluster = None if o["cluster"] == "auto" else o["cluster"]
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        params: dict[str, Any] = {"timeout_min": int(o["timeout_min"]),
                                  "cpus_per_task": int(o["cpus"]), "tasks_per_node": 1,
                                  "nodes": 1, "name": "kddbench"}
        if o["gpus"]:
            params["gpus_per_node"] = int(o["gpus"])
        if o["mem_gb"]:
            params["mem_gb"] = int(o["mem_gb"])
        if executor.cluster == "slurm":
            params["slurm_array_parallelism"] = int(o["array_parallelism"])
            if o["partition"]:
                params["slurm_partition"] = o["partition"]
        executor.update_parameters(**params)
        return executor

    def map(self, cells: Iterable, suite_name: str):
        cells = list(cells)  # the runner claims each cell as it is taken: all of them here
        if not cells:
            return
        executor = self._executor()
        settings = self.settings
        if not settings.threads:  # one torch thread per requested core
            settings = replace(settings, threads=int(self.options["cpus"]))
        job = CellJob.for_this_run(settings, suite_name)
        task = RequeueableCellJob(job)
        with executor.batch():
            jobs = [executor.submit(task, cell.to_dict()) for cell in cells]
        pending = dict(zip(jobs, cells))
        lost = LostTasks(self.options["lost_after_s"]) if executor.cluster == "slurm" else None
        try:
            while pending:
                finished = [j for j in pending if j.done()]
                for j in finished:
                    cell = pending.pop(j)
                    try:
                        record = j.result()
                    except Exception as exc:  # the task died: out of memory, cancelled, ...
                        record = job.failed(cell, exc)
                    yield cell, record
                for j in (lost(pending) if lost and pending and not finished else ()):
                    cell = pending.pop(j)
                    yield cell, job.failed(cell, KddbenchError(
                        f"Slurm task {j.job_id} left the queue without a result (cancelled or "
                        f"killed; its log: {j.paths.stderr})"))
                if pending and not finished:
                    time.sleep(float(self.options["poll_s"]))
        except BaseException:
            for j in pending:  # Ctrl-C: do not leave the remaining tasks queued on the cluster
                try:
                    j.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            raise
