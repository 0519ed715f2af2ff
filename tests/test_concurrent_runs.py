"""Two runs on one report directory share the work: every cell computed once, none lost."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import write_suite

COUNTING_PLUGIN = '''
import os, time
from kddbench import TaskSpec, hookimpl

def count(cell, ctx):
    with open(os.environ["KDD_COUNT_FILE"], "a") as fh:
        fh.write(f"{cell.cell_id} {os.getpid()}\\n")
    time.sleep(float(os.environ.get("KDD_COUNT_SLEEP", "0.05")))
    return {"accuracy": float(cell["x"])}

@hookimpl
def kddbench_tasks():
    yield TaskSpec("count", count, "appends every computation to a file", axes=("x",),
                   required=("x",))
'''


def counting_suite(tmp_path, n: int) -> Path:
    xs = ", ".join(str(i) for i in range(1, n + 1))
    return write_suite(tmp_path / "count.toml", f"""
[suite]
name = "count"

[[experiments]]
name = "c"
task = "count"
x = [{xs}]
seeds = [0]

[[tables]]
name = "main"
rows = ["x"]
columns = ["seed"]
metric = "accuracy"
""")


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_two_runs_on_one_store_compute_every_cell_once(tmp_path):
    plugin = tmp_path / "count_plugin.py"
    plugin.write_text(COUNTING_PLUGIN)
    suite, out, counts = counting_suite(tmp_path, 8), tmp_path / "out", tmp_path / "count.log"
    env = {**os.environ, "KDD_COUNT_FILE": str(counts), "KDD_COUNT_SLEEP": "1.0"}

    def start(*extra):
        return subprocess.Popen(
            [sys.executable, "-m", "kddbench.cli", "--plugin", str(plugin), "run", str(suite),
             "--out", str(out), "--no-progress", "--reporter", "jsonl", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("--jobs", "2")  # a process pool: claims are taken in the parent
    deadline = time.time() + 120
    while time.time() < deadline and not counts.exists():
        time.sleep(0.05)
    second = start("--jobs", "1")
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs

    lines = counts.read_text().split()
    computed = lines[0::2]
    assert sorted(computed) == sorted(set(computed)) and len(computed) == 8  # once each
    assert len(set(lines[1::2])) >= 2, "the second run should have taken some cells"
    records = _records(out)
    assert len(records) == 8 and all(r["status"] == "ok" for r in records.values())
    jsonl = [json.loads(line)["cell_id"]
             for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(jsonl) == sorted(records)  # each record reported once, by the run that made it
    assert len(pd.read_csv(out / "results.csv")) == 8  # the later run waited and reported all
    assert not list((out / "claims").glob("*.lease")), "claims are released"


def test_a_run_skips_cells_a_live_run_holds_and_takes_over_dead_ones(tmp_path, cli,
                                                                     monkeypatch):
    from kddbench.store import Claims, ResultStore
    from kddbench.suite import load_suite

    plugin = tmp_path / "count_plugin.py"
    plugin.write_text(COUNTING_PLUGIN)
    counts = tmp_path / "count.log"
    monkeypatch.setenv("KDD_COUNT_FILE", str(counts))
    suite_path, out = counting_suite(tmp_path, 3), tmp_path / "out"
    from kddbench import plugins

    plugins.configure([str(plugin)])
    cells = load_suite(suite_path).cells
    live, dead = cells[0].cell_id, cells[1].cell_id
    claims_dir = ResultStore(out).root / "claims"
    other = Claims(claims_dir)
    other.host = "another-host"  # a live holder elsewhere: its heartbeat is fresh
    other.token = "t"
    assert other.claim(live)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (claims_dir / f"{dead}.lease").write_text(json.dumps(
        {"host": Claims(claims_dir).host, "pid": int(gone), "token": "x"}))
    code, shown, _ = cli("--plugin", plugin, "run", suite_path, "--out", out, "--dry-run")
    assert code == 0 and "3 cells: 1 running, 2 todo" in shown  # the dead holder's is todo
    code, _, err = cli("--plugin", plugin, "run", suite_path, "--out", out, "--jobs", "1",
                       "--no-progress", "--no-wait")
    assert code == 0, err
    assert "1 cell(s) are being computed by another run (another-host pid" in err
    computed = counts.read_text().split()[0::2]
    assert sorted(computed) == sorted([dead, cells[2].cell_id])  # the dead holder's cell too
    assert set(_records(out)) == {dead, cells[2].cell_id}
    other.release_all()
