"""End-to-end runs through the real command line on small real and synthetic data."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import EXAMPLE_PLUGIN, TINY_SUITE, write_suite
from kddbench import load_results


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_tiny_suite_runs_reports_and_resumes(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    out = tmp_path / "out"
    code, stdout, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0, err
    first = _records(out)
    assert len(first) == 10 and all(r["status"] == "ok" for r in first.values())
    rec = next(iter(first.values()))
    for key in ("git", "torch", "python", "device", "plugins"):
        assert key in rec["env"]
    assert rec["versions"]["protocol"] == "1" and "condenser:" + rec["axes"]["method"] in \
        rec["versions"]
    board = (out / "leaderboard.md").read_text()
    assert "toy data, 3 epochs" in board and "| method" in board and "(n=2)" in board
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 10 and {"accuracy", "macro_f1", "misclassified", "size_mb"} <= set(df)

    # a second run recomputes nothing
    code, _, _ = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0 and _records(out) == first

    # a lost record is recomputed, and only it
    victim = sorted(first)[0]
    (out / "records" / f"{victim}.json").unlink()
    code, stdout, _ = cli("run", suite, "--out", out, "--dry-run")
    assert "1 todo" in stdout and "9 done" in stdout
    cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    again = _records(out)
    assert {k: v for k, v in again.items() if k != victim} == \
        {k: v for k, v in first.items() if k != victim}
    # and it is seed-reproducible: the same accuracy as before
    assert again[victim]["metrics"]["accuracy"] == first[victim]["metrics"]["accuracy"]

    # reports rebuild from the records alone, identically
    written = (out / "leaderboard.md").read_text()
    (out / "leaderboard.md").unlink()
    (out / "results.csv").unlink()
    code, stdout, _ = cli("report", out)
    assert code == 0 and (out / "leaderboard.md").read_text() == written
    assert "| method" in stdout and len(pd.read_csv(out / "results.csv")) == 10


def test_process_pool_gives_the_same_numbers(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace("seeds = [0, 1]",
                                                                  "seeds = [0]"))
    cli("run", suite, "--out", tmp_path / "a", "--jobs", "1", "--no-progress")
    code, _, err = cli("run", suite, "--out", tmp_path / "b", "--jobs", "2", "--no-progress")
    assert code == 0, err
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["metrics"]["accuracy"] == b[k]["metrics"]["accuracy"], a[k]["axes"]


CRASHING_PLUGIN = '''
from kddbench import CondenserSpec, hookimpl

def explode(request):
    raise RuntimeError("boom: this method is broken")

@hookimpl
def kddbench_condensers():
    yield CondenserSpec("explode", explode, "always crashes")
'''


def test_a_crashing_cell_is_recorded_and_the_others_finish(tmp_path, cli):
    plugin = tmp_path / "crash.py"
    plugin.write_text(CRASHING_PLUGIN)
    suite = write_suite(tmp_path / "s.toml", TINY_SUITE.replace(
        'method = ["full", "random", "average"]', 'method = ["explode", "random"]'))
    out = tmp_path / "out"
    code, stdout, err = cli("--plugin", plugin, "run", suite, "--out", out, "--jobs", "1",
                            "--no-progress")
    assert code == 3 and "4 cell(s) failed" in err  # ExitCode.FAILED_CELLS
    recs = _records(out).values()
    bad = [r for r in recs if r["status"] == "error"]
    assert len(bad) == 4 and all("boom" in r["error"] and "Traceback" in r["traceback"]
                                 for r in bad)
    assert sum(r["status"] == "ok" for r in recs) == 4
    assert "## Failed cells" in (out / "leaderboard.md").read_text()


def test_external_plugin_by_path_is_usable_in_a_suite(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", TINY_SUITE.replace(
        'method = ["full", "random", "average"]', 'method = ["first-k"]'))
    out = tmp_path / "out"
    code, _, err = cli("--plugin", EXAMPLE_PLUGIN, "run", suite, "--out", out, "--jobs", "1",
                       "--no-progress")
    assert code == 0, err
    df = load_results(out)
    assert set(df["method"]) == {"first-k"} and (df["status"] == "ok").all()
    assert df["versions"].str.contains("condenser:first-k=1").all()
    # without the plugin, the suite names an unknown method: exit 2 with a hint
    code, _, err = cli("validate", suite)
    assert code == 2 and "unknown condensation method 'first-k'" in err


def test_external_plugin_via_environment(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("KDDBENCH_PLUGINS", str(EXAMPLE_PLUGIN))
    code, out, _ = cli("list", "condenser")
    assert code == 0 and "first-k" in out


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tmp_path):
    # each cell trains long enough (~1 s) that the kill lands mid-way on any machine
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace("epochs = 3", "epochs = 300"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kddbench.cli", "run", str(suite), "--out", str(out),
           "--jobs", "1", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "records").glob("*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _records(out)
    assert 1 <= len(done) < 10, "the run should have been killed mid-way"
    assert not list((out / "records").glob("*.tmp"))
    subprocess.run(cmd, check=True, capture_output=True)
    after = _records(out)
    assert len(after) == 10
    assert all(after[k] == v for k, v in done.items())


def test_reporter_plugin_receives_every_record(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "out"
    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress",
                       "--reporter", "jsonl")
    assert code == 0, err
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["status"] == "ok" for line in lines)
    code, _, err = cli("run", suite, "--out", out, "--reporter", "jsnl")
    assert code == 2 and "did you mean 'jsonl'" in err


def test_show_lists_cells_of_a_suite(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", TINY_SUITE)
    code, out, _ = cli("show", suite, "--out", tmp_path / "nothing")
    assert code == 0 and "10 cells: 10 todo" in out
    code, out, _ = cli("show", "convnet3")
    assert code == 0 and "option width = 128" in out and "registered by: architectures" in out


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path) as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_killing_the_runner_leaves_no_orphan_workers(tmp_path):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace("epochs = 3", "epochs = 400"))
    cmd = [sys.executable, "-m", "kddbench.cli", "run", str(suite), "--out",
           str(tmp_path / "out"), "--jobs", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in _children(proc.pid) if _alive(c)]
    assert len(workers) >= 2, "the pool did not start"
    time.sleep(3)  # let the workers initialise (the death signal is armed in their initializer)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the runner"


def _pool_run_past_its_first_record(tmp_path, **popen):
    """A 2-worker run of a slow tiny suite in its own session, once its first record is
    stored: (the process, its output folder)."""
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace("epochs = 3", "epochs = 300"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kddbench.cli", "run", str(suite), "--out", str(out),
           "--jobs", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **popen)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "records").glob("*.json")):
        time.sleep(0.02)
    return proc, out


def _signalled(proc, sig, timeout: float) -> bytes:
    """Send ``sig`` to the run ``proc``; it must end with exit 130 within ``timeout`` s.
    Returns its stderr."""
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{signal.Signals(sig).name} did not end the run")
    assert proc.returncode == 130, err.decode()
    return err


@pytest.mark.slow
def test_ctrl_c_stops_a_pool_run_and_keeps_finished_cells(tmp_path):
    def default_sigint():  # a shell's background job ignores SIGINT, and its children inherit it
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc, out = _pool_run_past_its_first_record(tmp_path, preexec_fn=default_sigint)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not stop the run")
    assert proc.returncode != 0
    done = _records(out)
    assert 1 <= len(done) < 10 and all(r["status"] == "ok" for r in done.values())


@pytest.mark.slow
def test_sigterm_stops_a_pool_run_like_ctrl_c(tmp_path):
    """``kill PID`` (or ``timeout``, or Slurm at a job's time limit) signals the runner alone:
    it stops its workers, releases its claims and keeps the finished cells, exit 130."""
    proc, out = _pool_run_past_its_first_record(tmp_path)
    workers = [c for c in _children(proc.pid) if _alive(c)]
    err = _signalled(proc, signal.SIGTERM, 30)
    assert b"interrupted" in err
    done = _records(out)
    assert 1 <= len(done) < 10 and all(r["status"] == "ok" for r in done.values())
    assert not list((out / "claims").glob("*.lease")), "claims were not released"
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the runner"


@pytest.mark.slow
def test_sigusr1_finishes_the_running_cells_then_stops(tmp_path):
    """``kill -USR1 PID``: nothing more is started, the cells running then finish and are
    stored, exit 130; the same command then computes only the rest."""
    proc, out = _pool_run_past_its_first_record(tmp_path)
    at_signal = len(_records(out))
    err = _signalled(proc, signal.SIGUSR1, 120)
    assert b"stopped after the running cells" in err
    done = _records(out)
    assert all(r["status"] == "ok" for r in done.values())
    # at most the two workers' cells were running; none was started after the signal
    assert at_signal <= len(done) <= at_signal + 2 and len(done) < 10
    assert not list((out / "claims").glob("*.lease")), "claims were not released"
    again = subprocess.run([sys.executable, "-m", "kddbench.cli", "run",
                            str(tmp_path / "tiny.toml"), "--out", str(out), "--jobs", "1",
                            "--no-progress"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    after = _records(out)
    assert len(after) == 10
    assert all(after[k]["started"] == v["started"] for k, v in done.items())  # not recomputed


def test_stop_starting_after_a_duration(tmp_path, cli):
    """``--stop-starting-after``: the cells started before the time is up finish, no later one
    starts, exit 130; a bad duration is one line and exit 2."""
    from kddbench.runner import stop_after_running

    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace("epochs = 3", "epochs = 60"))
    out = tmp_path / "out"
    try:
        code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress",
                           "--stop-starting-after", "0.5s")
    finally:
        stop_after_running(False)
    assert code == 130, err
    assert "--stop-starting-after 0.5s" in err
    assert 1 <= len(_records(out)) < 10
    code, _, err = cli("run", suite, "--out", out, "--stop-starting-after", "soon")
    assert code == 2 and "positive duration" in err and len(err.strip().splitlines()) == 1


def test_stop_after_running_in_process_keeps_what_ran(tmp_path):
    """The library: asked while a cell runs (here by the first record's callback), the run
    stores that cell and starts no other; cleared, the next run does the rest."""
    from kddbench import api
    from kddbench.runner import _until_stopped, stop_after_running

    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    out = tmp_path / "out"
    seen = []

    def first_stops(record):
        seen.append(record["cell_id"])
        stop_after_running()

    from kddbench.hookspecs import hookimpl
    from kddbench.plugins import get_registry

    class StopAfterFirst:
        @hookimpl
        def kddbench_record_finished(self, record):
            first_stops(record)

    registry = get_registry()
    registry.pm.register(StopAfterFirst(), name="stop-after-first")
    try:
        df = api.run(str(suite), str(out), jobs=1, progress=False)
    finally:
        registry.pm.unregister(name="stop-after-first")
        stop_after_running(False)
    assert len(seen) == 1 and len(_records(out)) == 1 and df.attrs["cells_left"] == 9
    df = api.run(str(suite), str(out), jobs=1, progress=False)
    assert len(_records(out)) == 10 and df.attrs["cells_left"] == 0
    stop_after_running()
    try:
        assert list(_until_stopped(iter([1, 2]))) == []
    finally:
        stop_after_running(False)
    assert list(_until_stopped(iter([1, 2]))) == [1, 2]


def test_a_corrupt_record_or_artifact_is_set_aside_and_recomputed(tmp_path, cli):
    import hashlib
    import io

    import torch

    suite = write_suite(tmp_path / "s.toml", TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]")
                        .replace("ipc = [2, 5]", "ipc = [2]"))
    out = tmp_path / "out"
    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0, err
    first = _records(out)
    by_method = {r["axes"]["method"]: k for k, r in first.items()}
    # a record that is not JSON, and a condensed set with a valid checksum but 2-D images
    (out / "records" / f"{by_method['random']}.json").write_text('{"cell_id": ')
    (out / "records" / f"{by_method['average']}.json").unlink()
    metas = [p for p in (tmp_path / "cache" / "artifacts" / "condensed").glob("*.json")
             if json.loads(p.read_text())["key"]["method"] == "average"]
    (meta_path,) = metas
    buf = io.BytesIO()
    torch.save({"images": torch.zeros(4, 3), "labels": torch.zeros(4)}, buf)
    meta_path.with_suffix(".pt").write_bytes(buf.getvalue())
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    meta_path.write_text(json.dumps(meta))

    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any(f"{by_method['random']}.json is corrupt (not JSON" in w for w in warned), err
    assert any(f"condensed/{meta_path.stem}.pt is corrupt (checksum valid, but images of "
               "shape (4, 3)" in w for w in warned), err
    assert "1 corrupt record(s) quarantined" in err
    again = _records(out)
    assert again.keys() == first.keys()
    for method in ("random", "average"):  # recomputed, to the same number
        rec = again[by_method[method]]
        assert rec["metrics"]["accuracy"] == first[by_method[method]]["metrics"]["accuracy"]
    assert "quarantine" in again[by_method["random"]]["warnings"][0]
    assert any("checksum valid" in w for w in again[by_method["average"]]["warnings"])
    assert again[by_method["full"]] == first[by_method["full"]]  # untouched
    assert [p.name for p in (out / "records" / "quarantine").iterdir()] == \
        [f"{by_method['random']}.json"]
    code, _, err = cli("report", out)
    assert code == 0 and "1 corrupt record(s) quarantined in" in err


def test_a_run_with_every_cell_done_says_so_in_one_line(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]")
                        .replace("ipc = [2, 5]", "ipc = [2]")
                        .replace('method = ["full", "random", "average"]', 'method = ["full"]'))
    out = tmp_path / "out"
    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0 and "already done" not in err
    code, stdout, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0
    assert err.strip().splitlines() == [f"all 1 cells are already done in {out}: nothing to "
                                        "compute, the report is rebuilt from their records"]
    assert "| method" in stdout


def test_the_progress_bar_names_the_running_cell_before_it_finishes(tmp_path):
    from kddbench.runner import _Progress

    bar = _Progress(3, "s", True)
    bar.started("a", "condense[method=dm, ipc=10, seed=0]")
    assert bar.bar.postfix == "running condense[method=dm, ipc=10, seed=0]" and bar.bar.n == 0
    bar.started("b", "condense[method=dc, ipc=10, seed=0]")
    assert bar.bar.postfix.startswith("2 running")  # a pool: how many are in flight
    bar.finished("a", "ok")
    assert bar.bar.n == 1 and bar.bar.postfix == "running condense[method=dc, ipc=10, seed=0]"
    bar.close()
