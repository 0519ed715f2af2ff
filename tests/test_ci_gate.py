"""The regression gate: run the small offline CI suite and compare it with the committed
baseline (reports/ci/baseline.csv).  A drop beyond tolerance and seed spread fails CI."""
from conftest import ROOT


def test_ci_suite_matches_the_committed_baseline(tmp_path, cli):
    out = tmp_path / "ci"
    code, _, err = cli("run", ROOT / "suites" / "ci.toml", "--out", out, "--no-progress")
    assert code == 0, err
    code, report, err = cli("compare", ROOT / "reports" / "ci" / "baseline.csv",
                            out / "results.csv", "--tolerance", "2.0")
    assert code == 0, report + err
    assert "0 regression(s)" in report and "7 comparison(s)" in report
