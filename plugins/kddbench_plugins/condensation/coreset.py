"""Coreset selection baselines of the DC paper: ``herding``, ``kcenter`` and ``forgetting``.

Herding and k-center work in the embedding space (the head's input) of the distillation
network ``request.build_net(seed)``.  By default that network is randomly initialised
(``train_epochs = 0``); ``train_epochs > 0`` first trains it on the real training set with the
shared protocol's optimiser (SGD 0.01, momentum 0.9), which is the other common choice.

Forgetting (Toneva et al. 2019) trains the network on the real training set for ``epochs``
epochs and counts, for every example, the times it goes from classified correctly to
incorrectly when it is visited in a minibatch.  Examples never classified correctly count as
forgotten infinitely often (Toneva et al.'s convention).  The DC paper's baseline keeps, per
class, the examples forgotten most often (``keep = "most"``); ``keep = "least"`` keeps the
unforgettable ones instead.  Ties are broken at random (from the request's generator).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.errors import KddbenchError
from kddbench.protocol import Recipe, train

from .synthesis import auto_chunk, draw_seed, embed, has_batchnorm


# ---------------------------------------------------------------------------------------------
# selection rules on plain tensors (unit-tested on constructed examples)
def herding_select(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy mean matching: pick ``k`` rows of ``feats`` (n, d), each time the one that brings
    the mean of the picked rows closest to the mean of all rows.  Returns their indices in
    the order picked (never the same row twice)."""
    n = feats.shape[0]
    k = min(int(k), n)
    feats = feats.double()
    mu = feats.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=feats.device)
    for t in range(k):
        cand = (running.unsqueeze(0) + feats) / (t + 1)
        dist = ((cand - mu) ** 2).sum(1).masked_fill(taken, math.inf)
        i = int(torch.argmin(dist))
        chosen.append(i)
        taken[i] = True
        running = running + feats[i]
    return torch.tensor(chosen, dtype=torch.long, device=feats.device)


def kcenter_select(feats: torch.Tensor, k: int, first: int) -> torch.Tensor:
    """Greedy k-center: start from row ``first``, then repeatedly add the row farthest from
    its nearest chosen center.  Returns indices in the order picked."""
    n = feats.shape[0]
    k = min(int(k), n)
    feats = feats.double()
    chosen = [int(first)]
    mind = ((feats - feats[first]) ** 2).sum(1)
    mind[first] = -1.0
    for _ in range(k - 1):
        i = int(torch.argmax(mind))
        chosen.append(i)
        mind = torch.minimum(mind, ((feats - feats[i]) ** 2).sum(1))
        mind[torch.tensor(chosen, device=feats.device)] = -1.0
    return torch.tensor(chosen, dtype=torch.long, device=feats.device)


class ForgettingTracker:
    """Per-example forgetting events (Toneva et al. 2019).

    ``update(idx, correct)`` with the indices of a minibatch and whether each is classified
    correctly now; a forgetting event is a correct -> incorrect transition between two visits.
    ``scores()``: the event counts, +inf for examples never classified correctly.
    """

    def __init__(self, n: int, device: torch.device | str = "cpu"):
        self.prev = torch.zeros(n, dtype=torch.bool, device=device)
        self.learned = torch.zeros(n, dtype=torch.bool, device=device)
        self.events = torch.zeros(n, dtype=torch.long, device=device)

    def update(self, idx: torch.Tensor, correct: torch.Tensor) -> None:
        correct = correct.to(torch.bool)
        self.events[idx] += (self.prev[idx] & ~correct).long()
        self.prev[idx] = correct
        self.learned[idx] |= correct

    def scores(self) -> torch.Tensor:
        s = self.events.double()
        return torch.where(self.learned, s, torch.full_like(s, math.inf))


def _rank_select(scores: torch.Tensor, k: int, most: bool, generator: torch.Generator):
    """Indices of the k highest (``most``) or lowest scores, ties broken at random."""
    jitter = torch.rand(scores.shape[0], generator=generator, device=generator.device)
    order = torch.argsort(jitter.to(scores.device))          # a random order ...
    ranked = torch.argsort(scores[order], descending=most, stable=True)  # ... kept within ties
    return order[ranked][:k]


# ---------------------------------------------------------------------------------------------
# the condensers
def _embedding_net(request: CondenseRequest, train_epochs: int, lr: float):
    net = request.build_net(draw_seed(request.generator))
    if train_epochs > 0:
        data = request.data
        recipe = Recipe(epochs=int(train_epochs), batch_size=256, lr=lr, momentum=0.9,
                        weight_decay=5e-4, schedule="constant")
        train(net, data.x_train, data.y_train, recipe, request.generator)
    net.eval()
    return net


@torch.no_grad()
def _embeddings(net, x: torch.Tensor) -> torch.Tensor:
    """Embeddings of ``x`` in chunks (small ones on the CPU: see :func:`synth.auto_chunk`)."""
    batch = auto_chunk(net, x) or 512
    return torch.cat([embed(net, x[i:i + batch]).detach() for i in range(0, x.shape[0], batch)])


def _select_by_class(request: CondenseRequest, rule, candidates_per_class: int,
                     train_epochs: int, lr: float, normalize: bool) -> tuple[torch.Tensor, dict]:
    data, g = request.data, request.generator
    net = _embedding_net(request, train_epochs, lr)
    picks = []
    for idx in data.indices_by_class():
        if candidates_per_class and idx.numel() > candidates_per_class:
            order = torch.randperm(idx.numel(), generator=g, device=g.device).to(idx.device)
            idx = idx[order[:candidates_per_class]]
        feats = _embeddings(net, data.x_train[idx])
        if normalize:
            feats = F.normalize(feats, dim=1)
        picks.append(idx[rule(feats)])
    return torch.cat(picks), {"train_epochs": train_epochs}


def herding(request: CondenseRequest, *, train_epochs: int = 0, lr: float = 0.01,
            candidates_per_class: int = 0, normalize: bool = False) -> SyntheticSet:
    """Per class, herding on the embeddings of the distillation network."""
    k = int(request.ipc)
    idx, info = _select_by_class(request, lambda f: herding_select(f, k), candidates_per_class,
                                 train_epochs, lr, normalize)
    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone(),
                        info=info)


def kcenter(request: CondenseRequest, *, train_epochs: int = 0, lr: float = 0.01,
            candidates_per_class: int = 0, normalize: bool = False,
            first: str = "mean") -> SyntheticSet:
    """Per class, greedy k-center; ``first``: "mean" starts from the example nearest the class
    mean, "random" from a random example."""
    if first not in ("mean", "random"):
        raise KddbenchError(f"kcenter first must be 'mean' or 'random', not {first!r}")
    k, g = int(request.ipc), request.generator

    def rule(feats):
        if first == "mean":
            start = int(torch.argmin(((feats - feats.mean(0)) ** 2).sum(1)))
        else:
            start = int(torch.randint(0, feats.shape[0], (1,), generator=g, device=g.device))
        return kcenter_select(feats, k, start)

    idx, info = _select_by_class(request, rule, candidates_per_class, train_epochs, lr,
                                 normalize)
    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone(),
                        info=info)


def forgetting(request: CondenseRequest, *, epochs: int = 3, batch_size: int = 128,
               lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
               keep: str = "most", examples_per_class: int = 0) -> SyntheticSet:
    """Train on the real set for ``epochs`` epochs while counting forgetting events; keep per
    class the ``ipc`` examples forgotten most (or least) often.  ``examples_per_class`` > 0
    restricts training and selection to that many random examples of every class."""
    if keep not in ("most", "least"):
        raise KddbenchError(f"forgetting keep must be 'most' or 'least', not {keep!r}")
    data, g, k = request.data, request.generator, int(request.ipc)
    pool = torch.arange(data.y_train.numel(), device=data.y_train.device)
    if examples_per_class:
        parts = []
        for idx in data.indices_by_class():
            order = torch.randperm(idx.numel(), generator=g, device=g.device).to(idx.device)
            parts.append(idx[order[:examples_per_class]])
        pool = torch.cat(parts)
    x, y = data.x_train[pool], data.y_train[pool]
    net = request.build_net(draw_seed(g))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    tracker = ForgettingTracker(int(y.numel()), y.device)
    n = int(y.numel())
    # per-image independent networks train in small chunks (faster on the CPU; same gradient)
    chunk = 0 if has_batchnorm(net) else auto_chunk(net, x)
    net.train()
    for _ in range(int(epochs)):
        perm = torch.randperm(n, generator=g, device=g.device).to(y.device)
        for i in range(0, n, batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            step = chunk or b.numel()
            for j in range(0, b.numel(), step):
                bc = b[j:j + step]
                logits = net(x[bc])
                tracker.update(bc, (logits.argmax(1) == y[bc]).detach())
                loss = F.cross_entropy(logits, y[bc], reduction="sum") / b.numel()
                loss.backward()
            opt.step()
    scores = tracker.scores()
    picks = []
    for c in range(data.num_classes):
        members = torch.nonzero(y == c).flatten()
        chosen = _rank_select(scores[members], k, keep == "most", g)
        picks.append(pool[members[chosen]])
    idx = torch.cat(picks)
    finite = scores[torch.isfinite(scores)]
    info = {"epochs": epochs, "never_learned": int((~tracker.learned).sum()),
            "mean_forgetting_events": float(finite.mean()) if finite.numel() else 0.0}
    return SyntheticSet(data.x_train[idx].clone(), data.y_train[idx].clone(), info=info)
