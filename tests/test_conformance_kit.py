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
