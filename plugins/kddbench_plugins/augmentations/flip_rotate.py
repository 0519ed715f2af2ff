"""``flip_rotate``: per image a rotation in [-15, 15] degrees, a horizontal and a vertical flip
each with probability 0.5 (torchvision's RandomRotation(15), RandomHorizontalFlip and
RandomVerticalFlip, the augmentation of the study "Impact of datasets on knowledge
distillation"; see docs/kd.md).  All three are one affine resampling; corners are filled with
black (the normalised value of 0), as torchvision fills them.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .affine import rand, resample


class FlipRotate:
    """Per image: rotate by U(-max_degrees, max_degrees), flip horizontally and vertically
    each with probability ``p_flip``; one batched affine resampling, corners filled with
    ``fill`` (per channel; the normalised value of black by default in :func:`build`)."""

    def __init__(self, max_degrees: float = 15.0, p_flip: float = 0.5,
                 fill: Sequence[float] | None = None):
        self.max_degrees = float(max_degrees)
        self.p_flip = float(p_flip)
        self.fill = None if fill is None else torch.as_tensor(list(fill), dtype=torch.float32)

    def __repr__(self) -> str:
        return f"FlipRotate(max_degrees={self.max_degrees}, p_flip={self.p_flip})"

    def sample_theta(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 2, 3) affine matrices (align_corners=True convention)."""
        u = rand(generator, n, 3)
        a = (u[:, 0] * 2 - 1) * self.max_degrees * math.pi / 180
        fx = torch.where(u[:, 1] < self.p_flip, -1.0, 1.0)
        fy = torch.where(u[:, 2] < self.p_flip, -1.0, 1.0)
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.zeros(n, 2, 3, device=u.device)
        # rotation composed with the flips: R @ diag(fx, fy)
        theta[:, 0, 0], theta[:, 0, 1] = cos * fx, sin * fy
        theta[:, 1, 0], theta[:, 1, 1] = -sin * fx, cos * fy
        return theta

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        theta = self.sample_theta(int(x.shape[0]), generator)
        fill = None
        if self.fill is not None:
            fill = self.fill.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1, 1)
        return resample(x, theta, fill)


def flip_rotate(data: Any = None, *, max_degrees: float = 15.0, p_flip: float = 0.5) -> FlipRotate:
    """The ``flip_rotate`` augmentation; corners take the normalised value of black."""
    fill = None
    if data is not None and hasattr(data, "mean"):
        fill = [-m / s for m, s in zip(data.mean, data.std)]
    return FlipRotate(max_degrees=max_degrees, p_flip=p_flip, fill=fill)
