"""Stand-in data: a few random images per class, written exactly where and how the real files of
each data set lie on disk, so that the real loaders (and torchvision's readers behind them) run
unchanged on them.  Smoke runs (``kddbench run SUITE --smoke``) write them into a temporary data
root; tests use them to check the loaders without the real data.

=============  ==============================================================================
data set       files written under ``root`` (the layout torchvision's reader expects)
=============  ==============================================================================
mnist          ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (idx, uncompressed)
fashion-mnist  ``FashionMNIST/raw/...`` (the same four idx files)
usps           ``usps/usps.bz2``, ``usps/usps.t.bz2`` (bz2 libsvm lines, values in [-1, 1])
cifar10        ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta`` (pickles)
cifar100       ``cifar-100-python/train``, ``test``, ``meta`` (pickles, fine and coarse labels)
svhn           ``svhn/train_32x32.mat``, ``svhn/test_32x32.mat`` (``X`` HxWxCxN, ``y`` 1..10)
mhist          ``mhist/annotations.csv`` and ``mhist/images/*.png`` (224x224 RGB)
=============  ==============================================================================

Every folder also gets :data:`MARKER` (a small JSON file), which the loaders read as "this is a
stand-in": they note it in ``DataSplits.notes`` and skip the published-checksum check that real
CIFAR and SVHN files must pass (stand-in files cannot match those checksums).
"""
from __future__ import annotations

import bz2
import json
import pickle
import struct
from pathlib import Path

import numpy as np

MARKER = "kddbench-standin.json"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _images(rng, n_classes, per_class, shape):
    """``per_class`` uint8 images of each class (class-dependent brightness so a net can learn
    something) and their labels, classes interleaved."""
    labels = np.tile(np.arange(n_classes), per_class)
    base = (labels * (200 // max(1, n_classes - 1))).reshape((-1,) + (1,) * len(shape))
    noise = rng.integers(0, 56, size=(len(labels),) + tuple(shape))
    return (base + noise).clip(0, 255).astype(np.uint8), labels


def _mark(folder: Path, name: str, per_class: int, seed: int) -> None:
    (folder / MARKER).write_text(json.dumps({"dataset": name, "per_class": per_class,
                                             "seed": seed, "standin": True}))


def _idx(path: Path, array: np.ndarray) -> None:
    """An idx file (LeCun's MNIST format): magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                      *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _mnist_like(root: Path, folder: str, name: str, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        x, y = _images(rng, 10, per_class, (28, 28))
        _idx(raw / f"{split}-images-idx3-ubyte", x)
        _idx(raw / f"{split}-labels-idx1-ubyte", y.astype(np.uint8))
    _mark(raw, name, per_class, seed)
    return raw


def write_mnist(root, per_class=2, seed=0) -> Path:
    return _mnist_like(Path(root), "MNIST", "mnist", per_class, seed)


def write_fashion_mnist(root, per_class=2, seed=0) -> Path:
    return _mnist_like(Path(root), "FashionMNIST", "fashion-mnist", per_class, seed)


def write_usps(root, per_class=2, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "usps"
    folder.mkdir(parents=True, exist_ok=True)
    for filename in ("usps.bz2", "usps.t.bz2"):
        x, y = _images(rng, 10, per_class, (256,))
        values = x.astype(np.float64) / 255.0 * 2 - 1  # libsvm USPS holds [-1, 1]
        lines = [f"{label + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
                 for label, row in zip(y, values)]
        with bz2.open(folder / filename, "wb") as fh:
            fh.write(("\n".join(lines) + "\n").encode())
    _mark(folder, "usps", per_class, seed)
    return folder


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root, per_class=2, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, filename in enumerate(names):
        # the training images of each class are spread over the five batches, as in CIFAR-10
        n = per_class if filename == "test_batch" else (per_class + 4 - i) // 5
        if n == 0:
            x, y = np.zeros((0, 3072), np.uint8), np.zeros(0, np.int64)
        else:
            x, y = _images(rng, 10, n, (3072,))
        _pickle(folder / filename, {"batch_label": filename, "labels": [int(v) for v in y],
                                    "data": x, "filenames": [f"{j}.png" for j in range(len(y))]})
    _pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES),
                                      "num_cases_per_batch": 10000, "num_vis": 3072})
    _mark(folder, "cifar10", per_class, seed)
    return folder


def write_cifar100(root, per_class=2, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for filename in ("train", "test"):
        x, y = _images(rng, 100, per_class, (3072,))
        _pickle(folder / filename, {"batch_label": filename, "fine_labels": [int(v) for v in y],
                                    "coarse_labels": [int(v) // 5 for v in y], "data": x,
                                    "filenames": [f"{j}.png" for j in range(len(y))]})
    _pickle(folder / "meta", {"fine_label_names": [f"class{i:02d}" for i in range(100)],
                              "coarse_label_names": [f"super{i:02d}" for i in range(20)]})
    _mark(folder, "cifar100", per_class, seed)
    return folder


def write_svhn(root, per_class=2, seed=0) -> Path:
    import scipy.io as sio

    rng = np.random.default_rng(seed)
    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for filename in ("train_32x32.mat", "test_32x32.mat"):
        x, y = _images(rng, 10, per_class, (32, 32, 3))
        y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)  # SVHN labels digit 0 "10"
        sio.savemat(folder / filename, {"X": np.transpose(x, (1, 2, 3, 0)), "y": y})
    _mark(folder, "svhn", per_class, seed)
    return folder


def write_mhist(root, per_class=2, seed=0, size=224) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(root) / "mhist"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["Image Name,Majority Vote Label,Number of Annotators who Selected SSA (Out of 7),"
            "Partition"]
    k = 0
    for part in ("train", "test"):
        x, y = _images(rng, 2, per_class, (size, size, 3))
        for img, label in zip(x, y):
            name = f"MHIST_{k:03d}.png"
            Image.fromarray(img).save(folder / "images" / name)
            rows.append(f"{name},{('HP', 'SSA')[label]},{0 if label == 0 else 7},{part}")
            k += 1
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    _mark(folder, "mhist", per_class, seed)
    return folder


WRITERS = {"mnist": write_mnist, "fashion-mnist": write_fashion_mnist, "usps": write_usps,
           "cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn,
           "mhist": write_mhist}


def write_standin(name: str, root, per_class: int = 2, seed: int = 0) -> Path:
    """Write stand-in files of data set ``name`` under ``root``; return the folder written.

    ``per_class`` images of every class in each split (training and test)."""
    if name not in WRITERS:
        raise KeyError(f"no stand-in writer for {name!r} (have: {', '.join(WRITERS)})")
    if per_class < 1:
        raise ValueError("per_class must be at least 1")
    return WRITERS[name](root, per_class=per_class, seed=seed)


def is_standin(folder) -> bool:
    return (Path(folder) / MARKER).exists()
