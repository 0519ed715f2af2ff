"""Implementations of ``full``, ``random`` and ``average``."""
from __future__ import annotations

import torch

from kddbench.condense import CondenseRequest, SyntheticSet, take_per_class


def full(request: CondenseRequest) -> SyntheticSet:
    return SyntheticSet(request.data.x_train, request.data.y_train)


def random(request: CondenseRequest) -> SyntheticSet:
    idx = take_per_class(request.data, request.ipc, request.generator)
    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone())


def average(request: CondenseRequest) -> SyntheticSet:
    data, ipc = request.data, request.ipc
    images, labels = [], []
    for c, idx in enumerate(data.indices_by_class()):
        order = torch.randperm(idx.numel(), generator=request.generator,
                               device=request.generator.device).to(idx.device)
        groups = torch.tensor_split(idx[order], min(ipc, idx.numel()))
        for group in groups:
            images.append(data.x_train[group].mean(0))
            labels.append(c)
    return SyntheticSet(torch.stack(images), torch.tensor(labels, device=data.x_train.device))
