"""KD losses in micro-batches: the same training step as the whole batch when the loss is a
per-image mean (kddbench.protocol.splits_batches), the whole batch when it is not."""
import pytest
import torch

from kddbench.kd import DistillationLoss, build_kd_loss
from kddbench.plugins import get_registry
from kddbench.protocol import (CPU_MICRO_BATCH_ENV, Recipe, make_generator, seeded,
                               splits_batches, train)
from kddbench_plugins.architectures.networks import convnet

SIZE = 8
METHODS = get_registry().names("kd_method")


def _nets():
    with seeded(0):
        teacher = convnet(1, 4, (SIZE, SIZE), depth=2, width=6).eval()
    with seeded(1):
        student = convnet(1, 4, (SIZE, SIZE), depth=2, width=4)
    return teacher, student


def _data(n=24):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 1, SIZE, SIZE, generator=g), torch.randint(0, 4, (n,), generator=g)


def _train(name, micro, cached, monkeypatch):
    """The student's and the extras' weights after 2 epochs of KD with ``micro`` images/pass."""
    monkeypatch.setenv(CPU_MICRO_BATCH_ENV, micro)
    x, y = _data()
    teacher, student = _nets()
    spec = get_registry().get("kd_method", name)
    kd = build_kd_loss(spec.load(), teacher, student, x[:2], 3, **spec.resolve_options(None))
    loss_fn = DistillationLoss(kd, teacher, epochs=2, x=x if cached else None)
    calls = []
    inner = loss_fn.__call__

    class Counting:  # records the batch size of every call, keeps the declaration
        per_sample_mean = loss_fn.per_sample_mean
        extra_params = loss_fn.extra_params
        set_epoch = loss_fn.set_epoch

        def __call__(self, model, xb, yb, idx):
            calls.append(int(xb.shape[0]))
            return inner(model, xb, yb, idx)

    train(student, x, y, Recipe(epochs=2, batch_size=12, lr=0.05, schedule="constant"),
          make_generator(4), loss_fn=Counting(), extra_params=loss_fn.extra_params)
    weights = torch.cat([p.detach().flatten() for p in student.parameters()]
                        + [p.detach().flatten() for p in loss_fn.extra_params])
    return weights, calls


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "live"])
@pytest.mark.parametrize("name", METHODS)
def test_micro_batched_kd_is_the_whole_batch_step(name, cached, monkeypatch):
    whole, whole_calls = _train(name, "0", cached, monkeypatch)
    split, split_calls = _train(name, "5", cached, monkeypatch)
    assert whole_calls == [12] * 4
    declared = get_registry().get("kd_method", name).load().per_sample_mean
    if declared:
        assert split_calls == [5, 5, 2] * 4  # really split
    else:
        assert split_calls == [12] * 4  # kept whole
    assert torch.allclose(whole, split, atol=1e-5, rtol=1e-4), float((whole - split).abs().max())


def test_relational_kd_does_not_decompose_so_it_is_not_split():
    """Why relational KD keeps the whole batch: its loss on two halves differs from its loss
    on the batch (pairwise distances and angles couple the images)."""
    from kddbench_plugins.distillation.losses import Relational

    teacher, student = _nets()
    x, y = _data(12)
    kd = build_kd_loss(Relational, teacher, student, x[:2], 0)
    loss_fn = DistillationLoss(kd, teacher, x=x)
    idx = torch.arange(12)
    with torch.no_grad():
        whole = float(loss_fn(student, x, y, idx))
        halves = 0.5 * sum(float(loss_fn(student, x[s], y[s], idx[s]))
                           for s in (slice(0, 6), slice(6, 12)))
    assert abs(whole - halves) > 1e-3
    assert not splits_batches(loss_fn)


def test_only_declared_loss_fns_are_split(monkeypatch):
    monkeypatch.setenv(CPU_MICRO_BATCH_ENV, "4")
    x, y = _data(16)
    sizes = []

    def plain(model, xb, yb, idx):
        sizes.append(int(xb.shape[0]))
        return torch.nn.functional.cross_entropy(model(xb), yb)

    train(_nets()[1], x, y, Recipe(epochs=1, batch_size=16), make_generator(0), loss_fn=plain)
    assert sizes == [16] and not splits_batches(plain) and splits_batches(None)
    plain.per_sample_mean = True
    sizes.clear()
    train(_nets()[1], x, y, Recipe(epochs=1, batch_size=16), make_generator(0), loss_fn=plain)
    assert sizes == [4, 4, 4, 4]
