"""Artifacts as declared dependencies: built once each, before the cells, on every executor."""
import json

import pytest

from conftest import write_suite
from kddbench.artifacts import ArtifactRequest, waves

DECLARING_PLUGIN = '''
import os
import torch
from kddbench import TaskSpec, hookimpl
from kddbench.artifacts import ArtifactRequest

P = "{module}:"

def _log(what):
    with open(os.environ["KDD_ART_LOG"], "a") as fh:
        fh.write(what + "\\n")

def base(ctx, *, group):
    def build():
        _log(f"build base {{group}}")
        return {{"v": torch.full((2,), float(group))}}
    return ctx.artifacts.get_or_build("toy_base", {{"group": group}}, build,
                                      check=lambda v: None if "v" in v else "no v")

def derived(ctx, *, group):
    def build():
        _log(f"build derived {{group}}")
        return {{"v": base(ctx, group=group)["v"] * 10}}
    return ctx.artifacts.get_or_build("toy_derived", {{"group": group}}, build)

def declare(cell, registry):
    need = ArtifactRequest("toy_base", P + "base", {{"group": cell["x"] % 2}})
    return [ArtifactRequest("toy_derived", P + "derived", {{"group": cell["x"] % 2}},
                            needs=(need,))]

def run(cell, ctx):
    _log(f"cell {{cell['x']}}")
    value = derived(ctx, group=cell["x"] % 2)
    return {{"accuracy": float(value["v"][0])}}

@hookimpl
def kddbench_tasks():
    yield TaskSpec("toy_deps", P + "run", "a task with declared artifacts", axes=("x",),
                   required=("x",), artifacts=P + "declare")
'''

SUITE = """
[suite]
name = "deps"

[[experiments]]
name = "d"
task = "toy_deps"
x = [1, 2, 3, 4]
seeds = [0]

[[tables]]
name = "main"
rows = ["x"]
columns = ["seed"]
metric = "accuracy"
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "toy_deps_plugin.py"
    path.write_text(DECLARING_PLUGIN.format(module="toy_deps_plugin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # spawned pool workers import it by name
    log = tmp_path / "log.txt"
    monkeypatch.setenv("KDD_ART_LOG", str(log))
    return path, log


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_declared_artifacts_are_built_once_before_the_cells_that_need_them(tmp_path, cli,
                                                                          plugin, jobs):
    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    out = tmp_path / "out"
    code, _, err = cli("--plugin", path, "run", suite, "--out", out, "--jobs", jobs,
                       "--no-progress")
    assert code == 0, err
    lines = log.read_text().splitlines()
    builds = [line for line in lines if line.startswith("build")]
    assert sorted(builds) == ["build base 0", "build base 1", "build derived 0",
                              "build derived 1"]  # once each, whatever the executor
    for g in (0, 1):  # needs first, then the cells that need them
        assert lines.index(f"build base {g}") < lines.index(f"build derived {g}")
    for x in (1, 2, 3, 4):
        assert lines.index(f"cell {x}") > lines.index(f"build derived {x % 2}"), lines
    if jobs == "1":  # a cell runs as soon as its artifacts are built (kddbench.schedule)
        assert lines[:4] == ["build base 1", "build derived 1", "cell 1", "cell 3"], lines
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted(r["metrics"]["accuracy"] for r in records) == [0.0, 0.0, 10.0, 10.0]


def test_the_schedule_hands_out_what_is_ready_and_waits_for_what_runs():
    """Two workers: a cell as soon as its artifacts are built, else an artifact whose needs are
    built, else WAIT while something runs; nothing handed out twice."""
    from kddbench.executor import WAIT
    from kddbench.schedule import Schedule

    class C:
        def __init__(self, cell_id):
            self.cell_id = cell_id

    base = ArtifactRequest("k", "m:base", {})
    long_one = ArtifactRequest("k", "m:long", {})
    derived = ArtifactRequest("k", "m:derived", {}, needs=(base,))
    a, b, c = C("a"), C("b"), C("c")
    taken = []
    s = Schedule([a, b, c], {"a": [derived], "c": [long_one]},
                 take=lambda cell: taken.append(cell.cell_id) or cell.cell_id != "skip")
    assert next(s) is b  # needs nothing: first
    assert next(s) is base  # a's chain, in the order of the first cell that needs it
    assert next(s) is long_one  # derived waits for base; a free worker starts c's artifact
    assert next(s) is WAIT  # everything left waits for what runs
    s.finished(b)
    assert next(s) is WAIT
    s.finished(base)
    assert next(s) is derived
    s.finished(derived)
    assert next(s) is a  # a's artifacts are built: a runs before c, whose artifact still runs
    s.finished(a)
    assert next(s) is WAIT
    s.finished(long_one)
    assert next(s) is c
    s.finished(c)
    with pytest.raises(StopIteration):
        next(s)
    assert taken == ["b", "a", "c"]
    # a cell another run holds is skipped, not handed out
    s = Schedule([C("skip"), b], {}, take=lambda cell: cell.cell_id != "skip")
    assert next(s) is b
    s.finished(b)
    with pytest.raises(StopIteration):
        next(s)

    # an artifact another live run is building goes last among those ready, not first
    other, mine = ArtifactRequest("k", "m:other", {}), ArtifactRequest("k", "m:mine", {})
    s = Schedule([a, c], {"a": [other], "c": [mine]}, busy=lambda req: req is other)
    assert next(s) is mine
    assert next(s) is other  # nothing else ready: its builder waits on the cache's lock
    assert next(s) is WAIT


@pytest.mark.parametrize("where", ["report", "cache"])
def test_a_second_run_builds_another_artifact_than_the_one_a_live_run_builds(tmp_path, cli,
                                                                            plugin, where):
    """Two runs sharing an artifact: the one whose lease a live run holds is left to it, so the
    second run starts on the other chain (and builds the held one only when nothing else is
    ready: here the lease's holder builds nothing, so it does).  The lease is seen in the
    report directory (two runs of one suite) and in the artifact cache (another suite)."""
    from kddbench.store import Claims

    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    out = tmp_path / "out"
    held = ArtifactRequest("toy_base", "toy_deps_plugin:base", {"group": 1})
    # another run in this process (its own token), of this suite or of another one
    elsewhere = Claims(out / "claims" if where == "report" else tmp_path / "cache" / "claims")
    assert elsewhere.claim(held.cell_id, label=held.label())
    try:
        code, _, err = cli("--plugin", path, "run", suite, "--out", out, "--jobs", "1",
                           "--no-progress")
    finally:
        elsewhere.release_all()
    assert code == 0, err
    lines = log.read_text().splitlines()
    assert lines[:4] == ["build base 0", "build derived 0", "cell 2", "cell 4"], lines
    assert len(list((out / "records").glob("*.json"))) == 4
    assert not list((tmp_path / "cache" / "claims").glob("*.lease"))  # ours, released


def test_without_the_cache_nothing_is_built_ahead(tmp_path, cli, plugin):
    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    code, _, err = cli("--plugin", path, "run", suite, "--out", tmp_path / "out", "--jobs", "1",
                       "--no-progress", "--no-cache")
    assert code == 0, err
    lines = log.read_text().splitlines()
    assert lines[0] == "cell 1" and lines.count("build derived 1") == 2  # inline, per cell


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_artifact_under_construction_holds_a_lease_that_status_shows(tmp_path, cli, plugin,
                                                                        monkeypatch, jobs):
    """While a worker builds an artifact, the run holds a lease for it in the report directory
    (what `kddbench status` lists as "artifacts being built", with the build's last
    checkpoint); none is left afterwards."""
    path, log = plugin
    out = tmp_path / "out"
    monkeypatch.setenv("KDD_ART_OUT", str(out))
    peek = (
        "        from kddbench.store import Claims\n"
        "        from kddbench.status import status\n"
        "        live = Claims(os.path.join(os.environ['KDD_ART_OUT'], 'claims')).live('artifact-')\n"
        "        _log('leases ' + ' '.join(sorted(i.get('label', '?') for i in live.values())))\n"
        "        ctx.checkpoint({'toy': group}).save({'iteration': 7})\n"
        "        from kddbench.status import format_status\n"
        "        st = status(os.environ['KDD_ART_SUITE'], os.environ['KDD_ART_OUT'],\n"
        "                    estimate=False)\n"
        "        _log(f'status {len(st.building)}')\n"
        "        if 'last checkpoint at iteration 7' in format_status(st):\n"
        "            _log('progress shown')\n")
    source = DECLARING_PLUGIN.format(module="toy_deps_peek").replace(
        '        _log(f"build base {group}")\n', '        _log(f"build base {group}")\n' + peek)
    assert peek in source
    path = tmp_path / "toy_deps_peek.py"  # a module of its own: the plain one may be imported
    path.write_text(source)
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    monkeypatch.setenv("KDD_ART_SUITE", str(suite))
    code, _, err = cli("--plugin", path, "run", suite, "--out", out, "--jobs", jobs,
                       "--no-progress")
    assert code == 0, err
    lines = log.read_text().splitlines()
    leases = [line for line in lines if line.startswith("leases")]
    assert len(leases) == 2 and all("toy_base[" in line for line in leases), lines
    assert "status 0" not in lines, lines
    assert lines.count("progress shown") == 2, lines  # the checkpoint saved while building
    assert not list((out / "claims").glob("*.lease"))
    assert not list((out / "claims").glob("*.progress"))  # gone with the work item


def test_waves_merge_equal_requests_and_order_needs_first():
    a = ArtifactRequest("k", "m:f", {"n": 1})
    b = ArtifactRequest("k2", "m:g", {"n": 1}, needs=(a,))
    c = ArtifactRequest("k3", "m:h", {}, needs=(b, ArtifactRequest("k", "m:f", {"n": 1})))
    levels = waves([c, b, ArtifactRequest("k", "m:f", {"n": 1})])
    assert [[r.kind for r in level] for level in levels] == [["k"], ["k2"], ["k3"]]
    again = ArtifactRequest.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.artifact_id == c.artifact_id
    loop = ArtifactRequest("x", "m:f", {})
    with pytest.raises(ValueError, match="needs itself"):
        waves([ArtifactRequest("x", "m:f", {}, needs=(loop,))])


def test_a_declaration_that_raises_does_not_stop_the_run(tmp_path, cli, plugin):
    path, log = plugin
    path.write_text(path.read_text().replace(
        "def declare(cell, registry):\n", "def declare(cell, registry):\n"
        "    if cell['x'] == 3:\n        raise ValueError('no artifact for three')\n"))
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    out = tmp_path / "out"
    code, _, err = cli("--plugin", path, "run", suite, "--out", out, "--jobs", "1",
                       "--no-progress")
    assert code == 0, err  # the cell itself does not need the declaration to run
    assert len(list((out / "records").glob("*.json"))) == 4


HELD_PLUGIN = '''
import os, time
from pathlib import Path
import torch
from kddbench import TaskSpec, hookimpl
from kddbench.artifacts import ArtifactRequest

P = "held_plugin:"

def made(ctx, *, which):
    def build():
        if which == "slow":  # held until the test has seen the other cell's record
            release = Path(os.environ["KDD_RELEASE"])
            end = time.monotonic() + 60
            while not release.exists() and time.monotonic() < end:
                time.sleep(0.05)
            Path(os.environ["KDD_HELD"]).write_text("released" if release.exists() else "timeout")
        return {"v": torch.zeros(1)}
    return ctx.artifacts.get_or_build("held", {"which": which}, build)

def declare(cell, registry):
    return [ArtifactRequest("held", P + "made", {"which": "slow" if cell["x"] == 1 else "quick"})]

def run(cell, ctx):
    made(ctx, which="slow" if cell["x"] == 1 else "quick")
    return {"accuracy": float(cell["x"])}

@hookimpl
def kddbench_tasks():
    yield TaskSpec("held_deps", P + "run", "a task with a slow and a quick artifact",
                   axes=("x",), required=("x",), artifacts=P + "declare")
'''


def test_a_pool_runs_a_cell_while_another_cells_artifact_is_still_building(tmp_path,
                                                                           monkeypatch):
    """Two workers, one cell needing a slow artifact, one a quick one: the quick cell's record
    is written while the slow artifact builds (with waves it waited for the whole wave)."""
    import subprocess
    import sys
    import time

    (tmp_path / "held_plugin.py").write_text(HELD_PLUGIN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("KDD_RELEASE", str(tmp_path / "release"))
    monkeypatch.setenv("KDD_HELD", str(tmp_path / "held"))
    suite = write_suite(tmp_path / "held.toml", '''
[suite]
name = "held"

[[experiments]]
name = "h"
task = "held_deps"
x = [1, 2]
seeds = [0]
''')
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-c", "from kddbench.cli import main; main()",
                            "--plugin", str(tmp_path / "held_plugin.py"), "run", str(suite),
                            "--out", str(out), "--jobs", "2", "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("records/*.json")):
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "no record while the slow builds"
            time.sleep(0.05)
        (tmp_path / "release").write_text("")
        _, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert (tmp_path / "held").read_text() == "released"
    records = [json.loads(p.read_text()) for p in out.glob("records/*.json")]
    assert sorted(r["metrics"]["accuracy"] for r in records) == [1.0, 2.0]
