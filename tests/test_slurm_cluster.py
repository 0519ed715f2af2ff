"""The submitit executor against a real Slurm: a throw-away one-node cluster started as root by
``scripts/slurm_cluster.sh`` (munged, slurmctld and slurmd; accounting off), one job array of
three cells -- one that works, one that crashes, one that is preempted mid-run (submitit's own
preemption signals, sent with ``scancel``) and requeued -- whose records must equal the
in-process ones.  Skipped, with the reason, where the cluster cannot start (no root, Debian's
``slurmctld slurmd slurm-client munge`` not installed, a daemon that fails)."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY_SUITE, write_suite

SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"

PLUGIN = '''
import os, time
from pathlib import Path

from kddbench import CondenserSpec, hookimpl
from kddbench_plugins.condensation.real_images import random


def explode(request):
    raise RuntimeError("boom: this method is broken")


def stall(request):
    """``random``, but where KDDBENCH_TEST_STALL names a folder, its first attempt says where it
    runs and then waits there (up to 120 s) to be preempted; each attempt leaves a line."""
    folder = os.environ.get("KDDBENCH_TEST_STALL")
    if folder:
        attempts = Path(folder) / "attempts"
        first = not attempts.exists()
        with attempts.open("a") as f:
            f.write("start\\n")
        if first:
            job = os.environ["SLURM_ARRAY_JOB_ID"] + "_" + os.environ["SLURM_ARRAY_TASK_ID"]
            (Path(folder) / "running.tmp").write_text(job)
            (Path(folder) / "running.tmp").rename(Path(folder) / "running")
            time.sleep(120)
    result = random(request)
    if folder:
        with (Path(folder) / "attempts").open("a") as f:
            f.write("done\\n")
    return result


@hookimpl
def kddbench_condensers():
    yield CondenserSpec("explode", explode, "always crashes")
    yield CondenserSpec("stall", stall, "random, held once to be preempted", cacheable=False)
'''

SUITE = TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]").replace("ipc = [2, 5]", "ipc = [2]") \
    .replace('method = ["full", "random", "average"]', 'method = ["stall", "explode", "random"]')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def slurm_cluster(tmp_path_factory, monkeypatch):
    """A one-node cluster for this test: SLURM_CONF points at it; stopped (by pid) afterwards."""
    pytest.importorskip("submitit")
    folder = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True)
        pytest.skip(f"no Slurm cluster: {exc}")
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        print(f"Slurm test skipped: {reason[0]}")
        pytest.skip(f"no Slurm cluster: {reason[0]}")
    print(f"Slurm cluster up in {time.monotonic() - started:.1f}s: {proc.stderr.strip()}")
    found = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    pids = {name: int((folder / f"{name}.pid").read_text())
            for name in ("munged", "slurmctld", "slurmd")}
    monkeypatch.setenv("SLURM_CONF", found["SLURM_CONF"])
    try:
        yield {"partition": found["PARTITION"], "folder": folder, "pids": pids}
    finally:
        stopped = subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True,
                                 text=True, timeout=60)
        left = [name for name, pid in pids.items() if _alive(pid)]
        assert stopped.returncode == 0 and not left, (stopped.stderr, left)


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def _numbers(record):
    """A record's metrics but the wall-clock ones (seconds, images per second)."""
    return {k: v for k, v in record["metrics"].items()
            if not (k.endswith("_time_s") or k.endswith("_per_s"))}


def _preempt_when_running(stall: Path, done: list, timeout_s: float = 150) -> None:
    """What submitit's own ``SlurmJob._interrupt()`` sends on preemption: SIGTERM, then USR2,
    to the array task of the stalled cell as soon as it is inside the cell."""
    end = time.monotonic() + timeout_s
    while not (stall / "running").exists():
        if time.monotonic() > end:
            done.append("the stalled cell never started")
            return
        time.sleep(0.2)
    job = (stall / "running").read_text().strip()
    for sig in ("SIGTERM", "USR2"):
        r = subprocess.run(["scancel", job, "--signal", sig], capture_output=True, text=True)
        done.append(f"scancel --signal {sig} {job}: rc={r.returncode} {r.stderr.strip()}")
    done.append(job)


@pytest.mark.slow
@pytest.mark.long
def test_a_job_array_on_a_real_slurm_matches_in_process_records(tmp_path, cli, slurm_cluster,
                                                                monkeypatch):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    suite = write_suite(tmp_path / "s.toml", SUITE)
    started = time.monotonic()
    code, _, err = cli("--plugin", plugin, "run", suite, "--out", tmp_path / "a", "--jobs", "1",
                       "--no-progress")
    assert code == 3, err  # the crashing cell: ExitCode.FAILED_CELLS
    print(f"in-process run: {time.monotonic() - started:.1f}s")

    stall = tmp_path / "stall"
    stall.mkdir()
    monkeypatch.setenv("KDDBENCH_TEST_STALL", str(stall))  # the jobs inherit it (sbatch)
    monkeypatch.setenv("KDDBENCH_CACHE", str(tmp_path / "cache-slurm"))  # nothing reused
    executor = (f"submitit[cluster=slurm,partition={slurm_cluster['partition']},cpus=1,"
                "timeout_min=60,poll_s=0.5]")  # under 50 min, submitit calls any signal a timeout
    events: list = []
    preempt = threading.Thread(target=_preempt_when_running, args=(stall, events), daemon=True)
    preempt.start()
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", "from kddbench.cli import main; main()", "--plugin", str(plugin),
         "run", str(suite), "--out", str(tmp_path / "b"), "--executor", executor,
         "--no-progress"], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    seconds = time.monotonic() - started
    preempt.join(5)
    print(f"Slurm run: {seconds:.1f}s; {'; '.join(map(str, events))}")
    assert run.returncode == 3 and "1 cell(s) failed" in run.stderr, run.stderr[-3000:]

    # one array, three tasks; the stalled one was preempted, requeued and finished once
    job = events[-1]
    assert job.count("_") == 1, events
    logs = tmp_path / "b" / "submitit"  # (the cells' declared artifacts come first, as arrays)
    array = job.split("_")[0]
    assert sorted(p.name for p in logs.glob(f"{array}_*")) == [f"{array}_{i}" for i in range(3)]
    assert (stall / "attempts").read_text().split() == ["start", "start", "done"]
    log = "".join(p.read_text() for p in (logs / job).glob("*_log.*"))
    assert "this job is preempted" in log and "Requeued job" in log, log[-3000:]
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
    assert "Restarts=1" in shown.stdout, shown.stdout + shown.stderr

    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert a.keys() == b.keys() and len(b) == 3
    for key, rec in b.items():
        assert rec["status"] == a[key]["status"]
        if rec["status"] == "ok":  # the same cell gives the same numbers on the cluster
            assert _numbers(rec) == _numbers(a[key]) and "accuracy" in _numbers(rec)
            assert rec["env"]["torch_threads"] == 1
        else:  # the --plugin file reached the job, and its failure came back as a record
            assert "boom" in rec["error"]


@pytest.mark.slow
@pytest.mark.long
def test_a_task_killed_on_slurm_fails_its_cell_instead_of_waiting_for_ever(tmp_path, slurm_cluster,
                                                                          monkeypatch):
    """Accounting is off on this cluster, so nothing but the queue tells that a task cancelled
    outright (``scancel``: no requeue, no result file) has ended; the run must not hang on it."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    suite = write_suite(tmp_path / "s.toml", SUITE.replace('["stall", "explode", "random"]',
                                                           '["stall", "random"]'))
    stall = tmp_path / "stall"
    stall.mkdir()
    monkeypatch.setenv("KDDBENCH_TEST_STALL", str(stall))
    monkeypatch.setenv("KDDBENCH_CACHE", str(tmp_path / "cache"))
    executor = (f"submitit[cluster=slurm,partition={slurm_cluster['partition']},cpus=1,"
                "timeout_min=60,poll_s=0.5,lost_after_s=3]")
    run = subprocess.Popen(
        [sys.executable, "-c", "from kddbench.cli import main; main()", "--plugin", str(plugin),
         "run", str(suite), "--out", str(tmp_path / "o"), "--executor", executor,
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path)
    try:
        end = time.monotonic() + 150
        while not (stall / "running").exists():
            assert run.poll() is None and time.monotonic() < end, "the stalled cell never started"
            time.sleep(0.2)
        job = (stall / "running").read_text().strip()
        cancelled = time.monotonic()
        subprocess.run(["scancel", job], check=True, capture_output=True)
        _, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
    print(f"run ended {time.monotonic() - cancelled:.1f}s after scancel {job}")
    assert run.returncode == 3 and "1 cell(s) failed" in err, err[-3000:]
    records = _records(tmp_path / "o")
    failed = [r for r in records.values() if r["status"] != "ok"]
    assert len(records) == 2 and len(failed) == 1
    assert f"Slurm task {job} left the queue without a result" in failed[0]["error"]
    assert (stall / "attempts").read_text().split() == ["start"]  # never requeued
