"""Every registered KD method meets the same bar, plus the plumbing in kddbench.kd.

The conformance tests are parametrized over the registry, so a new KD method (ours or a third
party's) is tested here without writing anything.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kddbench.kd import DistillationLoss, KDLoss, build_kd_loss
from kddbench.plugins import build_registry
from kddbench.protocol import Recipe, make_generator, seeded, train
from kddbench_plugins.architectures.networks import convnet

METHODS = build_registry().names("kd_method")



@pytest.fixture(scope="module")
def toy():
    spec = build_registry().get("dataset", "toy")
    return spec.load()(Path("."), False, **spec.resolve_options(None))


def _nets(data, norm="instancenorm"):
    shape = (data.channels, data.num_classes, data.image_size)
    with seeded(0):
        teacher = convnet(*shape, depth=2, width=8, norm=norm)
    with seeded(1):
        student = convnet(*shape, depth=1, width=4)
    return teacher, student


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def _build(registry, name, teacher, student, x, seed=0):
    spec = registry.get("kd_method", name)
    return build_kd_loss(spec.load(), teacher, student, x[:2], seed, **spec.resolve_options(None))


# conformance -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_spec_is_lazy_versioned_and_documented(registry, name):
    spec = registry.get("kd_method", name)
    assert spec.version == "1" and spec.description
    assert isinstance(spec.factory, str) and ":" in spec.factory
    assert all(isinstance(v, (int, float, str, bool))
               for v in spec.resolve_options(None).values())


@pytest.mark.parametrize("name", METHODS)
def test_one_training_epoch_on_toy_data(registry, toy, name):
    teacher, student = _nets(toy)
    kd = _build(registry, name, teacher, student, toy.x_train)
    assert isinstance(kd, KDLoss)
    extras_before = [p.detach().clone() for p in kd.parameters()]
    before = _flat(student)
    loss_fn = DistillationLoss(kd, teacher, epochs=1, x=toy.x_train)
    result = train(student, toy.x_train, toy.y_train, Recipe(epochs=1, batch_size=32, lr=0.05),
                   make_generator(0), loss_fn=loss_fn, extra_params=loss_fn.extra_params)
    assert torch.isfinite(torch.tensor(result.final_loss)) and result.steps == 5
    assert not torch.equal(before, _flat(student))
    for old, new in zip(extras_before, kd.parameters()):
        assert not torch.equal(old, new.detach()), "a trainable extra was not optimised"


@pytest.mark.parametrize("name", METHODS)
def test_cached_teacher_outputs_equal_live_ones(registry, toy, name):
    teacher, student = _nets(toy)
    kd = _build(registry, name, teacher, student, toy.x_train)
    idx = torch.tensor([3, 17, 42, 99, 150, 7])
    xb, yb = toy.x_train[idx], toy.y_train[idx]
    cached = DistillationLoss(kd, teacher, epochs=1, x=toy.x_train, batch_size=64)
    live = DistillationLoss(kd, teacher, epochs=1)
    assert cached.cached and not live.cached
    with torch.no_grad():
        assert float(cached(student, xb, yb, idx)) == pytest.approx(
            float(live(student, xb, yb, idx)), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_extras_are_seeded(registry, toy, name):
    teacher, student = _nets(toy)
    a = _build(registry, name, teacher, student, toy.x_train, seed=5)
    b = _build(registry, name, teacher, student, toy.x_train, seed=5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_literature_names_and_seed_004_aliases(registry):
    assert {"response", "feature", "attention", "relational", "dkd"} <= set(METHODS)
    assert registry.canonical("kd_method", "kd") == "response"
    assert registry.canonical("kd_method", "hinton") == "response"
    assert registry.canonical("kd_method", "ikd") == "feature"
    with pytest.raises(KeyError):  # ambiguous: Belinga et al. 2024's response KD vs relational KD
        registry.get("kd_method", "rkd")


def test_registration_module_does_not_import_torch():
    code = "import sys, kddbench_plugins.distillation; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


# plumbing --------------------------------------------------------------------------------
class _Recorder(KDLoss):
    """Keeps what the loop handed it."""

    def __init__(self, teacher=None, student=None):
        super().__init__(teacher, student)
        self.calls = []

    def forward(self, s_logits, s_feats, t_logits, t_feats, targets, epoch=0, epochs=1):
        self.calls.append((t_logits.detach().clone(), epoch, epochs))
        return self.ce(s_logits, targets)


def test_train_passes_the_epoch_and_the_teacher_sees_augmented_batches(toy):
    teacher, student = _nets(toy)
    seen = []

    def augment(x, generator):
        out = x.flip(3)
        seen.append(out)
        return out

    kd = _Recorder()
    loss_fn = DistillationLoss(kd, teacher, epochs=3)  # no cache: batches are augmented
    train(student, toy.x_train, toy.y_train, Recipe(epochs=3, batch_size=64), make_generator(0),
          augment=augment, loss_fn=loss_fn)
    assert [c[1] for c in kd.calls] == [0] * 3 + [1] * 3 + [2] * 3
    assert all(c[2] == 3 for c in kd.calls)
    with torch.no_grad():
        for (t_logits, _, _), xb in zip(kd.calls, seen):
            assert torch.allclose(t_logits, teacher(xb), atol=1e-5)


def test_teacher_is_frozen_in_eval_mode(toy):
    teacher, student = _nets(toy, norm="batchnorm")
    stats = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss_fn = DistillationLoss(_Recorder(), teacher, epochs=1)
    train(student, toy.x_train, toy.y_train, Recipe(epochs=1, batch_size=32), make_generator(0),
          loss_fn=loss_fn)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in stats.items())


def test_cache_limit_falls_back_to_running_the_teacher(registry, toy):
    teacher, student = _nets(toy)
    kd = _build(registry, "attention", teacher, student, toy.x_train)
    small = DistillationLoss(kd, teacher, epochs=1, x=toy.x_train, cache_limit_mb=1e-4)
    big = DistillationLoss(kd, teacher, epochs=1, x=toy.x_train)
    assert not small.cached and big.cached
    # the cache holds the prepared teacher features (attention maps), not the raw stages
    (stage,) = kd.teacher_stages
    n = toy.x_train.shape[0]
    assert big.cache[1][stage].shape == (n, kd.sizes[0][0] * kd.sizes[0][1])
    idx = torch.arange(5)
    with torch.no_grad():
        assert float(small(student, toy.x_train[:5], toy.y_train[:5], idx)) == pytest.approx(
            float(big(student, toy.x_train[:5], toy.y_train[:5], idx)), rel=1e-5)
