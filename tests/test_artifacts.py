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
    first_cell = lines.index(next(line for line in lines if line.startswith("cell")))
    assert first_cell == 4, lines  # every build before any cell: no cell waits on another
    assert max(lines.index(f"build base {g}") for g in (0, 1)) < \
        min(lines.index(f"build derived {g}") for g in (0, 1))  # needs first
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted(r["metrics"]["accuracy"] for r in records) == [0.0, 0.0, 10.0, 10.0]


def test_without_the_cache_nothing_is_built_ahead(tmp_path, cli, plugin):
    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    code, _, err = cli("--plugin", path, "run", suite, "--out", tmp_path / "out", "--jobs", "1",
                       "--no-progress", "--no-cache")
    assert code == 0, err
    lines = log.read_text().splitlines()
    assert lines[0] == "cell 1" and lines.count("build derived 1") == 2  # inline, per cell


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
