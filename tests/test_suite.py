"""Suite files: expansion into cells, validation with every error at once, overrides."""
import pytest

from conftest import TINY_SUITE, write_suite
from kddbench.suite import SuiteError, apply_overrides, load_suite, parse_value


def test_tiny_suite_expands_and_full_ignores_ipc(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml", TINY_SUITE))
    # full: one per seed (ipc dropped); random/average: 2 ipc x 2 seeds each
    assert len(suite.cells) == 2 + 2 * 2 * 2
    full = [c for c in suite.cells if c["method"] == "full"]
    assert {c["ipc"] for c in full} == {None}
    assert len({c.cell_id for c in suite.cells}) == len(suite.cells)
    assert all(c.recipe["epochs"] == 3 for c in suite.cells)
    assert full[0].options["convnet"]["width"] == 8


def test_cell_identity_is_stable_and_seed_free_config(tmp_path):
    a = load_suite(write_suite(tmp_path / "a.toml", TINY_SUITE)).cells
    b = load_suite(write_suite(tmp_path / "b.toml", TINY_SUITE)).cells
    assert [c.cell_id for c in a] == [c.cell_id for c in b]
    by_config = {}
    for c in a:
        by_config.setdefault(c.config_id, set()).add(c.seed)
    assert all(seeds == {0, 1} for seeds in by_config.values())


def test_every_error_reported_at_once_with_suggestions(tmp_path):
    bad = TINY_SUITE.replace('method = ["full"', 'methd = ["full"').replace(
        'eval_arch = "convnet"', 'eval_arch = "convnet33"').replace("epochs = 3", "epocs = 3")
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", bad))
    problems = err.value.problems
    text = "\n".join(problems)
    assert "experiments[0].methd: unknown key for task 'condense'; did you mean 'method'?" in text
    assert "did you mean 'convnet3'" in text
    assert "protocols.quick.epocs: unknown key; did you mean 'epochs'?" in text
    assert all(p.startswith(str(tmp_path / "bad.toml")) for p in problems)


def test_option_names_and_types_are_checked(tmp_path):
    bad = TINY_SUITE.replace("depth = 1", 'dept = 1').replace("width = 8", 'width = "wide"')
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", bad))
    text = str(err.value)
    assert "options.convnet.dept: unknown option of 'convnet'; did you mean 'depth'?" in text
    assert "options.convnet.width: expected int >= 1, got 'wide'" in text


def test_options_for_a_plugin_not_in_the_experiment(tmp_path):
    bad = TINY_SUITE + "\n  [experiments.options.lenet]\n  x = 1\n"
    bad = bad.replace("[[tables]]", "[[tablesx]]")  # also an unknown top-level key
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", bad))
    assert "unknown key; did you mean 'tables'?" in str(err.value)


def test_protocol_inheritance_and_cycles(tmp_path):
    text = TINY_SUITE.replace("[protocols.quick]", "[protocols.base2]\nlr = 0.05\n\n"
                              "[protocols.quick]\nbase = \"base2\"")
    suite = load_suite(write_suite(tmp_path / "s.toml", text))
    assert suite.cells[0].recipe["lr"] == 0.05 and suite.cells[0].recipe["epochs"] == 3
    cyc = TINY_SUITE.replace("[protocols.quick]", "[protocols.a]\nbase = \"quick\"\n\n"
                             "[protocols.quick]\nbase = \"a\"")
    with pytest.raises(SuiteError, match="circular"):
        load_suite(write_suite(tmp_path / "c.toml", cyc))


def test_overrides_match_cells_and_skip(tmp_path):
    text = TINY_SUITE + """
  [[experiments.overrides]]
  match = { ipc = 5 }
  recipe = { epochs = 7 }

  [[experiments.overrides]]
  match = { method = "average", seed = 1 }
  skip = true
"""
    text = text.replace("[[tables]]", "[[tables]]", 1)
    # overrides must belong to the experiment: put them before [[tables]]
    head, _, tables = TINY_SUITE.partition("[[tables]]")
    text = head + text[len(TINY_SUITE):] + "\n[[tables]]" + tables
    suite = load_suite(write_suite(tmp_path / "s.toml", text))
    assert all(c.recipe["epochs"] == 7 for c in suite.cells if c["ipc"] == 5)
    assert all(c.recipe["epochs"] == 3 for c in suite.cells if c["ipc"] != 5)
    assert not [c for c in suite.cells if c["method"] == "average" and c.seed == 1]


def test_command_line_overrides(tmp_path):
    path = write_suite(tmp_path / "s.toml", TINY_SUITE)
    suite = load_suite(path, ["experiments.*.seeds=1", "protocols.quick.epochs=2"])
    assert {c.seed for c in suite.cells} == {0}
    assert {c.recipe["epochs"] for c in suite.cells} == {2}
    assert parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"
    raw = apply_overrides({"a": {"b": 1}}, ["a.c=true"])
    assert raw == {"a": {"b": 1, "c": True}}


def test_typo_via_cli_is_one_line_exit_2(tmp_path, cli):
    bad = TINY_SUITE.replace('dataset = "toy"', 'dataset = "tooy"')
    code, out, err = cli("run", write_suite(tmp_path / "bad.toml", bad), "--out", tmp_path / "o")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean 'toy'?" in lines[0]
    assert "Traceback" not in err


def test_invalid_toml_is_reported(tmp_path, cli):
    code, _, err = cli("validate", write_suite(tmp_path / "x.toml", "[suite\nname="))
    assert code == 2 and "not valid TOML" in err


def test_shipped_suites_validate(cli):
    from conftest import ROOT

    for path in sorted((ROOT / "suites").glob("*.toml")):
        code, out, err = cli("validate", path)
        assert code == 0, err
