"""kddbench.testing's checks over every built-in spec (third parties run the same checks on
theirs through the pytest plugin: see examples/kddbench-example-plugin/tests)."""
import pytest

from kddbench.plugins import build_registry
from kddbench.testing import check_spec

_REG = build_registry()
BUILTIN = [(family, name) for family in _REG.specs for name in _REG.names(family)
           if not _REG.owner(family, name).startswith("local:")]


def test_there_is_something_to_check():
    families = {family for family, _ in BUILTIN}
    assert {"dataset", "architecture", "condenser", "kd_method", "augmentation", "task"} <= \
        families


@pytest.mark.parametrize(("family", "name"), BUILTIN, ids=[f"{f}:{n}" for f, n in BUILTIN])
def test_builtin_spec_conforms(family, name, tmp_path):
    check_spec(_REG, family, name, tmp_path)


def test_a_later_option_is_left_out_at_its_default_and_must_match_the_factory():
    """An option added after cells were stored (``later``) keeps their identities while at its
    default; the factory's own default must be that value, or the kit says so."""
    from dataclasses import replace

    from kddbench.options import Choice, resolve
    from kddbench.specs import CondenserSpec

    declared = {"mode": Choice("a", ("a", "b"), later=True), "n": 1}
    assert resolve(declared, {}) == {"n": 1}
    assert resolve(declared, {"mode": "b"}) == {"mode": "b", "n": 1}
    pad = _REG.get("condenser", "pad")
    check_spec(_REG, "condenser", "pad")  # deep_by: the factory's default is "modules"
    wrong = replace(pad, options={**dict(pad.options), "deep_by": Choice(
        "parameters", ("modules", "parameters"), later=True)})
    from kddbench.testing import _check_later_options

    with pytest.raises(AssertionError, match="deep_by"):
        _check_later_options(wrong)
    assert isinstance(pad, CondenserSpec)
