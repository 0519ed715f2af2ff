"""Coreset selection baselines of the DC paper: ``herding``, ``kcenter`` and ``forgetting``.

Herding and k-center work in the embedding space (the head's input) of the distillation
network ``request.build_net(seed)``.  By default that network is randomly initialised
(``train_epochs = 0``); ``train_epochs > 0`` first trains it on the real training set with the
shared protocol's optimiser (SGD 0.01, momentum 0.9, constant rate), which is the DC paper's
setting (Zhao, Mopuri & Bilen 2021: features of a ConvNet trained on the whole set).  The
trained network is an artifact (keyed by the data, the network, the epochs, the rate and the
seed), so herding and k-center of the same seed, at every IPC, embed with the same one.

Forgetting (Toneva et al. 2019) trains the network on the real training set for ``epochs``
epochs and counts, for every example, the times it goes from classified correctly to
incorrectly between two consecutive presentations (each time it is visited in a minibatch,
judged by the prediction of that step, before its update).  Examples never classified
correctly count as forgotten more often than any other (Toneva et al.'s convention: their
count is the number of presentations).  The DC paper's baseline keeps, per class, the examples
forgotten most often (``keep = "most"``); ``keep = "least"`` keeps the unforgettable ones;
``keep = "most_learned"`` ranks the most forgotten among the examples learned at least once,
the never-learned ones last -- after a short count, never-learned images (hard, often
ambiguous ones that a full-length run would eventually learn) outnumber the picks of every
class and fill them all under ``"most"``.  The counts are an artifact (keyed by the data, the
pool, the network, the training options and the seed) shared by every IPC and ``keep``; ties
are broken at random (from the request's generator, in the same state whether the count was
computed or loaded).
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


KEEP = ("most", "least", "most_learned")


def forgetting_order(events: torch.Tensor, learned: torch.Tensor, k: int, keep: str,
                     generator: torch.Generator) -> torch.Tensor:
    """Indices of the ``k`` examples ``keep`` picks from forgetting ``events`` and the
    ``learned`` flags (ties at random): ``most`` ranks never-learned examples first (Toneva et
    al.), ``most_learned`` last, ``least`` keeps the least forgotten (never-learned last)."""
    s = events.double()
    if keep == "most_learned":
        scores = torch.where(learned, s, torch.full_like(s, -1.0))
        return _rank_select(scores, k, True, generator)
    scores = torch.where(learned, s, torch.full_like(s, math.inf))
    return _rank_select(scores, k, keep == "most", generator)


def _rank_select(scores: torch.Tensor, k: int, most: bool, generator: torch.Generator):
    """Indices of the k highest (``most``) or lowest scores, ties broken at random."""
    jitter = torch.rand(scores.shape[0], generator=generator, device=generator.device)
    order = torch.argsort(jitter.to(scores.device))          # a random order ...
    ranked = torch.argsort(scores[order], descending=most, stable=True)  # ... kept within ties
    return order[ranked][:k]


# ---------------------------------------------------------------------------------------------
# the condensers
EMBEDDING_VERSION = "1"  # bump when the embedding network's training changes
COUNT_VERSION = "1"      # bump when the forgetting count changes


def _shared(request: CondenseRequest, kind: str, key: dict, build):
    """``build()`` once per key in the run's artifact cache (when there is one), with the
    request's generator left in the state building it leaves, cached or not."""
    g = request.generator
    if request.artifacts is None or not getattr(request.artifacts, "enabled", True):
        return build()
    full = {"data": request.data.fingerprint(),
            "net": dict(request.net_key) if request.net_key else {"arch": request.arch},
            "seed": int(request.seed), "generator": _state_digest(g), **key}

    def stored():
        value = build()
        value["generator_state"] = g.get_state().clone()
        return value

    value = request.artifacts.get_or_build(kind, full, stored)
    g.set_state(value["generator_state"].clone())
    return value


def _state_digest(g: torch.Generator) -> str:
    import hashlib

    return hashlib.sha256(g.get_state().cpu().numpy().tobytes()).hexdigest()[:16]


def _embedding_net(request: CondenseRequest, train_epochs: int, lr: float):
    net = request.build_net(draw_seed(request.generator))
    if train_epochs > 0:
        data = request.data

        def trained():
            recipe = Recipe(epochs=int(train_epochs), batch_size=256, lr=lr, momentum=0.9,
                            weight_decay=5e-4, schedule="constant")
            train(net, data.x_train, data.y_train, recipe, request.generator)
            return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}

        stored = _shared(request, "coreset_embedding", {
            "train_epochs": int(train_epochs), "lr": float(lr), "version": EMBEDDING_VERSION},
            trained)
        net.load_state_dict(stored["state_dict"])
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
    if keep not in KEEP:
        raise KddbenchError(f"forgetting keep must be one of {', '.join(KEEP)}, not {keep!r}")
    data, g, k = request.data, request.generator, int(request.ipc)
    pool = torch.arange(data.y_train.numel(), device=data.y_train.device)
    if examples_per_class:
        parts = []
        for idx in data.indices_by_class():
            order = torch.randperm(idx.numel(), generator=g, device=g.device).to(idx.device)
            parts.append(idx[order[:examples_per_class]])
        pool = torch.cat(parts)
    x, y = data.x_train[pool], data.y_train[pool]

    def count():
        net = request.build_net(draw_seed(g))
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
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
        return {"events": tracker.events.cpu(), "learned": tracker.learned.cpu()}

    counted = _shared(request, "forgetting_counts", {
        "pool": int(examples_per_class), "epochs": int(epochs), "batch_size": int(batch_size),
        "lr": float(lr), "momentum": float(momentum), "weight_decay": float(weight_decay),
        "version": COUNT_VERSION}, count)
    events = counted["events"].to(y.device)
    learned = counted["learned"].to(y.device)
    picks = []
    for c in range(data.num_classes):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[forgetting_order(events[members], learned[members], k, keep, g)])
    chosen = torch.cat(picks)
    idx = pool[chosen]
    learned_events = events[learned].double()
    info = {"epochs": epochs, "never_learned": int((~learned).sum()),
            "mean_forgetting_events": float(learned_events.mean()) if learned_events.numel()
            else 0.0,
            "picked_never_learned": int((~learned[chosen]).sum()),
            "picked_mean_events": float(events[chosen].double().mean())}
    return SyntheticSet(data.x_train[idx].clone(), data.y_train[idx].clone(), info=info)
