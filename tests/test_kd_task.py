"""The ``kd`` task: suite validation, the shipped KD suites, and end-to-end runs on toy data."""
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, write_suite
from kddbench.suite import PROTOCOL_OPTION_PREFIX, SuiteError, load_suite



KD_SUITE = """
[suite]
name = "{name}"
budget = "toy data, a few epochs"

[protocols.student]
epochs = 2
batch_size = 32
lr = 0.05

[protocols.teacher]
base = "student"
epochs = {teacher_epochs}

[[experiments]]
name = "kd"
task = "kd"
dataset = "toy"
teacher = "convnet3"
student = "convnet"
kd_method = {methods}
teacher_protocol = "teacher"
protocol = "student"
seeds = [0]

  [experiments.options.convnet3]
  width = 8
  depth = 2

  [experiments.options.convnet]
  width = 4
  depth = 1

[[tables]]
name = "main"
rows = ["kd_method"]
columns = ["dataset"]
"""


def _suite(tmp_path, name="kdtoy", methods='["teacher", "none", "response"]', teacher_epochs=3):
    return write_suite(tmp_path / f"{name}.toml", KD_SUITE.format(
        name=name, methods=methods, teacher_epochs=teacher_epochs))


def _records(out: Path):
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


# validation ------------------------------------------------------------------------------
def test_roles_are_reserved_and_the_teacher_recipe_is_in_the_cell(tmp_path):
    suite = load_suite(_suite(tmp_path, methods='["teacher", "none", "kd", "ikd"]'))
    cells = {c["kd_method"]: c for c in suite.cells}
    assert set(cells) == {"teacher", "none", "response", "feature"}  # aliases canonicalised
    assert "kd_method:feature" in cells["feature"].versions
    assert not any(k.startswith("kd_method:") for k in cells["none"].versions)
    teacher_recipe = cells["none"].options[PROTOCOL_OPTION_PREFIX + "teacher"]
    assert teacher_recipe["epochs"] == 3 and cells["none"].recipe["epochs"] == 2
    assert cells["feature"].options["feature"]["weight"] == 100.0
    # the teacher's recipe is part of every cell's identity
    other = load_suite(_suite(tmp_path, name="b", methods='["none"]', teacher_epochs=4))
    assert other.cells[0].cell_id != cells["none"].cell_id


def test_kd_options_inline_and_in_tables(tmp_path):
    text = _suite(tmp_path, methods='["response[T=2.0]", "dkd"]').read_text().replace(
        "  [experiments.options.convnet]", "  [experiments.options.dkd]\n  beta = 2.0\n\n"
        "  [experiments.options.convnet]")
    cells = {c["kd_method"]: c for c in load_suite(write_suite(tmp_path / "o.toml", text)).cells}
    assert set(cells) == {"response[T=2.0]", "dkd"}
    assert cells["dkd"].options["dkd"]["beta"] == 2.0
    bad = text.replace("beta = 2.0", "betta = 2.0").replace("T=2.0", "T=hot")
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", bad))
    problems = "\n".join(err.value.problems)
    assert "unknown option of 'dkd'; did you mean 'beta'?" in problems
    assert "option 'T' expects float" in problems


def test_unknown_methods_and_protocols_are_reported_before_running(tmp_path):
    text = _suite(tmp_path, methods='["rkd", "respons"]').read_text()
    text = text.replace('teacher_protocol = "teacher"', 'teacher_protocol = "teachr"')
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", text))
    problems = "\n".join(err.value.problems)
    assert "unknown KD method 'rkd'" in problems
    assert "did you mean 'response'?" in problems
    assert "teacher_protocol: unknown protocol 'teachr'; did you mean 'teacher'?" in problems


def test_shipped_kd_suites_validate_and_cover_every_method(cli, registry):
    for name in ("kd_cpu.toml", "paper_tables.toml"):
        code, out, err = cli("validate", ROOT / "suites" / name)
        assert code == 0, err
    suite = load_suite(ROOT / "suites" / "kd_cpu.toml")
    methods = {c["kd_method"] for c in suite.cells}
    assert methods == set(registry.names("kd_method")) | {"teacher", "none"}
    assert {c["dataset"] for c in suite.cells} == {"fashion-mnist", "mnist-5k"}
    assert len({c.seed for c in suite.cells}) >= 3
    assert "hour" in suite.budget


# end to end ------------------------------------------------------------------------------
def test_teacher_is_trained_once_and_reused_across_cells_and_suites(tmp_path, cli):
    cache = tmp_path / "cache"
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    code, text, err = cli("run", _suite(tmp_path), "--out", out1, "--cache-dir", cache,
                          "--jobs", "1", "--no-progress")
    assert code == 0, err
    teachers = sorted((cache / "artifacts" / "teacher").glob("*.pt"))
    assert len(teachers) == 1
    recs = {r["axes"]["kd_method"]: r for r in _records(out1)}
    assert {r["status"] for r in recs.values()} == {"ok"}
    # the teacher is a declared artifact: the runner trained it once, before the cells, and
    # every cell (the teacher role included) loaded it
    assert all(r["info"]["teacher_cached"] is True for r in recs.values())
    assert recs["response"]["info"]["teacher_outputs_cached"] is True
    t_acc = recs["teacher"]["metrics"]["accuracy"]
    assert all(r["metrics"]["teacher_accuracy"] == t_acc for r in recs.values())
    assert recs["teacher"]["metrics"]["params"] > recs["none"]["metrics"]["params"]
    for key in ("accuracy", "misclassified", "macro_f1", "params", "size_mb", "train_time_s",
                "teacher_train_time_s"):
        assert key in recs["response"]["metrics"]
    assert "| teacher " in text and "| response " in text

    # a second suite with another method and a student on a condensed set: same teacher
    text2 = _suite(tmp_path, name="kdtoy2", methods='["feature"]').read_text().replace(
        'seeds = [0]', 'seeds = [0]\nmethod = ["full", "random"]\nipc = 2').replace(
        'rows = ["kd_method"]', 'rows = ["kd_method", "method", "ipc"]')  # no pooled entries
    code, _, err = cli("run", write_suite(tmp_path / "s2.toml", text2), "--out", out2,
                       "--cache-dir", cache, "--jobs", "1", "--no-progress")
    assert code == 0, err
    assert sorted((cache / "artifacts" / "teacher").glob("*.pt")) == teachers
    recs2 = _records(out2)
    assert len(recs2) == 2 and all(r["info"]["teacher_cached"] for r in recs2)
    assert all(r["metrics"]["teacher_accuracy"] == t_acc for r in recs2)
    n_train = {r["axes"]["method"]: r["metrics"]["n_train"] for r in recs2}
    assert n_train == {"full": 160, "random": 2 * 4}
    df = pd.read_csv(out2 / "results.csv")
    assert set(df["kd_method"]) == {"feature"}
