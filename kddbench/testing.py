"""``kddbench.testing``: the conformance checks of kddbench, for any installed plugin package.

It is a pytest plugin (entry point ``pytest11: kddbench``), so it is active wherever kddbench is
installed, and does nothing until a test asks for the ``kddbench_spec`` fixture.  In a plugin
package's own tests::

    # tests/test_conformance.py
    from kddbench.testing import test_plugin_conforms  # noqa: F401  (pytest collects it)

    # pyproject.toml
    [tool.pytest.ini_options]
    kddbench_conformance = ["myplugin"]      # entry-point names (or "all")

or ``pytest --kddbench-conformance myplugin``.  Every spec those plugins register becomes one
test, checked by its family's rule below, on tiny synthetic tensors (no data set or
architecture of kddbench's own is needed, so the checks run in a second each).  Naming no
plugin, or a plugin that registers nothing, fails: a check that finds nothing to check is not a
pass.

Budget knobs (iterations, epochs, ...) are run at the ``smoke`` value their
:class:`kddbench.options.Option` declares, so declare one for every slow option.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

SPEC_FIXTURE = "kddbench_spec"
INI = "kddbench_conformance"


# ---------------------------------------------------------------------------------------------
# pytest hooks
def pytest_addoption(parser) -> None:
    group = parser.getgroup("kddbench")
    group.addoption("--kddbench-conformance", action="append", default=[], metavar="PLUGIN",
                    help="check every spec registered by this kddbench plugin (an entry-point "
                    "name, or 'all'); repeatable")
    parser.addini(INI, type="args", default=[],
                  help="kddbench plugins (entry-point names) whose specs conformance tests check")


def _wanted(config) -> list[str]:
    return list(config.getoption("--kddbench-conformance") or []) + list(config.getini(INI))


def pytest_generate_tests(metafunc) -> None:
    if SPEC_FIXTURE not in metafunc.fixturenames:
        return
    wanted = _wanted(metafunc.config)
    from .plugins import build_registry

    registry = build_registry()
    params, ids = [], []
    for family in registry.specs:
        for name in registry.names(family):
            owner = registry.owner(family, name)
            if "all" in wanted or owner in wanted:
                params.append((family, name))
                ids.append(f"{family}:{name}")
    if not params:
        reason = ("no kddbench plugin named: pass --kddbench-conformance NAME or set "
                  f"{INI} = [...] in the pytest configuration") if not wanted else \
            f"the plugins {wanted} registered no spec (is the package installed?)"
        params, ids = [("<none>", reason)], ["nothing-to-check"]
    metafunc.parametrize(SPEC_FIXTURE, params, ids=ids)


def test_plugin_conforms(kddbench_spec, tmp_path) -> None:
    """Import this into a test module to check every spec of the configured plugins."""
    family, name = kddbench_spec
    if family == "<none>":
        pytest.fail(name)
    from .plugins import build_registry

    check_spec(build_registry(), family, name, tmp_path)


# ---------------------------------------------------------------------------------------------
# the checks (usable without pytest too: each raises AssertionError on a violation)
def check_spec(registry, family: str, name: str, tmp_path: Path | None = None) -> None:
    """The family-independent contract, then the family's own check (if it has one)."""
    spec = registry.get(family, name)
    assert spec.name == spec.name.strip() and " " not in spec.name, f"bad name {spec.name!r}"
    assert isinstance(spec.version, str) and spec.version, f"{name}: no version"
    assert spec.description, f"{name}: no description (kddbench list shows it)"
    assert callable(spec.load()), f"{name}: factory {spec.factory!r} is not callable"
    defaults = spec.resolve_options(None)
    for key, value in defaults.items():
        assert isinstance(value, (bool, int, float, str, type(None), list, tuple)), \
            f"{name}: option {key} resolves to {type(value).__name__}, not a plain value"
    _check_later_options(spec)
    check = _CHECKS.get(family)
    if check is not None:
        check(registry, spec, tmp_path)


def _check_later_options(spec) -> None:
    """An option declared ``later`` is left out of resolved options at its default, so the
    factory must take it as a keyword with that same default."""
    import inspect

    from .options import Option

    later = {k: v for k, v in dict(spec.options).items() if isinstance(v, Option) and v.later}
    if not later:
        return
    params = inspect.signature(spec.load()).parameters
    for key, option in later.items():
        assert key in params, f"{spec.name}: later option {key!r} is no parameter of the factory"
        assert params[key].default == option.default, (
            f"{spec.name}: later option {key!r} defaults to {option.default!r} but the "
            f"factory's parameter to {params[key].default!r}")


def smoke_options(spec) -> dict[str, Any]:
    """The spec's defaults with every option that declares a ``smoke`` value set to it."""
    opts = spec.resolve_options(None)
    for key, declared in dict(spec.options).items():
        smoke = getattr(declared, "smoke", None)
        if smoke is not None:
            opts[key] = smoke
    return opts


def tiny_data(classes: int = 4, per_class: int = 6, channels: int = 1, size: int = 8,
              seed: int = 0):
    """Class-conditional random images as :class:`kddbench.data.DataSplits` (normalised)."""
    import torch

    from .data import DataSplits

    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(classes, channels, size, size, generator=g)

    def split(n):
        y = torch.arange(classes).repeat_interleave(n)
        x = protos[y] + 0.5 * torch.randn(len(y), channels, size, size, generator=g)
        return x, y

    (xtr, ytr), (xte, yte) = split(per_class), split(max(2, per_class // 2))
    return DataSplits("conformance", xtr, ytr, xte, yte, [f"c{k}" for k in range(classes)],
                      [0.0] * channels, [1.0] * channels)


def tiny_net(channels: int, classes: int, size: int, seed: int = 0):
    """A two-stage conv net with named features (``block1``, ``block2``, ``embedding``)."""
    import torch
    from torch import nn

    from .nn import FeatureModel
    from .protocol import seeded

    class Tiny(FeatureModel):
        feature_names = ("block1", "block2", "embedding")

        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleDict({
                "block1": nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(),
                                        nn.AvgPool2d(2)),
                "block2": nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())})
            self.head = nn.Linear(8 * (size // 2) ** 2, classes)

    with seeded(seed):
        return Tiny().to(torch.device("cpu"))


def _condenser(registry, spec, tmp_path) -> None:
    import torch

    from .condense import CondenseRequest, SyntheticSet
    from .context import RunContext
    from .protocol import make_generator

    data = tiny_data()
    ctx = RunContext(registry=registry)
    ipc = 2 if spec.uses_ipc else None

    def run(seed: int):
        request = CondenseRequest(
            data=data, ipc=ipc, arch="conformance",
            build_net=lambda s: tiny_net(data.channels, data.num_classes, 8, s),
            generator=make_generator(seed), device=torch.device("cpu"), seed=seed,
            augment=lambda aug: ctx.augment(aug, data))
        return spec.load()(request, **smoke_options(spec))

    from .errors import KddbenchError

    try:
        syn = run(0)
    except KddbenchError as exc:  # e.g. a condenser that loads a user's file
        pytest.skip(f"{spec.name} needs input the kit cannot give: {exc}")
    assert isinstance(syn, SyntheticSet), f"{spec.name} returned {type(syn).__name__}"
    n = syn.images.shape[0]
    assert syn.images.shape[1:] == data.x_train.shape[1:], "image shape differs from the data"
    assert syn.images.dtype == torch.float32 and torch.isfinite(syn.images).all()
    hard = syn.hard_labels()
    assert hard.shape == (n,) and int(hard.min()) >= 0 and int(hard.max()) < data.num_classes
    if syn.labels.dim() == 2:
        assert syn.labels.shape == (n, data.num_classes)
    if spec.uses_ipc:
        counts = torch.bincount(hard, minlength=data.num_classes).tolist()
        assert counts == [ipc] * data.num_classes, f"not {ipc} images per class: {counts}"
    back = SyntheticSet.from_tensors(syn.to_tensors())
    assert torch.equal(back.images, syn.images.cpu()), "lost in the artifact round trip"
    again = run(0)
    assert torch.equal(again.images, syn.images), "the same seed gave another set"


def _kd_method(registry, spec, tmp_path) -> None:
    import torch

    from .kd import DistillationLoss, build_kd_loss

    data = tiny_data()
    teacher = tiny_net(1, data.num_classes, 8, seed=1)
    student = tiny_net(1, data.num_classes, 8, seed=2)
    kd = build_kd_loss(spec.load(), teacher, student, data.x_train[:2], seed=0,
                       **smoke_options(spec))
    loss_fn = DistillationLoss(kd, teacher, epochs=2)
    idx = torch.arange(8)
    loss = loss_fn(student, data.x_train[idx], data.y_train[idx], idx)
    assert loss.dim() == 0 and torch.isfinite(loss), f"loss {loss!r} is not a finite scalar"
    loss.backward()
    grads = [p.grad for p in student.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reaches the student"
    assert all(p.grad is None for p in teacher.parameters()), "the teacher got gradients"


def _augmentation(registry, spec, tmp_path) -> None:
    import torch

    data = tiny_data(channels=3)
    opts = smoke_options(spec)
    if getattr(spec, "level", "batch") == "dataset":
        transform = spec.load()(data, **opts)
        state = transform.fit(data.x_train)
        out = transform.apply(state, data.x_test)
        assert out.shape == data.x_test.shape and torch.isfinite(out).all()
        return
    fn = spec.load()(data, **opts)
    if fn is None:
        return
    x = data.x_train
    a = fn(x, torch.Generator().manual_seed(0))
    b = fn(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
    assert torch.equal(a, b), "the same generator state gave another batch"


def _architecture(registry, spec, tmp_path) -> None:
    import torch

    from .protocol import seeded

    if spec.prefix:
        pytest.skip(f"{spec.name}:<name> is a prefix family; check named members instead")
    net, size, refusals = None, 32, []
    for size in (32, 64, 128, 256):  # the smallest image size the network accepts
        try:
            with seeded(0):
                net = spec.load()(3, 10, (size, size), **smoke_options(spec))
            break
        except ValueError as exc:  # e.g. "needs larger images": say so, try a larger size
            refusals.append(f"{size}px: {exc}")
    assert net is not None, f"{spec.name} built at no image size: {refusals}"
    x = torch.randn(2, 3, size, size)
    net.eval()
    logits = net(x)
    assert logits.shape == (2, 10)
    out, feats = net.forward_features(x)
    assert torch.allclose(out, logits, atol=1e-5), "forward_features disagrees with forward"
    assert set(getattr(net, "feature_names", ())) <= set(feats), "a declared feature is missing"


def _dataset(registry, spec, tmp_path) -> None:
    import torch

    if not spec.offline:
        pytest.skip(f"{spec.name} needs a download or a local copy")
    data = spec.load()(Path(tmp_path or "."), False, **smoke_options(spec))
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.dim() == 4 and x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[0] == y.shape[0] > 0
        assert int(y.min()) >= 0 and int(y.max()) < data.num_classes
    assert len(data.mean) == len(data.std) == data.channels
    assert not math.isnan(float(data.x_train.mean()))


def _reporter(registry, spec, tmp_path) -> None:
    write = spec.load()(Path(tmp_path or "."))
    assert callable(write), f"{spec.name}: factory must return a callable(record)"
    write({"cell_id": "conformance", "status": "ok", "metrics": {}})


_CHECKS = {"condenser": _condenser, "kd_method": _kd_method, "augmentation": _augmentation,
           "architecture": _architecture, "dataset": _dataset, "reporter": _reporter}
