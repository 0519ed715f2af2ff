"""Leaderboard and compare printers (golden outputs) and the regression gate's logic."""
from pathlib import Path

import pandas as pd
import pytest

from kddbench.compare import compare, format_comparison, parse_tolerances, tolerance_for
from kddbench.report import budget_figure, leaderboard, to_markdown, versus_paper
from kddbench.suite import Reference, TableSpec

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():  # first run writes the golden file; review it, then commit it
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def test_leaderboard_golden():
    df = pd.read_csv(DATA / "example_results.csv")
    table = TableSpec("t", rows=["method"], columns=["ipc"], metric="accuracy", digits=1)
    refs = [Reference({"dataset": "mnist", "method": "random", "ipc": 1}, "accuracy", 64.9, 3.5),
            Reference({"dataset": "mnist", "method": "dm", "ipc": 10}, "accuracy", 97.5)]
    text = to_markdown(leaderboard(df, table, refs))
    _golden("leaderboard_example.md", text)
    assert "62.0 ± 2.0 (n=3) [paper 64.9 ± 3.5]" in text
    assert "70.5 (n=1)" in text  # the failed seed is not averaged in


def test_versus_paper_lists_each_published_number_with_its_explanation():
    df = pd.read_csv(DATA / "example_results.csv")
    table = TableSpec("t", rows=["method"], columns=["ipc"], metric="accuracy", digits=1)
    refs = [Reference({"dataset": "mnist", "method": "random", "ipc": 1}, "accuracy", 64.9, 3.5,
                      source="DC paper", note="no augmentation"),
            Reference({"dataset": "mnist", "method": "dm", "ipc": 10}, "accuracy", 97.5)]
    frame = versus_paper(df, table, refs)
    rows = frame.set_index("method").to_dict("index")
    assert rows["random"]["ipc"] == "1" and rows["random"]["paper"] == "64.9 ± 3.5"
    assert rows["random"]["ours − paper"] == "-2.9"  # 62.0 - 64.9
    assert rows["random"]["why they differ"] == "no augmentation"
    assert rows["random"]["source"] == "DC paper"
    assert rows["dm"]["why they differ"] == "—"
    no_refs = TableSpec("t", rows=["method"], columns=["ipc"], reference=False)
    assert versus_paper(df, no_refs, refs).empty


def test_budget_figure_plots_numeric_budgets_only(tmp_path):
    from kddbench.plots import curve_points
    from kddbench.report import _grouped

    df = pd.read_csv(DATA / "example_results.csv")
    table = TableSpec("t", rows=["method"], columns=["ipc"], metric="accuracy")
    refs = [Reference({"dataset": "mnist", "method": "random", "ipc": 1}, "accuracy", 64.9, 3.5)]
    lines = curve_points(_grouped(df, table, refs), table)
    random = lines["random"]
    assert [x for x, *_ in random] == sorted(x for x, *_ in random)  # ordered by budget
    assert random[0][0] == 1.0 and random[0][3] == 64.9 and random[1][3] is None
    path = budget_figure(df, table, refs, tmp_path)
    assert path == tmp_path / "plot_t.png" and path.read_bytes()[:4] == b"\x89PNG"
    by_method = TableSpec("u", rows=["ipc"], columns=["method"], metric="accuracy")
    assert budget_figure(df, by_method, refs, tmp_path) is None  # no numeric budget axis


def test_leaderboard_filters_by_where_and_is_empty_without_rows():
    df = pd.read_csv(DATA / "example_results.csv")
    table = TableSpec("t", rows=["method"], columns=["ipc"], where={"method": ["full"]})
    frame = leaderboard(df, table)
    assert list(frame["method"]) == ["full"]
    assert to_markdown(leaderboard(df, TableSpec("t", ["method"], ["ipc"], metric="nope"))) == \
        "_no finished results yet_\n"


def test_a_report_of_tables_naming_experiments_with_no_record_yet_is_empty_not_a_crash(
        tmp_path, cli):
    from conftest import TINY_SUITE, write_suite

    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE.replace(
        'columns = ["ipc"]\nmetric', 'columns = ["ipc"]\nexperiments = ["toy"]\nmetric'))
    assert 'experiments = ["toy"]' in Path(suite).read_text()
    code, out, err = cli("report", suite, "--out", tmp_path / "out")
    assert code == 0, err
    assert "_no finished results yet_" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_compare_golden_and_verdicts():
    base = pd.read_csv(DATA / "compare_baseline.csv")
    cur = pd.read_csv(DATA / "compare_current.csv")
    result = compare(base, cur, tolerance=1.0)
    _golden("compare_example.txt", format_comparison(result))
    verdicts = {(r.method, r.ipc): r.verdict for r in result.rows.itertuples()}
    # random ipc 1: seed 0 +0.1, seed 1 -2.0; the mean moved only -0.95, but cells are paired
    # seed by seed, so the one seed that dropped 2 points is a regression
    assert verdicts[("random", 1)] == "REGRESSION"
    assert verdicts[("random", 10)] == "REGRESSION"          # -3.0 on both seeds
    assert verdicts[("average", 1)] == "improved"            # +2.5 on both seeds
    assert verdicts[("average", 10)] == "ok"                 # +0.5 and -0.4: within 1.0
    assert result.exit_code == 1 and result.regressions == 2 and result.improvements == 1
    worst = result.rows.set_index(["method", "ipc"]).loc[("random", 1)]
    assert worst["worst_seed"] == 1 and worst["worst"] == pytest.approx(-2.0)
    assert len(result.pairs) == 8 and set(result.pairs["seed"]) == {0, 1}


def test_compare_refuses_different_versions():
    base = pd.read_csv(DATA / "compare_baseline.csv")
    changed = pd.read_csv(DATA / "compare_version_changed.csv")
    result = compare(base, changed)
    assert result.exit_code == 5  # NOT_COMPARABLE
    assert list(result.not_comparable["versions_cur"]) == ["condenser:average=2;protocol=1"] * 2
    assert "NOT COMPARABLE" in format_comparison(result)
    allowed = compare(base, changed, allow_version_change=True)
    assert allowed.exit_code == 0 and len(allowed.rows) == 4  # paired on axes and seed
    assert any("versions differ" in w for w in allowed.warnings)


def test_tolerance_patterns_longest_match_wins():
    default, pats = parse_tolerances(["2.0", "acc*=0.5", "accuracy=3", "*time*=inf"])
    assert default == 2.0
    assert tolerance_for("accuracy", pats, default) == 3.0
    assert tolerance_for("accx", pats, default) == 0.5
    assert tolerance_for("macro_f1", pats, default) == 2.0
    assert tolerance_for("train_time_s", pats, default) == float("inf")
    assert parse_tolerances([]) == (1.0, {})


@pytest.mark.parametrize("bad", ["abc", "accuracy=", "=2", "-1", "accuracy=nan"])
def test_bad_tolerances_are_refused(bad, cli):
    code, _, err = cli("compare", DATA / "compare_baseline.csv", DATA / "compare_baseline.csv",
                       "--tolerance", bad)
    assert code == 2 and "--tolerance" in err and len(err.strip().splitlines()) == 1


def test_compare_cli_exit_codes(cli):
    code, out, _ = cli("compare", DATA / "compare_baseline.csv", DATA / "compare_current.csv")
    assert code == 1 and "REGRESSION" in out
    code, out, _ = cli("compare", DATA / "compare_baseline.csv", DATA / "compare_baseline.csv")
    assert code == 0 and "0 regression(s)" in out and "PASS" in out
    code, _, _ = cli("compare", DATA / "compare_baseline.csv", DATA / "compare_current.csv",
                     "--tolerance", "5")
    assert code == 0
    code, _, _ = cli("compare", DATA / "compare_baseline.csv", DATA / "compare_current.csv",
                     "--tolerance", "5", "--tolerance", "accuracy=2.5")
    assert code == 1  # the accuracy pattern beats the default: -3.0 exceeds 2.5


def test_compare_needs_kddbench_tables(tmp_path, cli):
    other = tmp_path / "x.csv"
    other.write_text("a,b\n1,2\n")
    code, _, err = cli("compare", other, DATA / "compare_baseline.csv")
    assert code == 2 and "config_id" in err


def test_metric_directions_come_from_the_declaring_task(registry):
    from kddbench.errors import KddbenchError
    from kddbench.metrics import direction

    assert direction("accuracy", "condense", registry) is True
    assert direction("train_time_s", "condense", registry) is False   # "*_time_s"
    assert direction("misclassified", "kd", registry) is False
    assert direction("teacher_accuracy", "kd", registry) is True
    assert direction("epochs", "kd", registry) is None                # no better side
    with pytest.raises(KddbenchError, match="'made_up' is not declared by task 'condense'"):
        direction("made_up", "condense", registry)
    with pytest.raises(KddbenchError, match="no installed plugin provides task 'nope'"):
        direction("accuracy", "nope", registry)
    assert direction("made_up", "condense", registry, {"made_*": False}) is False


def test_every_metric_in_the_committed_records_is_declared_by_its_task(registry):
    import json

    from kddbench.metrics import find, task_metrics

    root = Path(__file__).resolve().parent.parent / "reports"
    undeclared, seen = set(), 0
    for path in root.glob("*/records/*.json"):
        record = json.loads(path.read_text())
        declared = task_metrics(registry, record["task"])
        assert declared, f"task {record['task']!r} declares no metrics"
        for name in record.get("metrics", {}):
            seen += 1
            if find(name, declared) is None:
                undeclared.add((record["task"], name))
    assert seen and not undeclared


def test_one_verdict_rule():
    from kddbench.metrics import MetricSpec, find, verdict

    assert verdict(2.5, 1.0, True) == "better" and verdict(-2.5, 1.0, True) == "worse"
    assert verdict(-2.5, 1.0, False) == "better" and verdict(2.5, 1.0, False) == "worse"
    assert verdict(1.0, 1.0, True) == "within noise"  # a change of exactly the allowance is noise
    assert verdict(-3.0, float("inf"), True) == "within noise"
    assert verdict(3.0, 1.0, None) == "changed"
    specs = [MetricSpec("*_s", False), MetricSpec("*_time_s", False, "s"), MetricSpec("acc")]
    assert find("train_time_s", specs).name == "*_time_s" and find("acc", specs).name == "acc"
    assert find("other", specs) is None


def test_versus_baseline_verdicts():
    from kddbench.report import versus_baseline

    rows = []
    for method, accs in (("none", [80.0, 81.0, 79.0]), ("good", [85.0, 86.0, 84.0]),
                         ("same", [80.5, 79.5, 81.5]), ("bad", [70.0, 71.0, 69.0])):
        for seed, acc in enumerate(accs):
            rows.append({"status": "ok", "task": "kd", "kd_method": method, "dataset": "d",
                         "seed": seed, "accuracy": acc, "train_time_s": acc, "mystery": acc})
    table = TableSpec("t", ["kd_method"], ["dataset"], baseline={"kd_method": "none"})
    frame = versus_baseline(pd.DataFrame(rows), table).set_index("kd_method")
    assert frame.loc["good", "dataset=d"] == "+5.00 (better)"
    assert frame.loc["same", "dataset=d"] == "+0.50 (within noise)"
    assert frame.loc["bad", "dataset=d"] == "-10.00 (worse)"
    assert "none" not in frame.index
    # the direction is the task's declaration (TaskSpec.metrics), never the metric's name
    timing = TableSpec("t", ["kd_method"], ["dataset"], metric="train_time_s",
                       baseline={"kd_method": "none"})
    frame = versus_baseline(pd.DataFrame(rows), timing).set_index("kd_method")
    assert frame.loc["good", "dataset=d"] == "+5.00 (worse)"  # slower
    assert frame.loc["bad", "dataset=d"] == "-10.00 (better)"
    unknown = TableSpec("t", ["kd_method"], ["dataset"], metric="mystery",
                        baseline={"kd_method": "none"})
    frame = versus_baseline(pd.DataFrame(rows), unknown).set_index("kd_method")
    assert frame.loc["good", "dataset=d"] == "+5.00 (no declared direction: no verdict)"


def test_versus_baseline_uses_the_one_verdict_rule(monkeypatch):
    from kddbench import metrics
    from kddbench.report import versus_baseline

    calls = []
    monkeypatch.setattr(metrics, "verdict",
                        lambda delta, allowed, higher: calls.append((delta, higher)) or "v")
    rows = [{"status": "ok", "task": "kd", "kd_method": m, "dataset": "d", "seed": s,
             "accuracy": a + s} for m, a in (("none", 80.0), ("x", 85.0)) for s in (0, 1)]
    table = TableSpec("t", ["kd_method"], ["dataset"], baseline={"kd_method": "none"})
    frame = versus_baseline(pd.DataFrame(rows), table)
    assert list(frame["dataset=d"]) == ["+5.00 (v)"] and calls == [(5.0, True)]


def test_paired_versus_baseline_takes_the_differences_seed_by_seed():
    """Seeds share their noise: a method always 1 point above the baseline on the same seed is
    better paired, though the seeds' spread hides it from the unpaired verdict."""
    from kddbench.report import paired_versus_baseline, versus_baseline

    rows = []
    for method, accs in (("none", [80.0, 90.0, 70.0]), ("up", [81.0, 91.0, 71.5]),
                         ("two", [82.0, 92.0, None])):
        for seed, acc in enumerate(accs):
            if acc is not None:
                rows.append({"status": "ok", "task": "kd", "kd_method": method, "dataset": "d",
                             "seed": seed, "accuracy": acc})
    table = TableSpec("t", ["kd_method"], ["dataset"], baseline={"kd_method": "none"})
    unpaired = versus_baseline(pd.DataFrame(rows), table).set_index("kd_method")
    assert unpaired.loc["up", "dataset=d"] == "+1.17 (within noise)"
    paired = paired_versus_baseline(pd.DataFrame(rows), table).set_index("kd_method")
    assert paired.loc["up", "dataset=d"] == "+1.17 ± 0.17 (n=3, better)"
    assert paired.loc["two", "dataset=d"] == "+2.00 ± 0.00 (n=2, better)"  # the shared seeds
    assert "none" not in paired.index


def test_a_cell_computed_by_another_suite_appears_under_this_suites_experiment(tmp_path, cli):
    """Cells are records by id: a subset suite run first (another suite and experiment name,
    the same cells) fills this suite's tables when its report is built from the same folder."""
    from conftest import TINY_SUITE, write_suite

    subset = TINY_SUITE.replace('name = "tiny"', 'name = "tiny_first"').replace(
        'name = "toy"', 'name = "toy_first"').replace(
        'method = ["full", "random", "average"]', 'method = "random"').replace(
        "seeds = [0, 1]", "seeds = [0]")
    first = write_suite(tmp_path / "first.toml", subset)
    whole = write_suite(tmp_path / "whole.toml", TINY_SUITE)
    out = tmp_path / "out"
    code, _, err = cli("run", first, "--out", out, "--jobs", "1", "--no-progress")
    assert code == 0, err
    code, _, err = cli("report", whole, "--out", out)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 2 and set(df["experiment"]) == {"toy"}  # random at ipc 2 and 5, seed 0
    board = (out / "leaderboard.md").read_text()
    random_row = next(line for line in board.splitlines() if line.startswith("| random"))
    assert random_row.count("(n=1)") == 2  # both budgets of the table, from the first run
