"""``file``: anyone's condensed set, loaded from a file instead of computed.

A set released with a paper (or written by any other program) is judged by the shared protocol
without porting the method that made it.  The file holds tensors only:

* ``.pt``  — a dict saved with ``torch.save``, read with ``torch.load(weights_only=True)`` (no
  pickled code runs);
* ``.npz`` — ``numpy.savez``, read with ``allow_pickle=False``.

Keys (names settable by options): ``images`` (N, C, H, W) — or (N, H, W, C) with ``layout =
"NHWC"`` — float, or uint8 for raw pixels; ``labels`` (N,) class indices or (N, classes) soft
labels (each row a distribution); optional ``lr``, a learned learning rate for evaluation.

The normalisation contract (``normalization``): ``"raw"`` — pixels in [0, 1] (uint8: [0, 255]),
normalised here with the data set's mean and std; ``"dataset"`` — already normalised with them.
A file that contradicts its declaration is refused: raw values outside [0, 1], or "dataset"
values that are all within [0, 1] (normalised images have negative values wherever a pixel is
darker than the data set's mean) — one line saying which setting fits.

Every mismatch with the data set (image shape, class count, labels out of range, a per-class
count different from the cell's ``ipc``) is a one-line error.  ``sha256`` pins the file's
content: set it, and a changed file is refused instead of silently giving other numbers under
the same cell identity.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.errors import KddbenchError


def _read(path: Path) -> dict:
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data = {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        else:
            raise KddbenchError(f"condensed set {path}: expected a .pt or .npz file")
    except KddbenchError:
        raise
    except Exception as exc:  # a corrupt file, a pickle with code, a truncated archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KddbenchError(f"condensed set {path} is unreadable as tensors: {first[:200]}") \
            from None
    if not isinstance(data, dict):
        raise KddbenchError(f"condensed set {path}: expected a dict of tensors, got "
                            f"{type(data).__name__}")
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_set(request: CondenseRequest, *, path: str = "", normalization: str = "raw",
             layout: str = "NCHW", images_key: str = "images", labels_key: str = "labels",
             lr_key: str = "lr", sha256: str = "") -> SyntheticSet:
    if not path:
        raise KddbenchError("the 'file' condenser needs options.file.path (a .pt or .npz "
                            "file of images and labels)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise KddbenchError(f"condensed set file not found: {file}")
    digest = _sha256(file)
    if sha256 and sha256.lower() != digest:
        raise KddbenchError(f"condensed set {file} changed: sha256 {digest[:12]}..., the suite "
                            f"pins {sha256[:12]}...")
    raw = _read(file)
    data = request.data
    for key in (images_key, labels_key):
        if key not in raw:
            raise KddbenchError(f"condensed set {file} has no {key!r} (keys: "
                                f"{', '.join(sorted(raw)) or 'none'})")
    images, labels = raw[images_key], raw[labels_key]
    if not (torch.is_tensor(images) and torch.is_tensor(labels)):
        raise KddbenchError(f"condensed set {file}: {images_key!r} and {labels_key!r} must be "
                            "tensors")
    if images.dim() != 4:
        raise KddbenchError(f"condensed set {file}: images of shape {tuple(images.shape)}; "
                            f"expected 4 dimensions ({layout})")
    if layout == "NHWC":
        images = images.permute(0, 3, 1, 2)
    want = tuple(data.x_train.shape[1:])
    if tuple(images.shape[1:]) != want:
        raise KddbenchError(f"condensed set {file}: images of shape (C, H, W) = "
                            f"{tuple(images.shape[1:])}, but {data.name} has {want}"
                            + (" (is it NHWC? set layout = 'NHWC')" if layout == "NCHW" and
                               tuple(images.shape[1:]) == (want[1], want[2], want[0]) else ""))
    if images.dtype == torch.uint8:
        if normalization != "raw":
            raise KddbenchError(f"condensed set {file}: uint8 images are raw pixels; set "
                                "normalization = 'raw'")
        images = images.float() / 255.0
    elif not images.dtype.is_floating_point:
        raise KddbenchError(f"condensed set {file}: images of dtype {images.dtype}; expected "
                            "float (or uint8 raw pixels)")
    images = images.float()
    if not torch.isfinite(images).all():
        raise KddbenchError(f"condensed set {file}: images hold NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if normalization == "raw":
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise KddbenchError(f"condensed set {file}: values in [{lo:.3g}, {hi:.3g}] are not "
                                "raw pixels in [0, 1]; if the file is normalised with the data "
                                "set's mean/std, set normalization = 'dataset'")
        mean = torch.tensor(list(data.mean)).reshape(1, -1, 1, 1)
        std = torch.tensor(list(data.std)).reshape(1, -1, 1, 1)
        images = (images - mean) / std
    elif lo >= 0 and hi <= 1:
        raise KddbenchError(f"condensed set {file}: every value lies in [0, 1], as raw pixels "
                            "do; set normalization = 'raw' (or check the file)")
    n, classes = images.shape[0], data.num_classes
    if labels.dim() == 1:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise KddbenchError(f"condensed set {file}: hard labels must be integers, got "
                                f"{labels.dtype}")
        labels = labels.long()
        if labels.shape[0] != n or int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise KddbenchError(f"condensed set {file}: {labels.shape[0]} labels in "
                                f"[{int(labels.min())}, {int(labels.max())}] for {n} images "
                                f"of {classes} classes")
        hard = labels
    elif labels.dim() == 2:
        if labels.shape != (n, classes) or not labels.dtype.is_floating_point:
            raise KddbenchError(f"condensed set {file}: soft labels of shape "
                                f"{tuple(labels.shape)} ({labels.dtype}); expected float "
                                f"({n}, {classes})")
        labels = labels.float()
        if (labels < -1e-6).any() or not torch.allclose(labels.sum(1), torch.ones(n),
                                                          atol=1e-3):
            raise KddbenchError(f"condensed set {file}: each soft-label row must be a "
                                "distribution (non-negative, summing to 1)")
        hard = labels.argmax(1)
    else:
        raise KddbenchError(f"condensed set {file}: labels of shape {tuple(labels.shape)}")
    if request.ipc:
        counts = torch.bincount(hard, minlength=classes).tolist()
        if any(c != request.ipc for c in counts):
            raise KddbenchError(f"condensed set {file}: per-class image counts {counts} differ "
                                f"from the cell's ipc = {request.ipc}")
    lr = float(raw[lr_key]) if lr_key in raw else None
    device = request.data.x_train.device
    return SyntheticSet(images.to(device), labels.to(device), lr,
                        info={"file": str(file), "sha256": digest})
