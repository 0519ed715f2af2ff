"""Inline plugin options (``convnet[width=64]``) and the NAS rank-correlation analysis."""
import pandas as pd
import pytest

from conftest import write_suite
from kddbench import names
from kddbench.errors import KddbenchError
from kddbench.suite import SuiteError, load_suite
from kddbench_plugins.nas.ranking import nas_table, spearman
from kddbench_plugins.nas.section import NASEntry


def test_expand_and_canonical_order():
    assert names.expand("convnet") == ["convnet"]
    assert names.expand("convnet[width=8,depth=1|2]") == ["convnet[depth=1,width=8]",
                                                          "convnet[depth=2,width=8]"]
    assert names.parse("convnet[act=relu,depth=2]") == ("convnet", {"act": "relu", "depth": 2})
    assert names.parse("timm:resnet10t") == ("timm:resnet10t", {})
    with pytest.raises(KddbenchError, match="key=value"):
        names.split("convnet[depth]")
    with pytest.raises(KddbenchError, match="alternatives"):
        names.parse("convnet[depth=1|2]")


NAS_SUITE = """
[protocols.quick]
epochs = 2
batch_size = 32

[[experiments]]
name = "proxy"
task = "condense"
dataset = "toy"
method = "random"
ipc = 3
distill_arch = "mlp"
eval_arch = ["convnet[depth=1|2,width=4|8]"]
protocol = "quick"

[[experiments]]
name = "full"
task = "condense"
dataset = "toy"
method = "full"
eval_arch = ["convnet[depth=1|2,width=4|8]"]
protocol = "quick"

[[nas]]
name = "search"
proxy = "proxy"
target = "full"
top_k = [3]
"""


def test_inline_options_expand_into_cells_and_are_validated(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml", NAS_SUITE))
    assert len(suite.cells) == 8
    assert {c["eval_arch"] for c in suite.cells} == {
        "convnet[depth=1,width=4]", "convnet[depth=1,width=8]", "convnet[depth=2,width=4]",
        "convnet[depth=2,width=8]"}
    bad = NAS_SUITE.replace("width=4|8", "widht=4|8").replace("depth=1|2", "depth=deep")
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "b.toml", bad))
    text = str(err.value)
    assert "unknown option 'widht' of 'convnet'; did you mean 'width'?" in text
    assert "option 'depth' expects int" in text


def test_nas_suite_end_to_end(tmp_path, cli):
    out = tmp_path / "out"
    code, stdout, err = cli("run", write_suite(tmp_path / "s.toml", NAS_SUITE), "--out", out,
                            "--jobs", "1", "--no-progress")
    assert code == 0, err
    frame = pd.read_csv(out / "nas_search.csv")
    assert len(frame) == 1 and frame["candidates"].iloc[0] == 4
    assert -1.0 <= frame["rho (all)"].iloc[0] <= 1.0
    assert frame["picked"].iloc[0].startswith("convnet[")
    assert "## search" in (out / "leaderboard.md").read_text()
    records = pd.read_csv(out / "results.csv")
    widths = {a: r for a, r in zip(records["eval_arch"], records["params"])}
    assert widths["convnet[depth=1,width=8]"] > widths["convnet[depth=1,width=4]"]


def test_spearman_and_nas_table_on_known_rankings():
    assert spearman(pd.Series([1, 2, 3, 4]), pd.Series([10, 20, 30, 40])) == pytest.approx(1)
    assert spearman(pd.Series([1, 2, 3, 4]), pd.Series([4, 3, 2, 1])) == pytest.approx(-1)
    rows = []
    for exp, scores in (("target", [90, 80, 70, 60]), ("proxy", [50, 55, 40, 30])):
        for arch, acc in zip("abcd", scores):
            rows.append({"experiment": exp, "status": "ok", "eval_arch": arch, "seed": 0,
                         "accuracy": acc, "train_time_s": 10 if exp == "target" else 1,
                         "method": "random" if exp == "proxy" else "full", "ipc": 1})
    frame = nas_table(pd.DataFrame(rows), NASEntry("n", "proxy", "target", top_k=[3],
                                                   group=["method"]))
    row = frame.iloc[0]
    assert row["rho (all)"] == pytest.approx(0.8)
    assert row["picked"] == "b" and row["picked accuracy (target)"] == 80
    assert row["best accuracy (target)"] == 90
    assert row["search time s (proxy)"] == 4 and row["search time s (target)"] == 40
