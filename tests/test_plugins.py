"""The plugin contract: discovery, duplicates, names, lazy loading, local plugins."""
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import EXAMPLE_PLUGIN, TINY_SUITE
from kddbench import CondenserSpec, DatasetSpec, hookimpl, hookspecs
from kddbench.errors import UnknownNameError
from kddbench.plugins import PluginLoadWarning, build_registry, families
from kddbench.specs import SPEC_CLASSES, PluginSpec


def test_builtin_plugins_come_through_the_entry_point_group(registry):
    owners = {registry.owner("dataset", "mnist"), registry.owner("condenser", "random"),
              registry.owner("task", "condense"), registry.owner("architecture", "convnet3")}
    assert owners == {"datasets", "condensation", "architectures"}
    assert "kddbench" in registry.plugin_versions()


def test_no_autoload_leaves_nothing_registered():
    reg = build_registry(autoload=False)
    assert reg.names("dataset") == [] and reg.names("task") == []


def test_disable_one_entry_point():
    reg = build_registry(disable=["condensation"])
    assert "random" not in reg.names("condenser") and "condense" not in reg.names("task")
    assert "mnist" in reg.names("dataset")


def test_unknown_name_suggests_and_lists():
    reg = build_registry()
    with pytest.raises(UnknownNameError) as err:
        reg.get("condenser", "randm")
    text = str(err.value)
    assert "did you mean 'random'?" in text and "average" in text


def test_aliases_resolve_to_canonical_names(registry):
    assert registry.canonical("dataset", "fmnist") == "fashion-mnist"
    assert registry.canonical("architecture", "timm:resnet10t") == "timm:resnet10t"


def _plugin_file(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text("from kddbench import CondenserSpec, DatasetSpec, hookimpl\n" + body)
    return path


DUPLICATE = """
@hookimpl
def kddbench_datasets():
    yield DatasetSpec('dup-data', 'x:y')

@hookimpl
def kddbench_condensers():
    yield CondenserSpec('mine', 'x:y')
    yield CondenserSpec('random', 'x:y')

@hookimpl
def kddbench_record_finished(record):
    raise AssertionError('a dropped plugin is called')
"""


def test_a_duplicate_name_drops_the_second_plugin_whole_and_says_why(tmp_path):
    plugin = _plugin_file(tmp_path, "dup_plugin", DUPLICATE)
    with pytest.warns(PluginLoadWarning) as caught:
        reg = build_registry(extra=[str(plugin)])
    (message,) = [str(w.message) for w in caught]
    assert f"plugin 'local:{plugin}' failed to load" in message
    assert "duplicate condensation method name 'random'" in message
    assert "already registered by 'condensation'" in message
    assert f"remove --plugin {plugin}" in message and "\n" not in message
    assert reg.owner("condenser", "random") == "condensation"  # the first one stays
    assert "mine" not in reg.names("condenser") and "dup-data" not in reg.names("dataset")
    assert reg.load_warnings == [message]
    assert all(impl.plugin_name != f"local:{plugin}"  # unregistered: none of its hooks run
               for impl in reg.pm.hook.kddbench_record_finished.get_hookimpls())
    reg.pm.hook.kddbench_record_finished(record={})
    with pytest.raises(UnknownNameError) as err:
        reg.get(CondenserSpec, "mine")
    assert str(err.value).startswith(
        f"condensation method 'mine' is missing: plugin 'local:{plugin}' failed to load: "
        "duplicate condensation method name 'random'")


def test_a_duplicate_alias_drops_the_plugin(tmp_path):
    plugin = _plugin_file(tmp_path, "alias_plugin", """
@hookimpl
def kddbench_datasets():
    yield DatasetSpec('another', 'x:y', aliases=('fmnist',))
""")
    with pytest.warns(PluginLoadWarning, match="duplicate dataset alias 'fmnist'"):
        reg = build_registry(extra=[str(plugin)])
    assert reg.canonical("dataset", "fmnist") == "fashion-mnist"
    assert "another" not in reg.names("dataset")


def test_a_wrong_spec_family_drops_the_plugin(tmp_path):
    plugin = _plugin_file(tmp_path, "wrong", """
@hookimpl
def kddbench_condensers():
    yield DatasetSpec('oops', 'x:y')
""")
    with pytest.warns(PluginLoadWarning, match="yielded DatasetSpec, expected a CondenserSpec"):
        reg = build_registry(extra=[str(plugin)])
    assert "oops" not in reg.names("dataset") + reg.names("condenser")
    assert "random" in reg.names("condenser")


class _RaisingHook:
    """A plugin object (not a file) whose second registration hook raises."""

    @hookimpl
    def kddbench_datasets(self):
        yield DatasetSpec("fine-data", "x:y")

    @hookimpl
    def kddbench_condensers(self):
        raise ZeroDivisionError("division by zero")


def test_a_registration_hook_that_raises_drops_its_plugin():
    with pytest.warns(PluginLoadWarning) as caught:
        reg = build_registry(extra=[_RaisingHook()])
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("plugin 'local:_RaisingHook' failed to load: "
                              "kddbench_condensers() raised ZeroDivisionError: division by zero")
    assert "fine-data" not in reg.names("dataset") and "mnist" in reg.names("dataset")
    with pytest.raises(UnknownNameError, match="'fine-data' is missing: plugin "
                       "'local:_RaisingHook' failed to load"):
        reg.get("dataset", "fine-data")


class _Misspelt:
    @hookimpl
    def kddbench_condenser(self):  # the hook is kddbench_condensers
        yield CondenserSpec("never-seen", "x:y")


def test_a_misspelt_hook_implementation_drops_the_plugin_and_names_it():
    with pytest.warns(PluginLoadWarning) as caught:
        reg = build_registry(extra=[_Misspelt()])
    (message,) = [str(w.message) for w in caught]
    assert "plugin 'local:_Misspelt' failed to load" in message
    assert "unknown hook 'kddbench_condenser'; did you mean 'kddbench_condensers'?" in message
    assert reg.pm.get_plugin("local:_Misspelt") is None
    reg.pm.check_pending()  # nothing unmatched is left registered
    assert "random" in reg.names("condenser")


class _BadArguments:
    @hookimpl
    def kddbench_record_finished(self, record, extra_argument):
        pass


def test_a_hook_implementation_with_wrong_arguments_drops_the_plugin():
    with pytest.warns(PluginLoadWarning, match="local:_BadArguments.*extra_argument"):
        reg = build_registry(extra=[_BadArguments()])
    assert "local:_BadArguments" in reg.dropped and "mnist" in reg.names("dataset")


class _Nothing:
    def kddbench_condensers(self):  # not decorated with hookimpl: pluggy does not see it
        yield CondenserSpec("never-seen", "x:y")


def test_a_plugin_that_implements_no_hook_gets_a_warning():
    with pytest.warns(PluginLoadWarning, match="implements no kddbench hook.*hookimpl"):
        build_registry(extra=[_Nothing()])


def test_a_plugin_file_that_fails_to_import_is_a_warning_and_names_it(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import json\nraise RuntimeError('no GPU here')\n")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def (:\n")
    with pytest.warns(PluginLoadWarning) as caught:
        reg = build_registry(extra=[str(broken), str(syntax), "nowhere/plugin.py",
                                    "no_such_plugin_module_xyz"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4 and all("\n" not in m for m in messages)
    assert f"plugin 'local:{broken}' failed to load: RuntimeError: no GPU here" in messages[0]
    assert f"remove --plugin {broken}" in messages[0]
    assert "SyntaxError" in messages[1]
    assert "plugin file not found: nowhere/plugin.py" in messages[2]
    assert "cannot import plugin module 'no_such_plugin_module_xyz'" in messages[3]
    assert "kddbench_local_broken" not in sys.modules
    with pytest.raises(UnknownNameError) as err:  # names it never got to register: maybe its
        reg.get("condenser", "randm")
    assert "did you mean 'random'?" in str(err.value)
    assert f"plugin 'local:{broken}' failed to load: RuntimeError: no GPU here, and may be the " \
        "one" in str(err.value)


def test_an_entry_point_that_fails_to_import_says_how_to_disable_it(monkeypatch):
    from importlib.metadata import EntryPoint

    from kddbench import plugins

    real = plugins.importlib.metadata.entry_points
    broken = EntryPoint("broken", "kddbench_no_such_module_xyz", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), broken])
    with pytest.warns(PluginLoadWarning) as caught:
        reg = build_registry()
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("plugin 'broken' failed to load: importing "
                              "kddbench_no_such_module_xyz: ModuleNotFoundError")
    assert message.endswith("(switch it off with --disable-plugin broken to silence this)")
    assert "random" in reg.names("condenser")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)  # switched off: not a word
        assert build_registry(disable=["broken"]).load_warnings == []
    monkeypatch.undo()


def test_the_cli_works_around_a_broken_plugin_and_names_it_once(tmp_path, cli):
    plugin = _plugin_file(tmp_path, "dup_plugin", DUPLICATE)
    code, out, err = cli("--plugin", plugin, "list", "condenser")
    assert code == 0 and "random" in out and "mine" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: plugin 'local:{plugin}' failed")
    suite = tmp_path / "s.toml"
    suite.write_text(TINY_SUITE)
    code, out, err = cli("--plugin", plugin, "validate", suite)
    assert code == 0 and "ok" in out  # a suite that does not name the plugin's entries
    suite.write_text(TINY_SUITE.replace('"average"]', '"mine"]'))
    code, out, err = cli("--plugin", plugin, "validate", suite)
    assert code == 2, out
    assert "'mine'" in err and f"plugin 'local:{plugin}' failed to load: duplicate" in err
    data = Path(__file__).parent / "data"
    plain = cli("compare", data / "compare_baseline.csv", data / "compare_current.csv")
    broken = cli("--plugin", plugin, "compare", data / "compare_baseline.csv",
                 data / "compare_current.csv")
    assert broken[:2] == plain[:2]  # same verdict, same table
    assert broken[2].startswith(f"warning: plugin 'local:{plugin}' failed to load")
    import shutil

    report = shutil.copytree(Path(__file__).parent.parent / "reports" / "quickstart",
                             tmp_path / "quickstart")
    code, out, err = cli("--plugin", plugin, "report", report)
    assert code == 0, err
    assert "warning: plugin" in err and "accuracy" in out.lower()


def test_local_plugin_file_is_loaded():
    reg = build_registry(extra=[str(EXAMPLE_PLUGIN)])
    assert "first-k" in reg.names("condenser")
    assert reg.owner("condenser", "first-k").startswith("local:")


def test_listing_imports_no_torch():
    code = ("import sys\nfrom kddbench.cli import main\n"
            "try:\n    main(['list'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by kddbench list'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_every_family_is_listed(cli):
    code, out, _ = cli("list")
    assert code == 0
    for title in ("datasets", "architectures", "knowledge-distillation methods",
                  "condensation methods", "tasks", "executors", "reporters"):
        assert title in out


def test_show_unknown_plugin_suggests(cli):
    code, _, err = cli("show", "averag")
    assert code == 2 and "did you mean 'average'" in err


def test_show_a_name_in_two_families_shows_both_and_says_which_is_an_alias(cli):
    code, out, _ = cli("show", "kd")
    assert code == 0
    assert "kd -> response (alias)  [knowledge-distillation methods]" in out
    assert "\nkd  [tasks]" in out


def test_specs_are_lazy_strings_for_builtins(registry):
    for family in ("dataset", "architecture", "condenser", "task"):
        for name in registry.names(family):
            assert isinstance(registry.specs[family][name].factory, str), (family, name)


def test_dataset_spec_defaults():
    spec = DatasetSpec("x", "a:b")
    assert spec.version == "1" and spec.family == "dataset" and not spec.offline


def test_ctrl_c_exits_interrupted_with_one_line(cli, monkeypatch, tmp_path):
    from kddbench import api
    from kddbench.errors import ExitCode

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "report", interrupted)
    suite = tmp_path / "s.toml"
    suite.write_text("")
    code, _, err = cli("report", suite)
    assert code == ExitCode.INTERRUPTED == 130
    assert [line for line in err.splitlines() if line.strip()] == [
        "interrupted: finished cells are kept; run again to go on"]


def test_a_kddbench_error_exits_with_its_own_code(cli, monkeypatch, tmp_path):
    from kddbench import api
    from kddbench.errors import ExitCode, KddbenchError

    class Incomparable(KddbenchError):
        exit_code = ExitCode.NOT_COMPARABLE

    def fail(*args, **kwargs):
        raise Incomparable("versions differ")

    monkeypatch.setattr(api, "report", fail)
    suite = tmp_path / "s.toml"
    suite.write_text("")
    code, _, err = cli("report", suite)
    assert code == 5 and err.strip() == "error: versions differ"


def test_every_family_is_one_spec_class_with_its_hook():
    registration_hooks = {n for n in dir(hookspecs) if n.startswith("kddbench_")
                          and not inspect.signature(getattr(hookspecs, n)).parameters}
    assert {cls.hook for cls in SPEC_CLASSES.values()} == registration_hooks
    assert set(families()) == set(SPEC_CLASSES)
    for family, cls in SPEC_CLASSES.items():
        assert cls.family == family and cls.title and cls.singular
        assert issubclass(cls, PluginSpec)
        returns = str(inspect.signature(getattr(hookspecs, cls.hook)).return_annotation)
        assert cls.__name__ in returns  # the hook yields this class


def test_typed_lookups(registry):
    spec = registry.get(DatasetSpec, "fmnist")
    assert isinstance(spec, DatasetSpec) and spec.name == "fashion-mnist"
    assert registry.get("dataset", "fmnist") is spec  # the family name works too
    assert registry.names(CondenserSpec) == registry.names("condenser")
    with pytest.raises(UnknownNameError, match="unknown condensation method 'randm'"):
        registry.get(CondenserSpec, "randm")
    with pytest.raises(UnknownNameError, match="unknown plugin family 'condensers'; did you mean "
                       "'condenser'"):
        registry.get("condensers", "random")


def test_executors_keep_the_executor_contract(registry):
    from pathlib import Path

    import kddbench_plugins.executors as builtin_executors
    from kddbench import executor, runner

    assert runner.CellJob is executor.CellJob and runner.RunSettings is executor.RunSettings
    for name in registry.names("executor"):
        factory = registry.get("executor", name).load()
        assert callable(getattr(factory, "map", None)), name  # Executor.map
    inprocess = registry.get("executor", "inprocess").load()(executor.RunSettings())
    assert isinstance(inprocess, executor.Executor)
    for source in Path(builtin_executors.__file__).parent.glob("*.py"):
        assert "from kddbench.runner" not in source.read_text(), source  # kddbench.executor


def test_a_misspelt_disable_plugin_is_a_warning_with_a_suggestion():
    with pytest.warns(PluginLoadWarning, match="--disable-plugin: unknown installed plugin "
                      "'condensaton'; did you mean 'condensation'"):
        reg = build_registry(disable=["condensaton"])
    assert "random" in reg.names("condenser")


def test_two_installed_plugins_with_one_entry_point_name_keep_the_first(monkeypatch):
    from importlib.metadata import EntryPoint

    from kddbench import plugins

    real = plugins.importlib.metadata.entry_points
    clash = EntryPoint("condensation", "somebody_elses.plugin", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), clash])
    with pytest.warns(PluginLoadWarning, match="'condensation' \\(somebody_elses.plugin\\) not "
                      "loaded: another installed plugin has that entry-point name"):
        reg = build_registry()
    assert reg.owner("condenser", "random") == "condensation"
    monkeypatch.undo()


def test_a_broken_plugin_from_the_environment_says_where_it_came_from(tmp_path, monkeypatch):
    broken = tmp_path / "env_plugin.py"
    broken.write_text("raise ImportError('needs a package that is not installed')\n")
    monkeypatch.setenv("KDDBENCH_PLUGINS", str(broken))
    with pytest.warns(PluginLoadWarning, match=f"remove {broken} from KDDBENCH_PLUGINS"):
        reg = build_registry()
    assert "random" in reg.names("condenser")
    monkeypatch.delenv("KDDBENCH_PLUGINS")
