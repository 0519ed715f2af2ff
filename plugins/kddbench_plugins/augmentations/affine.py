"""Batched affine resampling shared by the augmentations: every image its own 2x3 matrix.

All random values come from the caller's generator, on its device, so a run is reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=generator.device)


def translate_theta(shift_px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Affine matrices (align_corners=True) moving images by integer pixels (x, y)."""
    h, w = size
    n = shift_px.shape[0]
    theta = torch.zeros(n, 2, 3, device=shift_px.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = shift_px[:, 0] * (2.0 / max(w - 1, 1))
    theta[:, 1, 2] = shift_px[:, 1] * (2.0 / max(h - 1, 1))
    return theta


def resample(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor | None = None):
    """Sample ``x`` through per-image affine maps; outside pixels become ``fill`` (default 0)."""
    theta = theta.to(dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out + fill
