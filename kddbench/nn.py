"""Helpers for architectures: named intermediate features and model size."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class FeatureModel(nn.Module):
    """Base class of kddbench networks: ``forward`` gives logits, ``forward_features`` also
    returns the named stages listed in ``feature_names`` (in order, shallow to deep).

    Subclasses define ``stages`` (an ``nn.ModuleDict`` run in order) and ``head``; the output of
    every stage is a feature, and ``"embedding"`` is the flattened input of the head.
    """

    feature_names: tuple[str, ...] = ()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats: dict[str, torch.Tensor] = {}
        for name, stage in self.stages.items():  # type: ignore[attr-defined]
            x = stage(x)
            feats[name] = x
        emb = self.embed(x)
        feats["embedding"] = emb
        return self.head(emb), feats  # type: ignore[attr-defined]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages.values():  # type: ignore[attr-defined]
            x = stage(x)
        return self.head(self.embed(x))  # type: ignore[attr-defined]


class HookFeatures(nn.Module):
    """Wrap any module so ``forward_features`` returns the outputs of named submodules.

    ``with_features(timm_model, ["layer1", "layer2", "layer3", "layer4"], embedding="global_pool")``
    """

    def __init__(self, model: nn.Module, stages: Sequence[str], embedding: str | None = None):
        super().__init__()
        self.model = model
        self.stage_names = tuple(stages)
        self.embedding_name = embedding
        self.feature_names = self.stage_names + (("embedding",) if embedding else ())
        modules = dict(model.named_modules())
        missing = [s for s in self.feature_names[:len(self.stage_names)] if s not in modules]
        if embedding and embedding not in modules:
            missing.append(embedding)
        if missing:
            raise ValueError(f"no submodules {missing} in {type(model).__name__}")
        self._captured: dict[str, torch.Tensor] | None = None
        for name in self.stage_names:
            modules[name].register_forward_hook(self._make_hook(name))
        if embedding:
            modules[embedding].register_forward_hook(self._make_hook("embedding", flatten=True))

    def _make_hook(self, name: str, flatten: bool = False):
        def hook(_module, _inputs, output):
            if self._captured is not None:
                self._captured[name] = torch.flatten(output, 1) if flatten else output
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._captured = {}
        try:
            logits = self.model(x)
            feats = self._captured
        finally:
            self._captured = None
        return logits, feats


def with_features(model: nn.Module, stages: Sequence[str], embedding: str | None = None):
    return HookFeatures(model, stages, embedding)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_size_mb(model: nn.Module) -> float:
    """Bytes of parameters and buffers, in MB (10**6 bytes)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total / 1e6
