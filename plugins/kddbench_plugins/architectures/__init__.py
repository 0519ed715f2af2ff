"""Architecture registrations (implementations in :mod:`kddbench_plugins.architectures.networks`)."""
from kddbench import ArchitectureSpec, hookimpl
from kddbench.options import Choice, Int

_N = "kddbench_plugins.architectures.networks:"
NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
SMOKE_WIDTH = 16  # the channel count of a smoke run (kddbench.smoke): a budget, not a shape
CONVNET_OPTIONS = {"depth": Int(3, min=1), "width": Int(128, min=1, smoke=SMOKE_WIDTH),
                   "act": Choice("relu", ("relu", "sigmoid", "leakyrelu", "tanh")),
                   "norm": Choice("instancenorm", NORMS),
                   "pool": Choice("avgpool", ("avgpool", "maxpool", "none"))}


def _norm(default):
    return Choice(default, NORMS)


def _width(published, doc):
    """A channel-count option added after results were stored (``later``: identities of cells
    at the published width unchanged); smoke runs take SMOKE_WIDTH."""
    return Int(published, min=1, smoke=SMOKE_WIDTH, later=True, doc=doc)


def _convnet(name, description, depth=None, norm=None):
    changes = {}
    if depth is not None:
        changes["depth"] = Int(depth, min=1)
    if norm is not None:
        changes["norm"] = _norm(norm)
    return ArchitectureSpec(name, _N + "convnet", description,
                            options={**CONVNET_OPTIONS, **changes})


def _resnet(depth, norm):
    return {"depth": Choice(depth, (18, 34, 50, 101, 152)),
            "stem": Choice("auto", ("auto", "cifar", "imagenet")),
            "norm": Choice(norm, ("batchnorm", "instancenorm")),
            "width": _width(64, "channels of the first of the four stages (then x2, x4, x8; "
                                "64 is the published network); the stem keeps timm's 64")}


ALEXNET_WIDTH = _width(128, "channels of the first convolution; the others scale with it "
                       "(128, 192, 256, 192, 192 at the published 128)")
VGG_WIDTH = _width(64, "channels of the first convolution; the others scale with it "
                   "(64 to 512 at the published 64)")


@hookimpl
def kddbench_architectures():
    yield _convnet("convnet", "ConvNet-D/W of the DD papers; every option settable (NAS space)")
    yield _convnet("convnet3", "ConvNet-3: 3x[conv3x3 128, instance norm, ReLU, avgpool2], "
                   "linear head (docs/references.md s.2)")
    yield _convnet("convnet3-bn", "ConvNet-3 with batch norm", norm="batchnorm")
    yield _convnet("convnet7", "ConvNet-7 for large images (MHIST 224x224)", depth=7)
    yield _convnet("convnet7-bn", "ConvNet-7 with batch norm", depth=7, norm="batchnorm")
    yield ArchitectureSpec("mlp", _N + "mlp", "MLP in->128->128->classes, ReLU",
                           options={"width": Int(128, min=1, smoke=SMOKE_WIDTH)})
    yield ArchitectureSpec("lenet", _N + "lenet", "LeNet-5 style: conv 6, conv 16, fc 120, 84")
    yield ArchitectureSpec("alexnet", _N + "alexnet",
                           "CIFAR-style AlexNet of the DC papers (128, 192, 256, 192, 192)",
                           options={"norm": _norm("none"), "width": ALEXNET_WIDTH})
    yield ArchitectureSpec("alexnet-bn", _N + "alexnet", "AlexNet with batch norm",
                           options={"norm": _norm("batchnorm"), "width": ALEXNET_WIDTH})
    yield ArchitectureSpec("alexcifarnet", _N + "alexcifarnet",
                           "Wang et al. 2018's CIFAR-10 net: 2x[conv5x5 64, ReLU, max-pool, "
                           "LRN], fc 384, 192 (after cuda-convnet)")
    yield ArchitectureSpec("vgg11", _N + "vgg11", "VGG-11 with instance norm (DC papers' pool)",
                           options={"norm": _norm("instancenorm"), "width": VGG_WIDTH})
    yield ArchitectureSpec("vgg11-bn", _N + "vgg11", "VGG-11 with batch norm",
                           options={"norm": _norm("batchnorm"), "width": VGG_WIDTH})
    yield ArchitectureSpec("resnet18", _N + "timm_resnet",
                           "ResNet-18 (timm); 3x3 stride-1 stem for images <= 64 px",
                           options=_resnet(18, "batchnorm"))
    yield ArchitectureSpec("resnet18-in", _N + "timm_resnet",
                           "ResNet-18 (timm) with instance norm, as in the DC papers' pool",
                           options=_resnet(18, "instancenorm"))
    yield ArchitectureSpec("resnet50", _N + "timm_resnet",
                           "ResNet-50 (timm); 3x3 stride-1 stem for images <= 64 px",
                           options=_resnet(50, "batchnorm"))
    yield ArchitectureSpec("timm", _N + "timm_any", "any timm model: timm:<model name>",
                           prefix=True)
