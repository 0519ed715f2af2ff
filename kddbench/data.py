"""In-memory data splits: whole data sets as normalised tensors, plus their fingerprint."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class DataSplits:
    """A data set held in memory.

    x_train, x_test: float32 tensors (N, C, H, W), already normalised with ``mean``/``std``.
    y_train, y_test: int64 class indices.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]
    notes: str = ""
    _fingerprint: str | None = field(default=None, repr=False)
    # what augmentations must know of the data (e.g. "no_flip"), from the DatasetSpec
    traits: frozenset = field(default_factory=frozenset)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def fingerprint(self) -> str:
        """A short hash of every tensor: two runs on the same data agree, any change shows."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for t in (self.x_train, self.y_train, self.x_test, self.y_test):
                t = t.detach().cpu().contiguous()
                h.update(str((tuple(t.shape), str(t.dtype))).encode())
                h.update(t.numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def to(self, device: torch.device | str) -> "DataSplits":
        moved = DataSplits(self.name, self.x_train.to(device), self.y_train.to(device),
                           self.x_test.to(device), self.y_test.to(device), self.classes,
                           self.mean, self.std, self.notes, self._fingerprint,
                           frozenset(self.traits))
        return moved

    def indices_by_class(self) -> list[torch.Tensor]:
        return [torch.nonzero(self.y_train == c).flatten() for c in range(self.num_classes)]


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> normalised per channel."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def denormalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * s + m


def from_uint8(images, labels, layout: str = "NHW") -> tuple[torch.Tensor, torch.Tensor]:
    """numpy/tensor uint8 images -> float tensor in [0, 1], shape (N, C, H, W); int64 labels."""
    x = torch.as_tensor(images)
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0).contiguous()
    return x, torch.as_tensor(labels).long()
