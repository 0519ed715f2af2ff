"""Distribution matching: ``dm`` (Zhao & Bilen 2023) and attention matching ``datadam``
(Sajedi et al. 2023).

Every iteration samples a fresh, randomly initialised and frozen network, augments the real
batch (``batch_real`` images of every class) and the synthetic set with the same DSA draw per
class, and matches class statistics of the two:

* ``dm``: the class means of the embeddings (the head's input), squared L2 distance summed
  over classes.
* ``datadam``: at every stage but the last, the class means of the L2-normalised spatial
  attention maps (channel sum of ``|a|^p``), squared distance; plus ``lambda_mmd`` times the
  DM term on the final embeddings; the whole multiplied by ``loss_scale`` (100 in the released
  code; the paper's equations leave it out, and its image learning rate assumes it).

The real images of all classes go through the network in one batched forward under
``torch.no_grad`` (per class for batch-norm networks in ``dm``, whose reference normalises each
class's batch on its own); the network's parameters are frozen, so the backward pass computes
gradients for the synthetic images only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.errors import KddbenchError

from .synthesis import (ClassSampler, ImageOptimizer, auto_chunk, backward_through, class_means,
                    draw_seed, embed, features, has_batchnorm, map_chunks,
                    swap_instancenorm_for_batchnorm)


def auto_lr(ipc: int, lr_img: float) -> float:
    """``lr_img`` if set (> 0), else the papers' choice: 1.0, or 10 from 100 images per class."""
    if lr_img > 0:
        return float(lr_img)
    return 10.0 if ipc >= 100 else 1.0


def frozen_net(request: CondenseRequest, generator: torch.Generator,
               to_batchnorm: bool = False) -> nn.Module:
    net = request.build_net(draw_seed(generator))
    if to_batchnorm:
        swap_instancenorm_for_batchnorm(net)
    net.requires_grad_(False)
    net.train()  # the references embed in training mode (batch norm uses batch statistics)
    return net


def _augment_pair(aug, x_real, y_real, x_syn, y_syn, num_classes, generator):
    """One DSA draw per class, shared by that class's real and synthetic images."""
    if aug is None:
        return x_real, x_syn
    params = aug.sample_params(num_classes, generator)
    return (aug.apply(x_real, params, groups=y_real), aug.apply(x_syn, params, groups=y_syn))


def _matching_setup(request: CondenseRequest, augment: str, lr_img: float, init: str,
                    momentum_img: float, checkpoint_every: int):
    """What DM and DataDAM share: the augmentation, a per-class sampler of real images, the
    image learning rate, and the (resumable) optimiser of the synthetic images."""
    data = request.data
    lr = auto_lr(int(request.ipc), lr_img)
    return (request.augment(augment), ClassSampler(data.y_train, data.num_classes), lr,
            ImageOptimizer(request, init, lr, momentum_img, checkpoint_every))


def dm_loss(net: nn.Module, x_real: torch.Tensor, y_real: torch.Tensor, x_syn: torch.Tensor,
            y_syn: torch.Tensor, num_classes: int, per_class: bool = False) -> torch.Tensor:
    """Sum over classes of ||mean embed(real) - mean embed(syn)||^2, as one differentiable
    expression (the reference form; :func:`dm` computes the same loss in chunks)."""
    if per_class:  # batch norm: each class's batch normalised on its own, as the reference
        loss = None
        for k in range(num_classes):
            with torch.no_grad():
                er = embed(net, x_real[y_real == k]).mean(0)
            es = embed(net, x_syn[y_syn == k]).mean(0)
            d = ((er - es) ** 2).sum()
            loss = d if loss is None else loss + d
        return loss
    with torch.no_grad():
        mr = class_means(embed(net, x_real), y_real, num_classes)
    ms = class_means(embed(net, x_syn), y_syn, num_classes)
    return ((mr - ms) ** 2).sum()


def dm_backward(net: nn.Module, x_real: torch.Tensor, y_real: torch.Tensor,
                x_syn: torch.Tensor, y_syn: torch.Tensor, num_classes: int, per_class: bool,
                chunk: int) -> torch.Tensor:
    """One DM iteration on a frozen ``net``: :func:`dm_loss`, backpropagated into ``x_syn``
    (and what it was computed from); returns the loss, detached.  Without batch norm the
    embeddings run in chunks of ``chunk`` images (0: at once), the same loss and gradient."""
    if per_class:
        loss = dm_loss(net, x_real, y_real, x_syn, y_syn, num_classes, per_class=True)
        loss.backward()
        return loss.detach()

    def emb(t):
        return embed(net, t)

    with torch.no_grad():
        mr = class_means(map_chunks(emb, x_real, chunk), y_real, num_classes)
    loss, _ = backward_through(
        emb, x_syn, lambda es: ((mr - class_means(es, y_syn, num_classes)) ** 2).sum(), chunk)
    return loss


def dm(request: CondenseRequest, *, iterations: int = 20000, batch_real: int = 256,
       lr_img: float = 0.0, momentum_img: float = 0.5, init: str = "real",
       augment: str = "dsa", checkpoint_every: int = 100) -> SyntheticSet:
    """Distribution matching; ``lr_img = 0`` means the paper's (1.0, or 10 at IPC >= 100)."""
    data, g = request.data, request.generator
    c = data.num_classes
    aug, sampler, lr, opt = _matching_setup(request, augment, lr_img, init, momentum_img,
                                            checkpoint_every)
    y_syn = opt.labels
    per_class = chunk = None
    for it in range(opt.start, iterations):
        net = frozen_net(request, g)
        if per_class is None:
            per_class = has_batchnorm(net)
            chunk = 0 if per_class else auto_chunk(net, data.x_train[:2])
        idx, y_real = sampler.sample(batch_real, g)
        x_real, x_syn = _augment_pair(aug, data.x_train[idx], y_real, opt.images, y_syn, c, g)
        opt.zero_grad()
        loss = dm_backward(net, x_real, y_real, x_syn, y_syn, c, per_class, chunk)
        opt.update(float(loss), it)
    return opt.result({"iterations": iterations, "lr_img": lr, "augment": augment,
                       "init": init, "per_class_forward": bool(per_class)})


# ---------------------------------------------------------------------------------------------
# DataDAM
SETTINGS = {
    # the paper: p = 4, instance-norm ConvNet, 8000 iterations, image lr 1.0 (10 from IPC 100)
    "paper": {"iterations": 8000, "p": 4, "batch_real": 256, "norm": "as_built"},
    # the released code (DataDistillation/DataDAM, main_DataDAM.py): batch-norm ConvNet,
    # p = 1, 20000 iterations, 64 real images per class
    "code": {"iterations": 20000, "p": 1, "batch_real": 64, "norm": "batchnorm"},
}


def attention_map(a: torch.Tensor, p: float) -> torch.Tensor:
    """Spatial attention: channel sum of |a|^p, flattened and L2-normalised per image."""
    if a.ndim == 4:
        att = a.abs().pow(p).sum(1)
    else:  # (N, D) features of a fully connected stage: element-wise
        att = a.abs().pow(p)
    return F.normalize(att.reshape(att.shape[0], -1), dim=1)


def _attention_outputs(net: nn.Module, x: torch.Tensor, p: float):
    """Per image: the attention maps of every stage but the last, then the embedding."""
    stages, emb = features(net, x)
    return tuple(attention_map(s, p) for s in stages[:-1]) + (emb,)


def _datadam_objective(real_means, y_syn, num_classes, lambda_mmd, loss_scale):
    """loss_of(*per-image syn outputs) for :func:`backward_through`: returns (loss, att, emb)."""
    def loss_of(*outs):
        att_loss = None
        for mr, out in zip(real_means[:-1], outs[:-1]):
            d = ((mr - class_means(out, y_syn, num_classes)) ** 2).sum()
            att_loss = d if att_loss is None else att_loss + d
        if att_loss is None:
            att_loss = outs[-1].sum() * 0.0
        emb_loss = ((real_means[-1] - class_means(outs[-1], y_syn, num_classes)) ** 2).sum()
        loss = loss_scale * (att_loss + lambda_mmd * emb_loss)
        return loss, float(att_loss.detach()), float(emb_loss.detach())
    return loss_of


def datadam_loss(net: nn.Module, x_real, y_real, x_syn, y_syn, num_classes: int, p: float,
                 lambda_mmd: float, loss_scale: float) -> tuple[torch.Tensor, float, float]:
    """(loss, attention part, embedding part) as one differentiable expression."""
    with torch.no_grad():
        real = _attention_outputs(net, x_real, p)
        real_means = [class_means(r, y_real, num_classes) for r in real]
    return _datadam_objective(real_means, y_syn, num_classes, lambda_mmd, loss_scale)(
        *_attention_outputs(net, x_syn, p))


def datadam_backward(net: nn.Module, x_real, y_real, x_syn, y_syn, num_classes: int, p: float,
                     lambda_mmd: float, loss_scale: float, chunk: int):
    """One DataDAM iteration on a frozen ``net``: :func:`datadam_loss`, backpropagated into
    ``x_syn`` (and what it was computed from), in chunks of ``chunk`` images (0: at once);
    returns (loss detached, attention part, embedding part)."""
    def outputs(t):
        return _attention_outputs(net, t, p)

    with torch.no_grad():
        real_means = [class_means(r, y_real, num_classes)
                      for r in map_chunks(outputs, x_real, chunk)]
    loss, (att, emb) = backward_through(
        outputs, x_syn, _datadam_objective(real_means, y_syn, num_classes, lambda_mmd,
                                           loss_scale), chunk)
    return loss, att, emb


def datadam(request: CondenseRequest, *, setting: str = "paper", iterations: int = 0,
            p: float = 0.0, batch_real: int = 0, norm: str = "auto", lr_img: float = 0.0,
            momentum_img: float = 0.5, lambda_mmd: float = 0.01, loss_scale: float = 100.0,
            init: str = "real", augment: str = "dsa",
            checkpoint_every: int = 100) -> SyntheticSet:
    """Attention matching.  ``setting`` fills every option left at 0 / "auto":
    paper -> 8000 iterations, p = 4, 256 real per class, the network as built;
    code  -> 20000 iterations, p = 1, 64 real per class, instance norm swapped for batch norm.
    ``norm``: "auto" (by setting), "as_built" or "batchnorm"."""
    if setting not in SETTINGS:
        raise KddbenchError(f"datadam setting must be one of {sorted(SETTINGS)}, not {setting!r}")
    chosen = SETTINGS[setting]
    iterations = iterations or chosen["iterations"]
    p = p or chosen["p"]
    batch_real = batch_real or chosen["batch_real"]
    norm = chosen["norm"] if norm == "auto" else norm
    if norm not in ("as_built", "batchnorm"):
        raise KddbenchError(f"datadam norm must be auto, as_built or batchnorm, not {norm!r}")
    data, g = request.data, request.generator
    c = data.num_classes
    aug, sampler, lr, opt = _matching_setup(request, augment, lr_img, init, momentum_img,
                                            checkpoint_every)
    y_syn = opt.labels
    chunk = None
    for it in range(opt.start, iterations):
        net = frozen_net(request, g, to_batchnorm=norm == "batchnorm")
        idx, y_real = sampler.sample(batch_real, g)
        x_real, x_syn = _augment_pair(aug, data.x_train[idx], y_real, opt.images, y_syn, c, g)
        if chunk is None:  # batch norm in training mode mixes the batch: no chunks
            chunk = 0 if has_batchnorm(net) else auto_chunk(net, data.x_train[:2])

        opt.zero_grad()
        loss, att, emb = datadam_backward(net, x_real, y_real, x_syn, y_syn, c, p, lambda_mmd,
                                          loss_scale, chunk)
        opt.update(float(loss), it, attention=att, embedding=emb)
    return opt.result({"setting": setting, "iterations": iterations, "p": p,
                       "batch_real": batch_real, "norm": norm, "lr_img": lr, "init": init,
                       "augment": augment})
