"""Conformance of every registered architecture, plus the exact ConvNet-3 of the DD papers."""
import pytest
import torch

from kddbench.plugins import build_registry
from kddbench.protocol import seeded

ARCHS = [n for n in build_registry().names("architecture") if n != "timm"] + ["timm:resnet10t"]
SHAPES = [(1, 28, 28), (3, 32, 32)]


def _build(registry, name, shape, classes=10):
    spec = registry.get("architecture", name)
    opts = spec.resolve_options(None)
    if spec.prefix:
        opts["name"] = name.split(":", 1)[1]
    with seeded(0):
        return spec.load()(shape[0], classes, shape[1:], **opts)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("shape", SHAPES, ids=["1x28", "3x32"])
def test_architecture_conformance(registry, name, shape):
    if name.startswith(("convnet7", "resnet50")) and shape[0] == 1:
        pytest.skip("covered by the 3-channel case (slow on CPU)")
    if name.startswith("convnet7"):
        shape = (3, 128, 128)  # seven halvings need large images (MHIST)
    net = _build(registry, name, shape)
    x = torch.randn(2, *shape)
    logits = net(x)
    assert logits.shape == (2, 10)
    logits2, feats = net.forward_features(x)
    assert torch.allclose(logits, logits2, atol=1e-5)
    assert list(feats) == list(net.feature_names) and feats
    if "embedding" in feats:
        assert feats["embedding"].dim() == 2 and feats["embedding"].shape[0] == 2
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_convnet3_matches_the_reference_parameter_counts(registry):
    mnist = _build(registry, "convnet3", (1, 28, 28))
    cifar = _build(registry, "convnet3", (3, 32, 32))
    assert sum(p.numel() for p in mnist.parameters()) == 317_706
    assert sum(p.numel() for p in cifar.parameters()) == 320_010
    _, feats = mnist.forward_features(torch.randn(1, 1, 28, 28))
    assert feats["block1"].shape == (1, 128, 16, 16)  # 28 + 2*3 padding -> 32 -> pooled 16
    assert feats["embedding"].shape == (1, 2048)
    assert isinstance(mnist.stages["block1"][1], torch.nn.GroupNorm)
    assert mnist.stages["block1"][1].num_groups == 128


@pytest.mark.parametrize("name, published, narrow", [
    ("resnet18", 11_172_810, 128), ("alexnet", 1_865_802, 24 * 4 * 4), ("vgg11", 9_229_962, 128)])
def test_width_is_a_budget_that_keeps_the_published_network_at_its_default(registry, name,
                                                                           published, narrow):
    """``width`` (declared ``later``): at its default the network is the published one (the
    parameter count cross_arch_cpu's records hold for Fashion-MNIST) and stays out of the
    resolved options; at 16 (the smoke width) every stage narrows."""
    spec = registry.get("architecture", name)
    assert "width" not in spec.resolve_options(None)
    assert sum(p.numel() for p in _build(registry, name, (1, 28, 28)).parameters()) == published
    with seeded(0):
        net = spec.load()(1, 10, (28, 28), **spec.resolve_options({"width": 16}))
    _, feats = net.forward_features(torch.randn(2, 1, 28, 28))
    assert feats["embedding"].shape[1] == narrow  # last stage channels x map area
    assert sum(p.numel() for p in net.parameters()) < published / 10


def test_same_seed_same_weights(registry):
    a, b = (_build(registry, "convnet3", (1, 28, 28)) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_too_small_images_for_a_deep_convnet_are_explained(registry):
    with pytest.raises(ValueError, match="needs larger images"):
        _build(registry, "convnet7", (3, 32, 32))


def test_unknown_timm_model_is_explained(registry):
    with pytest.raises(ValueError, match="unknown timm model 'resnet9000'"):
        _build(registry, "timm:resnet9000", (3, 32, 32))


@pytest.mark.parametrize("arch", ["resnet18", "convnet3-bn", "vgg11", "mlp"])
def test_an_empty_network_loads_a_state_and_computes_the_same(arch):
    """`build_net(..., empty=True)` (a network whose weights are loaded, e.g. a stored teacher)
    skips the initialisation; loaded with a state it is the same function."""
    import torch

    from kddbench.context import RunContext
    from kddbench.plugins import get_registry

    class Data:
        channels, num_classes, image_size = 3, 10, (32, 32)

    ctx = RunContext(get_registry())
    usual = ctx.build_net(arch, Data, 0).eval()
    empty = ctx.build_net(arch, Data, 0, empty=True)
    assert {k: v.shape for k, v in empty.state_dict().items()} == \
        {k: v.shape for k, v in usual.state_dict().items()}
    empty.load_state_dict(usual.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(usual(x), empty.eval()(x))
