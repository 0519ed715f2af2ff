"""Documentation that cannot drift: hooks, suite keys and CLI help are checked against code."""
import inspect

import pytest

from conftest import ROOT
from kddbench import hookspecs, suite
from kddbench.cli import cli as click_group
from kddbench.errors import ExitCode

CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()
README = (ROOT / "README.md").read_text()
HOOKS = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("kddbench_")]


def hook_heading(fn) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"### `{fn.__name__}({params}) -> {sig.return_annotation}`"


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.__name__)
def test_every_hook_is_documented_with_its_signature(hook):
    assert hook_heading(hook) in CONTRIBUTING, f"CONTRIBUTING.md lacks: {hook_heading(hook)}"
    assert hook.__doc__ and "Example::" in hook.__doc__


@pytest.mark.parametrize("key", sorted(set(suite.EXPERIMENT_KEYS + suite.OVERRIDE_KEYS
                                           + suite.TABLE_KEYS + suite.REFERENCE_KEYS
                                           + suite.SUITE_META_KEYS + suite.SUITE_KEYS)))
def test_every_suite_key_is_documented(key):
    assert f"`{key}`" in CONTRIBUTING


@pytest.mark.parametrize("name", sorted(click_group.commands))
def test_every_command_has_examples_and_is_in_the_docs(name):
    command = click_group.commands[name]
    assert "Examples:" in command.help and f"kddbench {name}" in command.help
    assert f"kddbench {name}" in README + CONTRIBUTING


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in README.splitlines() if "pytest" in ln and not ln.startswith("#")]
    assert lines and any(ln in ci for ln in lines)


@pytest.mark.parametrize("code", list(ExitCode), ids=lambda c: c.name)
def test_every_exit_code_is_documented_and_in_the_help(code):
    assert f"`{int(code)}` `{code.name}`" in CONTRIBUTING
    assert code.name in click_group.help


def test_the_hook_check_covers_every_hookspec_and_fails_on_an_undocumented_one():
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    specced = {n for n in vars(pm.hook) if not n.startswith("_")
               and getattr(pm.hook, n).has_spec()}
    assert specced == {h.__name__ for h in HOOKS}  # no hook escapes the parametrized test

    def kddbench_undocumented():
        """Example::"""

    kddbench_undocumented.__annotations__ = {"return": "Iterable[DatasetSpec]"}
    assert hook_heading(kddbench_undocumented) not in CONTRIBUTING
    datasets = hookspecs.kddbench_datasets
    changed = lambda root: None  # noqa: E731 - the same hook with another signature
    changed.__name__, changed.__annotations__ = datasets.__name__, {
        "root": "Path", "return": datasets.__annotations__["return"]}
    assert hook_heading(datasets) in CONTRIBUTING and hook_heading(changed) not in CONTRIBUTING
