"""The shared batched augmentations (kddbench.augment): DSA and flip_rotate."""
from types import SimpleNamespace

import pytest
import torch

from kddbench import augment
from kddbench.errors import KddbenchError

FMNIST = SimpleNamespace(name="fashion-mnist", mean=[0.2861], std=[0.3530])
MNIST = SimpleNamespace(name="mnist", mean=[0.1307], std=[0.3081])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_build_names_and_digits_flag():
    assert augment.build("none", FMNIST) is None and augment.build(None) is None
    dsa = augment.build("dsa", FMNIST)
    assert dsa.ops == ("color", "crop", "cutout", "flip", "scale", "rotate")
    assert "flip" not in augment.build("dsa", MNIST).ops
    for name in ("mnist", "mnist-5k", "usps", "svhn", "digits"):
        assert augment.is_digits(name)
    for name in ("fashion-mnist", "cifar10", "cifar100", "toy", None):
        assert not augment.is_digits(name)
    assert "flip" in augment.build("dsa", MNIST, digits=False).ops
    assert isinstance(augment.build("flip_rotate", FMNIST), augment.FlipRotate)
    with pytest.raises(KddbenchError, match="unknown augmentation"):
        augment.build("mixup", FMNIST)


@pytest.mark.parametrize("op", range(6))
def test_siamese_same_params_same_transform_on_real_and_synthetic(op):
    dsa = augment.build("dsa", FMNIST)
    x = torch.randn(7, 1, 12, 12, generator=gen(1))
    real, syn = x, x[2:5].clone()  # different batch sizes, shared images
    params = dsa.sample_params(1, gen(2), op=op)
    out_real, out_syn = dsa.apply(real, params), dsa.apply(syn, params)
    assert out_real.shape == real.shape and out_syn.shape == syn.shape
    assert torch.allclose(out_real[2:5], out_syn, atol=1e-6)
    # one draw transforms every image of a batch alike: equal inputs, equal outputs
    twins = torch.cat([x[:1], x[:1]])
    out = dsa.apply(twins, params)
    assert torch.equal(out[0], out[1])
    if op != 3:  # flip may be drawn "off"
        assert not torch.allclose(dsa.apply(x, params), x)


def test_siamese_helper_and_groups_match_separate_draws():
    dsa = augment.build("dsa", FMNIST)
    x = torch.randn(6, 3, 10, 10, generator=gen(3))
    a, b = dsa.siamese([x, x[:2]], gen(4))
    assert torch.allclose(a[:2], b, atol=1e-6)
    params = dsa.sample_params(3, gen(5))
    groups = torch.tensor([0, 1, 2, 2, 1, 0])
    grouped = dsa.apply(x, params, groups=groups)
    for i, k in enumerate(groups.tolist()):
        one = dsa.apply(x[i:i + 1], params.take(torch.tensor([k])))
        assert torch.allclose(grouped[i:i + 1], one, atol=1e-6)
    with pytest.raises(ValueError, match="groups"):
        dsa.apply(x, params)


@pytest.mark.parametrize("op", range(6))
def test_every_op_is_differentiable_wrt_the_images(op):
    dsa = augment.build("dsa", FMNIST)
    x = torch.randn(2, 1, 6, 6, dtype=torch.double, generator=gen(6), requires_grad=True)
    params = dsa.sample_params(2, gen(7), op=op)
    assert torch.autograd.gradcheck(lambda t: dsa.apply(t, params), (x,), eps=1e-6, atol=1e-5)


def test_shapes_preserved_for_non_square_colour_images_and_batched_call():
    dsa = augment.build("dsa", SimpleNamespace(name="cifar10", mean=[0.5] * 3, std=[0.25] * 3))
    x = torch.randn(9, 3, 16, 12, generator=gen(8))
    for _ in range(8):
        y = dsa(x, gen(9))
        assert y.shape == x.shape and torch.isfinite(y).all()
    # the same generator state gives the same batch
    assert torch.equal(dsa(x, gen(10)), dsa(x, gen(10)))


def test_crop_is_an_integer_translation_with_zero_padding():
    dsa = augment.DSA("crop")
    x = torch.randn(1, 1, 8, 8, generator=gen(11))
    params = dsa.sample_params(1, gen(12), op=0)
    # shift values u map to floor(u * 5) - 2 pixels for an 8-pixel side (ratio 0.125 -> 1 px:
    # int(8 * 0.125 + 0.5) = 1, so shifts in {-1, 0, 1})
    params.shift = torch.tensor([[0.99, 0.0]])  # +1 px in x, -1 px in y
    out = dsa.apply(x, params)
    expected = torch.zeros_like(x)
    expected[..., 1:, :-1] = x[..., :-1, 1:]  # sample x+1 (content moves left), y-1 (down)
    assert torch.allclose(out, expected, atol=1e-5)


def test_cutout_zeroes_one_square_of_half_the_side():
    dsa = augment.DSA("cutout")
    x = torch.ones(1, 1, 8, 8)
    params = dsa.sample_params(1, gen(13), op=0)
    params.cut = torch.tensor([[0.5, 0.5]])  # centre pixel 4 -> rows/cols 2..5
    out = dsa.apply(x, params)
    assert int((out == 0).sum()) == 16 and out[0, 0, 2:6, 2:6].abs().sum() == 0


def test_flip_rotate_is_per_image_and_exact_for_pure_flips():
    x = torch.randn(1, 1, 8, 8, generator=gen(14)).expand(16, 1, 8, 8).contiguous()
    fr = augment.FlipRotate()
    y = fr(x, gen(15))
    assert y.shape == x.shape
    distinct = {tuple(t.flatten().round(decimals=4).tolist()) for t in y}
    assert len(distinct) > 4  # different transforms within one batch
    flips = augment.FlipRotate(max_degrees=0.0, p_flip=1.0)
    assert torch.allclose(flips(x[:2], gen(16)), x[:2].flip(2, 3), atol=1e-5)
    ident = augment.FlipRotate(max_degrees=0.0, p_flip=0.0)
    assert torch.allclose(ident(x[:2], gen(17)), x[:2], atol=1e-5)
    # corners are filled with the normalised black of the data set
    fill = augment.build("flip_rotate", FMNIST).fill
    assert torch.allclose(fill, torch.tensor([-0.2861 / 0.3530]))
    rot = augment.FlipRotate(max_degrees=45.0, p_flip=0.0, fill=[-2.0])
    out = rot(torch.zeros(4, 1, 16, 16), gen(18))
    assert out.min() < -1.0  # some corner pixel came from outside the image
