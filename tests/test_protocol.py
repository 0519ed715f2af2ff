"""The shared training/evaluation protocol."""
import math

import pytest
import torch

from kddbench.errors import KddbenchError
from kddbench.protocol import (Recipe, classification_metrics, lr_at, make_generator, seeded,
                               soft_cross_entropy, train, train_and_evaluate)


def _toy(n=64, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(classes, 1, 6, 6, generator=g)
    y = torch.arange(classes).repeat(n // classes)
    x = protos[y] + 0.3 * torch.randn(len(y), 1, 6, 6, generator=g)
    return x, y


def _net(seed=0):
    with seeded(seed):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4))


def test_metrics_on_a_known_confusion():
    pred = torch.tensor([0, 0, 1, 1, 2, 0])
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    m = classification_metrics(pred, target, 3)
    assert m["accuracy"] == pytest.approx(100 * 4 / 6)
    assert m["misclassified"] == 2
    # per class F1: c0 p=2/3 r=1 -> 0.8; c1 p=1/2 r=1 -> 2/3; c2 p=1 r=1/3 -> 0.5
    assert m["macro_f1"] == pytest.approx(100 * (0.8 + 2 / 3 + 0.5) / 3)


def test_step_half_schedule():
    r = Recipe(epochs=10)
    assert lr_at(r, 4, 0.01) == 0.01 and lr_at(r, 5, 0.01) == pytest.approx(0.001)
    assert lr_at(Recipe(epochs=4, schedule="cosine"), 4, 1.0) == pytest.approx(0.0)


def test_training_is_seed_reproducible_and_seed_sensitive():
    x, y = _toy()
    recipe = Recipe(epochs=3, batch_size=16, lr=0.1)
    runs = []
    for gseed in (0, 0, 1):
        net = _net()
        train(net, x, y, recipe, make_generator(gseed))
        runs.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_train_and_evaluate_reports_every_metric():
    x, y = _toy()
    m = train_and_evaluate(_net(), x, y, x, y, 4, Recipe(epochs=20, batch_size=16, lr=0.1),
                           make_generator(0))
    for key in ("accuracy", "misclassified", "macro_f1", "params", "size_mb", "train_time_s",
                "n_train", "train_bytes", "train_images_per_s"):
        assert key in m
    assert m["accuracy"] > 90 and m["params"] == 36 * 4 + 4
    assert m["size_mb"] == pytest.approx((36 * 4 + 4) * 4 / 1e6)
    assert m["n_train"] == 64 and m["train_bytes"] == 64 * 36 * 4


def test_soft_labels_match_hard_cross_entropy_for_one_hot():
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 2, 1, 1, 0])
    soft = torch.nn.functional.one_hot(y, 3).float()
    assert soft_cross_entropy(logits, soft) == pytest.approx(float(soft_cross_entropy(logits, y)))


def test_divergence_is_reported():
    x, y = _toy()
    with pytest.raises(KddbenchError, match="diverged"):
        train(_net(), x * 1e30, y, Recipe(epochs=2, lr=1e10), make_generator(0))


def test_custom_loss_gets_batch_indices():
    x, y = _toy(n=32)
    seen = []

    def loss_fn(model, xb, yb, idx):
        seen.append(idx.clone())
        assert torch.equal(y[idx], yb)
        return soft_cross_entropy(model(xb), yb)

    train(_net(), x, y, Recipe(epochs=2, batch_size=10), make_generator(0), loss_fn=loss_fn)
    assert sorted(torch.cat(seen[:4]).tolist()) == list(range(32))
    assert math.isclose(len(seen), 8)


def test_cpu_micro_batches_give_the_same_step(monkeypatch):
    from kddbench.protocol import micro_batch_size

    x, y = _toy(n=64)
    x = x.expand(-1, 1, 6, 6).contiguous()
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    nets = []
    for micro in ("0", "8"):
        monkeypatch.setenv("KDDBENCH_CPU_MICRO_BATCH", micro)
        net = _net()
        train(net, x, y, recipe, make_generator(0))
        nets.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.allclose(nets[0], nets[1], atol=1e-5)
    with seeded(0):
        bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert micro_batch_size(bn, x) == 0
