"""Smoke mode over the real code paths (kddbench.smoke), the data pre-flight (kddbench.preflight)
and the cost estimate of --dry-run (kddbench.cost), on suites/paper_tables.toml.

Every cell of paper_tables runs in smoke mode in a test marked ``long``: left out of a plain
``python -m pytest``, run by ``python -m pytest -m long`` (``.ci/run`` runs both).  Each cell
must finish; a failure names its cause in the assertion message.  Measured times are in
CONTRIBUTING.md ("Tests") and in the test's printed summary line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from kddbench import smoke

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "suites" / "paper_tables.toml"


def _suite():
    from kddbench.suite import load_suite

    return load_suite(PAPER)


def test_smoke_cells_keep_every_axis_and_never_pass_for_real(registry):
    from kddbench.options import smoke_values

    suite = _suite()
    twins = smoke.smoke_cells(suite.cells, registry)
    assert len(twins) == len(suite.cells)  # every cell kept, none merged
    real_ids = {c.cell_id for c in suite.cells} | {c.config_id for c in suite.cells}
    for real, twin in zip(suite.cells, twins):
        assert twin.axes == real.axes and twin.seed == real.seed
        assert twin.experiment == real.experiment and twin.task == real.task
        assert twin.cell_id not in real_ids and twin.config_id not in real_ids
        assert smoke.is_smoke(twin) and not smoke.is_smoke(real)
        assert twin.recipe["epochs"] == 1
        for key, opts in twin.options.items():
            if key.startswith("protocol:"):
                assert opts["epochs"] == 1
        for axis, family in registry.get("task", real.task).plugin_axes.items():
            value = real.axes.get(axis)
            if value is None or value in registry.get("task", real.task).reserved.get(axis, ()):
                continue
            spec = registry.get(family, value)
            for key, value in smoke_values(spec.options).items():
                if key in twin.options.get(spec.name, {}):
                    assert twin.options[spec.name][key] == value, (spec.name, key)


def test_smoke_cuts_widths_and_epochs_and_keeps_smaller_values(registry):
    """Widths are a budget (kddbench.smoke): ConvNets and the MLP train at 16 channels, a
    smaller given width stays, and every protocol trains 1 epoch of 1 batch."""
    from kddbench.suite import build_suite

    raw = {"experiments": [
        {"name": "wide", "task": "condense", "dataset": "cifar10", "method": "dm", "ipc": 10,
         "eval_arch": "convnet3", "recipe": {"epochs": 30}},
        {"name": "narrow", "task": "condense", "dataset": "cifar10", "method": "random",
         "ipc": 10, "eval_arch": "mlp", "options": {"mlp": {"width": 8}}},
        {"name": "resnet", "task": "condense", "dataset": "cifar10", "method": "random",
         "ipc": 10, "eval_arch": "resnet18"}]}
    wide, narrow, resnet = smoke.smoke_cells(build_suite(raw, "t", registry).cells, registry)
    # a width declared later (absent from the real cell's options at its default) is cut too
    assert resnet.options["resnet18"]["width"] == 16
    assert wide.options["convnet3"]["width"] == 16 and wide.options["convnet3"]["depth"] == 3
    assert wide.options["dm"]["iterations"] == 1
    assert narrow.options["mlp"]["width"] == 8
    for cell in (wide, narrow):
        assert cell.recipe["epochs"] == 1 and cell.recipe["steps_per_epoch"] == 1
        assert cell.recipe["batch_size"] == 64
    assert smoke._cut(0, 1) == 1 and smoke._cut(5, 1) == 1 and smoke._cut(True, 2) == 2


def test_representative_subset_covers_every_plugin_pairing(registry):
    suite = _suite()
    subset = smoke.representative(suite.cells, registry)
    assert len(subset) < len(suite.cells)
    assert {c.experiment for c in subset} == {c.experiment for c in suite.cells}

    def named(cells):
        return {(c.task, axis, str(c.axes.get(axis))) for c in cells
                for axis in registry.get("task", c.task).plugin_axes}

    assert named(subset) == named(suite.cells)


def _run_smoke(cells, tmp_path, jobs=2):
    from kddbench import api

    import resource

    suite = dataclasses.replace(_suite(), cells=cells)
    start = time.perf_counter()
    df = api.run(suite, out_dir=tmp_path / "smoke", smoke=True, jobs=jobs, progress=False)
    seconds = time.perf_counter() - start
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,
              resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    print(f"\nsmoke: {len(cells)} cells, {seconds:.0f} s wall, {cpu:.0f} s CPU (this process "
          f"and its workers), load average {os.getloadavg()[0]:.1f}")
    assert len(df) == len(cells)
    bad = df[df["status"] != "ok"]
    causes = "\n".join(f"{r['experiment']} {r['cell_id']}: {r['error']}" for _, r in
                       bad.iterrows())
    assert bad.empty, f"{len(bad)} of {len(df)} smoke cells failed:\n{causes}"
    records = [json.loads(p.read_text()) for p in (tmp_path / "smoke" / "records").glob("*.json")]
    assert records and all(r.get("smoke") is True for r in records)
    assert all(r["recipe"]["epochs"] == 1 for r in records)
    return df, seconds


@pytest.mark.long
def test_smoke_run_of_all_of_paper_tables(tmp_path):
    """Every cell of paper_tables at the smoke budget, on stand-ins: all finish."""
    _run_smoke(_suite().cells, tmp_path)


# ---- the command line ----------------------------------------------------------------------
TINY = """
[suite]
name = "tiny"

[[experiments]]
name = "needs-cifar"
task = "condense"
dataset = "cifar10"
method = ["random", "average"]
ipc = [1, 2]
eval_arch = "mlp"
recipe = { epochs = 3 }

[[experiments]]
name = "offline"
task = "condense"
dataset = "toy"
method = "random"
ipc = 1
eval_arch = "mlp"
recipe = { epochs = 3 }
"""


def test_cli_smoke_writes_standins_and_its_own_results(tmp_path, cli, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", suite, "--smoke", "--jobs", "1", "--no-progress")
    assert code == 0, err
    where = Path(out.strip().splitlines()[-1].split("results: ")[1].split(";")[0]).parent
    assert "kddbench-smoke-tiny" in str(where) and not (tmp_path / "reports").exists()
    records = [json.loads(p.read_text()) for p in (where / "records").glob("*.json")]
    assert len(records) == 5 and all(r["smoke"] and r["status"] == "ok" for r in records)
    assert all(r["recipe"]["epochs"] == 1 for r in records)
    # the real loader read the stand-in files: 2 images per class
    cifar = [r for r in records if r["axes"]["dataset"] == "cifar10"]
    assert all(r["metrics"]["n_train"] <= 2 * 10 for r in cifar)
    assert (where / "leaderboard.md").read_text().startswith("> **Smoke run**")
    # its scratch (the stand-in files, the artifact cache) is gone, the report stays
    assert sorted(p.name for p in where.parent.iterdir()) == ["report"]


def test_smoke_refuses_a_directory_of_real_results(tmp_path, cli):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    real = tmp_path / "real"
    code, _out, _err = cli("run", suite, "--out", real, "--only", "offline", "--jobs", "1",
                           "--no-progress")
    assert code == 0
    code, _out, err = cli("run", suite, "--smoke", "--out", real, "--no-progress")
    assert code == 2 and "real results" in err and "Traceback" not in err


def test_missing_data_is_found_once_per_data_set_before_compute(tmp_path, cli, monkeypatch):
    """4 cells need CIFAR-10, which is missing: one line for the data set, one load attempt,
    the 4 cells fail with its message, the offline cell runs, exit 3."""
    from kddbench_plugins.datasets import loaders

    calls = []
    real = loaders.load_cifar10
    monkeypatch.setattr(loaders, "load_cifar10",
                        lambda root, download: calls.append(root) or real(root, download))
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    code, _out, err = cli("run", suite, "--out", tmp_path / "o", "--jobs", "1", "--no-progress",
                          "--data-root", tmp_path / "empty")
    assert code == 3
    assert len(calls) == 1
    lines = [line for line in err.splitlines() if "is missing" in line]
    assert len(lines) == 1 and "'cifar10'" in lines[0] and "4 cell(s)" in lines[0]
    from kddbench import load_results

    df = load_results(tmp_path / "o")
    assert sorted(df["status"]) == ["error"] * 4 + ["ok"]
    assert df.loc[df["status"] == "error", "error"].str.contains("--download").all()


def test_dry_run_prints_the_cost_estimate(tmp_path, cli):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    code, out, _err = cli("run", suite, "--dry-run", "--out", tmp_path / "o")
    assert code == 0
    assert "Estimated compute" in out and "**total**" in out and "Calibration" in out
    assert "mlp@3x32x32" in out and "mlp@1x8x8" in out
    assert out.strip().splitlines()[-1] == "5 cells: 5 todo"  # the plan still ends the output


def test_cost_follows_the_budget(registry):
    from kddbench import cost
    from kddbench.suite import build_suite

    def passes(epochs, ipc):
        raw = {"experiments": [{"name": "e", "task": "condense", "dataset": "cifar10",
                                "method": "dm", "ipc": ipc, "eval_arch": "convnet3",
                                "recipe": {"epochs": epochs}}]}
        cells = build_suite(raw, "t", registry).cells
        est = cost.estimate(cells, registry, calibration=False)
        return est.rows[0]["passes"]

    assert passes(20, 1) > passes(10, 1) > 0
    # DM (Zhao & Bilen 2023): iterations x classes x (real batch + 3 x ipc) on the net, plus
    # the evaluation: epochs x ipc x classes x 3 + the 10,000 test images
    assert passes(10, 1) == pytest.approx(20000 * 10 * (256 + 3) + 10 * 10 * 3 + 10000)


def test_cost_loops_follow_gradient_matching():
    from kddbench_plugins.condensation import costs, gradient_matching

    assert costs.LOOPS == gradient_matching.LOOPS


def test_smoke_on_a_given_data_root_caps_images_per_class(tmp_path):
    """With --data-root the files there are used (here stand-ins of 5 per class), capped at
    --smoke-per-class; the cap ends with the run."""
    import os

    from kddbench import api
    from kddbench_plugins.datasets.standins import write_standin

    write_standin("cifar10", tmp_path / "data", per_class=5)
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    df = api.run(suite, tmp_path / "o", smoke=True, smoke_per_class=3, only=["needs-cifar"],
                 data_root=str(tmp_path / "data"), jobs=1, progress=False)
    assert (df["status"] == "ok").all() and len(df) == 4
    assert smoke.PER_CLASS_ENV not in os.environ
    from kddbench.context import RunContext
    from kddbench.plugins import get_registry

    with smoke.per_class_cap(3):
        capped = RunContext(get_registry(), data_root=tmp_path / "data").data("cifar10")
    assert len(capped.x_train) == len(capped.x_test) == 30 and "smoke" in capped.notes
    whole = RunContext(get_registry(), data_root=tmp_path / "data").data("cifar10")
    assert len(whole.x_train) == 50
    records = [json.loads(p.read_text()) for p in (tmp_path / "o" / "records").glob("*.json")]
    assert all(r["versions"]["smoke"].endswith("per_class=3") for r in records)
