"""The `--dry-run` cost estimate (kddbench.cost and the plugins' cost functions): what it counts.

Every test compares image passes (no calibration, so nothing is timed)."""
from __future__ import annotations

import pytest

from kddbench import cost
from kddbench.cost import DataInfo
from kddbench.suite import build_suite


def _passes(registry, experiment: dict, protocols: dict | None = None) -> float:
    raw = {"experiments": [{"name": "e", **experiment}], "protocols": protocols or {}}
    cells = build_suite(raw, "t", registry).cells
    est = cost.estimate(cells, registry, calibration=False)
    assert est.rows[0]["not_estimated"] == 0
    return sum(r["passes"] for r in est.rows)


def _dm(**extra):
    return {"task": "condense", "dataset": "mnist-5k", "method": "dm", "ipc": 1,
            "eval_arch": "mlp", "options": {"dm": {"iterations": 10}}, **extra}


def test_every_built_in_condenser_has_an_estimate(registry):
    from kddbench_plugins.condensation.costs import method_cost

    data = DataInfo("d", 1000, 100, 10, 1, 28, 28)
    for name in registry.names("condenser"):
        spec = registry.get("condenser", name)
        if not spec.cacheable:  # a set read from a file: nothing is condensed
            continue
        passes = method_cost(spec, spec.resolve_options({}), 10, data)
        assert passes is not None and passes >= 0, spec.name


def test_n_models_multiplies_the_evaluation(registry):
    one = _passes(registry, _dm(recipe={"epochs": 4}))
    three = _passes(registry, _dm(recipe={"epochs": 4, "n_models": 3}))
    condense = 10 * 10 * (256 + 3)  # DM: iterations x classes x (real batch + 3 x ipc)
    evaluation = 4 * 10 * 3 + 1000  # epochs x images x 3, and the 1,000 test images
    assert one == pytest.approx(condense + evaluation)
    assert three == pytest.approx(condense + 3 * evaluation)


def test_a_tuning_grid_counts_every_point(registry):
    protocols = {"p": {"epochs": 4, "val_fraction": 0.1}}
    plain = _passes(registry, _dm(protocol="p"), protocols)
    tuned = _passes(registry, _dm(protocol="p", tune={"recipe.lr": [0.01, 0.03, 0.1]}), protocols)
    condense = 10 * 10 * (256 + 3)
    # one evaluation per point; the set depends on no recipe key, so it is one artifact made once
    assert tuned - condense == pytest.approx(3 * (plain - condense))
    method = _passes(registry, _dm(protocol="p", tune={"dm.iterations": [10, 20]}), protocols)
    assert method == pytest.approx(plain + (plain - condense) + 2 * condense)  # a set per point


def test_experts_are_counted_once_for_every_cell_that_shares_them(registry):
    def tm(methods, seeds):
        return _passes(registry, {
            "task": "condense", "dataset": "mnist-5k", "method": methods, "ipc": 1,
            "distill_arch": "mlp", "eval_arch": "mlp", "seeds": seeds,
            "recipe": {"epochs": 1},
            "options": {m: {"iterations": 1, "num_experts": 2, "epochs": 3}
                        for m in ([methods] if isinstance(methods, str) else methods)}})

    expert = 3 * 4000 * 3  # epochs x the 4,000 training images x 3
    one, two = tm("mtt", 1), tm("mtt", 2)
    per_cell = two - one  # the second seed adds its condensation and evaluation only
    assert one - per_cell == pytest.approx(2 * expert)
    both = tm(["mtt", "pad"], 1)
    # pad's experts train on its EL2N selection (90% of the images) after 2 scoring nets of 2
    # epochs each: separate artifacts, counted besides mtt's
    pad_experts = 2 * round(0.9 * 4000) * 3 * 3 + 2 * (2 * 4000 * 3 + 4000)
    assert both - one > pad_experts


def test_with_several_workers_the_longest_cells_start_first(registry, monkeypatch):
    """kddbench.schedule.longest_first: by estimated seconds, suite order among equals, a cell
    whose cost cannot be estimated first (it may be the longest)."""
    from kddbench.schedule import longest_first

    raw = {"experiments": [
        {"name": "e", **_dm(method=["random", "dm"], seeds=[0, 1],
                            options={"dm": {"iterations": 50}})},
        {"name": "unknown", **_dm(method="dm", seeds=[0])}]}
    cells = build_suite(raw, "t", registry).cells
    real = cost.cell_work

    def cell_work(cell, *args):
        if cell.experiment == "unknown":
            raise RuntimeError("no estimate")
        return real(cell, *args)

    monkeypatch.setattr(cost, "cell_work", cell_work)
    order = [(c.experiment, c.axes["method"], c.seed)
             for c in longest_first(cells, registry, "cpu")]
    assert order == [("unknown", "dm", 0), ("e", "dm", 0), ("e", "dm", 1),
                     ("e", "random", 0), ("e", "random", 1)]


def test_the_dry_run_leaves_out_sets_already_stored(tmp_path, cli):
    """A set in the cache (or released with a report) is not condensed again: the estimate
    of the same cells in a fresh report directory drops its condensation, not its evaluation."""
    from conftest import toy_dm_suite

    suite = toy_dm_suite(tmp_path / "s.toml", "stored", "iterations = 3", seeds=2)

    def total(out) -> float:
        code, text, err = cli("run", suite, "--dry-run", "--out", out, "--cache-dir",
                              tmp_path / "cache")
        assert code == 0, err
        row = next(line for line in text.splitlines() if line.startswith("| **total**"))
        return float(row.split("|")[3])

    before = total(tmp_path / "fresh")
    code, _, err = cli("run", suite, "--out", tmp_path / "done", "--cache-dir",
                       tmp_path / "cache", "--jobs", "1", "--no-progress")
    assert code == 0, err
    after = total(tmp_path / "fresh")
    condense = 3 * 4 * (40 + 3)  # DM: iterations x classes x (real batch + 3 ipc); toy: 4 x 40
    assert before - after == pytest.approx(2 * condense, rel=0.05), (before, after)
