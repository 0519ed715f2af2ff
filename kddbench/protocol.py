"""The one training and evaluation protocol every method is judged by.

A :class:`Recipe` (:mod:`kddbench.recipe`, torch-free) says how to train; its defaults are the
evaluation protocol of the dataset-distillation papers.  :func:`train` runs it on tensors that already sit on the
device, with no DataLoader in the hot loop; :func:`evaluate` measures the real test set.
Everything random draws from generators seeded by the caller.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import KddbenchError, unknown_message
from .nn import count_parameters, model_size_mb
from .recipe import (OPTIMIZERS, PROTOCOL_VERSION, RECIPE_KEYS, SCHEDULES, Recipe,  # noqa: F401
                     batch_starts, check_recipe, lr_at)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# loss_fn(model, x_batch, y_batch, index_batch) -> scalar loss
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# A loss_fn with this attribute set true declares that its loss on a batch is the mean over the
# batch's images of a per-image term (no term couples two images: no batch statistics, no
# pairwise relations), so the batch may be split into micro-batches (see splits_batches).
PER_SAMPLE_MEAN = "per_sample_mean"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. building a network) with torch's global RNG seeded, then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise KddbenchError(unknown_message("optimizer", recipe.optimizer, OPTIMIZERS))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0):
    """Cross-entropy for hard (N,) or soft (N, C) targets."""
    if target.dtype.is_floating_point:
        return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def label_loss(logits: torch.Tensor, target: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """The recipe's training loss: cross-entropy for hard labels; for soft (N, C) labels
    ``recipe.soft_label_loss``: "ce" (cross-entropy with the soft targets) or "kl" (KL divergence
    between the targets and the outputs, both softened at ``soft_label_temperature`` T:
    ``T^2 KL(softmax(log p / T) || softmax(z / T))``, batch mean)."""
    if target.dtype.is_floating_point and recipe.soft_label_loss == "kl":
        t = float(recipe.soft_label_temperature)
        p = F.softmax(torch.log(target.clamp_min(1e-12)) / t, dim=1)
        return F.kl_div(F.log_softmax(logits / t, dim=1), p, reduction="batchmean") * t * t
    return soft_cross_entropy(logits, target, recipe.label_smoothing)


@dataclass
class TrainResult:
    train_time_s: float
    steps: int
    images_seen: int
    final_loss: float


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    generator: torch.Generator,
    augment: Augment | None = None,
    loss_fn: LossFn | None = None,
    extra_params: list[torch.Tensor] | None = None,
    lr: float | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on (x, y) by ``recipe``.

    x, y:         tensors on the model's device; y holds class indices or soft labels (N, C).
    generator:    the only source of randomness (shuffling; ``augment`` gets it too).
    loss_fn:      replaces cross-entropy, e.g. a KD loss; called with the batch's indices so it
                  can look up cached teacher outputs.  If it has a ``set_epoch(epoch)`` method,
                  that is called at the start of every epoch (0-based), e.g. for a warm-up.
                  If it sets ``per_sample_mean = True`` (:data:`PER_SAMPLE_MEAN`), it may be
                  called on micro-batches of a step, as cross-entropy is (same gradients).
    extra_params: trained alongside the model (e.g. FitNets regressors).
    lr:           overrides ``recipe.lr`` (a learned learning rate from a condensed set).
    on_epoch:     called as ``on_epoch(epoch, model)`` after every epoch (0-based), e.g. to
                  check a validation split (:mod:`kddbench.validation`); its time is not
                  counted in ``train_time_s``.
    """
    n = int(x.shape[0])
    if n == 0:
        raise KddbenchError("cannot train on an empty training set")
    base_lr = recipe.lr if lr is None else float(lr)
    params = list(model.parameters()) + list(extra_params or [])
    opt = make_optimizer(recipe.with_(lr=base_lr), params)
    bs = min(recipe.batch_size, n)
    model.train()
    steps = seen = 0
    loss = torch.zeros(())
    set_epoch = getattr(loss_fn, "set_epoch", None)
    micro = micro_batch_size(model, x) if splits_batches(loss_fn) else 0
    fmt = memory_format(recipe, x)
    if fmt is not None:
        model.to(memory_format=fmt)
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        for group in opt.param_groups:
            group["lr"] = lr_at(recipe, epoch, base_lr)
        perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        for i in batch_starts(recipe, n, bs):
            idx = perm[i:i + bs]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, generator)
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            opt.zero_grad(set_to_none=True)
            with autocast(recipe, x.device):
                if micro and xb.shape[0] > micro:
                    loss = _accumulate(model, xb, yb, micro, recipe, loss_fn, idx)
                elif loss_fn is not None:
                    loss = loss_fn(model, xb, yb, idx)
                    loss.backward()
                else:
                    loss = label_loss(model(xb), yb, recipe)
                    loss.backward()
            opt.step()
            steps += 1
            seen += int(idx.numel())
        if on_epoch is not None:
            paused = time.perf_counter()
            on_epoch(epoch, model)
            model.train()
            start += time.perf_counter() - paused
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    elapsed = time.perf_counter() - start
    if fmt is not None:
        model.to(memory_format=torch.contiguous_format)
    final = float(loss.detach()) if steps else float("nan")
    if not math.isfinite(final):
        raise KddbenchError(f"training diverged (final loss {final}); lower the learning rate")
    return TrainResult(elapsed, steps, seen, final)


CPU_MICRO_BATCH_ENV = "KDDBENCH_CPU_MICRO_BATCH"
DEFAULT_CPU_MICRO_BATCH = 32


def micro_batch_size(model: nn.Module, x: torch.Tensor) -> int:
    """Images per forward/backward pass inside one optimiser step on the CPU (0: whole batch).

    A 256-image step of ConvNet-3 runs ~1.8x faster on 2 CPU cores as 8 passes of 32 with the
    gradients summed (the activations stay in cache).  The step is the same one mathematically
    (mean loss over the batch), so the recipe is unchanged; batch-norm networks are excluded
    because their statistics depend on the pass size.  ``KDDBENCH_CPU_MICRO_BATCH=0`` turns it
    off; GPUs never use it.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        return 0
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return 0
    return int(os.environ.get(CPU_MICRO_BATCH_ENV, DEFAULT_CPU_MICRO_BATCH))


def autocast(recipe: Recipe, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The recipe's precision while training: bf16 autocast for ``precision = "bf16"`` (the
    weights, their gradients and the optimiser state stay fp32), else nothing."""
    if getattr(recipe, "precision", "fp32") == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(recipe: Recipe, x: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` when the recipe asks for it and the images are 4-d, else None."""
    return torch.channels_last if getattr(recipe, "channels_last", False) and x.dim() == 4 \
        else None


def splits_batches(loss_fn: LossFn | None) -> bool:
    """Whether :func:`train` may split a step of ``loss_fn`` into micro-batches: the recipe's
    label loss (``None``) may, and a loss_fn that declares ``per_sample_mean = True``.  Then the
    step is the same one: the gradient of a mean of per-image terms is the size-weighted sum of
    the gradients of the micro-batches' means."""
    return loss_fn is None or bool(getattr(loss_fn, PER_SAMPLE_MEAN, False))


def _accumulate(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, micro: int,
                recipe: Recipe, loss_fn: LossFn | None = None,
                idx: torch.Tensor | None = None) -> torch.Tensor:
    """Backward the batch-mean loss in slices of ``micro`` images; return the mean loss.
    ``loss_fn`` (a per-sample-mean one, see :func:`splits_batches`) gets each slice's indices."""
    n = xb.shape[0]
    total = torch.zeros((), device=xb.device)
    for j in range(0, n, micro):
        xs, ys = xb[j:j + micro], yb[j:j + micro]
        if loss_fn is None:
            part = label_loss(model(xs), ys, recipe)
        else:
            part = loss_fn(model, xs, ys, idx[j:j + micro])
        part = part * (xs.shape[0] / n)
        part.backward()
        total += part.detach()
    return total


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class predictions in batches.  On the CPU, 4-d inputs run channels-last, which makes
    oneDNN's convolutions ~1.3x faster for inference here (training is faster contiguous)."""
    model.eval()
    fmt = torch.channels_last if x.device.type == "cpu" and x.dim() == 4 else None
    if fmt is not None:
        model.to(memory_format=fmt)
    outs = []
    for i in range(0, int(x.shape[0]), batch_size):
        xb = x[i:i + batch_size]
        outs.append(model(xb.contiguous(memory_format=fmt) if fmt else xb).argmax(1))
    if fmt is not None:
        model.to(memory_format=torch.contiguous_format)
    return torch.cat(outs) if outs else torch.empty(0, dtype=torch.long, device=x.device)


def classification_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int):
    """Top-1 accuracy (%), misclassified count and macro F1 (%)."""
    pred, target = pred.cpu(), target.cpu()
    conf = torch.bincount(target * num_classes + pred, minlength=num_classes ** 2)
    conf = conf.view(num_classes, num_classes).double()
    tp = conf.diag()
    precision = tp / conf.sum(0).clamp(min=1)
    recall = tp / conf.sum(1).clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                     torch.zeros_like(tp))
    present = conf.sum(1) > 0
    correct = int(tp.sum())
    total = int(target.numel())
    return {
        "accuracy": 100.0 * correct / max(1, total),
        "misclassified": total - correct,
        "macro_f1": 100.0 * float(f1[present].mean()) if present.any() else 0.0,
    }


def evaluate(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, num_classes: int,
             batch_size: int = 256) -> dict[str, float]:
    start = time.perf_counter()
    pred = predict(model, x_test, batch_size)
    metrics = classification_metrics(pred, y_test, num_classes)
    metrics["test_time_s"] = time.perf_counter() - start
    return metrics


def model_metrics(model: nn.Module) -> dict[str, float]:
    return {"params": count_parameters(model), "size_mb": model_size_mb(model)}


def train_and_evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    recipe: Recipe,
    generator: torch.Generator,
    augment: Augment | None = None,
    loss_fn: LossFn | None = None,
    extra_params: list[torch.Tensor] | None = None,
    lr: float | None = None,
) -> dict[str, float]:
    """The protocol in one call: train on (x, y), test on the real test set, all metrics."""
    result = train(model, x, y, recipe, generator, augment, loss_fn, extra_params, lr)
    metrics = evaluate(model, x_test, y_test, num_classes, recipe.test_batch_size)
    metrics.update(model_metrics(model))
    metrics.update({
        "train_time_s": result.train_time_s,
        "train_images_per_s": result.images_seen / max(result.train_time_s, 1e-9),
        "n_train": int(x.shape[0]),
        "train_bytes": int(x.numel() * x.element_size()),
        "epochs": recipe.epochs,
    })
    return metrics
