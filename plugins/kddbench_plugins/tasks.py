"""Task and executor registrations."""
from kddbench import ExecutorSpec, ReporterSpec, TaskSpec, hookimpl

from .ray_executor import OPTIONS as RAY_OPTIONS
from .submitit_executor import OPTIONS as SUBMITIT_OPTIONS


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "condense", "kddbench_plugins.condense_task:run",
        "condense a training set (method at ipc, on distill_arch), then train eval_arch on it "
        "with the shared protocol and test on the real test set",
        axes=("dataset", "method", "ipc", "distill_arch", "eval_arch"),
        required=("dataset", "method", "eval_arch"),
        plugin_axes={"dataset": "dataset", "method": "condenser", "distill_arch": "architecture",
                     "eval_arch": "architecture"})


@hookimpl
def kddbench_executors():
    yield ExecutorSpec("inprocess", "kddbench.runner:InProcessExecutor",
                       "run cells one after another in this process (default)")
    yield ExecutorSpec("process", "kddbench.runner:ProcessPoolExecutor",
                       "run cells in a local pool of processes (--jobs N)",
                       options={"workers": 2})
    yield ExecutorSpec("submitit", "kddbench_plugins.submitit_executor:SubmititExecutor",
                       "run cells as a Slurm job array (or local subprocesses) via submitit, "
                       "requeued on preemption", options=SUBMITIT_OPTIONS)
    yield ExecutorSpec("ray", "kddbench_plugins.ray_executor:RayExecutor",
                       "run cells as Ray tasks on a Ray cluster (or a local Ray instance), "
                       "retried when a worker dies", options=RAY_OPTIONS)


@hookimpl
def kddbench_reporters():
    yield ReporterSpec("jsonl", "kddbench_plugins.reporters:jsonl",
                       "append every finished record to <report dir>/records.jsonl")
