"""Artifacts released with a report (``kddbench release``): read by later runs on a machine
whose cache lacks them, checked by their checksums, never silently wrong."""
import json

import pytest

from conftest import TINY_SUITE, toy_dm_suite, write_suite
from test_artifacts import DECLARING_PLUGIN, SUITE


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "toy_deps_plugin.py"
    path.write_text(DECLARING_PLUGIN.format(module="toy_deps_plugin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    log = tmp_path / "log.txt"
    monkeypatch.setenv("KDD_ART_LOG", str(log))
    return path, log


def _builds(log):
    return sorted(line for line in log.read_text().splitlines() if line.startswith("build"))


def _accuracies(out):
    return sorted(json.loads(p.read_text())["metrics"]["accuracy"]
                  for p in (out / "records").glob("*.json"))


def _run(cli, path, suite, out, cache):
    code, _, err = cli("--plugin", path, "run", suite, "--out", out, "--cache-dir", cache,
                       "--no-progress", "--jobs", "1")
    assert code == 0, err


def test_a_released_artifact_serves_a_machine_whose_cache_lacks_it(tmp_path, cli, plugin):
    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    out = tmp_path / "out"
    _run(cli, path, suite, out, tmp_path / "cache1")
    first = _accuracies(out)
    code, text, err = cli("--plugin", path, "release", suite, "--out", out, "--cache-dir",
                          tmp_path / "cache1", "--kind", "toy_derived", "--kind", "toy_base")
    assert code == 0, err
    assert "4 released" in text and "0 not built yet" in text, text
    assert len(list((out / "artifacts" / "toy_derived").glob("*.pt"))) == 2
    code, text, _ = cli("--plugin", path, "release", suite, "--out", out, "--cache-dir",
                        tmp_path / "cache1", "--kind", "toy_derived")
    assert code == 0 and "0 released" in text and "2 already there" in text, text

    # another machine: an empty cache, the report directory as committed (no records)
    for p in (out / "records").glob("*.json"):
        p.unlink()
    log.write_text("")
    _run(cli, path, suite, out, tmp_path / "cache2")
    assert _builds(log) == []  # nothing built again: every artifact came from the report
    assert _accuracies(out) == first
    assert len(list((tmp_path / "cache2" / "artifacts" / "toy_derived").glob("*.pt"))) == 2


def test_a_damaged_released_artifact_is_rebuilt_with_a_warning(tmp_path, cli, plugin):
    path, log = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    out = tmp_path / "out"
    _run(cli, path, suite, out, tmp_path / "cache1")
    code, _, err = cli("--plugin", path, "release", suite, "--out", out, "--cache-dir",
                       tmp_path / "cache1", "--kind", "toy_derived")
    assert code == 0, err
    damaged = sorted((out / "artifacts" / "toy_derived").glob("*.pt"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-3] + b"xyz")
    for p in (out / "records").glob("*.json"):
        p.unlink()
    log.write_text("")
    _run(cli, path, suite, out, tmp_path / "cache2")
    rebuilt = [b for b in _builds(log) if b.startswith("build derived")]
    assert len(rebuilt) == 1, _builds(log)  # the damaged one only; the other was read
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    warned = [w for r in records for w in r.get("warnings", [])]
    assert any("does not match its checksum" in w for w in warned), warned


def test_nothing_in_the_cache_to_release_fails_and_an_unknown_kind_gets_did_you_mean(
        tmp_path, cli, plugin):
    path, _ = plugin
    suite = write_suite(tmp_path / "deps.toml", SUITE)
    code, _, err = cli("--plugin", path, "release", suite, "--out", tmp_path / "out",
                       "--cache-dir", tmp_path / "empty", "--kind", "toy_derived")
    assert code == 4, err
    assert "none of the 2 toy_derived artifact(s)" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("--plugin", path, "release", suite, "--out", tmp_path / "out",
                       "--cache-dir", tmp_path / "empty", "--kind", "toy_derivd")
    assert code == 2 and "did you mean 'toy_derived'" in err, err
    assert not (tmp_path / "out" / "artifacts").exists()


def test_the_condense_tasks_sets_are_released_under_the_keys_runs_read(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, _, err = cli("run", suite, "--out", out, "--cache-dir", cache, "--no-progress",
                       "--jobs", "1", "--where", "method=random")
    assert code == 0, err
    code, text, err = cli("release", suite, "--out", out, "--cache-dir", cache, "--json")
    assert code == 0, err
    result = json.loads(text)
    # random at ipc 2 and 5 over seeds 0 and 1 were built; average was not run
    assert len(result["copied"]) == 4 and len(result["not_built"]) == 4, result
    assert {r["label"].split()[0] for r in result["copied"]} == {"condensed[random"}
    made = {}  # a set's record carries the seconds its condensation took: a rebuild differs
    for p in (out / "records").glob("*.json"):
        made[p.name] = json.loads(p.read_text())["metrics"]["condense_time_s"]
        p.unlink()
    code, _, err = cli("run", suite, "--out", out, "--cache-dir", tmp_path / "fresh",
                       "--no-progress", "--jobs", "1", "--where", "method=random")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert {p.name: json.loads(p.read_text())["metrics"]["condense_time_s"]
            for p in (out / "records").glob("*.json")} == made  # read, not condensed again
    assert len(list((tmp_path / "fresh" / "artifacts" / "condensed").glob("*.pt"))) == 4


def test_an_unfinished_condensation_resumes_on_another_machine_from_its_released_checkpoint(
        tmp_path):
    """A run killed mid-condensation leaves its last checkpoint named in its progress note;
    ``release --kind checkpoints`` ships it; a machine with an empty cache resumes there and
    ends with the set an uninterrupted run makes; the released checkpoint, stale once the set
    exists, is removed by the next release."""
    import subprocess
    import sys
    import time

    suite = toy_dm_suite(tmp_path / "long.toml", "long",
                         "iterations = 300, checkpoint_every = 5")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from kddbench.cli import main; main()"]
    run = subprocess.Popen(cmd + ["run", str(suite), "--out", str(out), "--jobs", "1",
                                  "--no-progress", "--cache-dir", str(tmp_path / "cache1")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(json.loads(p.read_text() or "{}").get("iteration", 0) >= 10
                      for p in out.glob("claims/*.progress") if p.stat().st_size):
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint noted"
            time.sleep(0.05)
    finally:
        run.kill()
        run.communicate()

    def cli(*args):
        done = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr

    code, text = cli("release", suite, "--out", out, "--cache-dir", tmp_path / "cache1",
                     "--kind", "checkpoints")
    assert code == 0 and "1 released" in text and "unfinished at iteration" in text, text
    code, text = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress",
                     "--cache-dir", tmp_path / "cache2")
    assert code == 0, text
    (record,) = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["metrics"]["condense.resumed_from_iteration"] >= 10
    # the same set as a run that was never interrupted
    whole = tmp_path / "whole"
    code, text = cli("run", suite, "--out", whole, "--jobs", "1", "--no-progress",
                     "--cache-dir", tmp_path / "cache3")
    assert code == 0, text
    (plain,) = [json.loads(p.read_text()) for p in (whole / "records").glob("*.json")]
    assert plain["metrics"]["accuracy"] == record["metrics"]["accuracy"]
    code, text = cli("release", suite, "--out", out, "--cache-dir", tmp_path / "cache2",
                     "--kind", "checkpoints")
    assert code == 0 and "1 released checkpoint(s) of finished work removed" in text, text
    assert not list((out / "artifacts" / "checkpoints").glob("*.pt"))
