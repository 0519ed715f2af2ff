"""Property test: no suite shape ends in a traceback.

Hypothesis mutates the shipped suites (deletes keys, swaps value types, inserts garbage values
and keys, misspells names, writes random ``--set`` paths) and validates each result with the
library function ``kddbench validate`` uses.  Every outcome must be a valid suite or a
:class:`KddbenchError` (a :class:`SuiteError` for suite problems), whose every line reads
``file: key.path: message`` -- never any other exception.
"""
from __future__ import annotations

import copy
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from kddbench.errors import KddbenchError
from kddbench.suite import SuiteError, apply_overrides, build_suite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# the small shipped suites (paper_tables expands to ~900 cells: a few examples of it below)
SUITES = ("quickstart", "ci", "kd_cpu", "nas_cpu", "condense_cpu")
RAW = {name: tomllib.loads((ROOT / "suites" / f"{name}.toml").read_text())
       for name in SUITES + ("paper_tables",)}
SOURCE = "fuzz.toml"

scalars = st.one_of(
    st.integers(min_value=-3, max_value=300), st.integers(), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "none", "teacher", "convnet[depth=0]", "convnet[widht=4]", "dsax",
                     "ral", "lbfgs", "cosin", "multistep", "../x", "/abs", "a|b", "x[", "*",
                     "protocol:x", "mnist-5k", "fulll", "10"]))
garbage = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every (path, value) in a nested suite dict, lists included."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _misspell(text: str, where: int) -> str:
    if not text:
        return "x"
    i = where % len(text)
    return text[:i] + text[i + 1:] if len(text) > 1 else text + text


def _mutate(raw, data):
    paths = [p for p, _ in _paths(raw) if p]
    path = data.draw(st.sampled_from(paths), label="path")
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    value = parent[key]
    op = data.draw(st.sampled_from(["delete", "garbage", "retype", "misspell", "insert",
                                    "wrap", "empty"]), label="op")
    if op == "delete":
        del parent[key]
    elif op == "garbage":
        parent[key] = data.draw(garbage, label="value")
    elif op == "retype":  # a table where a list goes, a string where a table goes, ...
        parent[key] = (str(value) if not isinstance(value, str) else
                       data.draw(st.sampled_from([{"x": value}, [value], 3, True])))
    elif op == "misspell" and isinstance(value, str):
        parent[key] = _misspell(value, data.draw(st.integers(0, 50)))
    elif op == "misspell" and isinstance(parent, dict):
        parent[_misspell(str(key), data.draw(st.integers(0, 50)))] = parent.pop(key)
    elif op == "insert" and isinstance(value, dict):
        value[data.draw(st.text(max_size=8), label="new key")] = data.draw(garbage)
    elif op == "insert" and isinstance(value, list):
        value.append(data.draw(garbage, label="new item"))
    elif op == "wrap":
        parent[key] = [value] if not isinstance(value, list) else {"items": value}
    else:
        parent[key] = [] if not isinstance(value, dict) else {}


def _check(raw, registry, overrides=()):
    try:
        raw = apply_overrides(raw, overrides, SOURCE)
        build_suite(raw, SOURCE, registry)
    except SuiteError as exc:
        assert exc.problems and all(p.startswith(f"{SOURCE}: ") and "\n" not in p
                                    for p in exc.problems), exc.problems
    except KddbenchError:
        pass


FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(name=st.sampled_from(SUITES), data=st.data())
def test_mutated_suites_validate_or_fail_cleanly(registry, name, data):
    raw = copy.deepcopy(RAW[name])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        _mutate(raw, data)
    _check(raw, registry)


set_keys = st.one_of(st.sampled_from(["experiments", "protocols", "tables", "suite", "seeds",
                                      "ipc", "method", "options", "overrides", "match", "*",
                                      "0", "1", "7", "name", "epochs", "nas", "references"]),
                     st.text(max_size=5))
set_values = st.one_of(st.sampled_from(["1", "0", "-1", "true", "[]", "[0, 1]", "{}", "x",
                                        "'cosin'", "{a = 1}", "[[1]]", "1.5", "nan", "=",
                                        "\"str\"", ""]), st.text(max_size=8))


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(SUITES), keys=st.lists(set_keys, min_size=0, max_size=5),
       value=set_values, sep=st.sampled_from(["=", "", "=="]))
def test_random_set_paths_apply_or_fail_cleanly(registry, name, keys, value, sep):
    _check(copy.deepcopy(RAW[name]), registry, [".".join(keys) + sep + value])


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_paper_tables_validate_or_fail_cleanly(registry, data):
    raw = copy.deepcopy(RAW["paper_tables"])
    _mutate(raw, data)
    _check(raw, registry)


def test_a_mutated_suite_through_the_cli_is_exit_2_without_traceback(tmp_path, cli):
    text = (ROOT / "suites" / "quickstart.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('[[experiments]]\nname = "table2"',
                                '[[experiments]]\nname = 2').replace("ipc = [1, 10, 50]",
                                                                     'ipc = ["1", 0]'))
    code, _, err = cli("validate", bad, "--set", "experiments.0.overrides.9.protocol=x")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"{bad}: experiments.0.overrides.9: no item 9: experiments.0.overrides has 4 item(s), "
        "0 to 3 (in --set 'experiments.0.overrides.9.protocol=x')"]
    code, _, err = cli("validate", bad)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and len(lines) >= 3
    assert all(line.startswith(f"{bad}: experiments[0].") for line in lines), lines
