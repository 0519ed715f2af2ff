"""Networks of the dataset-distillation papers' evaluation pool, and timm models.

Every network exposes ``forward_features(x) -> (logits, {stage: tensor})``: the ConvNet family
names its blocks ``block1..blockD`` and the flattened head input ``embedding``; timm models
name their stages as ``timm`` does (``layer1..layer4`` for ResNets) plus ``embedding``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from kddbench.nn import FeatureModel, with_features


def make_norm(kind: str, channels: int, spatial: Sequence[int] = ()) -> nn.Module:
    if kind == "instancenorm":  # as the DD reference code: GroupNorm with one group per channel
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4 if channels % 4 == 0 else 1, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (instancenorm, batchnorm, layernorm, groupnorm, "
                     "none)")


def make_act(kind: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leakyrelu": lambda: nn.LeakyReLU(0.01),
            "tanh": nn.Tanh}
    if kind not in acts:
        raise ValueError(f"unknown activation {kind!r} ({', '.join(acts)})")
    return acts[kind]()


def make_pool(kind: str) -> nn.Module:
    if kind == "avgpool":
        return nn.AvgPool2d(2, 2)
    if kind == "maxpool":
        return nn.MaxPool2d(2, 2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {kind!r} (avgpool, maxpool, none)")


class ConvNet(FeatureModel):
    """ConvNet-D/W: D blocks of conv3x3(width) -> norm -> act -> pool, then one linear layer.

    As in the reference code, one-channel inputs get padding 3 in the first convolution, so
    28x28 MNIST images behave like 32x32 ones (the head of ConvNet-3 is 128x4x4 = 2048-d).
    """

    def __init__(self, channels: int, num_classes: int, image_size, depth=3, width=128,
                 act="relu", norm="instancenorm", pool="avgpool"):
        super().__init__()
        h, w = image_size
        stages = {}
        c = channels
        for d in range(depth):
            pad = 3 if channels == 1 and d == 0 else 1
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            layers = [nn.Conv2d(c, width, 3, padding=pad), make_norm(norm, width, (h, w)),
                      make_act(act)]
            if pool != "none":
                if min(h, w) < 2:
                    raise ValueError(f"ConvNet of depth {depth} with pooling needs larger "
                                     f"images than {tuple(image_size)} (each block halves them)")
                layers.append(make_pool(pool))
                h, w = h // 2, w // 2
            stages[f"block{d + 1}"] = nn.Sequential(*layers)
            c = width
        self.stages = nn.ModuleDict(stages)
        self.feature_names = tuple(stages) + ("embedding",)
        self.head = nn.Linear(width * h * w, num_classes)


def convnet(channels, num_classes, image_size, **options) -> ConvNet:
    return ConvNet(channels, num_classes, image_size, **options)


class MLP(FeatureModel):
    def __init__(self, channels, num_classes, image_size, width=128):
        super().__init__()
        d = channels * image_size[0] * image_size[1]
        self.stages = nn.ModuleDict({
            "fc1": nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU()),
            "fc2": nn.Sequential(nn.Linear(width, width), nn.ReLU()),
        })
        self.feature_names = ("fc1", "fc2", "embedding")
        self.head = nn.Linear(width, num_classes)


def mlp(channels, num_classes, image_size, width=128) -> MLP:
    return MLP(channels, num_classes, image_size, width)


def _flat_size(stages: nn.ModuleDict, channels: int, image_size) -> int:
    with torch.no_grad():
        x = torch.zeros(1, channels, *image_size)
        for s in stages.values():
            x = s(x)
    return int(x.numel())


class LeNet(FeatureModel):
    def __init__(self, channels, num_classes, image_size):
        super().__init__()
        pad = 2 if channels == 1 else 0
        self.stages = nn.ModuleDict({
            "conv1": nn.Sequential(nn.Conv2d(channels, 6, 5, padding=pad), nn.ReLU(),
                                   nn.MaxPool2d(2, 2)),
            "conv2": nn.Sequential(nn.Conv2d(6, 16, 5, padding=0 if min(image_size) >= 16
                                             else 2), nn.ReLU(), nn.MaxPool2d(2, 2)),
        })
        flat = _flat_size(self.stages, channels, image_size)
        self.stages["fc1"] = nn.Sequential(nn.Flatten(), nn.Linear(flat, 120), nn.ReLU())
        self.stages["fc2"] = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.feature_names = ("conv1", "conv2", "fc1", "fc2", "embedding")
        self.head = nn.Linear(84, num_classes)


def lenet(channels, num_classes, image_size) -> LeNet:
    return LeNet(channels, num_classes, image_size)


class AlexNet(FeatureModel):
    """The CIFAR-style AlexNet of the DC papers' cross-architecture pool."""

    def __init__(self, channels, num_classes, image_size, norm="none", width=128):
        super().__init__()
        c1, c2, c3 = width, width * 3 // 2, width * 2  # 128, 192, 256 at the published width

        def block(cin, cout, k, pad, pool):
            layers = [nn.Conv2d(cin, cout, k, padding=pad), make_norm(norm, cout), nn.ReLU()]
            return nn.Sequential(*layers, nn.MaxPool2d(2, 2)) if pool else nn.Sequential(*layers)

        self.stages = nn.ModuleDict({
            "conv1": block(channels, c1, 5, 4 if channels == 1 else 2, True),
            "conv2": block(c1, c2, 5, 2, True),
            "conv3": block(c2, c3, 3, 1, False),
            "conv4": block(c3, c2, 3, 1, False),
            "conv5": block(c2, c2, 3, 1, True),
        })
        self.feature_names = tuple(self.stages) + ("embedding",)
        self.head = nn.Linear(_flat_size(self.stages, channels, image_size), num_classes)


def alexnet(channels, num_classes, image_size, norm="none", width=128) -> AlexNet:
    return AlexNet(channels, num_classes, image_size, norm, width)


class AlexCifarNet(FeatureModel):
    """The CIFAR-10 network of Wang, Zhu, Torralba & Efros 2018 ("Dataset Distillation"), after
    Krizhevsky's cuda-convnet CIFAR model: two blocks of conv5x5(64) -> ReLU -> max-pool 3/2
    -> local response norm (the second block normalises before pooling), then fully connected
    384 -> 192 -> classes.  [Layer order and LRN constants (size 4, alpha 0.001 / 9, beta 0.75,
    k 1) as the authors' released code; not checked against the paper.]"""

    def __init__(self, channels, num_classes, image_size):
        super().__init__()

        def lrn():
            return nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1.0)

        self.stages = nn.ModuleDict({
            "conv1": nn.Sequential(nn.Conv2d(channels, 64, 5, padding=2), nn.ReLU(),
                                   nn.MaxPool2d(3, 2, padding=1), lrn()),
            "conv2": nn.Sequential(nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), lrn(),
                                   nn.MaxPool2d(3, 2, padding=1)),
        })
        flat = _flat_size(self.stages, channels, image_size)
        self.stages["fc1"] = nn.Sequential(nn.Flatten(), nn.Linear(flat, 384), nn.ReLU())
        self.stages["fc2"] = nn.Sequential(nn.Linear(384, 192), nn.ReLU())
        self.feature_names = ("conv1", "conv2", "fc1", "fc2", "embedding")
        self.head = nn.Linear(192, num_classes)


def alexcifarnet(channels, num_classes, image_size) -> AlexCifarNet:
    return AlexCifarNet(channels, num_classes, image_size)


VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11(FeatureModel):
    def __init__(self, channels, num_classes, image_size, norm="instancenorm", width=64):
        super().__init__()
        stages, layers, c, first = {}, [], channels, True
        for v in VGG11_CFG:
            if v != "M":
                v = v * width // 64  # VGG11_CFG is the published width, 64
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                stages[f"stage{len(stages) + 1}"] = nn.Sequential(*layers)
                layers = []
                continue
            pad = 3 if channels == 1 and first else 1
            layers += [nn.Conv2d(c, v, 3, padding=pad), make_norm(norm, v), nn.ReLU()]
            c, first = v, False
        self.stages = nn.ModuleDict(stages)
        self.feature_names = tuple(stages) + ("embedding",)
        self.head = nn.Linear(_flat_size(self.stages, channels, image_size), num_classes)


def vgg11(channels, num_classes, image_size, norm="instancenorm", width=64) -> VGG11:
    return VGG11(channels, num_classes, image_size, norm, width)


def _swap_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(child.num_features, child.num_features))
        else:
            _swap_batchnorm(child)


def timm_resnet(channels, num_classes, image_size, depth=18, stem="auto", norm="batchnorm",
                width=64):
    """timm's ResNet; for small images (stem auto/cifar) a 3x3 stride-1 stem, no max-pool.
    ``width``: the first stage's channels (timm's ``channels`` = width x (1, 2, 4, 8))."""
    import timm

    model = timm.create_model(f"resnet{depth}", pretrained=False, num_classes=num_classes,
                              in_chans=channels, channels=tuple(width * m for m in (1, 2, 4, 8)))
    small = stem == "cifar" or (stem == "auto" and max(image_size) <= 64)
    if small:
        model.conv1 = nn.Conv2d(channels, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    if norm == "instancenorm":
        _swap_batchnorm(model)
    elif norm != "batchnorm":
        raise ValueError(f"resnet norm must be batchnorm or instancenorm, not {norm!r}")
    return with_features(model, ["layer1", "layer2", "layer3", "layer4"], "global_pool")


def timm_any(channels, num_classes, image_size, name: str = ""):
    """Any timm model by name, randomly initialised; stages from timm's ``feature_info``."""
    import timm

    if name not in timm.list_models():
        from kddbench.errors import unknown_message

        raise ValueError(unknown_message("timm model", name, timm.list_models()))
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels)
    stages = [f["module"] for f in getattr(model, "feature_info", []) if f.get("module")]
    modules = dict(model.named_modules())
    stages = [s for s in stages if s in modules]
    embedding = "global_pool" if "global_pool" in modules else None
    return with_features(model, stages, embedding)
