"""Executor plugins: inline options, and cells run as submitit jobs (local subprocesses) and
as Ray tasks (a local Ray instance)."""
import json

import pytest

from conftest import TINY_SUITE, write_suite
from test_run_e2e import CRASHING_PLUGIN

ONE_CELL_EACH = TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]").replace(
    "ipc = [2, 5]", "ipc = [2]")


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_unknown_executor_option_is_a_clear_error(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", ONE_CELL_EACH)
    code, _, err = cli("run", suite, "--out", tmp_path / "o", "--executor",
                       "submitit[partiton=gpu]", "--no-progress")
    assert code == 2
    assert "partiton" in err and "partition" in err  # names the typo and the real options
    code, _, err = cli("run", suite, "--out", tmp_path / "o", "--executor",
                       "inprocess[workers=2]", "--no-progress")
    assert code == 2 and "option 'workers': unknown option (options: none)" in err


def test_process_executor_takes_its_worker_count_inline(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", ONE_CELL_EACH.replace(
        'method = ["full", "random", "average"]', 'method = ["random", "average"]'))
    code, _, err = cli("run", suite, "--out", tmp_path / "o", "--executor",
                       "process[workers=2]", "--no-progress")
    assert code == 0, err
    assert len(_records(tmp_path / "o")) == 2


@pytest.mark.parametrize("package, executor, logs", [
    ("submitit", "submitit[cluster=local,cpus=1,poll_s=0.2]", "submitit"),
    ("ray", "ray[cpus=1]", None),
])
def test_cluster_executors_match_in_process_numbers_and_carry_plugins(tmp_path, cli, package,
                                                                      executor, logs):
    pytest.importorskip(package)
    plugin = tmp_path / "crash.py"
    plugin.write_text(CRASHING_PLUGIN)
    suite = write_suite(tmp_path / "s.toml", ONE_CELL_EACH.replace(
        'method = ["full", "random", "average"]', 'method = ["explode", "random"]'))
    code, _, err = cli("--plugin", plugin, "run", suite, "--out", tmp_path / "a",
                       "--jobs", "1", "--no-progress")
    assert code == 3, err  # the crashing cell: ExitCode.FAILED_CELLS
    code, _, err = cli("--plugin", plugin, "run", suite, "--out", tmp_path / "b", "--executor",
                       executor, "--no-progress")
    assert code == 3 and "1 cell(s) failed" in err, err
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert a.keys() == b.keys() and len(b) == 2
    for key, rec in b.items():
        assert rec["status"] == a[key]["status"]
        if rec["status"] == "ok":  # the same cell gives the same number on the other side
            assert rec["metrics"]["accuracy"] == a[key]["metrics"]["accuracy"]
            assert rec["env"]["torch_threads"] == 1
        else:  # the --plugin file reached the worker, and its failure came back as a record
            assert "boom" in rec["error"]
    if logs:
        assert list((tmp_path / "b" / logs).iterdir())  # the engine's logs sit in the report


def test_an_unreachable_ray_cluster_fails_fast_and_says_what_to_do(tmp_path, cli):
    pytest.importorskip("ray")
    suite = write_suite(tmp_path / "s.toml", ONE_CELL_EACH)
    code, _, err = cli("run", suite, "--out", tmp_path / "o", "--executor",
                       "ray[address=127.0.0.1:1]", "--no-progress")
    assert code == 2
    assert "127.0.0.1:1" in err and "ray start --head" in err
    assert not list((tmp_path / "o").glob("records/*.json"))


def test_a_requeued_submitit_task_resubmits_the_same_cell():
    submitit = pytest.importorskip("submitit")
    from kddbench.runner import CellJob, RunSettings
    from kddbench_plugins.executors.submitit_executor import RequeueableCellJob

    task = RequeueableCellJob(CellJob(RunSettings(), "suite"))
    again = task.checkpoint({"cell": 1})
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is task and again.args == ({"cell": 1},)


class _FakeJob:
    def __init__(self, job_id, done=False):
        self.job_id, self._done = job_id, done

    def done(self):
        return self._done


def test_a_slurm_task_gone_from_the_queue_without_a_result_is_lost_after_the_grace():
    """With accounting off, submitit sees a killed task as pending for ever; LostTasks says it
    is lost once squeue has not listed it for ``after_s`` and it still has no result."""
    from kddbench_plugins.executors.submitit_executor import LostTasks

    now = [0.0]
    listed = {"7_0", "7_1", "7_2"}
    lost = LostTasks(60, queue=lambda ids: {i for i in ids if i in listed},
                     clock=lambda: now[0])
    running, killed, finished = _FakeJob("7_0"), _FakeJob("7_1"), _FakeJob("7_2")
    jobs = [running, killed, finished]
    assert lost(jobs) == []
    listed -= {"7_1", "7_2"}  # 7_1 killed, 7_2 ended normally (its result written)
    finished._done = True
    now[0] = 10.0
    assert lost(jobs) == []  # gone, but within the grace (a result may still be on its way)
    now[0] = 69.0
    assert lost(jobs) == []
    now[0] = 70.0
    assert lost(jobs) == [killed]
    listed.add("7_1")  # requeued: listed again, the clock starts over when it leaves next
    assert lost(jobs) == [] and "7_1" not in lost.missing_since
    # squeue not answering judges nothing
    assert LostTasks(0, queue=lambda ids: None)(jobs) == []
