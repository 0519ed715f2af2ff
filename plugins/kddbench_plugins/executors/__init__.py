"""Executor registrations: in-process, a local process pool, submitit (Slurm) and Ray."""
from kddbench import ExecutorSpec, hookimpl
from kddbench.options import Int

from .ray_executor import OPTIONS as RAY_OPTIONS
from .submitit_executor import OPTIONS as SUBMITIT_OPTIONS


@hookimpl
def kddbench_executors():
    yield ExecutorSpec("inprocess", "kddbench.runner:InProcessExecutor",
                       "run cells one after another in this process (what `run` uses with --jobs 1, on a "
                       "GPU, or for a single cell)")
    yield ExecutorSpec("process", "kddbench.runner:ProcessPoolExecutor",
                       "run cells in a local pool of processes (what a plain `run` uses on the CPU: "
                       "--jobs auto = one single-threaded worker per core)",
                       options={"workers": Int(2, min=1)})
    yield ExecutorSpec("submitit", "kddbench_plugins.executors.submitit_executor:SubmititExecutor",
                       "run cells as a Slurm job array (or local subprocesses) via submitit, "
                       "requeued on preemption", options=SUBMITIT_OPTIONS)
    yield ExecutorSpec("ray", "kddbench_plugins.executors.ray_executor:RayExecutor",
                       "run cells as Ray tasks on a Ray cluster (or a local Ray instance), "
                       "retried when a worker dies", options=RAY_OPTIONS)
