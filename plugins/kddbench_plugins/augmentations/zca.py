"""``zca``: ZCA whitening, a data-set-level transform fitted once on the training images.

Trajectory matching (Cazenavette et al. 2022, "Dataset Distillation by Matching Training
Trajectories") whitens CIFAR with kornia's ``ZCAWhitening(eps=0.1)`` fitted on the whole
training set; this is the same transform: with X the flattened training images (already
normalised per channel), mean m and covariance C = (X - m)^T (X - m) / (N - 1) = U S U^T, every
image x becomes U diag(1 / sqrt(S + eps)) U^T (x - m).  [not checked against kornia's output]

A task gets it through ``ctx.transform("zca", data)``: the fitted state (mean and matrix) is an
artifact keyed by the data set's fingerprint and the options, so it is fitted once.
"""
from __future__ import annotations

from typing import Any

import torch


class ZCA:
    def __init__(self, eps: float = 0.1):
        if eps <= 0:
            raise ValueError("eps must be > 0")
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"ZCA(eps={self.eps})"

    def fit(self, x_train: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x_train.reshape(x_train.shape[0], -1).double()
        n, d = flat.shape
        mean = flat.mean(0)
        centred = flat - mean
        if n - 1 < d:
            return {"mean": mean.float().cpu(), "matrix": self._low_rank(centred).float().cpu()}
        cov = centred.T @ centred / max(n - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        matrix = evecs @ torch.diag((evals.clamp(min=0) + self.eps).rsqrt()) @ evecs.T
        return {"mean": mean.float().cpu(), "matrix": matrix.float().cpu()}

    def _low_rank(self, centred: torch.Tensor) -> torch.Tensor:
        """The same matrix when there are fewer images than features (a subset, a smoke run):
        C has rank below N, so from the thin SVD centred = V diag(s) U^T, C = U diag(s^2 /
        (N - 1)) U^T and every direction outside U has eigenvalue 0, which gives
        eps^-1/2 I + U diag((s^2 / (N - 1) + eps)^-1/2 - eps^-1/2) U^T: an N x d SVD instead
        of a d x d eigendecomposition (CIFAR: 3,072 x 3,072)."""
        n, d = centred.shape
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        evals = s.square() / max(n - 1, 1)
        base = self.eps ** -0.5
        scale = (evals + self.eps).rsqrt() - base
        return base * torch.eye(d, dtype=centred.dtype) + (vh.T * scale) @ vh

    @staticmethod
    def apply(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        mean = state["mean"].to(x.device, x.dtype)
        matrix = state["matrix"].to(x.device, x.dtype)
        flat = x.reshape(x.shape[0], -1)
        return ((flat - mean) @ matrix.T).reshape(x.shape)

    @staticmethod
    def check(state: Any) -> str | None:
        """None when ``state`` has the structure :meth:`fit` returns, else what is wrong."""
        if not isinstance(state, dict) or set(state) != {"mean", "matrix"}:
            return "expected a dict with 'mean' and 'matrix'"
        d = state["mean"].numel()
        if tuple(state["matrix"].shape) != (d, d):
            return f"matrix of shape {tuple(state['matrix'].shape)} for {d} features"
        return None


def zca(data: Any = None, *, eps: float = 0.1) -> ZCA:
    return ZCA(eps=eps)
