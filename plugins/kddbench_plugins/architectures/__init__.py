"""Architecture registrations (implementations in :mod:`kddbench_plugins.architectures.networks`)."""
from kddbench import ArchitectureSpec, hookimpl

_N = "kddbench_plugins.architectures.networks:"
CONVNET_OPTIONS = {"depth": 3, "width": 128, "act": "relu", "norm": "instancenorm",
                   "pool": "avgpool"}


def _convnet(name, description, **changes):
    return ArchitectureSpec(name, _N + "convnet", description,
                            options={**CONVNET_OPTIONS, **changes})


@hookimpl
def kddbench_architectures():
    yield _convnet("convnet", "ConvNet-D/W of the DD papers; every option settable (NAS space)")
    yield _convnet("convnet3", "ConvNet-3: 3x[conv3x3 128, instance norm, ReLU, avgpool2], "
                   "linear head (REFERENCE.md s.2)")
    yield _convnet("convnet3-bn", "ConvNet-3 with batch norm", norm="batchnorm")
    yield _convnet("convnet7", "ConvNet-7 for large images (MHIST 224x224)", depth=7)
    yield _convnet("convnet7-bn", "ConvNet-7 with batch norm", depth=7, norm="batchnorm")
    yield ArchitectureSpec("mlp", _N + "mlp", "MLP in->128->128->classes, ReLU",
                           options={"width": 128})
    yield ArchitectureSpec("lenet", _N + "lenet", "LeNet-5 style: conv 6, conv 16, fc 120, 84")
    yield ArchitectureSpec("alexnet", _N + "alexnet",
                           "CIFAR-style AlexNet of the DC papers (128, 192, 256, 192, 192)",
                           options={"norm": "none"})
    yield ArchitectureSpec("alexnet-bn", _N + "alexnet", "AlexNet with batch norm",
                           options={"norm": "batchnorm"})
    yield ArchitectureSpec("vgg11", _N + "vgg11", "VGG-11 with instance norm (DC papers' pool)",
                           options={"norm": "instancenorm"})
    yield ArchitectureSpec("vgg11-bn", _N + "vgg11", "VGG-11 with batch norm",
                           options={"norm": "batchnorm"})
    yield ArchitectureSpec("resnet18", _N + "timm_resnet",
                           "ResNet-18 (timm); 3x3 stride-1 stem for images <= 64 px",
                           options={"depth": 18, "stem": "auto", "norm": "batchnorm"})
    yield ArchitectureSpec("resnet18-in", _N + "timm_resnet",
                           "ResNet-18 (timm) with instance norm, as in the DC papers' pool",
                           options={"depth": 18, "stem": "auto", "norm": "instancenorm"})
    yield ArchitectureSpec("resnet50", _N + "timm_resnet",
                           "ResNet-50 (timm); 3x3 stride-1 stem for images <= 64 px",
                           options={"depth": 50, "stem": "auto", "norm": "batchnorm"})
    yield ArchitectureSpec("timm", _N + "timm_any", "any timm model: timm:<model name>",
                           prefix=True)
