"""Trajectory matching: expert trajectories, ``mtt`` (Cazenavette et al. 2022) and ``pad``
(Li et al. 2024, on DATM by Guo et al. 2024).

Expert trajectories
    ``num_experts`` networks of the distillation architecture, each trained on the real set for
    ``epochs`` epochs by plain SGD (``expert_lr``, no momentum, no weight decay, batches of
    ``batch_train``, optional augmentation per batch); the flat parameter vector is kept at
    initialisation and after every epoch, so one expert is an ``(epochs + 1, P)`` tensor.  Every
    expert is its own artifact (``request.artifacts``, kind ``expert_trajectories``), keyed by
    the data set's fingerprint, the network (name, options, version), the training options, the
    expert's index and ``expert_seed``; the cell seed is *not* in the key, so every cell of every
    suite that asks for the same experts shares them, and a killed run keeps those finished.

Matching (one iteration)
    Draw an expert and a start epoch ``t``; from ``theta*_t`` take ``syn_steps`` SGD steps on
    batches of the synthetic set at the learned rate ``alpha``; the loss is
    ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` (M = ``expert_epochs``).
    Images (and learned labels) and ``alpha`` are updated by SGD with momentum 0.5.

The network is functional: :class:`FlatNet` runs the module with the parameters taken from one
flat vector (``torch.func.functional_call``), so ``theta`` is a plain tensor.

Two ways to differentiate the unrolled steps (``unroll``):

* ``"full"``: ordinary autograd through all steps (``create_graph=True``); memory grows with
  ``syn_steps`` (every step's activations and its gradient graph are kept).
* ``"constant"`` (default; TESLA, Cui et al. 2023, "Scaling Up Dataset Distillation to
  ImageNet-1K with Constant Memory"): the steps run forward without graphs, keeping only the
  parameter vectors (on the CPU when the device is a GPU), each step's batch indices and its
  augmentation seed.  Then, from ``lambda_N = dL/dtheta_N``, each step is recomputed backward
  with a graph of that one step: with ``g_i = grad l(theta_i; X_i)``,
  ``dL/dX_i = -alpha d(g_i . lambda_{i+1})/dX_i``, ``dL/dalpha += -g_i . lambda_{i+1}`` and
  ``lambda_i = lambda_{i+1} - alpha H_i lambda_{i+1}`` (a Hessian-vector product from the same
  double backward).  This is the exact gradient of the loss (the full unroll's, to float
  rounding; ``tests/test_trajectory_matching.py``), at about 1.6x its time (measured at MNIST
  scale on a CPU, ``benchmarks/bench_trajectory.py``) and the activation memory of one step.
"""
from __future__ import annotations

import inspect
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kddbench.cells import short_hash
from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.context import derive_seed
from kddbench.data import DataSplits
from kddbench.errors import KddbenchError
from kddbench.protocol import Recipe, make_generator, soft_cross_entropy, train

from .synthesis import ImageOptimizer, draw_seed
from .trajectory_settings import (DEEP_BY, PAD_WINDOWS, SETTING_NAMES, SETTINGS,  # noqa: F401
                                  UNROLLS, ZCA_CHOICES, pad_window, setting_for)

EXPERT_FORMAT = 1

# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# a network with its parameters in one flat vector
class FlatNet:
    """``fnet(theta, x)``: the module's forward with its parameters read from ``theta``."""

    def __init__(self, module: nn.Module):
        self.module = module
        named = list(module.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.numel = sum(self.sizes)
        # the parameter-holding modules in order, and which slice of theta each owns
        self.layers: list[tuple[str, int, int]] = []
        start = 0
        owner: OrderedDict[str, list[int]] = OrderedDict()
        for name, size in zip(self.names, self.sizes):
            mod = name.rsplit(".", 1)[0] if "." in name else ""
            span = owner.setdefault(mod, [start, start])
            span[1] = start + size
            start += size
        self.layers = [(m, a, b) for m, (a, b) in owner.items()]

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in
                zip(self.names, torch.split(theta, self.sizes), self.shapes)}

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.module, self.unflatten(theta), (x,))

    def deep_mask(self, shallow_ratio: float, by: str = "modules") -> torch.Tensor | None:
        """0 for the input side of the network, 1 for the rest (None when nothing is left out).
        ``by = "modules"``: the parameters of the first ``floor(ratio x layers)`` parameter-
        holding modules; ``"parameters"``: the first ``floor(ratio x numel)`` elements of the
        flat parameter vector, in module order (the PAD reference's ``depth_ratio``)."""
        if by == "parameters":
            cut = int(math.floor(shallow_ratio * self.numel + 1e-9))
        else:
            skip = int(math.floor(shallow_ratio * len(self.layers) + 1e-9))
            cut = self.layers[min(skip, len(self.layers) - 1)][1] if skip > 0 else 0
        if cut <= 0:
            return None
        mask = torch.ones(self.numel)
        mask[:cut] = 0.0
        return mask


# ---------------------------------------------------------------------------------------------
# expert trajectories
@dataclass(frozen=True)
class ExpertPlan:
    num_experts: int
    epochs: int
    lr: float
    batch: int
    augment: str
    seed: int


def expert_key(request: CondenseRequest, plan: ExpertPlan, index: int,
               data: DataSplits, selection: str = "", structure: str = "") -> dict[str, Any]:
    """Everything that determines expert ``index``: the cache key of its artifact.
    ``structure`` (a hash of the module's printout and parameter shapes) guards against a
    request whose ``net_key`` is incomplete."""
    return {"format": EXPERT_FORMAT, "data": data.fingerprint(), "selection": selection,
            "net": dict(request.net_key) if request.net_key else {"arch": request.arch},
            "structure": structure,
            "epochs": plan.epochs, "lr": plan.lr, "momentum": 0.0, "weight_decay": 0.0,
            "batch": plan.batch, "augment": plan.augment, "seed": plan.seed, "index": index}


def train_expert(request: CondenseRequest, plan: ExpertPlan, index: int,
                 data: DataSplits) -> dict[str, torch.Tensor]:
    """One expert: (epochs + 1, P) flat parameters, at initialisation and after each epoch."""
    g = make_generator(derive_seed(plan.seed, "expert", index), request.device)
    net = request.build_net(draw_seed(g))
    fnet = FlatNet(net)
    aug = _augment_fn(request, plan.augment)
    recipe = Recipe(epochs=1, batch_size=plan.batch, optimizer="sgd", lr=plan.lr, momentum=0.0,
                    weight_decay=0.0, schedule="constant")
    start = time.perf_counter()
    snaps = [fnet.flat().cpu()]
    for _ in range(plan.epochs):
        train(net, data.x_train, data.y_train, recipe, g, augment=aug)
        snaps.append(fnet.flat().cpu())
    return {"params": torch.stack(snaps), "epochs": torch.tensor(plan.epochs),
            "seconds": torch.tensor(time.perf_counter() - start, dtype=torch.float64)}


def check_expert(plan: ExpertPlan, numel: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict) or "params" not in value:
            return "expected a dict with 'params'"
        if tuple(value["params"].shape) != (plan.epochs + 1, numel):
            return f"params of shape {tuple(value['params'].shape)}"
        return None
    return check


def structure_hash(fnet: "FlatNet") -> str:
    """A hash of the module's printout and parameter names and shapes (part of artifact keys,
    in case a request's ``net_key`` is incomplete)."""
    return short_hash([repr(fnet.module), fnet.names, [list(s) for s in fnet.shapes]], 16)


# Without an artifact cache (tests, --no-cache), experts built in this process are kept here
# by key, up to MEMO_BYTES, so the cells of one process still share them.
MEMO_BYTES = 256 << 20
_MEMO: OrderedDict[str, torch.Tensor] = OrderedDict()


def _memo_get(key: str) -> torch.Tensor | None:
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    return None


def _memo_put(key: str, value: torch.Tensor) -> None:
    _MEMO[key] = value
    while len(_MEMO) > 1 and sum(v.numel() * v.element_size() for v in _MEMO.values()) \
            > MEMO_BYTES:
        _MEMO.popitem(last=False)


class Experts:
    """The experts of one plan, each built (or loaded) through the artifact cache on first
    use and kept in memory, at most ``keep`` at a time (least recently used dropped)."""

    def __init__(self, request: CondenseRequest, plan: ExpertPlan, data: DataSplits,
                 fnet: "FlatNet", selection: str = "", keep: int = 4):
        self.request, self.plan, self.data = request, plan, data
        self.numel, self.selection, self.keep = fnet.numel, selection, max(1, keep)
        self.structure = structure_hash(fnet)
        self._loaded: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.built = 0
        self.seconds: dict[int, float] = {}  # training time of each expert, wherever built

    def build_all(self) -> None:
        """Make sure every expert exists (in order: a killed run keeps those finished)."""
        for i in range(self.plan.num_experts):
            self._get(i, keep=False)

    def _get(self, index: int, keep: bool = True) -> torch.Tensor | None:
        if index in self._loaded:
            self._loaded.move_to_end(index)
            return self._loaded[index]
        key = expert_key(self.request, self.plan, index, self.data, self.selection,
                         self.structure)

        def build():
            self.built += 1
            return train_expert(self.request, self.plan, index, self.data)

        cache = self.request.artifacts
        if cache is None:
            memo_key = short_hash(key, 24)
            params = _memo_get(memo_key)
            value = {"params": params} if params is not None else build()
            if params is None:
                _memo_put(memo_key, value["params"])
            else:
                value = {"params": params}
        else:
            kwargs = {}
            if "check" in inspect.signature(cache.get_or_build).parameters:
                kwargs["check"] = check_expert(self.plan, self.numel)
            value = cache.get_or_build("expert_trajectories", key, build,
                                       provenance={"expert": index}, **kwargs)
        params = value["params"]
        if "seconds" in value:
            self.seconds[index] = float(value["seconds"])
        if not keep and cache is not None:
            return None
        self._loaded[index] = params
        while len(self._loaded) > self.keep:
            self._loaded.popitem(last=False)
        return params

    def __getitem__(self, index: int) -> torch.Tensor:
        out = self._get(index)
        assert out is not None
        return out


# ---------------------------------------------------------------------------------------------
# the unrolled student and its gradients
@dataclass
class Step:
    """One synthetic step: which synthetic images, and the seed of its augmentation draw."""
    index: torch.Tensor
    seed: int


def plan_steps(n: int, syn_steps: int, batch_syn: int, generator: torch.Generator,
               device: torch.device) -> list[Step]:
    """Batches of ``batch_syn`` synthetic images (all when 0) taken from successive random
    permutations, as the reference does; one augmentation seed per step."""
    b = n if batch_syn <= 0 else min(batch_syn, n)
    steps, pool = [], torch.empty(0, dtype=torch.long, device=device)
    for _ in range(syn_steps):
        if pool.numel() < b:
            perm = torch.randperm(n, generator=generator, device=generator.device).to(device)
            pool = torch.cat([pool, perm])
        steps.append(Step(pool[:b], draw_seed(generator)))
        pool = pool[b:]
    return steps


def _augment_fn(request: CondenseRequest, name: str):
    if name in ("", "none", None):
        return None
    if request.augment is None:
        raise KddbenchError(f"augment = {name!r} needs the task's augmentations "
                            "(request.augment is not set)")
    return request.augment(name)


def _batch(images, labels, step: Step, aug, device):
    x = images[step.index]
    if aug is not None:
        x = aug(x, make_generator(step.seed, device))
    return x, labels[step.index]


def _targets(labels: torch.Tensor) -> torch.Tensor:
    """Hard labels as they are; learned label logits as probabilities."""
    return labels if not labels.dtype.is_floating_point else F.softmax(labels, dim=1)


def _distance(theta: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None):
    d = theta - target
    if mask is not None:
        d = d * mask
    return (d * d).sum()


@dataclass
class Unrolled:
    loss: float
    start_distance: float
    image_grad: torch.Tensor
    lr_grad: torch.Tensor
    label_grad: torch.Tensor | None


def unroll_full(fnet: FlatNet, start: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor, lr: torch.Tensor, steps: Sequence[Step], aug,
                mask: torch.Tensor | None = None) -> Unrolled:
    """The matching loss by plain autograd through every step (memory grows with steps).
    ``images``, ``lr`` (and ``labels`` when floating: logits) are leaves with grad."""
    theta = start.detach().requires_grad_(True)
    cur = theta
    for step in steps:
        x, y = _batch(images, labels, step, aug, images.device)
        ce = soft_cross_entropy(fnet(cur, x), _targets(y))
        (g,) = torch.autograd.grad(ce, cur, create_graph=True)
        cur = cur - lr * g
    denom = _distance(start, target, mask).detach()
    loss = _distance(cur, target, mask) / denom
    wrt = [images, lr] + ([labels] if labels.requires_grad else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if gr is None else gr for w, gr in zip(wrt, grads)]
    return Unrolled(float(loss.detach()), float(denom), grads[0], grads[1],
                    grads[2] if labels.requires_grad else None)


def unroll_constant(fnet: FlatNet, start: torch.Tensor, target: torch.Tensor,
                    images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                    steps: Sequence[Step], aug, mask: torch.Tensor | None = None) -> Unrolled:
    """The same loss and gradients with one step's graph at a time (see the module doc)."""
    device = images.device
    store = torch.device("cpu") if device.type == "cuda" else device
    alpha = lr.detach()
    imgs = images.detach()
    labs = labels.detach()
    thetas = [start.detach().to(store)]
    cur = start.detach()
    for step in steps:  # forward, no graph kept beyond one step's gradient
        th = cur.requires_grad_(True)
        x, y = _batch(imgs, labs, step, aug, device)
        ce = soft_cross_entropy(fnet(th, x), _targets(y))
        (g,) = torch.autograd.grad(ce, th)
        cur = (th.detach() - alpha * g).detach()
        thetas.append(cur.to(store))
    denom = _distance(start, target, mask).detach()
    diff = cur - target
    if mask is not None:
        diff = diff * mask
    loss = (diff * diff).sum() / denom
    lam = 2.0 * diff / denom
    image_grad = torch.zeros_like(imgs)
    lr_grad = torch.zeros_like(alpha)
    learn_labels = labels.requires_grad
    label_grad = torch.zeros_like(labs) if learn_labels else None
    img_leaf = imgs.clone().requires_grad_(True)
    lab_leaf = labs.clone().requires_grad_(learn_labels)
    for i in range(len(steps) - 1, -1, -1):  # backward, one step's graph at a time
        th = thetas[i].to(device).requires_grad_(True)
        thetas[i + 1] = None  # type: ignore[call-overload]
        x, y = _batch(img_leaf, lab_leaf, steps[i], aug, device)
        ce = soft_cross_entropy(fnet(th, x), _targets(y))
        (g,) = torch.autograd.grad(ce, th, create_graph=True)
        dot = (g * lam).sum()
        wrt = [th, img_leaf] + ([lab_leaf] if learn_labels else [])
        grads = torch.autograd.grad(dot, wrt, allow_unused=True)
        hv = grads[0] if grads[0] is not None else torch.zeros_like(th)
        if grads[1] is not None:
            image_grad -= alpha * grads[1]
        if learn_labels and grads[2] is not None:
            label_grad -= alpha * grads[2]
        lr_grad -= dot.detach()
        lam = (lam - alpha * hv).detach()
    return Unrolled(float(loss.detach()), float(denom), image_grad, lr_grad.reshape(lr.shape),
                    label_grad)


UNROLL = {"full": unroll_full, "constant": unroll_constant}


class SavedTensorMeter:
    """The peak bytes of tensors autograd holds for backward (saved activations and the like)
    while the block runs: a device-independent measure of an unroll's memory.

        with SavedTensorMeter() as meter:
            unroll_constant(...)
        meter.peak_bytes
    """

    def __init__(self):
        self.alive = self.peak_bytes = 0
        self._hooks = None

    def __enter__(self) -> "SavedTensorMeter":
        import weakref

        meter = self

        class Held:
            __slots__ = ("t", "__weakref__")

            def __init__(self, t):
                self.t = t

        def pack(t):
            held = Held(t)
            size = t.numel() * t.element_size()
            meter.alive += size
            meter.peak_bytes = max(meter.peak_bytes, meter.alive)
            weakref.finalize(held, meter._release, size)
            return held

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held.t)
        self._hooks.__enter__()
        return self

    def _release(self, size: int) -> None:
        self.alive -= size

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


# ---------------------------------------------------------------------------------------------
# the optimiser state beyond the images (learned lr, learned labels), carried in the same
# checkpoint as the images
class _WithExtras:
    """A checkpoint proxy: ImageOptimizer's state plus our tensors under ``"extras"``."""

    def __init__(self, checkpoint: Any, extras: Callable[[], dict[str, Any]]):
        self.inner, self.extras, self.loaded = checkpoint, extras, None

    def load(self):
        state = self.inner.load() if self.inner is not None else None
        self.loaded = state.get("extras") if isinstance(state, dict) else None
        return state

    def save(self, state):
        if self.inner is not None:
            self.inner.save({**state, "extras": self.extras()})

    def clear(self):
        if self.inner is not None and hasattr(self.inner, "clear"):
            self.inner.clear()


def _sgd_state(opt: torch.optim.SGD, p: torch.Tensor) -> torch.Tensor:
    buf = opt.state.get(p, {}).get("momentum_buffer")
    return torch.zeros(0) if buf is None else buf.detach().cpu().clone()


def _set_sgd_state(opt: torch.optim.SGD, p: torch.Tensor, buf: torch.Tensor) -> None:
    if buf.numel():
        opt.state[p]["momentum_buffer"] = buf.to(p.device).clone()


# ---------------------------------------------------------------------------------------------
# data selection by EL2N (Paul et al. 2021, "Deep Learning on a Data Diet")
def el2n_scores(request: CondenseRequest, data: DataSplits, nets: int, epochs: int,
                seed: int, structure: str = "") -> torch.Tensor:
    """Per training image, ||softmax(f(x)) - onehot(y)||_2 averaged over ``nets`` networks
    trained ``epochs`` epochs on the real set (SGD 0.01, momentum 0.9, weight decay 5e-4)."""
    def build():
        total = torch.zeros(data.x_train.shape[0])
        for k in range(nets):
            g = make_generator(derive_seed(seed, "el2n", k), request.device)
            net = request.build_net(draw_seed(g))
            if epochs > 0:
                train(net, data.x_train, data.y_train,
                      Recipe(epochs=epochs, batch_size=256, lr=0.01, momentum=0.9,
                             weight_decay=5e-4, schedule="constant"), g)
            net.eval()
            with torch.no_grad():
                for i in range(0, data.x_train.shape[0], 512):
                    p = F.softmax(net(data.x_train[i:i + 512]), 1)
                    onehot = F.one_hot(data.y_train[i:i + 512], data.num_classes).to(p.dtype)
                    total[i:i + 512] += (p - onehot).norm(dim=1).cpu()
        return {"scores": total / max(nets, 1)}

    key = {"data": data.fingerprint(), "net": dict(request.net_key or {"arch": request.arch}),
           "structure": structure, "nets": nets, "epochs": epochs, "seed": seed, "format": 1}
    cache = request.artifacts
    value = build() if cache is None else cache.get_or_build("el2n_scores", key, build)
    return value["scores"]


def easiest(scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
            keep_fraction: float) -> torch.Tensor:
    """Sorted indices of the ``keep_fraction`` lowest-score images of every class."""
    keep = []
    for c in range(num_classes):
        idx = torch.nonzero(labels.cpu() == c).flatten()
        k = max(1, int(math.ceil(keep_fraction * idx.numel())))
        keep.append(idx[torch.argsort(scores[idx], stable=True)[:k]])
    return torch.sort(torch.cat(keep)).values


def subset(data: DataSplits, index: torch.Tensor) -> DataSplits:
    index = index.to(data.x_train.device)
    out = DataSplits(data.name, data.x_train[index], data.y_train[index], data.x_test,
                     data.y_test, data.classes, data.mean, data.std, data.notes,
                     traits=frozenset(data.traits))
    return out


def correctly_classified(fnet: FlatNet, theta: torch.Tensor, data: DataSplits,
                         ipc: int) -> torch.Tensor:
    """Indices of the training images the network ``theta`` classifies correctly; a class
    with fewer than ``ipc`` of them keeps all its images."""
    with torch.no_grad():
        pred = torch.cat([fnet(theta, data.x_train[i:i + 512]).argmax(1)
                          for i in range(0, data.x_train.shape[0], 512)])
    ok = pred == data.y_train
    keep = []
    for c, idx in enumerate(data.indices_by_class()):
        good = idx[ok[idx]]
        keep.append(good if good.numel() >= ipc else idx)
    return torch.sort(torch.cat(keep)).values


LABEL_INITS = ("expert0", "mean_correct")


def mean_correct_logits(fnet: FlatNet, experts, epoch: int, images: torch.Tensor,
                        labels: torch.Tensor, device) -> torch.Tensor:
    """Per image, the mean of the logits (at ``epoch``) of the experts that classify it
    correctly, as the PAD reference initialises its soft labels; an image no expert gets
    right keeps the mean over all of them."""
    right_sum, all_sum, count = None, None, torch.zeros(images.shape[0], device=images.device)
    for e in range(experts.plan.num_experts):
        logits = fnet(experts[e][epoch].to(device), images)
        ok = (logits.argmax(1) == labels).to(logits.dtype)
        right_sum = logits * ok[:, None] if right_sum is None else right_sum + logits * ok[:, None]
        all_sum = logits if all_sum is None else all_sum + logits
        count += ok
    mean_all = all_sum / experts.plan.num_experts
    return torch.where(count[:, None] > 0, right_sum / count.clamp(min=1)[:, None], mean_all)


def class_first(logits: torch.Tensor, labels: torch.Tensor, margin: float = 1e-3):
    """``logits`` where each row's own class is raised to the row's maximum (plus a margin)
    when it is not already the largest, so every soft label keeps its class first."""
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    top = logits.max(1).values
    lift = torch.where(own < top, top - own + margin, torch.zeros_like(own))
    return logits.scatter_add(1, labels.view(-1, 1), lift.view(-1, 1))


def prepare_experts(request: CondenseRequest, plan: ExpertPlan, el2n_keep: float = 1.0,
                    el2n_nets: int = 2, el2n_epochs: int = 2,
                    keep: int = 4) -> tuple[Experts, DataSplits, FlatNet]:
    """The experts of ``plan`` (not built yet), the real training data they are trained on
    (with PAD's data selection: the easiest ``el2n_keep`` of every class) and the network."""
    data = request.data
    selection = ""
    train_data = data
    fnet = FlatNet(request.build_net(0))
    if el2n_keep < 1.0:
        scores = el2n_scores(request, data, el2n_nets, el2n_epochs, plan.seed,
                             structure_hash(fnet))
        kept = easiest(scores, data.y_train, data.num_classes, el2n_keep)
        selection = short_hash({"el2n": [el2n_nets, el2n_epochs, plan.seed, el2n_keep],
                                "kept": kept.tolist()}, 16)
        train_data = subset(data, kept)
    return Experts(request, plan, train_data, fnet, selection, keep), train_data, fnet


def plan_from_options(options: Mapping[str, Any]) -> ExpertPlan:
    return ExpertPlan(int(options["num_experts"]), max(1, int(options["epochs"])),
                      float(options["expert_lr"]), int(options["batch_train"]),
                      str(options["expert_augment"]), int(options["expert_seed"]))


def build_expert(request: CondenseRequest, options: Mapping[str, Any], index: int) -> None:
    """Get or build expert ``index`` of a method's (resolved) ``options``: the artifact a
    condensed set declares it needs (``expert_artifacts``), built by the runner ahead."""
    experts, _, _ = prepare_experts(
        request, plan_from_options(options), float(options.get("el2n_keep", 1.0)),
        int(options.get("el2n_nets", 2)), int(options.get("el2n_epochs", 2)))
    experts._get(int(index), keep=False)


# ---------------------------------------------------------------------------------------------
# the method
def _check_zca(data: DataSplits, zca: bool) -> None:
    if zca and "zca" not in set(data.traits):
        raise KddbenchError(
            "this setting uses ZCA-whitened data (zca = on, or auto at a ZCA setting of the "
            "reference); this data is not: add transform = \"zca\" to the experiment (the "
            "task whitens every split before condensation and evaluation) or set zca = \"off\"")


def trajectory_matching(
    request: CondenseRequest, *, setting: str = "auto", iterations: int = 5000,
    syn_steps: int = 0, expert_epochs: int = 0, max_start_epoch: int = 0,
    min_start_epoch: int = 0, initial_max_start_epoch: int = 0, window_growth: int = 0,
    lr_img: float = 0.0, lr_lr: float = 0.0, lr_teacher: float = 0.0, momentum: float = 0.5,
    batch_syn: int = -1, zca: str = "auto", init: str = "real", augment: str = "dsa",
    unroll: str = "constant", num_experts: int = 100, epochs: int = 50,
    expert_lr: float = 0.01, batch_train: int = 256, expert_augment: str = "dsa",
    expert_seed: int = 0, experts_in_memory: int = 4, deep_only: float = 0.0,
    deep_by: str = "modules", el2n_keep: float = 1.0, el2n_nets: int = 2, el2n_epochs: int = 2,
    soft_labels: bool = False, learn_labels: bool = False, lr_label: float = 2.0,
    label_epoch: int = -1, label_init: str = "expert0", label_momentum: float = -1.0,
    loss_threshold: float = 0.0, checkpoint_every: int = 100, method: str = "mtt",
) -> SyntheticSet:
    """MTT and its PAD/DATM extensions (``deep_only``, ``el2n_keep``, ``soft_labels``,
    ``learn_labels``, a growing window).  0 (or -1 / "auto") options follow ``setting``."""
    if unroll not in UNROLLS:
        raise KddbenchError(f"unroll must be one of {UNROLLS}, not {unroll!r}")
    data, g = request.data, request.generator
    ipc = int(request.ipc)
    name, st = setting_for(setting, data.name, ipc)
    syn_steps = syn_steps or st["syn_steps"]
    expert_epochs = expert_epochs or st["expert_epochs"]
    max_start_epoch = max_start_epoch or st["max_start_epoch"]
    lr_img = lr_img or st["lr_img"]
    lr_lr = lr_lr or st["lr_lr"]
    lr_teacher = lr_teacher or st["lr_teacher"]
    batch_syn = st["batch_syn"] if batch_syn < 0 else batch_syn
    if zca not in ZCA_CHOICES:
        raise KddbenchError(f"zca must be one of {ZCA_CHOICES}, not {zca!r}")
    zca_on = st["zca"] if zca == "auto" else zca == "on"
    _check_zca(data, zca_on)
    if not 0.0 <= deep_only < 1.0:
        raise KddbenchError(f"deep_only is a fraction in [0, 1), not {deep_only}")
    if deep_by not in DEEP_BY:
        raise KddbenchError(f"deep_by must be one of {DEEP_BY}, not {deep_by!r}")
    if not 0.0 < el2n_keep <= 1.0:
        raise KddbenchError(f"el2n_keep is a fraction in (0, 1], not {el2n_keep}")
    if label_init not in LABEL_INITS:
        raise KddbenchError(f"label_init must be one of {LABEL_INITS}, not {label_init!r}")
    label_momentum = momentum if label_momentum < 0 else float(label_momentum)
    # the expert epochs available bound the window (a tiny run clamps; info says so)
    epochs = max(1, int(epochs))
    expert_epochs = max(1, min(int(expert_epochs), epochs))
    # start epochs are drawn from [min_start_epoch, max_start_epoch), as the reference's
    # randint; the last valid start is epochs - expert_epochs
    top = epochs - expert_epochs + 1
    max_start_epoch = max(1, min(int(max_start_epoch), top))
    min_start_epoch = max(0, min(int(min_start_epoch), max_start_epoch - 1))
    first_max = initial_max_start_epoch or max_start_epoch
    first_max = max(min_start_epoch + 1, min(int(first_max), max_start_epoch))

    plan = ExpertPlan(int(num_experts), epochs, float(expert_lr), int(batch_train),
                      expert_augment, int(expert_seed))
    experts, train_data, fnet = prepare_experts(request, plan, el2n_keep, el2n_nets,
                                                el2n_epochs, experts_in_memory)
    experts.build_all()
    mask = fnet.deep_mask(deep_only, deep_by)
    if mask is not None:
        mask = mask.to(request.device)
    aug = _augment_fn(request, augment)

    # state: images (ImageOptimizer), the learned lr, learned labels
    device = request.device
    syn_lr = torch.tensor(float(lr_teacher), device=device, requires_grad=True)
    lr_opt = torch.optim.SGD([syn_lr], lr=lr_lr, momentum=momentum)
    label_logits: torch.Tensor | None = None
    label_opt: torch.optim.SGD | None = None

    def extras() -> dict[str, Any]:
        out = {"lr": syn_lr.detach().cpu().clone(), "lr_momentum": _sgd_state(lr_opt, syn_lr)}
        if label_logits is not None:
            out["labels"] = label_logits.detach().cpu().clone()
            out["labels_momentum"] = (_sgd_state(label_opt, label_logits)
                                      if label_opt is not None else torch.zeros(0))
        return out

    proxy = _WithExtras(request.checkpoint, extras)
    init_data = train_data
    label_theta = None
    if soft_labels:
        # DATM: the logits of an expert (epoch label_epoch, default the window's end) on real
        # images it classifies correctly
        ep = max_start_epoch if label_epoch < 0 else min(int(label_epoch), epochs)
        label_theta = experts[0][ep].to(device)
        if init == "real":
            init_data = subset(train_data, correctly_classified(fnet, label_theta, train_data,
                                                                ipc))
    init_request = _replace(request, data=init_data, checkpoint=proxy)
    opt = ImageOptimizer(init_request, init, lr_img, momentum, checkpoint_every)
    hard = opt.labels
    if label_theta is not None:
        with torch.no_grad():
            if label_init == "mean_correct":
                raw = mean_correct_logits(fnet, experts, ep, opt.init_images, hard, device)
            else:
                raw = fnet(label_theta, opt.init_images)
            logits = class_first(raw, hard)
        label_logits = logits.detach().clone().requires_grad_(learn_labels)
        if learn_labels:
            label_opt = torch.optim.SGD([label_logits], lr=lr_label, momentum=label_momentum)
    if proxy.loaded:  # resumed: the learned lr and labels too
        with torch.no_grad():
            syn_lr.copy_(proxy.loaded["lr"].to(device))
        _set_sgd_state(lr_opt, syn_lr, proxy.loaded["lr_momentum"])
        if label_logits is not None and "labels" in proxy.loaded:
            with torch.no_grad():
                label_logits.copy_(proxy.loaded["labels"].to(device))
            if label_opt is not None:
                _set_sgd_state(label_opt, label_logits, proxy.loaded["labels_momentum"])

    run = UNROLL[unroll]
    n_syn = int(opt.images.shape[0])
    for it in range(opt.start, iterations):
        # the window of start epochs grows from first_max to max_start_epoch (DATM)
        if window_growth > 0:
            upper = first_max + (max_start_epoch - first_max) * min(1.0, it / window_growth)
            upper = int(round(upper))
        else:
            upper = max_start_epoch
        e = int(torch.randint(0, plan.num_experts, (1,), generator=g, device=g.device))
        upper = max(upper, min_start_epoch + 1)
        t = int(torch.randint(min_start_epoch, upper, (1,), generator=g, device=g.device))
        traj = experts[e]
        start = traj[t].to(device)
        target = traj[t + expert_epochs].to(device)
        steps = plan_steps(n_syn, syn_steps, batch_syn, g, device)
        labels = label_logits if label_logits is not None else hard
        out = run(fnet, start, target, opt.images, labels, syn_lr, steps, aug, mask)
        if loss_threshold > 0 and float(out.loss) > loss_threshold:
            # the PAD reference skips the update of a match worse than its threshold
            opt.record(float(out.loss), it, lr=float(syn_lr.detach()), start_epoch=float(t),
                       start_distance=out.start_distance, skipped=1.0)
            continue
        opt.zero_grad()
        lr_opt.zero_grad(set_to_none=True)
        opt.images.grad = out.image_grad
        syn_lr.grad = out.lr_grad
        if label_opt is not None and out.label_grad is not None:
            label_opt.zero_grad(set_to_none=True)
            label_logits.grad = out.label_grad
            label_opt.step()
            with torch.no_grad():  # every image keeps its own class first (see docs)
                label_logits.copy_(class_first(label_logits, hard))
        lr_opt.step()
        opt.update(out.loss, it, lr=float(syn_lr.detach()), start_epoch=float(t),
                   start_distance=out.start_distance)
    result = opt.result({
        "method": method, "setting": name, "iterations": iterations, "syn_steps": syn_steps,
        "expert_epochs": expert_epochs, "max_start_epoch": max_start_epoch,
        "min_start_epoch": min_start_epoch, "lr_img": lr_img, "lr_lr": lr_lr,
        "lr_teacher": lr_teacher, "batch_syn": batch_syn, "zca": zca_on, "unroll": unroll,
        "num_experts": plan.num_experts, "expert_train_epochs": epochs,
        "experts_built": experts.built,
        "experts_train_s": sum(experts.seconds.values()), "deep_only": deep_only,
        "deep_by": deep_by,
        "matched_params": int(mask.sum()) if mask is not None else fnet.numel,
        "el2n_keep": el2n_keep, "kept_real": int(train_data.x_train.shape[0]),
        "soft_labels": soft_labels, "learn_labels": learn_labels, "init": init,
        "augment": augment, **({"label_init": label_init, "label_momentum": label_momentum}
                               if soft_labels else {}),
        **({"loss_threshold": loss_threshold,
            "skipped_updates": sum(1 for row in opt.curve if row.get("skipped"))}
           if loss_threshold > 0 else {})})
    result.lr = float(syn_lr.detach())
    if label_logits is not None:
        result.labels = F.softmax(label_logits.detach(), dim=1)
    return result


def _replace(request: CondenseRequest, **changes: Any) -> CondenseRequest:
    from dataclasses import replace

    return replace(request, **changes)


def mtt(request: CondenseRequest, *, setting: str = "auto", iterations: int = 5000,
        syn_steps: int = 0, expert_epochs: int = 0, max_start_epoch: int = 0,
        lr_img: float = 0.0, lr_lr: float = 0.0, lr_teacher: float = 0.0,
        momentum: float = 0.5, batch_syn: int = -1, zca: str = "auto", init: str = "real",
        augment: str = "dsa", unroll: str = "constant", num_experts: int = 100,
        epochs: int = 50, expert_lr: float = 0.01, batch_train: int = 256,
        expert_augment: str = "dsa", expert_seed: int = 0, experts_in_memory: int = 4,
        checkpoint_every: int = 100) -> SyntheticSet:
    """Matching Training Trajectories (Cazenavette et al. 2022)."""
    return trajectory_matching(
        request, setting=setting, iterations=iterations, syn_steps=syn_steps,
        expert_epochs=expert_epochs, max_start_epoch=max_start_epoch, lr_img=lr_img,
        lr_lr=lr_lr, lr_teacher=lr_teacher, momentum=momentum, batch_syn=batch_syn, zca=zca,
        init=init, augment=augment, unroll=unroll, num_experts=num_experts, epochs=epochs,
        expert_lr=expert_lr, batch_train=batch_train, expert_augment=expert_augment,
        expert_seed=expert_seed, experts_in_memory=experts_in_memory,
        checkpoint_every=checkpoint_every, method="mtt")


def pad(request: CondenseRequest, *, setting: str = "auto", iterations: int = 5000,
        syn_steps: int = 0, expert_epochs: int = 0, window: bool = True,
        min_start_epoch: int = -1, initial_max_start_epoch: int = 0, max_start_epoch: int = 0,
        window_growth: int = -1, lr_img: float = 0.0, lr_lr: float = 0.0,
        lr_teacher: float = 0.0, momentum: float = 0.5, batch_syn: int = -1,
        zca: str = "auto", init: str = "real", augment: str = "dsa", unroll: str = "constant",
        num_experts: int = 100, epochs: int = 50, expert_lr: float = 0.01,
        batch_train: int = 256, expert_augment: str = "dsa", expert_seed: int = 0,
        experts_in_memory: int = 4, deep_only: float = 0.25, deep_by: str = "modules",
        el2n_keep: float = 0.9,
        el2n_nets: int = 2, el2n_epochs: int = 2, soft_labels: bool = True,
        learn_labels: bool = True, lr_label: float = 2.0, label_epoch: int = -1,
        label_init: str = "expert0", label_momentum: float = -1.0, loss_threshold: float = 0.0,
        checkpoint_every: int = 100) -> SyntheticSet:
    """PAD (Li et al. 2024) on DATM (Guo et al. 2024); each part has its switch:
    ``window`` (budget-aligned, growing window of start epochs), ``el2n_keep`` (1.0 = no data
    selection), ``deep_only`` (0 = match every layer; ``deep_by`` says whether it is a share of
    the modules or of the parameter elements), ``soft_labels`` / ``learn_labels``."""
    if window:
        lo, first, last = pad_window(int(request.ipc))
        min_start_epoch = lo if min_start_epoch < 0 else min_start_epoch
        initial_max_start_epoch = initial_max_start_epoch or first
        max_start_epoch = max_start_epoch or last
        window_growth = max(1, iterations // 2) if window_growth < 0 else window_growth
    else:
        min_start_epoch = max(0, min_start_epoch)
        window_growth = max(0, window_growth)
    return trajectory_matching(
        request, setting=setting, iterations=iterations, syn_steps=syn_steps,
        expert_epochs=expert_epochs, max_start_epoch=max_start_epoch,
        min_start_epoch=min_start_epoch, initial_max_start_epoch=initial_max_start_epoch,
        window_growth=window_growth, lr_img=lr_img, lr_lr=lr_lr, lr_teacher=lr_teacher,
        momentum=momentum, batch_syn=batch_syn, zca=zca, init=init, augment=augment,
        unroll=unroll, num_experts=num_experts, epochs=epochs, expert_lr=expert_lr,
        batch_train=batch_train, expert_augment=expert_augment, expert_seed=expert_seed,
        experts_in_memory=experts_in_memory, deep_only=deep_only, deep_by=deep_by,
        el2n_keep=el2n_keep,
        el2n_nets=el2n_nets, el2n_epochs=el2n_epochs, soft_labels=soft_labels,
        learn_labels=learn_labels, lr_label=lr_label, label_epoch=label_epoch,
        label_init=label_init, label_momentum=label_momentum, loss_threshold=loss_threshold,
        checkpoint_every=checkpoint_every, method="pad")
