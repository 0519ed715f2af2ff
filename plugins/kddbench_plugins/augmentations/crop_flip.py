"""``crop_flip``: the CIFAR recipe of the knowledge-distillation literature (RepDistiller, Tian et
al. 2020, "Contrastive Representation Distillation"; mdistiller, Zhao et al. 2022) —
a random crop of the image padded by ``padding`` pixels on each side, then a horizontal flip with
probability ``p_flip``; torchvision's ``RandomCrop(size, padding=4)`` + ``RandomHorizontalFlip()``.

Batched on the device with one gather: every image draws its own offsets and flip from the
caller's generator.  Padding takes the normalised value of black, as torchvision pads the raw
image with zeros before normalising.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F


class CropFlip:
    def __init__(self, padding: int = 4, p_flip: float = 0.5,
                 fill: Sequence[float] | None = None):
        if padding < 0:
            raise ValueError("padding must be >= 0")
        self.padding = int(padding)
        self.p_flip = float(p_flip)
        self.fill = None if fill is None else torch.as_tensor(list(fill), dtype=torch.float32)

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, p_flip={self.p_flip})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        pad = self.padding
        dev = generator.device
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=dev)
        flips = torch.rand(n, generator=generator, device=dev) < self.p_flip
        offsets, flips = offsets.to(x.device), flips.to(x.device)
        if pad:
            fill = torch.zeros(c, device=x.device, dtype=x.dtype) if self.fill is None else \
                self.fill.to(device=x.device, dtype=x.dtype)
            padded = F.pad(x - fill.reshape(1, c, 1, 1), (pad, pad, pad, pad)) + \
                fill.reshape(1, c, 1, 1)
        else:
            padded = x
        rows = offsets[:, 1:2] + torch.arange(h, device=x.device)            # (n, h)
        cols = offsets[:, 0:1] + torch.arange(w, device=x.device)            # (n, w)
        cols = torch.where(flips[:, None], cols.flip(1), cols)               # flip = read cols backwards
        idx_n = torch.arange(n, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
        return out.permute(0, 3, 1, 2).contiguous()


def crop_flip(data: Any = None, *, padding: int = 4, p_flip: float = 0.5) -> CropFlip:
    """The ``crop_flip`` augmentation; padding takes the normalised value of black."""
    fill = None
    if data is not None and hasattr(data, "mean"):
        fill = [-m / s for m, s in zip(data.mean, data.std)]
    return CropFlip(padding=padding, p_flip=p_flip, fill=fill)
