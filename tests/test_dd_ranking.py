"""DD-Ranking's scores: the formulas of its documentation (v0.2.0), and a suite that names only
the methods gets every run the scores need."""
import math

import pandas as pd
import pytest

from conftest import write_suite
from kddbench_plugins.condensation.dd_ranking import normalised_score, scores


SUITE = """
[suite]
name = "{name}"
budget = "toy data, {epochs} epochs; whole set 1 epoch"

[protocols.quick]
epochs = {epochs}
batch_size = 32
augment = "dsa"

[protocols.whole]
epochs = 1
batch_size = 64

[[experiments]]
name = "{experiment}"
task = "{task}"
dataset = "toy"
method = ["average", "random"]
ipc = 2
eval_arch = "convnet"
protocol = "quick"
{extra}
  [experiments.options.convnet]
  depth = 1
  width = 8
"""


def test_scores_follow_the_definitions():
    acc = {"real_hard": 90.0, "syn_hard": 60.0, "syn_any": 70.0, "rdm_any": 50.0,
           "syn_naug": 55.0, "rdm_naug": 45.0}
    s = scores(acc)
    assert s["hlr"] == pytest.approx(30.0) and s["ior"] == pytest.approx(20.0)
    alpha = 0.5 * 0.20 - 0.5 * 0.30
    expected = 100 * (math.exp(alpha) - math.exp(-1)) / (math.e - math.exp(-1))
    assert s["lrs"] == pytest.approx(expected)
    beta = 0.5 * 0.20 + 0.5 * 0.10
    assert s["ars"] == pytest.approx(normalised_score(beta))
    # the bounds: a perfect set scores 100, the worst 0
    assert normalised_score(1.0) == pytest.approx(100.0)
    assert normalised_score(-1.0) == pytest.approx(0.0)
    assert scores(acc, w=1.0)["lrs"] == pytest.approx(normalised_score(0.20))


def test_a_suite_naming_methods_gets_every_run_and_the_section(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", SUITE.format(
        name="ddr", epochs=2, experiment="scores", task="dd_ranking",
        extra='full_protocol = "whole"'))
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--jobs", "1")
    assert code == 0, out + err
    df = pd.read_csv(tmp_path / "out" / "results.csv").set_index("method")
    for col in ("hlr", "ior", "lrs", "ars", "acc_real_hard", "acc_rdm_naug"):
        assert df[col].notna().all(), col
    # the random method against the random baseline: the same subset, so no improvement
    assert df.loc["random", "ior"] == pytest.approx(0.0)
    # the shared runs are shared: both methods see the same random and whole-set accuracies
    assert df["acc_rdm_any"].nunique() == 1 and df["acc_real_hard"].nunique() == 1
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "## DD-Ranking scores (scores)" in text and "| toy | average |" in text


def test_weights_are_checked(tmp_path, cli):
    suite = write_suite(tmp_path / "s.toml", """
[[experiments]]
name = "scores"
task = "dd_ranking"
dataset = "toy"
method = "random"
ipc = 2
eval_arch = "convnet"
full_protocol = "default"

[[dd_ranking]]
experiment = "scores"
lrs_weight = 1.5
""")
    code, out, err = cli("validate", suite)
    assert code == 2 and "lrs_weight" in (out + err) and "[0, 1]" in (out + err)


def test_one_evaluation_serves_the_condense_cross_arch_and_dd_ranking_cells_of_a_set(
        tmp_path, cli, monkeypatch):
    """The same set, network, recipe and seeds: trained once, stored, read by the other tasks;
    the numbers read equal the numbers a fresh cache computes."""
    def run(task, cache, extra=""):
        monkeypatch.setenv("KDDBENCH_CACHE", str(tmp_path / cache))
        out = tmp_path / f"{task}-{cache}"
        suite = write_suite(tmp_path / f"{task}.toml",
                            SUITE.format(name=task, epochs=10, experiment="e", task=task,
                                         extra=extra))
        code, text, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
        assert code == 0, text + err
        return pd.read_csv(out / "results.csv").set_index("method")

    condense = run("condense", "a")
    assert (condense["evaluation_reused"] == 0).all()
    ranked = run("dd_ranking", "a", 'full_protocol = "whole"')
    assert (ranked["evaluations_reused"] == 1).all()  # with augmentation; without is its own
    assert (ranked["acc_syn_any"] == condense["accuracy"]).all()
    crossed = run("cross_arch", "a", 'distill_arch = "convnet"')
    assert (crossed["evaluation_reused"] == 1).all()
    assert (crossed["accuracy"] == condense["accuracy"]).all()

    fresh = run("dd_ranking", "b", 'full_protocol = "whole"')  # a cache of its own
    assert (fresh["evaluations_reused"] == 0).all()
    assert fresh["acc_syn_any"].tolist() == ranked["acc_syn_any"].tolist()
    assert fresh["acc_syn_naug"].tolist() == ranked["acc_syn_naug"].tolist()


def test_the_scores_exponent_takes_fractions_not_percentage_points():
    """docs/condense.md: DD-Ranking 0.2.0's code puts percentage points into the exponent
    (LRS -0.16 for this set); the definition, and ours, takes fractions (LRS 21.9)."""
    from kddbench_plugins.condensation.dd_ranking import scores

    s = scores({"real_hard": 90.0, "syn_hard": 60.0, "syn_any": 60.0, "rdm_any": 55.0,
                "syn_naug": 58.0, "rdm_naug": 55.0})
    assert s["hlr"] == pytest.approx(30.0) and s["ior"] == pytest.approx(5.0)
    assert s["lrs"] == pytest.approx(21.89, abs=0.01)
    assert 0.0 < s["ars"] < 100.0


def test_a_set_scored_against_a_float32_copy_of_itself_has_no_improvement():
    # the random subset's shared run came back from a float32 tensor: 57.34 -> 57.34000015
    acc = dict(real_hard=89.85, syn_hard=57.34, syn_any=57.34, rdm_any=57.34000015258789,
               syn_naug=56.53, rdm_naug=56.53000259399414)
    out = scores(acc)
    assert out["ior"] == 0.0 and f"{out['ior']:.2f}" == "0.00"
    assert out["ars"] == normalised_score(0.0)
