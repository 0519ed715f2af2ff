"""Differentiable Siamese Augmentation (Zhao & Bilen 2021, "Dataset Condensation with
Differentiable Siamese Augmentation"), batched on the device.

The strategy ``color_crop_cutout_flip_scale_rotate`` with the parameters of the DSA reference
code (docs/condense.md): flip probability 0.5, scale up to 1.2, rotation up to 15 degrees,
translation ("crop") up to 0.125 of the side with zero padding, a cutout square of half the
side, brightness 1.0, saturation 2.0, contrast 0.5.  As in DSA, one operation of the strategy is
drawn per call for the whole batch ("single" mode; ``color`` is brightness, saturation and
contrast together); its random values are drawn per image.  Data sets with the trait
``no_flip`` (digits: a mirrored digit is another symbol) drop ``flip``.

The matching methods need the *same* random transformation on a real and a synthetic batch
(the "Siamese" part), so a :class:`DSA` also exposes its draws::

    dsa = request.augment("dsa")                      # a task: ctx.augment("dsa", data)
    params = dsa.sample_params(1, generator)          # one draw, shared by both batches
    real_aug = dsa.apply(x_real, params)
    syn_aug = dsa.apply(x_syn, params)

    params = dsa.sample_params(num_classes, generator)   # one independent draw per class ...
    real_aug = dsa.apply(x_real, params, groups=y_real)  # ... applied by class, in one batch
    syn_aug = dsa.apply(x_syn, params, groups=y_syn)

Every operation is a tensor expression of the images (``affine_grid``/``grid_sample``,
``flip``, masks, per-image affine colour maps), so gradients flow to the images; there are no
per-image Python loops and no PIL.  Random values are drawn on the generator's device from
the generator only, and always in the same amount, so a run is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch

from .affine import rand, resample, translate_theta

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NO_FLIP = "no_flip"  # the data-set trait that drops ``flip``


@dataclass(frozen=True)
class DSAConfig:
    """The DSA parameters (defaults: the DSA reference code's)."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0     # degrees
    ratio_crop_pad: float = 0.125  # of the image side
    ratio_cutout: float = 0.5      # side of the cutout square, of the image side
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


@dataclass
class DSAParams:
    """``n`` independent draws of every DSA random value (unit-interval numbers).

    ``op`` indexes the strategy's operations (one per draw).  The other fields are uniform in
    [0, 1) and are turned into pixels, angles and factors by :meth:`DSA.apply`, which knows the
    image size; so one draw fits a real and a synthetic batch of any sizes.
    """

    op: torch.Tensor        # (n,) int64
    bright: torch.Tensor    # (n,)
    sat: torch.Tensor       # (n,)
    contr: torch.Tensor     # (n,)
    shift: torch.Tensor     # (n, 2)  translation (x, y)
    cut: torch.Tensor       # (n, 2)  cutout centre (x, y)
    flip: torch.Tensor      # (n,)
    scale: torch.Tensor     # (n, 2)
    angle: torch.Tensor     # (n,)
    ops_present: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return int(self.op.shape[0])

    def to(self, device: torch.device | str) -> "DSAParams":
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if f.name != "ops_present"}
        return DSAParams(**moved, ops_present=self.ops_present)

    def take(self, index: torch.Tensor) -> "DSAParams":
        """The draws at ``index`` (one per image)."""
        taken = {f.name: getattr(self, f.name)[index] for f in fields(self)
                 if f.name != "ops_present"}
        return DSAParams(**taken, ops_present=self.ops_present)


class DSA:
    """Differentiable Siamese Augmentation; see the module docstring.

    strategy: operations joined by ``_`` (color, crop, cutout, flip, scale, rotate).
    digits:   drop ``flip`` from the strategy.
    single:   one operation per draw (DSA's default mode); false applies every operation in
              strategy order (DSA's "multiple" mode).
    """

    OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")

    def __init__(self, strategy: str = DSA_STRATEGY, digits: bool = False,
                 config: DSAConfig = DSAConfig(), single: bool = True):
        ops = [op for op in strategy.split("_") if op]
        unknown = [op for op in ops if op not in self.OPS]
        if unknown:
            raise ValueError(f"unknown DSA operations {unknown} (known: {', '.join(self.OPS)})")
        if digits:
            ops = [op for op in ops if op != "flip"]
        if not ops:
            raise ValueError("a DSA strategy needs at least one operation")
        self.ops = tuple(ops)
        self.digits = digits
        self.config = config
        self.single = single

    def __repr__(self) -> str:
        return f"DSA(ops={'_'.join(self.ops)}, single={self.single})"

    # random values --------------------------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator,
                      op: int | None = None) -> DSAParams:
        """``n`` independent draws; each draw picks its own operation unless ``op`` is given
        (an index into ``self.ops``, shared by every draw)."""
        k = len(self.ops)
        if op is None:
            ops = torch.randint(0, k, (n,), generator=generator, device=generator.device)
        else:
            _ = torch.randint(0, k, (n,), generator=generator, device=generator.device)
            ops = torch.full((n,), int(op), dtype=torch.long, device=generator.device)
        params = DSAParams(ops, rand(generator, n), rand(generator, n), rand(generator, n),
                           rand(generator, n, 2), rand(generator, n, 2), rand(generator, n),
                           rand(generator, n, 2), rand(generator, n))
        params.ops_present = tuple(sorted(set(ops.tolist()))) if self.single else ()
        return params

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Evaluation-time augmentation: one operation for the batch, values per image."""
        op = int(torch.randint(0, len(self.ops), (1,), generator=generator,
                               device=generator.device))
        params = self.sample_params(int(x.shape[0]), generator, op=op if self.single else None)
        return self.apply(x, params)

    def siamese(self, batches: Sequence[torch.Tensor], generator: torch.Generator):
        """The same single random transformation applied to every batch in ``batches``."""
        params = self.sample_params(1, generator)
        return [self.apply(b, params) for b in batches]

    # the transformation ----------------------------------------------------------------
    def apply(self, x: torch.Tensor, params: DSAParams,
              groups: torch.Tensor | None = None) -> torch.Tensor:
        """Transform ``x`` by ``params``: image i uses draw ``groups[i]``; without ``groups``
        a single draw applies to every image, and ``n == len(x)`` draws apply one per image."""
        b = int(x.shape[0])
        if groups is not None:
            p = params.to(x.device).take(groups.to(x.device))
        elif params.n == 1:
            p = params.to(x.device).take(torch.zeros(b, dtype=torch.long, device=x.device))
        elif params.n == b:
            p = params.to(x.device)
        else:
            raise ValueError(f"{params.n} DSA draws for {b} images: pass groups=")
        if not self.single:
            for name in self.ops:
                x = self._op(name, x, p)
            return x
        present = params.ops_present or tuple(range(len(self.ops)))
        for i in present:
            name = self.ops[i]
            if len(present) == 1:
                return self._op(name, x, p)
            idx = torch.nonzero(p.op == i).flatten()
            if idx.numel() == 0:
                continue
            x = x.index_copy(0, idx, self._op(name, x[idx], p.take(idx)))
        return x

    def _op(self, name: str, x: torch.Tensor, p: DSAParams) -> torch.Tensor:
        cfg = self.config
        n, _, h, w = x.shape
        if name == "color":
            col = lambda t: t.to(x.dtype).reshape(n, 1, 1, 1)  # noqa: E731
            x = x + (col(p.bright) - 0.5) * cfg.brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (col(p.sat) * cfg.saturation) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            return (x - mean) * (col(p.contr) + cfg.contrast) + mean
        if name == "crop":
            sx, sy = int(w * cfg.ratio_crop_pad + 0.5), int(h * cfg.ratio_crop_pad + 0.5)
            span = torch.tensor([2 * sx + 1, 2 * sy + 1], device=x.device)
            low = torch.tensor([sx, sy], device=x.device)
            shift = torch.floor(p.shift * span).clamp(max=span - 1) - low
            return resample(x, translate_theta(shift, (h, w)))
        if name == "cutout":
            cw, ch = int(w * cfg.ratio_cutout + 0.5), int(h * cfg.ratio_cutout + 0.5)
            span = torch.tensor([w + (1 - cw % 2), h + (1 - ch % 2)], device=x.device)
            centre = torch.floor(p.cut * span).clamp(max=span - 1)
            x0 = (centre[:, 0] - cw // 2).reshape(n, 1, 1)
            y0 = (centre[:, 1] - ch // 2).reshape(n, 1, 1)
            cols = torch.arange(w, device=x.device).reshape(1, 1, w)
            rows = torch.arange(h, device=x.device).reshape(1, h, 1)
            inside = (cols >= x0) & (cols < x0 + cw) & (rows >= y0) & (rows < y0 + ch)
            return x * (~inside).unsqueeze(1).to(x.dtype)
        if name == "flip":
            do = (p.flip < cfg.prob_flip).reshape(n, 1, 1, 1)
            return torch.where(do, x.flip(3), x)
        if name == "scale":
            r = cfg.ratio_scale
            s = p.scale * (r - 1.0 / r) + 1.0 / r
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0] = s[:, 0]
            theta[:, 1, 1] = s[:, 1]
            return resample(x, theta)
        if name == "rotate":
            a = (p.angle - 0.5) * 2 * cfg.ratio_rotate * math.pi / 180
            cos, sin = torch.cos(a), torch.sin(a)
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0], theta[:, 0, 1] = cos, sin
            theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
            return resample(x, theta)
        raise ValueError(f"unknown DSA operation {name!r}")


def dsa(data: Any = None, *, strategy: str = DSA_STRATEGY, single: bool = True) -> DSA:
    """The ``dsa`` augmentation for ``data`` (drops ``flip`` where the data set has the
    ``no_flip`` trait)."""
    return DSA(strategy=strategy, digits=NO_FLIP in set(getattr(data, "traits", ()) or ()),
               single=single)
