"""Performance matching by meta-learning: ``ddwang`` (Wang, Zhu, Torralba & Efros 2018,
"Dataset Distillation", Algorithm 1).

The synthetic set is ``ipc`` images per class plus one learned step size per gradient step.
Training a network on it means: start from initial weights theta_0 and take ``steps x epochs``
plain gradient-descent steps, step i on its group of images with its own step size
``softplus(raw_i)``:

    theta_{i+1} = theta_i - softplus(raw_i) * grad_theta CE(f(x_{group(i)}; theta_i), y)

The images and the raw step sizes are learned by Adam so that the network after the last step
does well on a batch of real images (cross-entropy on ``batch_real`` images); the gradient goes
back through the whole unrolled descent (second-order, ``torch.func.functional_call`` on the
distillation architecture with the weights as explicit tensors).

* ``init_weights = "fixed"``: one initial network, drawn once from the cell's seed, trained
  from every outer iteration; its weights are stored with the set (``extras``).
* ``init_weights = "random"``: fresh initial weights every outer iteration, so the set must
  work for any draw of the initialisation distribution.

How ``ipc`` maps: the set holds ``ipc`` images per class, split into ``steps`` groups of
``ipc / steps`` images per class (``steps = 0``: the largest divisor of ``ipc`` not above 10);
each epoch takes the ``steps`` groups in order.  So IPC 10 is the paper's default (10 steps of
one image per class, 3 epochs: 100 images, 30 learned step sizes) and IPC 1 its 10-image
setting (one step of one image per class, 3 epochs).

Its own evaluation (what the paper reports) runs at the end: from the fixed initial weights,
or from ``eval_draws`` fresh draws (mean and std), the learned steps are applied and the real
test set is measured before and after; it is reported in ``info`` as ``ddwang_accuracy``
(``ddwang_accuracy_std``) and ``ddwang_init_accuracy``, beside the shared protocol's accuracy
of the ``condense`` task.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.errors import KddbenchError
from kddbench.protocol import make_generator

from .learned_set import LearnedSet
from .synthesis import _spans, auto_chunk, draw_seed

INIT_WEIGHTS = ("fixed", "random")
WEIGHT_INITS = ("xavier", "as_built")
MAX_AUTO_STEPS = 10


# ---------------------------------------------------------------------------------------------
# the layout of the set
def auto_steps(ipc: int, steps: int) -> int:
    """``steps`` if it divides ``ipc``; 0 -> the largest divisor of ``ipc`` up to 10."""
    if steps > 0:
        if ipc % steps:
            raise KddbenchError(f"ddwang steps ({steps}) must divide ipc ({ipc}): each step "
                                "takes ipc / steps images of every class")
        return int(steps)
    return max(d for d in range(1, min(ipc, MAX_AUTO_STEPS) + 1) if ipc % d == 0)


def step_groups(num_classes: int, ipc: int, steps: int, device=None) -> list[torch.Tensor]:
    """Indices of each step's images in a class-ordered set (class k holds rows
    ``k * ipc .. k * ipc + ipc - 1``): step s takes images ``s * per .. (s + 1) * per - 1`` of
    every class, ``per = ipc / steps``."""
    per = ipc // steps
    base = torch.arange(num_classes, device=device).unsqueeze(1) * ipc
    return [(base + s * per + torch.arange(per, device=device)).reshape(-1)
            for s in range(steps)]


def raw_step_size(lr: float) -> float:
    """The softplus pre-image of a step size (softplus(raw) = lr)."""
    return float(math.log(math.expm1(lr)))


# ---------------------------------------------------------------------------------------------
# initial weights
def xavier_weights(net: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The weights of ``net`` with every convolution and linear weight drawn from a Xavier
    normal (gain 1) and their biases zero (the initialisation of the authors' released code);
    other parameters (norm layers) as built."""
    out = {n: p.detach().clone() for n, p in net.named_parameters()}
    for mod_name, m in net.named_modules():
        if not isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            continue
        prefix = f"{mod_name}." if mod_name else ""
        w = m.weight
        receptive = w[0][0].numel() if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        std = math.sqrt(2.0 / (fan_in + fan_out))
        out[prefix + "weight"] = std * torch.randn(
            w.shape, generator=generator, device=generator.device).to(w.device)
        if m.bias is not None:
            out[prefix + "bias"] = torch.zeros_like(m.bias)
    return out


class InitialWeights:
    """Draws initial weights of the distillation architecture (``weight_init``: "xavier" or
    "as_built" = the architecture's own initialisation, seeded)."""

    def __init__(self, request: CondenseRequest, template: nn.Module, weight_init: str):
        if weight_init not in WEIGHT_INITS:
            raise KddbenchError(f"weight_init must be one of {WEIGHT_INITS}, not "
                                f"{weight_init!r}")
        self.request, self.template, self.weight_init = request, template, weight_init

    def draw(self, seed: int) -> dict[str, torch.Tensor]:
        if self.weight_init == "as_built":
            return {n: p.detach().clone()
                    for n, p in self.request.build_net(seed).named_parameters()}
        g = make_generator(seed, self.request.generator.device)
        return xavier_weights(self.template, g)


# ---------------------------------------------------------------------------------------------
# the unrolled descent
Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (images, labels, step size)


def logits(net: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return functional_call(net, weights, (x,))


def unroll(net: nn.Module, weights: dict[str, torch.Tensor], steps: Iterable[Step],
           create_graph: bool) -> dict[str, torch.Tensor]:
    """Plain gradient descent from ``weights`` (which must require grad) over ``steps``; with
    ``create_graph`` the result stays differentiable w.r.t. the images and step sizes."""
    net.train()
    names = list(weights)
    w = dict(weights)
    for x, y, lr in steps:
        loss = F.cross_entropy(logits(net, w, x), y)
        grads = torch.autograd.grad(loss, [w[n] for n in names], create_graph=create_graph)
        w = {n: w[n] - lr * g for n, g in zip(names, grads)}
    return w


def schedule(images: torch.Tensor, labels: torch.Tensor, groups: list[torch.Tensor],
             step_sizes: torch.Tensor, epochs: int) -> list[Step]:
    """The ``epochs x len(groups)`` steps: the groups in order, once per epoch."""
    s = len(groups)
    return [(images[groups[i % s]], labels[groups[i % s]], step_sizes[i])
            for i in range(epochs * s)]


def backward_real_loss(net: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, chunk: int = 0) -> float:
    """Backpropagate the mean cross-entropy of the weights after the descent on the real
    batch (x, y) into whatever the weights were computed from, and return it.

    The real batch's gradient w.r.t. the final weights is first-order: it is taken on detached
    copies, chunk by chunk (``chunk`` images at a time, 0 = at once; exact, the loss is a sum
    over images), and then carried back through the unrolled descent in one backward pass."""
    names = list(weights)
    leaf = {n: weights[n].detach().requires_grad_(True) for n in names}
    net.eval()
    n = int(x.shape[0])
    total, grads = 0.0, None
    for i, j in _spans(n, chunk):
        loss = F.cross_entropy(logits(net, leaf, x[i:j]), y[i:j], reduction="sum") / n
        g = torch.autograd.grad(loss, [leaf[k] for k in names])
        grads = list(g) if grads is None else [a + b for a, b in zip(grads, g)]
        total += float(loss.detach())
    torch.autograd.backward([weights[k] for k in names], grads)
    return total


@torch.no_grad()
def accuracy(net: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor,
             y: torch.Tensor, batch: int = 1024) -> float:
    net.eval()
    correct = 0
    for i in range(0, int(x.shape[0]), batch):
        correct += int((logits(net, weights, x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / max(1, int(x.shape[0]))


def evaluate_steps(net: nn.Module, weights: dict[str, torch.Tensor], steps: list[Step],
                   x_test: torch.Tensor, y_test: torch.Tensor) -> tuple[float, float]:
    """(test accuracy of the initial weights, after the learned steps) -- the paper's
    evaluation."""
    w0 = {n: t.detach().clone().requires_grad_(True) for n, t in weights.items()}
    before = accuracy(net, w0, x_test, y_test)
    detached = [(x.detach(), y, lr.detach()) for x, y, lr in steps]
    with torch.enable_grad():
        w = unroll(net, w0, detached, create_graph=False)
    return before, accuracy(net, {n: t.detach() for n, t in w.items()}, x_test, y_test)


# ---------------------------------------------------------------------------------------------
def ddwang(request: CondenseRequest, *, iterations: int = 0, steps: int = 0, epochs: int = 3,
           batch_real: int = 1024, lr_img: float = 0.01, lr_step_init: float = 0.02,
           decay_every: int = 0, decay_factor: float = 0.5, init_weights: str = "random",
           weight_init: str = "xavier", init: str = "noise", eval_draws: int = 10,
           checkpoint_every: int = 100) -> SyntheticSet:
    """Wang et al. 2018, Algorithm 1.  ``iterations = 0``: 400 passes over the real training
    set in batches of ``batch_real`` (the released code's 400 epochs); ``decay_every = 0``:
    Adam's learning rate x ``decay_factor`` every 40 such passes."""
    if init_weights not in INIT_WEIGHTS:
        raise KddbenchError(f"init_weights must be one of {INIT_WEIGHTS}, not {init_weights!r}")
    if epochs < 1 or lr_step_init <= 0 or batch_real < 1:
        raise KddbenchError("ddwang needs epochs >= 1, lr_step_init > 0 and batch_real >= 1")
    data, g = request.data, request.generator
    ipc, c = int(request.ipc), data.num_classes
    n_steps = auto_steps(ipc, int(steps))
    n_train = int(data.x_train.shape[0])
    passes = math.ceil(n_train / batch_real)
    iterations = int(iterations) or 400 * passes
    decay_every = int(decay_every) or 40 * passes
    total = n_steps * int(epochs)
    raw = torch.full((total,), raw_step_size(lr_step_init), device=data.x_train.device)
    opt = LearnedSet(request, init, lr_img, {"raw_step_sizes": raw}, betas=(0.5, 0.999),
                     checkpoint_every=checkpoint_every, decay_every=decay_every,
                     decay_factor=decay_factor)
    groups = step_groups(c, ipc, n_steps, opt.labels.device)
    template = request.build_net(draw_seed(g))
    template.requires_grad_(False)
    initial = InitialWeights(request, template, weight_init)
    init_seed = draw_seed(g)
    fixed = initial.draw(init_seed) if init_weights == "fixed" else None
    opt.restore()
    raw = opt.extra["raw_step_sizes"]
    batch = min(int(batch_real), n_train)
    chunk = auto_chunk(template, data.x_train[:2])
    for it in range(opt.start, iterations):
        idx = torch.randperm(n_train, generator=g, device=g.device)[:batch].to(
            data.x_train.device)
        x_real, y_real = data.x_train[idx], data.y_train[idx]
        w0 = fixed if fixed is not None else initial.draw(draw_seed(g))
        w0 = {n: t.detach().requires_grad_(True) for n, t in w0.items()}
        plan = schedule(opt.images, opt.labels, groups, F.softplus(raw), int(epochs))
        w = unroll(template, w0, plan, create_graph=True)
        opt.zero_grad()
        loss = backward_real_loss(template, w, x_real, y_real, chunk)
        opt.update(loss, it)

    # the paper's own evaluation
    step_sizes = F.softplus(raw.detach())
    plan = schedule(opt.images.detach(), opt.labels, groups, step_sizes, int(epochs))
    if fixed is not None:
        draws = [fixed]
    else:
        eval_gen = make_generator(init_seed, g.device)
        draws = [initial.draw(draw_seed(eval_gen)) for _ in range(max(1, int(eval_draws)))]
    scores = [evaluate_steps(template, w, plan, data.x_test, data.y_test) for w in draws]
    before = torch.tensor([s[0] for s in scores], dtype=torch.float64)
    after = torch.tensor([s[1] for s in scores], dtype=torch.float64)
    info = {"iterations": iterations, "steps": n_steps, "epochs": int(epochs),
            "images_per_class_per_step": ipc // n_steps, "init_weights": init_weights,
            "weight_init": weight_init, "init": init, "decay_every": decay_every,
            "ddwang_accuracy": float(after.mean()), "ddwang_init_accuracy": float(before.mean()),
            "ddwang_eval_draws": len(draws),
            "step_size_min": float(step_sizes.min()), "step_size_max": float(step_sizes.max()),
            "step_size_mean": float(step_sizes.mean())}
    if len(draws) > 1:
        info["ddwang_accuracy_std"] = float(after.std())
    extras = {"step_sizes": step_sizes}
    if fixed is not None:
        info["init_seed"] = init_seed
        extras.update({f"init_weights.{n}": t for n, t in fixed.items()})
    return opt.result(info=info, extras=extras)
