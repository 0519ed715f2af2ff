"""Pieces shared by the synthesising condensers (dc, dsa, dm, datadam).

* :class:`ClassSampler` draws ``n`` real training images of every class in one batched op.
* :func:`initial_set` gives the starting images (``init = "real" | "noise"``) and hard labels.
* :class:`ImageOptimizer` owns the synthetic images, their SGD optimiser, the loss curve and
  the checkpoint: it resumes from ``request.checkpoint`` and saves every ``checkpoint_every``
  iterations (images, momentum buffer, iteration, generator state, curve: tensors only).
* small network helpers: a seed drawn from the generator, batch-norm detection, embeddings,
  class means of a batch.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kddbench.condense import CondenseRequest, SyntheticSet, pack_curve, unpack_curve
from kddbench.errors import KddbenchError

CHECKPOINT_FORMAT = 1
INITS = ("real", "noise")


# ---------------------------------------------------------------------------------------------
# real data
class ClassSampler:
    """Random real images by class without a Python loop over classes.

    The training indices are laid out as a (classes, largest class) matrix padded with -1;
    ``sample(n)`` ranks uniform keys in each row and keeps the ``n`` smallest valid ones, so
    every class gets ``min(n, its size)`` distinct images.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int):
        labels = labels.reshape(-1)
        self.num_classes = num_classes
        counts = torch.bincount(labels, minlength=num_classes)
        self.counts = counts
        order = torch.argsort(labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        width = int(counts.max()) if counts.numel() else 0
        col = torch.arange(width, device=labels.device).unsqueeze(0)
        valid = col < counts.unsqueeze(1)
        pos = (starts.unsqueeze(1) + col).clamp(max=max(labels.numel() - 1, 0))
        self.table = torch.where(valid, order[pos], torch.full_like(pos, -1))
        self.valid = valid

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, their classes), grouped by class in class order."""
        c, width = self.table.shape
        k = min(int(n), width)
        keys = torch.rand(c, width, generator=generator, device=generator.device)
        keys = keys.to(self.table.device).masked_fill(~self.valid, 2.0)
        pos = keys.topk(k, dim=1, largest=False).indices
        idx = self.table.gather(1, pos)
        cls = torch.arange(c, device=idx.device).unsqueeze(1).expand(c, k)
        keep = idx >= 0
        return idx[keep], cls[keep]


def initial_set(request: CondenseRequest, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` images of every class, in class order: real ones drawn at random (with
    replacement only for a class smaller than ``ipc``) or standard normal noise (in the
    normalised space, as the DC reference's noise initialisation)."""
    if init not in INITS:
        raise KddbenchError(f"init must be one of {INITS}, not {init!r}")
    data, ipc, g = request.data, int(request.ipc), request.generator
    c = data.num_classes
    labels = torch.arange(c, device=data.x_train.device).repeat_interleave(ipc)
    shape = (c * ipc, data.channels, *data.image_size)
    if init == "noise":
        images = torch.randn(shape, generator=g, device=g.device).to(data.x_train.device)
        return images, labels
    picks = []
    for idx in data.indices_by_class():
        if idx.numel() == 0:
            raise KddbenchError("init = 'real' needs at least one image of every class")
        order = torch.randperm(idx.numel(), generator=g, device=g.device).to(idx.device)
        chosen = idx[order[:ipc]]
        if chosen.numel() < ipc:  # a tiny class: repeat it
            chosen = chosen.repeat((ipc + chosen.numel() - 1) // chosen.numel())[:ipc]
        picks.append(chosen)
    return data.x_train[torch.cat(picks)].clone(), labels


# ---------------------------------------------------------------------------------------------
# networks
def draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device))


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def swap_instancenorm_for_batchnorm(net: nn.Module) -> int:
    """Replace every instance norm (GroupNorm with one group per channel) by BatchNorm2d;
    returns how many were replaced (both start at weight 1, bias 0)."""
    swapped = 0
    for name, child in list(net.named_children()):
        if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
            bn = nn.BatchNorm2d(child.num_channels, affine=child.affine)
            setattr(net, name, bn.to(next(child.parameters(), torch.empty(0)).device))
            swapped += 1
        else:
            swapped += swap_instancenorm_for_batchnorm(child)
    return swapped


def features(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(stage outputs in order, the embedding) from ``forward_features``."""
    _, feats = net.forward_features(x)
    stages = [v for k, v in feats.items() if k != "embedding"]
    emb = feats.get("embedding")
    if emb is None:
        emb = torch.flatten(stages[-1], 1)
    return stages, emb


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return features(net, x)[1]


# ---------------------------------------------------------------------------------------------
# chunked passes: on CPU, activations above a few MB come from fresh mmap'd pages on every
# allocation, and a ConvNet-3 pass over 256 images runs about twice as slow as the same pass
# in chunks of ~24 images (measured on the 2-core CPU machine; see benchmarks/).  Per-image
# independent computations (no batch norm in training mode) are therefore run in chunks whose
# largest activation stays under CHUNK_BYTES.  On a GPU nothing is chunked.
CHUNK_BYTES = 12 << 20


def auto_chunk(net: nn.Module, sample: torch.Tensor, budget: int = CHUNK_BYTES) -> int:
    """Images per chunk for ``net`` on inputs like ``sample`` (0: do not chunk)."""
    if sample.device.type != "cpu" or sample.shape[0] == 0:
        return 0
    sizes: list[int] = []

    def hook(_m, _i, out):
        if torch.is_tensor(out):
            sizes.append(out.numel() * out.element_size())

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(sample[:2])
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    per_image = max(sizes + [sample[:1].numel() * sample.element_size()]) / min(
        2, sample.shape[0])
    return max(1, int(budget // max(per_image, 1)))


def _spans(n: int, chunk: int):
    step = chunk if chunk and chunk > 0 else max(n, 1)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def map_chunks(fn, x: torch.Tensor, chunk: int):
    """``fn(x)`` computed chunk by chunk and concatenated (``fn`` returns a tensor or a tuple
    of per-image tensors).  Call it under ``torch.no_grad`` for the real side."""
    outs = [fn(x[i:j]) for i, j in _spans(int(x.shape[0]), chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


def vjp_chunks(fn, x: torch.Tensor, grads, chunk: int) -> torch.Tensor:
    """d<fn(x), grads>/dx chunk by chunk, for a per-image ``fn`` (x is detached)."""
    out = torch.empty_like(x)
    single = torch.is_tensor(grads)
    for i, j in _spans(int(x.shape[0]), chunk):
        leaf = x[i:j].detach().requires_grad_(True)
        with torch.enable_grad():
            y = fn(leaf)
            ys = (y,) if single else tuple(y)
            gs = (grads[i:j],) if single else tuple(g[i:j] for g in grads)
            (out[i:j],) = torch.autograd.grad(ys, (leaf,), gs)
    return out


def mean_loss_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor, params, chunk: int,
                    create_graph: bool = False) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy over (x, y) w.r.t. ``params``, summed chunk by
    chunk (exact for networks whose samples do not interact)."""
    n = int(x.shape[0])
    total = None
    for i, j in _spans(n, chunk):
        loss = F.cross_entropy(net(x[i:j]), y[i:j], reduction="sum") / n
        g = torch.autograd.grad(loss, params, create_graph=create_graph)
        total = list(g) if total is None else [a + b for a, b in zip(total, g)]
    return total


def backward_mean_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int) -> float:
    """Accumulate the gradients of the mean cross-entropy into ``.grad``, chunk by chunk."""
    n = int(x.shape[0])
    total = 0.0
    for i, j in _spans(n, chunk):
        loss = F.cross_entropy(net(x[i:j]), y[i:j], reduction="sum") / n
        loss.backward()
        total += float(loss.detach())
    return total


def backward_through(fn, x: torch.Tensor, loss_of, chunk: int):
    """Backpropagate ``loss_of(*fn(x))`` into ``x`` (and whatever ``x`` was computed from)
    and return the loss value (detached) and the extra values ``loss_of`` returned.

    ``fn`` maps a batch to one per-image tensor or a tuple of them; ``loss_of`` returns a
    scalar tensor, or a tuple (scalar, extras...).  With ``chunk`` > 0, ``fn`` runs in chunks:
    once without a graph to get the loss and its gradient w.r.t. ``fn``'s outputs, then chunk
    by chunk with a graph to carry that gradient back to ``x`` (one extra forward pass).
    """
    def split(result):
        return (result[0], result[1:]) if isinstance(result, tuple) else (result, ())

    if not chunk:
        out = fn(x)
        loss, extras = split(loss_of(*(out if isinstance(out, tuple) else (out,))))
        loss.backward()
        return loss.detach(), extras
    xd = x.detach()
    with torch.no_grad():
        out = map_chunks(fn, xd, chunk)
    outs = out if isinstance(out, tuple) else (out,)
    leaves = tuple(o.detach().requires_grad_(True) for o in outs)
    with torch.enable_grad():
        loss, extras = split(loss_of(*leaves))
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = tuple(torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads))
    gx = vjp_chunks(fn, xd, grads if isinstance(out, tuple) else grads[0], chunk)
    if x.requires_grad:
        x.backward(gx)
    return loss.detach(), extras


def class_means(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(classes, D) mean of ``values`` (N, D) per class (zero for an absent class)."""
    flat = values.reshape(values.shape[0], -1)
    sums = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype, device=flat.device)
    sums = sums.index_add(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(flat.dtype)
    return sums / counts.unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# the images being optimised, their optimiser, curve and checkpoint
class SetUnderOptimization:
    """What every optimiser of a synthetic set shares (:class:`ImageOptimizer` here,
    :class:`~kddbench_plugins.condensation.learned_set.LearnedSet` for the performance-matching
    methods): the images started by :func:`initial_set`, the loss curve, the request's
    checkpoint, the divergence check and the checkpoint cadence of :meth:`record`.  A subclass
    owns ``self.opt`` and says what its checkpoint holds (``save``)."""

    def __init__(self, request: CondenseRequest, init: str, checkpoint_every: int = 0):
        self.request = request
        self.checkpoint_every = int(checkpoint_every)
        images, labels = initial_set(request, init)
        self.init_images = images.detach().clone()
        self.labels = labels
        self.images = images.detach().clone().requires_grad_(True)
        self.start = 0
        self.curve: list[dict[str, float]] = []
        self.resumed_from: int | None = None

    def _checkpoint(self):
        ck = self.request.checkpoint
        return ck if ck is not None and hasattr(ck, "load") else None

    def _resumed(self, state: dict[str, Any]) -> None:
        """Take the iteration, the generator and the curve from a loaded checkpoint."""
        self.request.generator.set_state(state["generator"])
        self.start = int(state["iteration"])
        self.resumed_from = self.start
        self.curve = unpack_curve(state.get("curve_keys", []), state["curve"])

    def _saved(self, next_iteration: int) -> dict[str, Any]:
        """What every checkpoint holds; a subclass adds its optimiser's state."""
        keys, curve = pack_curve(self.curve)
        return {"format": CHECKPOINT_FORMAT, "iteration": int(next_iteration),
                "images": self.images.detach().cpu().clone(),
                "init_images": self.init_images.detach().cpu().clone(),
                "generator": self.request.generator.get_state(),
                "curve_keys": keys, "curve": curve}

    def save(self, next_iteration: int) -> None:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def record(self, loss: float, iteration: int, **scalars: float) -> float:
        if loss != loss or loss in (float("inf"), float("-inf")):
            raise KddbenchError(f"condensation diverged at iteration {iteration} (loss {loss}); "
                                "lower lr_img")
        row = {"step": float(iteration), "loss": loss, **{k: float(v) for k, v in
                                                          scalars.items()}}
        self.curve.append(row)
        self.request.log(iteration, loss=loss, **scalars)
        if self.checkpoint_every > 0 and (iteration + 1) % self.checkpoint_every == 0:
            self.save(iteration + 1)
        return loss

    def _finished(self, info: dict[str, Any] | None) -> dict[str, Any]:
        """Clear the checkpoint (the set is done); the info, with where a resumed run began."""
        ck = self._checkpoint()
        if ck is not None and hasattr(ck, "clear"):
            ck.clear()
        info = dict(info or {})
        if self.resumed_from is not None:
            info["resumed_from_iteration"] = self.resumed_from
        return info


class ImageOptimizer(SetUnderOptimization):
    """Synthetic images under SGD with momentum, resumable from ``request.checkpoint``.

    Usage::

        opt = ImageOptimizer(request, init, lr, momentum, checkpoint_every)
        for it in range(opt.start, iterations):
            loss = ...(opt.images)...
            opt.step(loss, it)            # backward, SGD step, curve, request.log, checkpoint
        return opt.result(info)           # clears the checkpoint
    """

    def __init__(self, request: CondenseRequest, init: str, lr: float, momentum: float,
                 checkpoint_every: int = 0, extra: dict[str, Any] | None = None):
        super().__init__(request, init, checkpoint_every)
        self.opt = torch.optim.SGD([self.images], lr=lr, momentum=momentum)
        self._restore()

    # checkpoint ----------------------------------------------------------------
    def _restore(self) -> None:
        ck = self._checkpoint()
        state = ck.load() if ck is not None else None
        if not state or int(state.get("format", -1)) != CHECKPOINT_FORMAT:
            return
        if tuple(state["images"].shape) != tuple(self.images.shape):
            return  # not ours (cannot happen with a proper key); start afresh
        dev = self.images.device
        with torch.no_grad():
            self.images.copy_(state["images"].to(dev))
        self.init_images = state["init_images"].to(dev)
        if bool(state["has_momentum"]):
            self.opt.state[self.images]["momentum_buffer"] = state["momentum"].to(dev).clone()
        self._resumed(state)

    def save(self, next_iteration: int) -> None:
        ck = self._checkpoint()
        if ck is None:
            return
        buf = self.opt.state.get(self.images, {}).get("momentum_buffer")
        ck.save({**self._saved(next_iteration), "has_momentum": buf is not None,
                 "momentum": (buf if buf is not None else torch.zeros(0)).detach().cpu().clone()})

    # the step ------------------------------------------------------------------
    def step(self, loss: torch.Tensor, iteration: int, **scalars: float) -> float:
        """Backward ``loss`` to the images, take an SGD step, record and checkpoint."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return self.record(float(loss.detach()), iteration, **scalars)

    def update(self, loss: float, iteration: int, **scalars: float) -> float:
        """An SGD step with the gradients already in ``images.grad``; record and checkpoint."""
        self.opt.step()
        return self.record(float(loss), iteration, **scalars)

    def result(self, info: dict[str, Any] | None = None) -> SyntheticSet:
        info = self._finished(info)
        return SyntheticSet(self.images.detach().clone(), self.labels.clone(),
                            init_images=self.init_images, curve=list(self.curve), info=info)
