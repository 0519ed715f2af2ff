"""The augmentation family: DSA, flip_rotate, crop_flip (batched) and zca (data-set level)."""
from types import SimpleNamespace

import pytest
import torch

from kddbench.context import RunContext
from kddbench.errors import UnknownNameError
from kddbench.plugins import get_registry
from kddbench_plugins.augmentations import crop_flip as cf_mod
from kddbench_plugins.augmentations import dsa as dsa_mod
from kddbench_plugins.augmentations import flip_rotate as fr_mod
from kddbench_plugins.augmentations import zca as zca_mod

FMNIST = SimpleNamespace(name="fashion-mnist", mean=[0.2861], std=[0.3530], traits=frozenset())
MNIST = SimpleNamespace(name="mnist", mean=[0.1307], std=[0.3081],
                        traits=frozenset({"no_flip"}))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def build(name, data):
    return RunContext(registry=get_registry()).augment(name, data)


def test_registered_names_and_the_no_flip_trait():
    reg = get_registry()
    assert {"none", "dsa", "flip_rotate", "crop_flip", "zca"} <= set(reg.names("augmentation"))
    assert build("none", FMNIST) is None and build(None, FMNIST) is None
    dsa = build("dsa", FMNIST)
    assert dsa.ops == ("color", "crop", "cutout", "flip", "scale", "rotate")
    assert "flip" not in build("dsa", MNIST).ops
    for name in ("mnist", "mnist-5k", "usps", "svhn", "digits"):
        assert "no_flip" in reg.get("dataset", name).traits, name
    for name in ("fashion-mnist", "cifar10", "cifar100", "toy"):
        assert "no_flip" not in reg.get("dataset", name).traits, name
    assert "flip" in dsa_mod.DSA(digits=False).ops
    assert isinstance(build("flip_rotate", FMNIST), fr_mod.FlipRotate)
    assert build("dsa[single=false]", FMNIST).single is False
    with pytest.raises(UnknownNameError, match="unknown augmentation 'mixpu'"):
        build("mixpu", FMNIST)
    with pytest.raises(Exception, match="data-set-level"):
        build("zca", FMNIST)


def test_crop_flip_is_a_padded_integer_crop_and_a_flip_per_image():
    x = torch.randn(32, 3, 8, 8, generator=gen(20))
    aug = cf_mod.CropFlip(padding=2, p_flip=0.5, fill=[-1.0, -1.0, -1.0])
    y = aug(x, gen(21))
    assert y.shape == x.shape
    assert torch.equal(aug(x, gen(21)), y)  # reproducible from the generator
    # every output is a shifted (and maybe mirrored) window of the padded input
    padded = torch.nn.functional.pad(x + 1.0, (2, 2, 2, 2)) - 1.0
    for i in range(x.shape[0]):
        found = any(torch.equal(y[i], win) for dy in range(5) for dx in range(5)
                    for win in (padded[i, :, dy:dy + 8, dx:dx + 8],
                                padded[i, :, dy:dy + 8, dx:dx + 8].flip(-1)))
        assert found, i
    assert not torch.equal(y, x)
    ident = cf_mod.CropFlip(padding=0, p_flip=0.0)
    assert torch.equal(ident(x, gen(22)), x)
    mirror = cf_mod.CropFlip(padding=0, p_flip=1.0)
    assert torch.equal(mirror(x, gen(23)), x.flip(-1))


def test_zca_whitens_the_training_set_and_is_cached(tmp_path):
    from kddbench.data import DataSplits
    from kddbench.store import ArtifactCache

    g = gen(30)
    mix = torch.randn(12, 12, generator=g)
    x = (torch.randn(400, 12, generator=g) @ mix).reshape(400, 3, 2, 2)
    data = DataSplits("toy", x, torch.zeros(400, dtype=torch.long), x[:10].clone(),
                      torch.zeros(10, dtype=torch.long), ["a"], [0.0] * 3, [1.0] * 3)
    z = zca_mod.ZCA(eps=1e-6)
    state = z.fit(x)
    assert z.check(state) is None and z.check({"mean": state["mean"]})
    white = z.apply(state, x).reshape(400, -1)
    cov = white.T @ white / 399
    assert torch.allclose(cov, torch.eye(12), atol=1e-2)
    ctx = RunContext(registry=get_registry(), artifacts=ArtifactCache(tmp_path))
    out = ctx.transform("zca[eps=0.000001]", data)
    assert out.x_train.shape == x.shape and out.fingerprint() != data.fingerprint()
    assert "zca" in out.traits and "zca" not in data.traits  # methods can tell
    assert torch.allclose(out.x_test, out.x_train[:10], atol=1e-4)
    assert ctx.transform("zca[eps=0.000001]", data) is out  # kept: not applied again
    again = RunContext(registry=get_registry(), artifacts=ArtifactCache(tmp_path))
    hits = again.artifacts.hits
    again.transform("zca[eps=0.000001]", data)  # another process: the stored fit
    assert again.artifacts.hits == hits + 1  # fitted once
    assert ctx.transform("none", data) is data


@pytest.mark.parametrize("n", [5, 30, 48, 49])
def test_zca_with_fewer_images_than_features_is_the_full_eigendecomposition(n):
    """Below N = d + 1 the fit takes the thin SVD of the images (fast for CIFAR subsets);
    the matrix is the d x d eigendecomposition's, directions with no variance included."""
    x = torch.randn(n, 3, 4, 4, generator=gen(31)).double()
    z = zca_mod.ZCA(eps=0.1)
    flat = x.reshape(n, -1)
    centred = flat - flat.mean(0)
    evals, evecs = torch.linalg.eigh(centred.T @ centred / (n - 1))
    full = evecs @ torch.diag((evals.clamp(min=0) + 0.1).rsqrt()) @ evecs.T
    assert torch.allclose(z.fit(x)["matrix"].double(), full, atol=1e-5)


@pytest.mark.parametrize("op", range(6))
def test_siamese_same_params_same_transform_on_real_and_synthetic(op):
    dsa = build("dsa", FMNIST)
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
    dsa = build("dsa", FMNIST)
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
    dsa = build("dsa", FMNIST)
    x = torch.randn(2, 1, 6, 6, dtype=torch.double, generator=gen(6), requires_grad=True)
    params = dsa.sample_params(2, gen(7), op=op)
    assert torch.autograd.gradcheck(lambda t: dsa.apply(t, params), (x,), eps=1e-6, atol=1e-5)


def test_shapes_preserved_for_non_square_colour_images_and_batched_call():
    dsa = build("dsa", SimpleNamespace(name="cifar10", mean=[0.5] * 3, std=[0.25] * 3,
                                 traits=frozenset()))
    x = torch.randn(9, 3, 16, 12, generator=gen(8))
    for _ in range(8):
        y = dsa(x, gen(9))
        assert y.shape == x.shape and torch.isfinite(y).all()
    # the same generator state gives the same batch
    assert torch.equal(dsa(x, gen(10)), dsa(x, gen(10)))


def test_crop_is_an_integer_translation_with_zero_padding():
    dsa = dsa_mod.DSA("crop")
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
    dsa = dsa_mod.DSA("cutout")
    x = torch.ones(1, 1, 8, 8)
    params = dsa.sample_params(1, gen(13), op=0)
    params.cut = torch.tensor([[0.5, 0.5]])  # centre pixel 4 -> rows/cols 2..5
    out = dsa.apply(x, params)
    assert int((out == 0).sum()) == 16 and out[0, 0, 2:6, 2:6].abs().sum() == 0


def test_flip_rotate_is_per_image_and_exact_for_pure_flips():
    x = torch.randn(1, 1, 8, 8, generator=gen(14)).expand(16, 1, 8, 8).contiguous()
    fr = fr_mod.FlipRotate()
    y = fr(x, gen(15))
    assert y.shape == x.shape
    distinct = {tuple(t.flatten().round(decimals=4).tolist()) for t in y}
    assert len(distinct) > 4  # different transforms within one batch
    flips = fr_mod.FlipRotate(max_degrees=0.0, p_flip=1.0)
    assert torch.allclose(flips(x[:2], gen(16)), x[:2].flip(2, 3), atol=1e-5)
    ident = fr_mod.FlipRotate(max_degrees=0.0, p_flip=0.0)
    assert torch.allclose(ident(x[:2], gen(17)), x[:2], atol=1e-5)
    # corners are filled with the normalised black of the data set
    fill = build("flip_rotate", FMNIST).fill
    assert torch.allclose(fill, torch.tensor([-0.2861 / 0.3530]))
    rot = fr_mod.FlipRotate(max_degrees=45.0, p_flip=0.0, fill=[-2.0])
    out = rot(torch.zeros(4, 1, 16, 16), gen(18))
    assert out.min() < -1.0  # some corner pixel came from outside the image
