"""Performance matching by kernel ridge regression: ``krr``, in the style of FRePo (Zhou,
Nezhadarya & Ba 2022, "Dataset Distillation using Neural Feature Regression").

Every iteration one network of a small pool gives features phi (the input of its linear head,
:func:`synthesis.embed`) of the synthetic images S and of a batch of real images T; kernel ridge
regression on the synthetic set with the kernel of those features predicts the real batch's
labels:

    K_SS = phi(S) phi(S)^T,  K_TS = phi(T) phi(S)^T,  lambda = reg * trace(K_SS) / |S|
    prediction = K_TS (K_SS + lambda I)^-1 Y_S,   loss = mean over T of ||prediction - Y_T||^2

and the loss's gradient updates the synthetic images (and, with ``learn_labels``, their labels)
by Adam.  The real side runs under ``torch.no_grad``; the network's parameters get no gradient
from this loss.  Then the same network takes one training step on the synthetic set
(cross-entropy, Adam ``lr_net``); a network that has taken ``max_online_steps`` steps is
replaced by a fresh random one (the pool starts with staggered ages, so the resets are spread
out and the pool always holds networks at different stages of training).

Labels: hard one-hot targets by default (Y_S one-hot of the set's classes, Y_T one-hot of the
real labels).  ``learn_labels = true`` learns one logit vector per synthetic image; its targets
are their softmax (started at 0.9 on the image's class), and the set carries those soft labels,
which the shared protocol trains on with soft cross-entropy.

Where it differs from KIP (Nguyen, Chen & Lee 2021, "Dataset Meta-Learning from Kernel
Ridge-Regression"): KIP's kernel is the neural tangent (or NNGP) kernel of an infinitely wide
network, computed in closed form and fixed during distillation; here the kernel is the
conjugate kernel of the last hidden layer of finite networks of the distillation architecture,
and it changes as the pool trains.  See docs/condense.md for where it differs from FRePo.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.errors import KddbenchError
from kddbench.protocol import soft_cross_entropy

from .learned_set import LearnedSet, _to_cpu
from .synthesis import auto_chunk, draw_seed, embed, map_chunks

LABEL_INIT = 0.9  # softmax mass on the own class of a learned label at the start


# ---------------------------------------------------------------------------------------------
# the regression
def ridge_weights(k_ss: torch.Tensor, y_s: torch.Tensor, reg: float) -> torch.Tensor:
    """alpha = (K_SS + lambda I)^-1 Y_S with lambda = reg * trace(K_SS) / n."""
    n = k_ss.shape[0]
    lam = reg * torch.diagonal(k_ss).sum() / n
    eye = torch.eye(n, dtype=k_ss.dtype, device=k_ss.device)
    return torch.linalg.solve(k_ss + lam * eye, y_s)


def krr_predict(phi_t: torch.Tensor, phi_s: torch.Tensor, y_s: torch.Tensor,
                reg: float) -> torch.Tensor:
    """Kernel ridge regression of targets ``y_s`` on features ``phi_s``, evaluated at
    ``phi_t`` (linear kernel of the features), in float64 for the solve."""
    s = phi_s.double()
    alpha = ridge_weights(s @ s.T, y_s.double(), reg)
    return ((phi_t.double() @ s.T) @ alpha).to(phi_s.dtype)


def krr_loss(phi_t: torch.Tensor, y_t: torch.Tensor, phi_s: torch.Tensor, y_s: torch.Tensor,
             reg: float) -> torch.Tensor:
    return ((krr_predict(phi_t, phi_s, y_s, reg) - y_t) ** 2).sum(1).mean()


def initial_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits whose softmax puts LABEL_INIT on each image's class, the rest spread evenly."""
    rest = (1.0 - LABEL_INIT) / max(1, num_classes - 1)
    top = math.log(LABEL_INIT / rest) if num_classes > 1 else 0.0
    return F.one_hot(labels, num_classes).float() * top


# ---------------------------------------------------------------------------------------------
# the pool of networks trained online
class Pool:
    """``size`` networks of the distillation architecture, each with its Adam optimiser and
    its age (training steps taken on the synthetic set); one at ``max_steps`` is replaced."""

    def __init__(self, request: CondenseRequest, size: int, max_steps: int, lr: float):
        self.request, self.max_steps, self.lr = request, int(max_steps), float(lr)
        self.nets, self.opts = [], []
        for _ in range(size):
            self._append()
        # staggered ages: the resets are spread over the pool
        self.ages = [(i * self.max_steps) // max(1, size) for i in range(size)]

    def _new(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        net = self.request.build_net(draw_seed(self.request.generator))
        return net, torch.optim.Adam(net.parameters(), lr=self.lr)

    def _append(self) -> None:
        net, opt = self._new()
        self.nets.append(net)
        self.opts.append(opt)

    def pick(self) -> int:
        g = self.request.generator
        return int(torch.randint(0, len(self.nets), (1,), generator=g, device=g.device))

    def train_step(self, i: int, x: torch.Tensor, y: torch.Tensor) -> float:
        if self.ages[i] >= self.max_steps:
            self.nets[i], self.opts[i] = self._new()
            self.ages[i] = 0
        net, opt = self.nets[i], self.opts[i]
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = soft_cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        self.ages[i] += 1
        return float(loss.detach())

    def state(self) -> dict:
        return {"nets": [_to_cpu(dict(n.state_dict())) for n in self.nets],
                "opts": [_to_cpu(o.state_dict()) for o in self.opts],
                "ages": torch.tensor(self.ages, dtype=torch.int64)}

    def load(self, state: dict) -> None:
        for net, opt, sd, osd in zip(self.nets, self.opts, state["nets"], state["opts"]):
            net.load_state_dict(sd)
            opt.load_state_dict(osd)
        self.ages = [int(a) for a in state["ages"].tolist()]


# ---------------------------------------------------------------------------------------------
def krr(request: CondenseRequest, *, iterations: int = 5000, batch_real: int = 1024,
        lr_img: float = 0.001, lr_label: float = 0.001, learn_labels: bool = False,
        reg: float = 1e-6, pool_size: int = 10, max_online_steps: int = 100,
        lr_net: float = 0.001, init: str = "real",
        checkpoint_every: int = 100) -> SyntheticSet:
    """Kernel-ridge-regression distillation with a pool of online-trained feature networks."""
    if pool_size < 1 or max_online_steps < 1 or reg < 0:
        raise KddbenchError("krr needs pool_size >= 1, max_online_steps >= 1 and reg >= 0")
    data, g = request.data, request.generator
    c = data.num_classes
    n_train = int(data.x_train.shape[0])
    extra, extra_lr = {}, {}
    if learn_labels:
        labels0 = torch.arange(c, device=data.x_train.device).repeat_interleave(
            int(request.ipc))
        extra, extra_lr = {"label_logits": initial_logits(labels0, c)}, {"label_logits": lr_label}
    holder: dict = {}
    opt = LearnedSet(request, init, lr_img, extra, extra_lr, checkpoint_every=checkpoint_every,
                     state_fn=lambda: holder["pool"].state())
    pool = holder["pool"] = Pool(request, pool_size, max_online_steps, lr_net)
    saved = opt.restore()
    if saved is not None:
        pool.load(saved)
    y_hard = opt.labels
    learnables = [opt.images] + list(opt.extra.values())
    batch = min(int(batch_real), n_train)
    chunk = None
    for it in range(opt.start, iterations):
        i = pool.pick()
        net = pool.nets[i]
        if chunk is None:
            chunk = auto_chunk(net, data.x_train[:2])
        idx = torch.randperm(n_train, generator=g, device=g.device)[:batch].to(
            data.x_train.device)
        y_t = F.one_hot(data.y_train[idx], c).float()
        net.eval()
        with torch.no_grad():
            phi_t = map_chunks(lambda t, net=net: embed(net, t), data.x_train[idx], chunk)
        y_s = (F.softmax(opt.extra["label_logits"], 1) if learn_labels
               else F.one_hot(y_hard, c).float())
        phi_s = embed(net, opt.images)
        loss = krr_loss(phi_t, y_t, phi_s, y_s, reg)
        grads = torch.autograd.grad(loss, learnables)
        opt.zero_grad()
        for p, gr in zip(learnables, grads):
            p.grad = gr
        opt.update(float(loss.detach()), it)
        target = F.softmax(opt.extra["label_logits"].detach(), 1) if learn_labels else y_hard
        pool.train_step(i, opt.images.detach(), target)
    labels = (F.softmax(opt.extra["label_logits"].detach(), 1) if learn_labels else None)
    info = {"iterations": iterations, "batch_real": batch, "reg": reg, "pool_size": pool_size,
            "max_online_steps": max_online_steps, "learn_labels": bool(learn_labels),
            "init": init}
    return opt.result(labels=labels, info=info)
