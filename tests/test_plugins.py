"""The plugin contract: discovery, duplicates, names, lazy loading, local plugins."""
import subprocess
import sys

import pytest

from conftest import EXAMPLE_PLUGIN
from kddbench import CondenserSpec, DatasetSpec, hookimpl
from kddbench.errors import KddbenchError, UnknownNameError
from kddbench.plugins import build_registry


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


class _Dup:
    @hookimpl
    def kddbench_condensers(self):
        yield CondenserSpec("random", lambda request: None)


def test_duplicate_names_are_errors(tmp_path):
    plugin = tmp_path / "dup_plugin.py"
    plugin.write_text(
        "from kddbench import CondenserSpec, hookimpl\n"
        "@hookimpl\n"
        "def kddbench_condensers():\n"
        "    yield CondenserSpec('random', 'x:y')\n")
    with pytest.raises(KddbenchError, match="duplicate condenser name 'random'"):
        build_registry(extra=[str(plugin)])


def test_wrong_spec_family_is_an_error(tmp_path):
    plugin = tmp_path / "wrong.py"
    plugin.write_text(
        "from kddbench import DatasetSpec, hookimpl\n"
        "@hookimpl\n"
        "def kddbench_condensers():\n"
        "    yield DatasetSpec('oops', 'x:y')\n")
    with pytest.raises(KddbenchError, match="expected a condenser spec"):
        build_registry(extra=[str(plugin)])


def test_local_plugin_file_is_loaded():
    reg = build_registry(extra=[str(EXAMPLE_PLUGIN)])
    assert "first-k" in reg.names("condenser")
    assert reg.owner("condenser", "first-k").startswith("local:")


def test_missing_plugin_file_is_a_clear_error():
    with pytest.raises(KddbenchError, match="plugin file not found"):
        build_registry(extra=["nowhere/plugin.py"])


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
