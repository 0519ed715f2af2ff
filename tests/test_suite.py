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


# --- ranges, choices, shapes and --set paths: every bad input is one line, exit 2 ------------

CHECKED = """
[suite]
name = "checked"

[protocols.quick]
epochs = 3
batch_size = 32

[[experiments]]
name = "toy"
task = "condense"
dataset = "toy"
method = ["random", "dm"]
ipc = [2, 5]
eval_arch = "convnet"
protocol = "quick"
seeds = [0, 1]

  [experiments.options.dm]
  iterations = 5

[[experiments]]
name = "kd"
task = "kd"
dataset = "toy"
teacher = "convnet"
student = "mlp"
kd_method = ["teacher", "none", "response"]
teacher_protocol = "quick"
protocol = "quick"
"""


def _problems(tmp_path, text, overrides=()):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / "bad.toml", text), overrides)
    prefix = f"{tmp_path / 'bad.toml'}: "
    assert all(p.startswith(prefix) and "\n" not in p for p in err.value.problems)
    return [p[len(prefix):] for p in err.value.problems]


BAD_VALUES = [
    ("ipc = [2, 5]", "ipc = -1", "experiments[0].ipc: expected an integer >= 1, got an integer -1"),
    ("ipc = [2, 5]", "ipc = 1.5", "experiments[0].ipc: expected an integer >= 1, got a number 1.5"),
    ("ipc = [2, 5]", 'ipc = "10"', "experiments[0].ipc: expected an integer >= 1, got a string"),
    ("ipc = [2, 5]", "ipc = 0", "experiments[0].ipc: expected an integer >= 1, got an integer 0"),
    ("ipc = [2, 5]", "ipc = []", "experiments[0].ipc: an empty list"),
    ("ipc = [2, 5]", "ipc = [2, 2]", "experiments[0].ipc: 2 appears twice"),
    ('method = ["random", "dm"]', 'method = ["random", "dm", 3]',
     "experiments[0].method: expected a condenser name, got an integer 3"),
    ("epochs = 3", "epochs = 0", "protocols.quick.epochs: expected int >= 1, got 0"),
    ("batch_size = 32", "batch_size = 0", "protocols.quick.batch_size: expected int >= 1, got 0"),
    ("batch_size = 32", "batch_size = 32\nlr = -0.1", "protocols.quick.lr: expected float >= 0"),
    ("iterations = 5", "iterations = -50",
     "experiments[0].options.dm.iterations: expected int >= 1, got -50"),
    ("iterations = 5", 'init = "ral"', "options.dm.init: expected one of real, noise, got 'ral'; "
     "did you mean 'real'?"),
    ("iterations = 5", 'augment = "dsax"', "did you mean 'dsa'?"),
    ("iterations = 5", "iterations = 5.0", "options.dm.iterations: expected int >= 1, got 5.0"),
    ("epochs = 3", 'epochs = 3\noptimizer = "lbfgs"',
     "protocols.quick.optimizer: expected one of sgd, adam, adamw, got 'lbfgs'"),
    ("epochs = 3", 'epochs = 3\noptimizer = "adamm"', "did you mean 'adam'?"),
    ("epochs = 3", 'epochs = 3\nschedule = "cosin"', "did you mean 'cosine'?"),
    ("epochs = 3", 'epochs = 3\naugment = "dsax"', "protocols.quick.augment: expected one of"),
    ("epochs = 3", 'epochs = 3\naugment = "zca"', "protocols.quick.augment: expected one of "
     "crop_flip, dsa, flip_rotate, none, got 'zca'"),  # a data-set-level transform
    ("epochs = 3", 'epochs = 3\nlr = nan', "protocols.quick.lr: expected a finite float"),
    ("epochs = 3", 'epochs = 3\nschedule = "multistep"', "needs milestones"),
    ("epochs = 3", 'epochs = 10\nschedule = "multistep"\nmilestones = [5, 20]',
     "protocols.quick.milestones: milestone epochs lie in [1, epochs - 1] = [1, 9]"),
    ("epochs = 3", 'epochs = 10\nschedule = "multistep"\nmilestones = [0.5, 3]',
     "all epochs (integers) or all fractions"),
    ("epochs = 3", 'epochs = 10\nmilestones = [5]', "milestones apply to schedule = 'multistep'"),
    ("epochs = 3", 'epochs = 10\nwarmup_epochs = 10', "protocols.quick.warmup_epochs: expected"),
    ("seeds = [0, 1]", "seeds = true", "experiments[0].seeds: expected a list of integers"),
    ("seeds = [0, 1]", "seeds = []", "experiments[0].seeds: an empty list"),
    ("seeds = [0, 1]", "seeds = 0", "experiments[0].seeds: a count of seeds lies in [1, "),
    ("seeds = [0, 1]", "seeds = [0, 0]", "experiments[0].seeds: a seed appears twice"),
    ('kd_method = ["teacher"', 'kd_method = ["techer"',
     "experiments[1].kd_method: unknown KD method 'techer'; did you mean 'teacher'?"),
    ('"none", "response"]', '"nonee", "response"]', "did you mean 'none'?"),
    ('teacher_protocol = "quick"', 'teacher_protocol = "quik"',
     "experiments[1].teacher_protocol: unknown protocol 'quik'; did you mean 'quick'?"),
    ('name = "checked"', 'name = "../elsewhere"', "suite.name: '../elsewhere' is not a plain name"),
    ('name = "checked"', 'name = "/tmp/abs"', "suite.name: '/tmp/abs' is not a plain name"),
    ('name = "checked"', 'name = ".."', "suite.name: '..' is not a plain name"),
    ("seeds = [0, 1]", 'seeds = [0, 1]\n\n  [[experiments.overrides]]\n'
     '  match = { method = "randm" }\n  skip = true',
     "overrides[0].match.method: unknown condensation method 'randm'; did you "
     "mean 'random'?"),
    ("seeds = [0, 1]", 'seeds = [0, 1]\n\n  [[experiments.overrides]]\n  match = { ipc = "2" }'
     "\n  skip = true", "overrides[0].match.ipc: expected an integer >= 1"),
    ("seeds = [0, 1]", "seeds = [0, 1]\noverrides = { match = 1 }",
     "experiments[0].overrides: expected a list of tables"),
]


@pytest.mark.parametrize("old,new,message", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_out_of_range_and_misspelt_values_are_refused(tmp_path, old, new, message):
    assert old in CHECKED
    problems = _problems(tmp_path, CHECKED.replace(old, new, 1))
    assert any(message in p for p in problems), problems


def test_the_checked_suite_itself_is_fine(tmp_path):
    suite = load_suite(write_suite(tmp_path / "ok.toml", CHECKED))
    assert len(suite.cells) == 2 * 2 * 2 + 3
    assert {c.options["dm"]["iterations"] for c in suite.cells if c.get("method") == "dm"} == {5}


BAD_SHAPES = [
    ('[suite]\nname = "checked"', 'suite = "x"\n[other]\nname = "checked"', "suite: expected a "
     "table, got a string"),
    ("[protocols.quick]", "[protocols.quick.x]", "protocols.quick.x: unknown key"),
    ('teacher = "convnet"', "teacher = 5", "experiments[1].teacher: expected an architecture "
     "name, got an integer 5"),
    ('name = "toy"', "name = 5", "experiments[0].name: expected a string, got an integer 5"),
    ('task = "kd"', 'task = ["kd"]', "experiments[1].task: expected a string, got a list"),
    ("  [experiments.options.dm]\n  iterations = 5", "  [experiments.options]\n  dm = 5",
     "experiments[0].options.dm: must be a table of option = value, got an integer 5"),
    ('protocol = "quick"\nseeds', 'protocol = "quick"\nrecipe = 5\nseeds',
     "experiments[0].recipe: expected a table, got an integer 5"),
]


@pytest.mark.parametrize("old,new,message", BAD_SHAPES, ids=[b[1] for b in BAD_SHAPES])
def test_wrong_container_types_are_one_line_each(tmp_path, old, new, message):
    assert old in CHECKED
    problems = _problems(tmp_path, CHECKED.replace(old, new, 1))
    assert any(message in p for p in problems), problems


def test_a_table_where_a_list_of_tables_goes(tmp_path):
    text = '[suite]\nname = "x"\n\n[experiments]\nname = "toy"\ntask = "condense"\n'
    assert _problems(tmp_path, text) == [
        "experiments: expected a list of tables ([[experiments]]), got a table {'name': 'toy', "
        "'task': 'condense'}"]


@pytest.mark.parametrize("item,message", [
    ("experiments.5.seeds=1", "experiments.5: no item 5: experiments has 2 item(s), 0 to 1"),
    ("experiments.x.seeds=1", "experiments.x: experiments is a list: index it with a number"),
    ("suite.name.x=1", "suite.name.x: suite.name is a string, not a table or a list"),
    ("=1", "not of the form key.path=value"),
    ("experiments..seeds=1", "not of the form key.path=value"),
    ("seeds", "not of the form key.path=value"),
    ("experiments.0.ipc.7=3", "experiments.0.ipc.7: no item 7"),
    ("experiments.0=5", "experiments[0]: expected a table, got an integer 5"),
    ("tables=5", "tables: expected a list of tables ([[tables]]), got an integer 5"),
])
def test_malformed_set_paths_are_refused(tmp_path, item, message):
    problems = _problems(tmp_path, CHECKED, [item])
    assert any(message in p for p in problems), problems


def test_set_paths_ending_on_a_list_index_or_star_take_effect(tmp_path):
    path = write_suite(tmp_path / "s.toml", CHECKED)
    suite = load_suite(path, ["experiments.0.ipc.1=7"])
    assert {c["ipc"] for c in suite.cells if c.experiment == "toy"} == {2, 7}
    suite = load_suite(path, ["experiments.0.ipc=[3]", "experiments.*.seeds=[3]",
                              "protocols.*.epochs=2"])
    assert {c.seed for c in suite.cells} == {3} and {c.recipe["epochs"] for c in suite.cells} == {2}
    replaced = ('experiments.1={name="kd2", task="kd", dataset="toy", teacher="convnet", '
                'student="mlp", kd_method="none"}')
    suite = load_suite(path, [replaced])
    assert {c.experiment for c in suite.cells} == {"toy", "kd2"}


def test_a_directory_or_a_binary_file_is_one_line(tmp_path, cli):
    (tmp_path / "dir.toml").mkdir()
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[suite]\x00\x81")
    for target, message in ((tmp_path / "dir.toml", "is a directory"),
                            (binary, "not a UTF-8 text file")):
        code, _, err = cli("validate", target)
        assert code == 2 and message in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_validate_cli_gives_one_line_per_problem_and_exit_2(tmp_path, cli):
    bad = CHECKED.replace("ipc = [2, 5]", "ipc = -1").replace("epochs = 3", "epochs = 0")
    code, out, err = cli("validate", write_suite(tmp_path / "bad.toml", bad), "--set",
                         "experiments.0.seeds=true")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert any(line.endswith("experiments[0].ipc: expected an integer >= 1, got an integer -1")
               for line in lines)
    assert any("protocols.quick.epochs: expected int >= 1, got 0" in line for line in lines)
    assert any("experiments[0].seeds: expected a list of integers" in line for line in lines)
    assert all(line.startswith(str(tmp_path / "bad.toml") + ": ") for line in lines)


def test_a_huge_cross_product_is_refused_unless_forced(tmp_path, cli, monkeypatch):
    path = write_suite(tmp_path / "s.toml", CHECKED)
    with pytest.raises(SuiteError, match="expands to 8 cells, more than the limit of 5"):
        load_suite(path, max_cells=5)
    assert len(load_suite(path, max_cells=0).cells) == 11  # 0: no limit
    monkeypatch.setenv("KDDBENCH_MAX_CELLS", "9")  # 8 + 3 cells: the second one is over
    code, _, err = cli("validate", path)
    assert code == 2 and "experiments[1]: expands to 3 cells, more than the limit of 9" in err
    assert "--force" in err
    code, out, err = cli("validate", path, "--force")
    assert code == 0 and "ok (11 cells" in out, err
    code, _, err = cli("run", path, "--dry-run", "--out", tmp_path / "o")
    assert code == 2 and "more than the limit of 9" in err
    code, out, err = cli("run", path, "--dry-run", "--force", "--out", tmp_path / "o")
    assert code == 0 and "11 cells" in out, err


def test_show_lists_a_tasks_typed_axes_and_rules(cli):
    code, out, _ = cli("show", "kd")
    assert code == 0
    assert "axis ipc (an integer >= 1)" in out and "axis dataset (a dataset name, required)" in out
    assert "axis kd_method (a kd_method name or teacher, none, required)" in out
    assert "rule: ipc is unused (None) where the plugin named by method has uses_ipc false" in out


def test_default_limit_is_100000_cells(tmp_path):
    from kddbench.suite import DEFAULT_MAX_CELLS, max_cells_limit

    assert DEFAULT_MAX_CELLS == 100_000 and max_cells_limit() == 100_000
    big = CHECKED.replace("seeds = [0, 1]", "seeds = 25001")  # 2 x 2 x 25,001 = 100,004
    problems = _problems(tmp_path, big)
    assert any("expands to 100,004 cells, more than the limit of 100,000" in p for p in problems)


def test_tasks_declare_typed_axes_and_rules():
    from kddbench.axes import Axis, AxisUnused, IntAxis, PluginAxis, ProtocolAxis
    from kddbench.specs import TaskSpec

    typed = TaskSpec("t", "m:f", axes={"data": PluginAxis("dataset", required=True),
                                       "n": IntAxis(min=1), "role": PluginAxis(
                                           "kd_method", reserved=("teacher",)),
                                       "p": ProtocolAxis()},
                     rules=(AxisUnused("n", by="data", flag="offline"),))
    assert typed.axes == ("data", "n", "role", "p") and typed.required == ("data",)
    assert typed.plugin_axes == {"data": "dataset", "role": "kd_method"}
    assert typed.reserved == {"role": ("teacher",)} and typed.protocol_axes == ("p",)
    legacy = TaskSpec("t", "m:f", axes=("data", "n"), required=("data",),
                      plugin_axes={"data": "dataset"})
    assert legacy.axis_types["data"] == PluginAxis("dataset", required=True)
    assert legacy.axis_types["n"] == Axis()  # untyped: any value
    values = {"data": "x", "n": 3}
    AxisUnused("n", by="data", flag="offline").apply(values, lambda axis: type(
        "S", (), {"offline": False})())
    assert values["n"] is None


def test_the_core_suite_loader_names_no_family_or_axis():
    from conftest import ROOT

    text = (ROOT / "kddbench" / "suite.py").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    for word in ("condenser", '"ipc"', "distill_arch", "eval_arch", '"dataset"', "kd_method",
                 "uses_ipc"):
        assert word not in code, word


def test_typed_options_one_validator_one_merger(registry):
    from kddbench.executor import executor_options
    from kddbench.errors import KddbenchError
    from kddbench.options import (Bool, Choice, Float, Int, Option, Str, check_option, resolve,
                                  smoke_values)

    declared = {"n": Int(3, min=1, smoke=1), "lr": Float(0.1, min=0), "on": Bool(True),
                "name": Str("a"), "mode": Choice("x", ("x", "y")), "plain": 4}
    assert resolve(declared, None) == {"n": 3, "lr": 0.1, "on": True, "name": "a", "mode": "x",
                                       "plain": 4}
    assert not any(isinstance(v, Option) for v in resolve(declared, {"n": 2}).values())
    assert resolve(declared, {"lr": 1})["lr"] == 1  # kept as written: same cell hash
    assert smoke_values(declared) == {"n": 1}
    assert check_option(declared["n"], 0) == "expected int >= 1, got 0"
    assert check_option(declared["n"], True) == "expected int >= 1, got True"
    assert check_option(declared["plain"], "4") == "expected int, got '4'"  # inferred kind
    assert "did you mean 'yy'" in check_option(Choice("x", ("x", "yy")), "y")
    assert check_option(Float(1.0, above=0), 0) == "expected float > 0, got 0"
    assert check_option(Bool(True), 1).startswith("expected bool")
    with pytest.raises(KddbenchError, match="option 'mode': expected one of x, y, got 'z'"):
        resolve(declared, {"mode": "z"})
    # a family's registered names are the choices when the registry has the family
    aug = Choice("none", ("none",), family="augmentation")
    assert check_option(aug, "crop_flip", registry) is None
    assert "did you mean 'dsa'" in check_option(aug, "dsax", registry)
    # the specs and the executors merge through the same function
    dm = registry.get("condenser", "dm")
    assert dm.resolve_options({"iterations": 7})["iterations"] == 7
    with pytest.raises(KddbenchError, match="iterations"):
        dm.resolve_options({"iterations": -50})
    process = registry.get("executor", "process")
    with pytest.raises(KddbenchError, match="workers': expected int >= 1, got 0"):
        executor_options("process", {"workers": 0}, dict(process.options))


def test_every_builtin_option_declares_a_valid_default(registry):
    from kddbench.options import Option, check_option, declaration

    typed = 0
    for family, specs in registry.specs.items():
        for spec in specs.values():
            for key, entry in spec.options.items():
                typed += isinstance(entry, Option)
                assert check_option(entry, declaration(entry).default, registry) is None, (
                    family, spec.name, key)
    assert typed > 100


def test_a_wrong_axis_value_does_not_hide_or_fake_other_problems(tmp_path):
    text = CHECKED.replace('kd_method = ["teacher", "none", "response"]',
                           'kd_method = ["response[T=hot]", "none"]\n'
                           'options = { response = { alpha = 2 } }')
    problems = _problems(tmp_path, text)
    assert "experiments[1].kd_method: 'response[T=hot]': option 'T' expects float > 0, got " \
           "'hot'" in problems
    assert "experiments[1].options.response.alpha: expected float in [0, 1], got 2" in problems
    assert not any("unknown plugin" in p for p in problems), problems
