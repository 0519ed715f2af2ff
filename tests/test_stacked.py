"""Stacked training (kddbench.stacked) takes the same steps as one-by-one training, and the
precision / memory-format recipe keys (kddbench.protocol) keep cell identities at defaults."""
import pytest
import torch
from torch.nn.functional import cross_entropy as ce

from kddbench.errors import KddbenchError
from kddbench.protocol import (Recipe, classification_metrics, make_generator, predict, seeded,
                               train)
from kddbench.recipe import Recipe as TorchFreeRecipe
from kddbench.stacked import train_many, train_stacked, wants_stacking, why_not_stack
from kddbench_plugins.architectures.networks import convnet
from kddbench_plugins.augmentations.crop_flip import CropFlip
from kddbench_plugins.augmentations.dsa import dsa

SIZE, CLASSES = 8, 4


def _nets(count=3, dtype=torch.float32, **kw):
    out = []
    for m in range(count):
        with seeded(10 + m):  # each network its own initialisation
            net = convnet(1, CLASSES, (SIZE, SIZE), **{"depth": 2, "width": 6, **kw})
            out.append(net.to(dtype))
    return out


def _data(n=40, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    return x.to(dtype), torch.randint(0, CLASSES, (n,), generator=g)


def _weights(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def _one_by_one_and_stacked(recipe, augment=None, soft=False, count=3, dtype=torch.float64):
    """float64 by default: then any difference beyond ~1e-10 is a different step, not the
    summation order (Adam's normalised steps magnify float32 rounding to ~1e-4)."""
    x, y = _data(dtype=dtype)
    if soft:
        y = torch.softmax(torch.randn(len(y), CLASSES, generator=torch.Generator().manual_seed(5),
                                      dtype=dtype), 1)
    alone, stacked = _nets(count, dtype), _nets(count, dtype)
    for m, net in enumerate(alone):
        train(net, x, y, recipe, make_generator(100 + m), augment)
    results = train_stacked(stacked, x, y, recipe, [make_generator(100 + m) for m in range(count)],
                            augment)
    per_epoch = -(-len(x) // recipe.batch_size)
    if recipe.steps_per_epoch:
        per_epoch = min(per_epoch, recipe.steps_per_epoch)
    assert [r.steps for r in results] == [recipe.epochs * per_epoch] * count
    return alone, stacked


RECIPES = {
    "sgd-step_half": Recipe(epochs=4, batch_size=16, lr=0.05),
    "adam-cosine-warmup": Recipe(epochs=3, batch_size=12, optimizer="adam", lr=0.003,
                                 schedule="cosine", warmup_epochs=1),
    "adamw-smoothing": Recipe(epochs=2, batch_size=40, optimizer="adamw", lr=0.003,
                              label_smoothing=0.1),
    "sgd-two-steps-an-epoch": Recipe(epochs=3, batch_size=8, lr=0.05, steps_per_epoch=2),
}


TIGHT = {"atol": 1e-10, "rtol": 1e-8}  # float64


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_stacked_training_gives_the_one_by_one_weights(name):
    alone, stacked = _one_by_one_and_stacked(RECIPES[name])
    for a, s in zip(alone, stacked):
        assert torch.allclose(_weights(a), _weights(s), **TIGHT), \
            float((_weights(a) - _weights(s)).abs().max())
    # the networks really differ from each other (their own init and batch order)
    assert not torch.allclose(_weights(stacked[0]), _weights(stacked[1]))


def test_in_float32_the_weights_agree_to_float32_rounding():
    alone, stacked = _one_by_one_and_stacked(RECIPES["sgd-step_half"], dtype=torch.float32)
    for a, s in zip(alone, stacked):
        assert torch.allclose(_weights(a), _weights(s), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("augment", ["crop_flip", "dsa"])
def test_stacked_training_draws_the_same_augmentations(augment):
    aug = CropFlip(padding=2) if augment == "crop_flip" else dsa()
    alone, stacked = _one_by_one_and_stacked(Recipe(epochs=2, batch_size=16, lr=0.05), aug)
    x_test, y_test = _data(64, seed=9, dtype=torch.float64)
    for a, s in zip(alone, stacked):
        assert torch.allclose(_weights(a), _weights(s), **TIGHT)
        with torch.no_grad():
            assert torch.allclose(a.eval()(x_test), s.eval()(x_test), atol=1e-9)
        acc = [classification_metrics(predict(n, x_test), y_test, CLASSES)["accuracy"]
               for n in (a, s)]
        assert acc[0] == acc[1]


def test_stacked_training_with_soft_labels_and_kl():
    recipe = Recipe(epochs=2, batch_size=16, lr=0.05, soft_label_loss="kl",
                    soft_label_temperature=2.0)
    alone, stacked = _one_by_one_and_stacked(recipe, soft=True)
    for a, s in zip(alone, stacked):
        assert torch.allclose(_weights(a), _weights(s), **TIGHT)


def test_a_different_generator_use_would_be_caught():
    """The comparison can fail: one network trained with another batch order differs."""
    x, y = _data(dtype=torch.float64)
    recipe = Recipe(epochs=2, batch_size=16, lr=0.05)
    a, b = _nets(1, torch.float64), _nets(1, torch.float64)
    train(a[0], x, y, recipe, make_generator(100))
    train_stacked(b + _nets(1, torch.float64), x, y, recipe,
                  [make_generator(101), make_generator(100)])
    assert not torch.allclose(_weights(a[0]), _weights(b[0]), atol=1e-5)


def test_train_many_chooses_and_says_why():
    x, y = _data(16)
    gens = lambda: [make_generator(m) for m in range(2)]  # noqa: E731
    base = Recipe(epochs=1, batch_size=8)
    assert not wants_stacking(base, "cpu") and wants_stacking(base, "cuda")
    assert wants_stacking(base.with_(stack="on"), "cpu")
    assert not wants_stacking(base.with_(stack="off"), "cuda")
    out = train_many(_nets(2), x, y, base, gens())
    assert not out.stacked and "auto" in out.reason and len(out.results) == 2
    out = train_many(_nets(2), x, y, base.with_(stack="on"), gens())
    assert out.stacked and out.reason is None
    out = train_many(_nets(2, norm="batchnorm"), x, y, base.with_(stack="on"), gens())
    assert not out.stacked and "batch norm" in out.reason
    out = train_many(_nets(2), x, y, base.with_(stack="on"), gens(),
                     loss_fns=[lambda net, xb, yb, idx: ce(net(xb), yb), None])
    assert not out.stacked and "loss_fn" in out.reason
    assert "differ" in why_not_stack([_nets(1)[0], _nets(1, width=4)[0]])
    assert "two" in why_not_stack(_nets(1))
    with pytest.raises(KddbenchError, match="batch norm"):
        train_stacked(_nets(2, norm="batchnorm"), x, y, base, gens())
    with pytest.raises(KddbenchError, match="generators"):
        train_many(_nets(2), x, y, base, gens()[:1])


@pytest.mark.parametrize("stack", ["on", "off"])
def test_on_epoch_sees_every_network_with_its_current_weights(stack):
    x, y = _data(16)
    seen = []
    recipe = Recipe(epochs=2, batch_size=8, stack=stack)
    nets = _nets(2)
    train_many(nets, x, y, recipe, [make_generator(m) for m in range(2)],
               on_epoch=lambda e, m, net: seen.append((e, m, float(_weights(net).sum()))))
    assert sorted((e, m) for e, m, _ in seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    last = {m: w for e, m, w in seen if e == 1}
    assert last[0] == pytest.approx(float(_weights(nets[0]).sum()), abs=1e-6)


def test_bf16_and_channels_last_train_and_keep_identities():
    x, y = _data(32)
    ref = _nets(1)[0]
    train(ref, x, y, Recipe(epochs=2, batch_size=16), make_generator(0))
    cl = _nets(1)[0]
    train(cl, x, y, Recipe(epochs=2, batch_size=16, channels_last=True), make_generator(0))
    assert torch.allclose(_weights(ref), _weights(cl), atol=1e-5)
    assert all(p.is_contiguous() for p in cl.parameters())  # format restored after training
    bf = _nets(1)[0]
    train(bf, x, y, Recipe(epochs=2, batch_size=16, precision="bf16"), make_generator(0))
    assert all(p.dtype == torch.float32 for p in bf.parameters())
    diff = float((_weights(ref) - _weights(bf)).abs().max())
    assert 0 < diff < 0.05  # bf16 rounds, but takes nearly the same steps
    # defaults drop out of the identity; set values are part of it
    assert not {"precision", "channels_last", "stack"} & set(TorchFreeRecipe().as_dict())
    set_ = TorchFreeRecipe(precision="bf16", channels_last=True, stack="on").as_dict()
    assert (set_["precision"], set_["channels_last"], set_["stack"]) == ("bf16", True, "on")
    with pytest.raises(KddbenchError, match="precision"):
        TorchFreeRecipe.from_mapping({"precision": "fp16"})
