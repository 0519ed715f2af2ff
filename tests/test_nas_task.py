"""The nas task: candidates sampled (seeded) from a declared space, the same sample for every
proxy; every candidate trained on each proxy and on the whole set, one cell each; the [[nas]]
section's Spearman, top-k and time ratio; a killed search resumes without recomputing."""
import json

import pandas as pd
import pytest

from conftest import write_suite

SPACE = "convnet[depth=1|2,width=4|8,act=relu|sigmoid|leakyrelu,pool=none|avgpool]"  # 24
SAMPLE = f'{{ space = "{SPACE}", sample = 6, seed = 3 }}'

SUITE = f"""
[suite]
name = "toy_nas"
budget = "toy data: proxies 3 epochs, early 1 epoch, target 2 epochs"

[protocols.proxy]
epochs = 3
batch_size = 32

[protocols.early]
epochs = 1
batch_size = 32

[protocols.target]
epochs = 2
batch_size = 32

[[experiments]]
name = "synthetic"
task = "nas"
dataset = "toy"
method = ["random", "dm"]
ipc = 2
distill_arch = "convnet[depth=1,width=8]"
candidate = {SAMPLE}
protocol = "proxy"

  [experiments.options.dm]
  iterations = 2

[[experiments]]
name = "early"
task = "nas"
dataset = "toy"
method = "full"
candidate = {SAMPLE}
protocol = "early"

[[experiments]]
name = "target"
task = "nas"
dataset = "toy"
method = "full"
candidate = {SAMPLE}
protocol = "target"

[[nas]]
name = "search"
proxy = ["synthetic", "early"]
target = "target"
top_k = [3, 4]
set_time = true
"""


def test_the_sample_is_seeded_and_the_same_for_every_proxy(tmp_path):
    from kddbench import names
    from kddbench.suite import load_suite

    space = names.space(SPACE)
    assert len(space) == 24
    drawn = names.sample(SPACE, 6, seed=3)
    assert drawn == names.sample(SPACE, 6, seed=3) and len(set(drawn)) == 6
    assert set(drawn) <= set(space) and drawn != names.sample(SPACE, 6, seed=4)
    assert names.sample(SPACE, 100, seed=3) == space  # k >= the space: all of it
    suite = load_suite(write_suite(tmp_path / "s.toml", SUITE))
    by_exp: dict = {}
    for cell in suite.cells:
        by_exp.setdefault((cell.experiment, cell.get("method")), []).append(cell["candidate"])
    assert set(by_exp) == {("synthetic", "random"), ("synthetic", "dm"), ("early", "full"),
                           ("target", "full")}
    canonical = {names.join(*names.parse(n)) for n in drawn}
    assert all(sorted(v) == sorted(canonical) for v in by_exp.values())
    assert len(suite.cells) == 6 * 4


def test_the_task_declares_the_dc_space_and_sample_draws_from_it(tmp_path, cli):
    from kddbench import names
    from kddbench.suite import load_suite
    from kddbench_plugins.nas import DC_SPACE

    assert len(names.space(DC_SPACE)) == 720  # the DC papers' 4 x 4 x 3 x 3 x 5 ConvNets
    text = SUITE.replace(SAMPLE, "{ sample = 5, seed = 1 }")
    suite = load_suite(write_suite(tmp_path / "d.toml", text))
    assert {c["candidate"] for c in suite.cells} == set(names.sample(DC_SPACE, 5, seed=1))
    bad = write_suite(tmp_path / "bad.toml", SUITE.replace("sample = 6", "sample = 0")
                      .replace("seed = 3", "sed = 3", 1))
    code, out, err = cli("validate", bad)
    assert code == 2
    assert "candidate.sample: expected an integer >= 1" in err
    assert "candidate.sed: unknown key; did you mean 'seed'?" in err
    assert "Traceback" not in err


def _records(out):
    return {p.name: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_search_reports_rank_correlations_and_resumes_after_a_kill(tmp_path, cli, monkeypatch):
    import kddbench_plugins.nas.task as task

    suite = write_suite(tmp_path / "s.toml", SUITE)
    out = tmp_path / "out"
    real_run, calls = task.run, []

    def dies_at_the_tenth_cell(cell, ctx):  # the process killed mid-search
        if len(calls) == 9:
            raise KeyboardInterrupt
        calls.append(cell.cell_id)
        return real_run(cell, ctx)

    monkeypatch.setattr(task, "run", dies_at_the_tenth_cell)
    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 130, err
    done = _records(out)
    assert len(done) == 9 and all(r["status"] == "ok" for r in done.values())

    def counts(cell, ctx):
        calls.append(cell.cell_id)
        return real_run(cell, ctx)

    calls.clear()
    monkeypatch.setattr(task, "run", counts)
    code, _, err = cli("run", suite, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0, err
    after = _records(out)
    assert len(after) == 24 and len(calls) == 24 - 9  # the done cells were not recomputed
    assert all(after[k] == v for k, v in done.items())
    assert not {r["cell_id"] for r in done.values()} & set(calls)

    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all()
    dm = df[df["method"] == "dm"]
    assert dm["condense_time_s"].nunique() == 1  # one set, condensed once, for every candidate
    table = pd.read_csv(out / "nas_search.csv")
    assert sorted(table["experiment"]) == ["early", "synthetic", "synthetic"]
    assert set(table["candidates"]) == {6}
    for col in ("rho (all)", "rho top-3", "rho top-4", "speed-up (target / proxy time)",
                "search time s (proxy)", "search time s (target)", "set time s (proxy)",
                "speed-up incl. set time"):
        assert col in table and table[col].notna().all(), col
    assert table["rho (all)"].between(-1, 1).all()
    target = df[df["experiment"] == "target"]
    best = target["accuracy"].max()
    assert table["best accuracy (target)"].tolist() == pytest.approx([best] * 3)
    assert (table["picked accuracy (target)"] <= best + 1e-9).all()
    # the early-stopped search trains half the target's epochs on the same images
    early = table[table["experiment"] == "early"].iloc[0]
    assert early["search time s (proxy)"] < early["search time s (target)"]
    text = (out / "leaderboard.md").read_text()
    assert "rho top-3" in text and "![" in text and (out / "nas_search.png").exists()


def test_a_partial_search_is_timed_over_the_candidates_both_searches_trained():
    from kddbench_plugins.nas.ranking import nas_table
    from kddbench_plugins.nas.section import NASEntry

    rows = [{"experiment": "target", "candidate": c, "seed": 0, "status": "ok",
             "accuracy": a, "train_time_s": 10.0, "method": "full", "condense_time_s": 0.0}
            for c, a in zip("abcde", [90, 80, 70, 60, 50])]
    rows += [{"experiment": "proxy", "candidate": c, "seed": 0, "status": "ok", "accuracy": a,
              "train_time_s": 1.0, "method": "dm", "condense_time_s": 7.0}
             for c, a in zip("abc", [40, 45, 30])]  # d and e not trained yet
    spec = NASEntry("n", "proxy", "target", by="candidate", top_k=[3], group=["method"],
                    set_time=True)
    row = nas_table(pd.DataFrame(rows), spec).iloc[0]
    assert row["candidates"] == 3 and row["best accuracy (target)"] == 90
    assert row["search time s (target)"] == 30 and row["search time s (proxy)"] == 3
    assert row["speed-up (target / proxy time)"] == 10
    assert row["set time s (proxy)"] == 7 and row["speed-up incl. set time"] == 3
    assert row["rho (all)"] == pytest.approx(0.5) and row["picked"] == "b"
