"""Regression history: entries keyed by commit, gated against the last good one, drawn over
commits, and usable as the gate's baseline."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from test_html_report import fabricate


@pytest.fixture
def results(tmp_path):
    from kddbench.report import write_reports

    suite, out = fabricate(tmp_path, failed_seed=None)
    write_reports(suite, out)
    return out / "results.csv"


def _worse(results, tmp_path, drop=5.0, name="worse.csv"):
    df = pd.read_csv(results, dtype={"cell_id": str, "config_id": str})
    first = df.index[df["method"] == "average"][0]
    df.loc[first, "accuracy"] -= drop
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_one_row_per_cell_and_metric_keyed_by_commit(results, tmp_path):
    from kddbench.history import COLUMNS, append, read_history

    hist = tmp_path / "history.csv"
    done = append(results, hist, commit="c1", date="2026-01-01", machine="box",
                  metrics=["accuracy", "train_time_s"])
    assert done["gate"] == "first" and done["rows"] == 15 * 2
    df = read_history(hist)
    assert list(df.columns) == COLUMNS and set(df["commit"]) == {"c1"}
    assert df.groupby(["cell_id", "metric"]).size().eq(1).all()
    row = df[(df["metric"] == "accuracy")].iloc[0]
    assert json.loads(row["axes"]).keys() >= {"method", "dataset", "eval_arch"}
    assert row["machine"] == "box" and row["date"] == "2026-01-01"
    # appending the same commit again replaces its entry
    append(results, hist, commit="c1", date="2026-01-01", machine="box")
    assert len(read_history(hist)) == 15


def test_each_entry_is_gated_against_the_last_good_one(results, tmp_path):
    from kddbench.history import append, baseline_table, last_good, read_history

    hist = tmp_path / "history.csv"
    assert append(results, hist, commit="c1", date="d1")["gate"] == "first"
    assert append(results, hist, commit="c2", date="d2")["gate"] == "pass"
    bad = append(_worse(results, tmp_path), hist, commit="c3", date="d3")
    assert bad["gate"] == "regression" and bad["baseline"] == "c2"
    # the regression is no baseline: the next entry is gated against c2 again
    assert last_good(read_history(hist)) == "c2"
    nxt = append(results, hist, commit="c4", date="d4")
    assert nxt["gate"] == "pass" and nxt["baseline"] == "c2"
    base = baseline_table(hist)
    assert len(base) == 15 and set(base["status"]) == {"ok"}
    assert base["accuracy"].sum() == pytest.approx(pd.read_csv(results)["accuracy"].sum())


def test_failed_cells_and_version_changes(results, tmp_path):
    from kddbench.history import append, last_good, read_history

    hist = tmp_path / "history.csv"
    append(results, hist, commit="c1", date="d1")
    df = pd.read_csv(results, dtype={"cell_id": str, "config_id": str})
    failed = df.copy()
    failed.loc[0, "status"] = "error"
    assert append(failed, hist, commit="c2", date="d2")["gate"] == "failed cells"
    moved = df.copy()  # every configuration under a new plugin version: a new baseline
    moved["config_id"] = moved["config_id"] + "x"
    moved["cell_id"] = moved["cell_id"] + "x"
    moved["versions"] = moved["versions"].str.replace("task:condense=1", "task:condense=2")
    assert append(moved, hist, commit="c3", date="d3")["gate"] == "versions changed"
    assert last_good(read_history(hist)) == "c3"


def test_the_cli_appends_plots_and_compares_with_the_last_good_entry(results, tmp_path, cli):
    hist = tmp_path / "h" / "history.csv"
    code, out, err = cli("history", results, "--file", hist, "--commit", "aaa", "--date", "d1")
    assert code == 0 and "gate: first" in out, err
    code, out, _ = cli("history", results, "--file", hist, "--commit", "bbb", "--date", "d2")
    assert code == 0 and "gate: pass against aaa" in out
    code, out, err = cli("history", "--plot", "--file", hist)
    assert code == 0 and (tmp_path / "h" / "history.png").stat().st_size > 1000, err
    assert "aaa" in out and "bbb" in out
    code, report, _ = cli("compare", "--baseline-from-history", hist, results)
    assert code == 0 and "PASS" in report
    code, report, _ = cli("compare", f"history:{hist}", _worse(results, tmp_path))
    assert code == 1 and "REGRESSION" in report
    code, _, err = cli("compare", "--baseline-from-history", hist, results, results)
    assert code == 2 and "CURRENT only" in err


def test_bad_input_is_one_line(results, tmp_path, cli):
    code, _, err = cli("history")
    assert code == 2 and err.count("\n") == 1 and "RESULTS" in err
    code, _, err = cli("compare", f"history:{tmp_path / 'none.csv'}", results)
    assert code == 2 and "no such file" in err and "Traceback" not in err
    code, _, err = cli("history", results, "--file", tmp_path / "h.csv", "--metric", "nope")
    assert code == 2 and "'nope'" in err and "accuracy" in err
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    code, _, err = cli("history", "--plot", "--file", tmp_path / "junk.csv")
    assert code == 2 and "not a history CSV" in err


def test_the_committed_ci_history_holds_three_commits():
    from pathlib import Path

    from kddbench.history import entries, read_history

    path = Path(__file__).resolve().parent.parent / "reports" / "ci" / "history.csv"
    hist = read_history(path)
    assert len(entries(hist)) >= 3
    assert set(hist["metric"]) >= {"accuracy"} and hist["value"].notna().all()
