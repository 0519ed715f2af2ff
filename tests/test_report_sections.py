"""Report sections as a hook, the nas section plugin, tables that name real axes and never pool
what they do not show, and report prose derived from the cells."""
import math
import shutil

import pandas as pd
import pytest

from conftest import ROOT, TINY_SUITE, write_suite
from kddbench import plugins
from kddbench.report import render_report, write_reports
from kddbench.suite import SuiteError, load_suite

HEAD, _, TABLE = TINY_SUITE.partition("[[tables]]")


def _problems(tmp_path, text, name="s.toml"):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(tmp_path / name, text))
    return str(err.value)


# -- tables name real axes ----------------------------------------------------------------

@pytest.mark.parametrize("old,new,expected", [
    ('columns = ["ipc"]', 'columns = ["icp"]', "columns[0]: unknown axis 'icp'; did you mean 'ipc'?"),
    ('rows = ["method"]', 'rows = ["methdo"]', "rows[0]: unknown axis 'methdo'; did you mean 'method'?"),
    ('metric = "accuracy"', 'metric = "accuracy"\nwhere = { mehtod = "random" }',
     "where.mehtod: unknown axis 'mehtod'; did you mean 'method'?"),
    ('metric = "accuracy"', 'metric = "accuracy"\nwhere = { method = "randon" }',
     "where.method: unknown value of 'method' 'randon'; did you mean 'random'?"),
    ('metric = "accuracy"', 'metric = "accuracy"\nbaseline = { method = "ful" }',
     "baseline.method: unknown value of 'method' 'ful'; did you mean 'full'?"),
    ('columns = ["ipc"]', 'columns = ["ipc", "method"]', "'method' is shown twice"),
    ('rows = ["method"]', 'rows = []', "tables[0].rows: at least one row axis"),
    ('name = "main"', 'name = "../main"', "'../main' is not a plain name"),
    ('metric = "accuracy"', 'metric = "acuracy"', "tables[0].metric: unknown metric 'acuracy'; "
     "did you mean 'accuracy'? (metrics of task 'condense':"),
])
def test_table_keys_must_be_axes_of_its_experiments(tmp_path, old, new, expected):
    text = _problems(tmp_path, HEAD + "[[tables]]" + TABLE.replace(old, new))
    assert expected in text


def test_table_typo_exits_2_with_one_line(tmp_path, cli):
    path = write_suite(tmp_path / "s.toml", HEAD + "[[tables]]"
                       + TABLE.replace('columns = ["ipc"]', 'columns = ["icp"]'))
    code, out, err = cli("validate", path)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"{path}: tables[0].columns[0]: unknown axis 'icp'; did you mean 'ipc'? (axes of toy: "
        "dataset, method, ipc, distill_arch, eval_arch, transform, experiment, task, protocol, "
        "seed)"]


def test_a_table_never_averages_a_hidden_axis(tmp_path):
    two_archs = HEAD.replace('eval_arch = "convnet"', 'eval_arch = ["convnet", "mlp"]')
    text = _problems(tmp_path, two_archs + "[[tables]]" + TABLE)
    assert ("tables[0]: table 'main': one entry would average cells that differ in "
            "'eval_arch' (convnet, mlp); show 'eval_arch' in the rows or columns") in text
    # showing the axis, or keeping one value of it, is fine
    shown = TABLE.replace('columns = ["ipc"]', 'columns = ["ipc", "eval_arch"]')
    assert len(load_suite(write_suite(tmp_path / "a.toml", two_archs + "[[tables]]" + shown))
               .tables) == 1
    one = TABLE.replace('metric = "accuracy"', 'metric = "accuracy"\nwhere = { eval_arch = "mlp" }')
    assert load_suite(write_suite(tmp_path / "b.toml", two_archs + "[[tables]]" + one)).tables


def test_a_table_never_averages_two_protocols(tmp_path):
    other = HEAD.split("[[experiments]]")[1].replace('name = "toy"', 'name = "toy_long"')
    text = HEAD + "[protocols.long]\nepochs = 5\n\n[[experiments]]" + other.replace(
        'protocol = "quick"', 'protocol = "long"')
    problems = _problems(tmp_path, text + "[[tables]]" + TABLE)
    assert ("would average cells with different recipes or options (experiments toy, "
            "toy_long)") in problems
    by_experiment = TABLE.replace('rows = ["method"]', 'rows = ["experiment", "method"]')
    assert load_suite(write_suite(tmp_path / "ok.toml", text + "[[tables]]" + by_experiment))


def test_a_table_pools_two_experiments_of_one_configuration(tmp_path):
    # more seeds of the same configuration, declared as a second experiment: the names are
    # labels, so one entry averages the seeds of both
    other = HEAD.split("[[experiments]]")[1].replace('name = "toy"', 'name = "toy_more"')
    other = other.replace("seeds = [0, 1]", "seeds = [2, 3]")
    assert "seeds = [2, 3]" in other
    text = HEAD + "[[experiments]]" + other
    suite = load_suite(write_suite(tmp_path / "s.toml", text + "[[tables]]" + TABLE))
    one = [c for c in suite.cells if c.axes["method"] == "random" and c.axes["ipc"] == 2]
    assert sorted(c.seed for c in one) == [0, 1, 2, 3] and len({c.config_id for c in one}) == 1


def test_a_table_never_averages_seeds_with_different_recipes(tmp_path):
    seed_one = "\n  [[experiments.overrides]]\n  match = { seed = 1 }\n  recipe = { epochs = 7 }\n\n"
    problems = _problems(tmp_path, HEAD + seed_one + "[[tables]]" + TABLE)
    assert ("tables[0]: table 'main': one entry (method=full, ipc=—) would average cells with "
            "different recipes or options (experiment toy)") in problems


def test_committed_suites_pass_the_table_checks():
    for name in ("quickstart", "ci", "kd_cpu", "condense_cpu", "nas_cpu"):
        load_suite(ROOT / "suites" / f"{name}.toml")


# -- the nas section plugin ------------------------------------------------------------------

NAS = HEAD.replace('method = ["full", "random", "average"]', 'method = "random"').replace(
    'ipc = [2, 5]', 'ipc = 2').replace('eval_arch = "convnet"',
                                       'eval_arch = ["convnet[depth=1|2,width=4|8]"]') + """
[[experiments]]
name = "whole"
task = "condense"
dataset = "toy"
method = "full"
eval_arch = ["convnet[depth=1|2,width=4|8]"]
protocol = "quick"

[[nas]]
name = "search"
proxy = "toy"
target = "whole"
top_k = [3]
"""


def test_nas_entries_parse_into_the_plugin_section(tmp_path):
    suite = load_suite(write_suite(tmp_path / "n.toml", NAS))
    (section,) = suite.sections
    assert section.key == "nas" and type(section.section).__module__ == \
        "kddbench_plugins.nas.section"
    entry = section.entry
    assert (entry.proxy, entry.target, entry.by, entry.top_k) == ("toy", "whole", "eval_arch", [3])
    assert entry.group == ["dataset", "method", "ipc"]


@pytest.mark.parametrize("old,new,expected", [
    ('top_k = [3]', 'top_k = [3]\nby = "eval_ach"', "nas[0].by: unknown axis 'eval_ach'; did you "
     "mean 'eval_arch'?"),
    ('top_k = [3]', 'top_k = [3]\ngroup = ["methd"]', "nas[0].group[0]: unknown axis 'methd'"),
    ('top_k = [3]', 'top_k = [1]', "nas[0].top_k: a list of integers >= 3"),
    ('top_k = [3]', 'topk = [3]', "nas[0].topk: unknown key; did you mean 'top_k'?"),
    ('target = "whole"', 'target = "hole"', "nas[0].target: unknown experiment 'hole'; did you "
     "mean 'whole'?"),
    ('name = "search"', 'name = "a/b"', "nas[0].name: 'a/b' is not a plain name"),
    ('top_k = [3]', 'top_k = [3]\nmetric = "acc"', "nas[0].metric: unknown metric 'acc'"),
    ('top_k = [3]', 'top_k = [3]\nmetric = "epochs"', "nas[0].metric: 'epochs' has no better "
     "side"),
    ('[[nas]]', '[nas]', "nas: expected an array of tables ([[nas]] entries)"),
    ('[[nas]]', '[[nass]]', "nass: unknown key; did you mean 'nas'?"),
    ('distill_arch', 'distill_arch', None),
])
def test_nas_entries_are_validated(tmp_path, old, new, expected):
    text = NAS.replace(old, new, 1)
    if expected is None:  # a proxy with two distillation nets, default group: pooled, refused
        text = text.replace('eval_arch = ["convnet[depth=1|2,width=4|8]"]',
                            'eval_arch = ["convnet[depth=1|2,width=4|8]"]\n'
                            'distill_arch = ["mlp", "convnet"]', 1)
        expected = ("nas[0].group: a proxy ranking (experiment 'toy') would average cells that "
                    "differ in 'distill_arch' (convnet, mlp)")
    assert expected in _problems(tmp_path, text)


def test_nas_best_follows_the_declared_direction():
    from kddbench_plugins.nas.ranking import nas_table
    from kddbench_plugins.nas.section import NASEntry

    rows = [{"experiment": exp, "status": "ok", "eval_arch": arch, "seed": 0, "method": "m",
             "misclassified": err, "train_time_s": 1}
            for exp, errs in (("target", [10, 20, 30, 40]), ("proxy", [1, 2, 4, 3]))
            for arch, err in zip("abcd", errs)]
    spec = NASEntry("n", "proxy", "target", metric="misclassified", top_k=[3], group=["method"],
                    higher_is_better=False)
    row = nas_table(pd.DataFrame(rows), spec).iloc[0]
    assert row["picked"] == "a" and row["best misclassified (target)"] == 10
    assert row["rho top-3"] == pytest.approx(1.0)  # a, b, c: the three fewest errors
    assert row["speed-up (target / proxy time)"] == 1.0  # both searches train 4 x 1 s
    from kddbench_plugins.nas.ranking import rank_points

    # rank 1 = fewest errors, on the target and on the proxy (c and d swap on the proxy)
    assert rank_points(pd.DataFrame(rows), spec) == {
        "method=m": [(1, 1), (2, 2), (3, 4), (4, 3)]}


def test_validating_a_nas_suite_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom kddbench.cli import main\n"
            f"try:\n    main(['validate', {str(ROOT / 'suites' / 'nas_cpu.toml')!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported by validate'\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_the_committed_nas_report_rebuilds_from_its_records(tmp_path):
    src = ROOT / "reports" / "nas_cpu"
    shutil.copytree(src / "records", tmp_path / "records")
    write_reports(load_suite(ROOT / "suites" / "nas_cpu.toml"), tmp_path)
    section = "## NAS on proxy sets"
    committed = (src / "leaderboard.md").read_text()
    rebuilt = (tmp_path / "leaderboard.md").read_text()
    assert rebuilt[rebuilt.index(section):] == committed[committed.index(section):]
    assert "![NAS on proxy sets" in rebuilt
    assert (tmp_path / "nas_search.png").read_bytes()[:4] == b"\x89PNG"
    old, new = pd.read_csv(src / "nas_search.csv"), pd.read_csv(tmp_path / "nas_search.csv")
    assert list(old.columns) == list(new.columns) and len(old) == len(new) == 2
    for col in old.columns:
        for a, b in zip(old[col], new[col]):
            assert a == b or (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-12))


# -- a section type is a plugin ------------------------------------------------------------

SECTION_PLUGIN = '''
from kddbench import SectionSpec, TaskSpec, hookimpl


class Tally:
    """[[tally]] entries: name, experiment; renders how many rows the experiment has."""

    def parse(self, entry, path, scope):
        problems = scope.experiment(entry.get("experiment"), path + ".experiment")
        return (None if problems else dict(entry)), problems

    def markdown(self, entry, df, suite):
        rows = 0 if df.empty else int((df["experiment"] == entry["experiment"]).sum())
        return f"## tally {entry['name']}\\n\\n{rows} rows of {entry['experiment']}\\n"

    def write(self, entry, df, out_dir, suite):
        path = out_dir / f"tally_{entry['name']}.txt"
        path.write_text(entry["experiment"])
        return [path]

    def implicit(self, experiments):
        return [{"name": "auto", "experiment": e} for e in experiments]


class Stealer(Tally):
    pass


@hookimpl
def kddbench_report_sections():
    yield SectionSpec("tally", Tally, "counts rows")


@hookimpl
def kddbench_tasks():
    yield TaskSpec("probe", "nowhere:run", "a task that always brings a tally",
                   axes=("size",), sections=("tally",))
'''


@pytest.fixture
def tally(tmp_path):
    path = tmp_path / "tally_plugin.py"
    path.write_text(SECTION_PLUGIN)
    plugins.configure(extra=[str(path)])
    yield path


def test_a_plugin_section_owns_its_suite_key(tmp_path, tally):
    text = TINY_SUITE + '\n[[tally]]\nname = "t"\nexperiment = "toy"\n'
    suite = load_suite(write_suite(tmp_path / "t.toml", text))
    assert [s.key for s in suite.sections] == ["tally"]
    write_reports(suite, tmp_path / "out")
    report = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "## tally t\n\n0 rows of toy" in report
    assert (tmp_path / "out" / "tally_t.txt").read_text() == "toy"
    bad = text.replace('experiment = "toy"', 'experiment = "tyo"')
    assert "tally[0].experiment: unknown experiment 'tyo'; did you mean 'toy'?" in \
        _problems(tmp_path, bad, "bad.toml")


def test_a_task_brings_the_sections_it_declares(tmp_path, tally):
    text = '[[experiments]]\nname = "p"\ntask = "probe"\nsize = [1, 2]\n'
    suite = load_suite(write_suite(tmp_path / "p.toml", text))
    assert [(s.key, s.entry, s.implicit) for s in suite.sections] == [
        ("tally", {"name": "auto", "experiment": "p"}, True)]
    assert "## tally auto" in render_report(suite, pd.DataFrame())


def test_a_section_may_not_claim_a_core_key(tmp_path):
    path = tmp_path / "thief.py"
    path.write_text(SECTION_PLUGIN.replace('SectionSpec("tally", Tally, "counts rows")',
                                           'SectionSpec("thief", Stealer, key="tables")'))
    plugins.configure(extra=[str(path)])
    assert "section plugin 'thief' claims the core suite key 'tables'" in _problems(
        tmp_path, TINY_SUITE)


def test_list_shows_the_report_sections(cli):
    code, out, _ = cli("list")
    assert code == 0 and "report sections" in out and "nas" in out


# -- report prose follows the suite ---------------------------------------------------------

def test_report_prose_follows_set_overrides(tmp_path):
    path = write_suite(tmp_path / "s.toml", TINY_SUITE)
    plain = render_report(load_suite(path), pd.DataFrame())
    assert "- `toy` (10 cells): 2 seeds: 0, 1; dataset toy; method full, random, average; " \
        "ipc 2, 5; eval_arch convnet; protocol `quick`" in plain
    assert "(2 seeds: 0, 1; n = seeds finished)" in plain
    changed = render_report(load_suite(path, ["experiments.*.seeds=[7]"]), pd.DataFrame())
    assert "with `--set experiments.*.seeds=[7]` applied" in changed
    assert "- `toy` (5 cells): 1 seed: 7;" in changed
    assert "(1 seed: 7; n = seeds finished)" in changed and "2 seeds" not in changed


def test_a_broken_section_plugin_is_contained(tmp_path, cli):
    path = tmp_path / "broken.py"
    path.write_text(SECTION_PLUGIN.replace(
        '        problems = scope.experiment(entry.get("experiment"), path + ".experiment")\n',
        '        if entry.get("crash"):\n            raise ZeroDivisionError("parse")\n'
        '        problems = scope.experiment(entry.get("experiment"), path + ".experiment")\n'
    ).replace('        rows = 0 if', '        1 / 0\n        rows = 0 if'))
    plugins.configure(extra=[str(path)])
    text = TINY_SUITE + '\n[[tally]]\nname = "t"\nexperiment = "toy"\ncrash = true\n'
    assert ("tally[0]: report section 'tally' failed on this entry: ZeroDivisionError: parse"
            in _problems(tmp_path, text))
    suite = load_suite(write_suite(tmp_path / "ok.toml", text.replace("crash = true", "")))
    with pytest.warns(UserWarning, match="report section 'tally'"):
        write_reports(suite, tmp_path / "out")
    report = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "_report section 'tally' (tally[0]) failed: ZeroDivisionError" in report
    code, _, err = cli("--plugin", path, "validate",
                       write_suite(tmp_path / "c.toml", text))
    assert code == 2 and "Traceback" not in err


# -- no suite shape gives a traceback ------------------------------------------------------

def _values():
    from hypothesis import strategies as st

    scalar = st.one_of(st.integers(-3, 30), st.booleans(), st.floats(allow_nan=False),
                       st.sampled_from(["toy", "whole", "eval_arch", "method", "ipc", "seed",
                                        "accuracy", "", "../x", "random", "full"]))
    return st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
            ["method", "ipc", "eval_arch", "x"]), inner, max_size=2)), max_leaves=4)


def test_any_value_in_a_nas_or_table_entry_is_a_problem_or_fine(tmp_path):
    import tomllib

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from kddbench.plugins import get_registry
    from kddbench.suite import build_suite

    base = tomllib.loads(NAS + "\n[[tables]]\nname = \"t\"\nrows = [\"method\"]\n"
                         "columns = [\"ipc\"]\n")
    registry = get_registry()
    keys = {"nas": ["name", "proxy", "target", "by", "metric", "top_k", "group", "title", "x"],
            "tables": ["name", "rows", "columns", "where", "baseline", "metric", "experiments"]}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(keys)), st.data(), _values())
    def check(where, data, value):
        import copy

        raw = copy.deepcopy(base)
        raw[where][0][data.draw(st.sampled_from(keys[where]))] = value
        try:
            build_suite(raw, "fuzz.toml", registry)
        except SuiteError:
            pass

    check()
