"""The regression gate: run the small offline CI suite and compare it with the committed
baseline (reports/ci/baseline.csv), cell by cell.  A 2-point drop in any one configuration fails
it, and so does every way of comparing nothing (the gate fails closed)."""
import pandas as pd
import pytest

from conftest import ROOT

CI = ROOT / "reports" / "ci"
BASELINE = CI / "baseline.csv"
RESULTS = CI / "results.csv"
IDS = {"cell_id": str, "config_id": str}


def _results() -> pd.DataFrame:
    return pd.read_csv(RESULTS, dtype=IDS)


CONFIGS = list(dict.fromkeys(_results()["config_id"]))


def _gate(cli, tmp_path, current, *args, baseline=BASELINE):
    """``compare`` of ``baseline`` with ``current`` (a DataFrame, or the file's text)."""
    path = tmp_path / "current.csv"
    if isinstance(current, pd.DataFrame):
        current.to_csv(path, index=False)
    elif isinstance(current, bytes):
        path.write_bytes(current)
    else:
        path.write_text(current)
    return cli("compare", baseline, path, *args)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_ci_suite_matches_the_committed_baseline(tmp_path, cli):
    out = tmp_path / "ci"
    code, _, err = cli("run", ROOT / "suites" / "ci.toml", "--out", out, "--no-progress")
    assert code == 0, err
    code, report, err = cli("compare", BASELINE, out / "results.csv")  # the CI tolerance: 1.0
    assert code == 0, report + err
    assert "0 regression(s)" in report and "7 comparison(s) (14 cell pair(s))" in report


def test_the_committed_results_pass_and_the_baseline_covers_every_configuration(cli):
    code, report, err = cli("compare", BASELINE, RESULTS)
    assert code == 0, report + err
    assert len(CONFIGS) == 7 and "7 comparison(s) (14 cell pair(s)): PASS" in report


@pytest.mark.parametrize("seeds", ["one seed", "every seed"])
@pytest.mark.parametrize("config_id", CONFIGS)
def test_a_two_point_drop_in_any_one_configuration_fails(tmp_path, cli, config_id, seeds):
    cur = _results()
    hit = cur["config_id"] == config_id
    if seeds == "one seed":
        hit &= cur["seed"] == cur.loc[hit, "seed"].max()
    cur.loc[hit, "accuracy"] -= 2.0
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 1, report
    assert "1 regression(s)" in report
    row = [ln for ln in report.splitlines() if "REGRESSION" in ln and ln.startswith("|")]
    assert len(row) == 1 and "-2.00 (seed" in row[0]


def test_a_drop_within_the_tolerance_passes_and_a_gain_is_not_a_regression(tmp_path, cli):
    cur = _results()
    cur["accuracy"] -= 0.5
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 0, report
    cur["accuracy"] += 3.0
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 0 and "7 improvement(s)" in report


def test_lower_is_better_metrics_regress_upwards(tmp_path, cli):
    cur = _results()
    cur.loc[cur.index[0], "train_time_s"] += 5.0  # slower: worse (declared by the task)
    code, report, _ = _gate(cli, tmp_path, cur, "--metric", "train_time_s", "--tolerance", "2")
    assert code == 1 and "+5.00" in report
    cur = _results()
    cur.loc[cur["config_id"] == CONFIGS[0], "misclassified"] -= 10  # fewer mistakes: better
    code, report, _ = _gate(cli, tmp_path, cur, "--metric", "misclassified")
    assert code == 0 and "1 improvement(s)" in report


# --- the gate fails closed (exit 4, NOTHING_COMPARED) ------------------------------------------


def test_nothing_compared_when_no_configuration_is_shared(tmp_path, cli):
    cur = _results()
    cur["config_id"] = "other" + cur["config_id"]
    cur["method"] = "other"
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 4 and "0 comparison(s)" in report
    assert report.count("is missing from the current results") == 7


def test_a_missing_configuration_fails_unless_allowed(tmp_path, cli):
    cur = _results()
    cur = cur[cur["config_id"] != CONFIGS[3]]
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 4, report
    line = [ln for ln in report.splitlines() if ln.startswith("FAIL:")]
    assert len(line) == 1 and CONFIGS[3] in line[0] and "missing" in line[0]
    code, report, _ = _gate(cli, tmp_path, cur, "--allow-missing")
    assert code == 0 and "warning:" in report and "6 comparison(s)" in report


def test_a_missing_seed_fails_unless_allowed(tmp_path, cli):
    cur = _results()
    cur = cur[~((cur["config_id"] == CONFIGS[0]) & (cur["seed"] == 1))]
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 4 and "seed(s) 1 missing" in report
    code, report, _ = _gate(cli, tmp_path, cur, "--allow-missing")
    assert code == 0 and "warning:" in report


def test_a_configuration_with_no_finished_seed_fails_even_when_missing_is_allowed(tmp_path,
                                                                                  cli):
    cur = _results()
    failed = cur["config_id"] == CONFIGS[1]
    cur.loc[failed, "status"] = "failed"
    cur.loc[failed, "accuracy"] = float("nan")
    for extra in ((), ("--allow-missing",)):
        code, report, _ = _gate(cli, tmp_path, cur, *extra)
        assert code == 4 and "has no finished seed in the current results" in report


def test_a_baseline_configuration_with_no_finished_seed_fails(tmp_path, cli):
    base = _results()
    base.loc[base["config_id"] == CONFIGS[2], "status"] = "failed"
    base.to_csv(tmp_path / "base.csv", index=False)
    code, report, _ = _gate(cli, tmp_path, _results(), baseline=tmp_path / "base.csv")
    assert code == 4 and "has no finished seed: refresh the baseline" in report


def test_a_finished_cell_without_the_metric_fails(tmp_path, cli):
    cur = _results()
    cur.loc[cur.index[5], "accuracy"] = float("nan")
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 4 and "the current cell reports no 'accuracy'" in report


def test_a_configuration_without_baseline_is_named_not_silently_gated(tmp_path, cli):
    extra = _results().iloc[:2].copy()
    extra["config_id"], extra["method"] = "brandnew", "brandnew"
    code, report, _ = _gate(cli, tmp_path, pd.concat([_results(), extra]))
    assert code == 0 and "1 current configuration(s) have no baseline" in report


@pytest.mark.parametrize("metric", ["accuracy", "no_such_metric"])
def test_an_absent_metric_column_fails(tmp_path, cli, metric):
    cur = _results()
    if metric == "accuracy":
        cur = cur.drop(columns=["accuracy"])
    code, report, _ = _gate(cli, tmp_path, cur, "--metric", metric)
    assert code == 4 and f"metric {metric!r}: no such column" in report


@pytest.mark.parametrize("text", ["", "\n", ",".join(_results().columns) + "\n"],
                         ids=["zero bytes", "what a run with no records writes", "header only"])
def test_an_empty_current_table_fails(tmp_path, cli, text):
    code, report, _ = _gate(cli, tmp_path, text)
    assert code == 4 and "current results are empty" in report


def test_only_failed_cells_fail(tmp_path, cli):
    cur = _results()
    cur["status"] = "failed"
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 4 and "current results hold only failed cells (14)" in report


def test_an_empty_report_directory_fails(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("compare", BASELINE, tmp_path / "empty")
    assert code == 2 and "neither records nor results.csv" in _one_line(err)


def test_a_report_directory_is_read_from_its_records(cli):
    code, report, err = cli("compare", BASELINE, CI)
    assert code == 0 and "7 comparison(s)" in report, report + err


# --- malformed input: exit 2 with one line, never a traceback ----------------------------------


@pytest.mark.parametrize("case", ["no config_id", "no seed", "seed not a number",
                                  "metric not a number", "binary", "not utf-8", "not a csv",
                                  "duplicate cell"])
def test_malformed_tables_are_refused_in_one_line(tmp_path, cli, case):
    cur = _results()
    if case == "no config_id":
        content = cur.drop(columns=["config_id"])
    elif case == "no seed":
        content = cur.drop(columns=["seed"])
    elif case == "seed not a number":
        cur["seed"] = cur["seed"].astype(object)
        cur.loc[0, "seed"] = "zero"
        content = cur
    elif case == "metric not a number":
        cur["accuracy"] = cur["accuracy"].astype(object)
        cur.loc[3, "accuracy"] = "high"
        content = cur
    elif case == "binary":
        content = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    elif case == "not utf-8":
        content = "config_id,seed,accuracy\nk\xe9,0,1.0\n".encode("latin-1")
    elif case == "not a csv":
        content = 'config_id,seed\n"k1,0\n1,2,3,4,5\n'
    else:
        content = pd.concat([cur, cur.iloc[:1]])
    code, out, err = _gate(cli, tmp_path, content)
    assert code == 2, out + err
    line = _one_line(err)
    assert line.startswith("error: current")


def test_an_undeclared_metric_is_an_error_naming_it_unless_its_direction_is_given(tmp_path,
                                                                                  cli):
    cur = _results()
    cur["made_up_score"] = cur["accuracy"]
    cur.to_csv(tmp_path / "base.csv", index=False)
    code, _, err = _gate(cli, tmp_path, cur, "--metric", "made_up_score",
                         baseline=tmp_path / "base.csv")
    assert code == 2 and "'made_up_score' is not declared by task 'condense'" in _one_line(err)
    code, report, _ = _gate(cli, tmp_path, cur, "--metric", "made_up_score",
                            "--higher-is-better", "made_up_*", baseline=tmp_path / "base.csv")
    assert code == 0 and "7 comparison(s)" in report


def test_a_version_change_is_not_comparable(tmp_path, cli):
    cur = _results()
    moved = cur["config_id"] == CONFIGS[0]
    cur.loc[moved, "config_id"] = "bumped"
    cur.loc[moved, "versions"] = cur.loc[moved, "versions"].str.replace("task:condense=1",
                                                                        "task:condense=2")
    code, report, _ = _gate(cli, tmp_path, cur)
    assert code == 5 and "NOT COMPARABLE" in report
    code, report, _ = _gate(cli, tmp_path, cur, "--allow-version-change")
    assert code == 0 and "7 comparison(s)" in report


def test_the_library_compare_stays_a_function(tmp_path):
    import kddbench

    for _ in range(2):  # the submodule of the same name must not replace it after one call
        assert callable(kddbench.compare)
        assert int(kddbench.compare(BASELINE, RESULTS).exit_code) == 0


def test_every_compare_option_is_in_the_gate_docs():
    from kddbench.cli import cli as group

    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text[text.index("## The regression gate"):]
    section = section[:section.index("\n## ", 5)]
    options = [o for p in group.commands["compare"].params for o in getattr(p, "opts", ())
               if o.startswith("--") and o != "--help"]
    assert options and all(o in section for o in options), options


def test_rows_are_labelled_by_their_own_axes_even_for_a_task_not_installed():
    from kddbench.compare import compare, format_comparison

    rows = [{"config_id": f"c{size}", "seed": seed, "status": "ok", "experiment": "e",
             "task": "not_installed", "axes": "corpus;size", "corpus": "wiki", "size": size,
             "bleu": 30.0 + size - (3.0 if (size, seed) == (2, 1) else 0.0)}
            for size in (1, 2) for seed in (0, 1)]
    base = pd.DataFrame(rows)
    base["bleu"] = [30.0 + r["size"] for r in rows]
    result = compare(base, pd.DataFrame(rows), metrics=["bleu"], directions={"bleu": True})
    text = format_comparison(result)
    assert "| corpus" in text and "| size" in text and result.exit_code == 1
    assert list(result.rows["verdict"]) == ["ok", "REGRESSION"]
