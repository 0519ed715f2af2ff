"""Time a reference implementation beside ours, on equal settings, interleaved.

This driver holds none of the reference's code: it imports the reference's public functions
from a checkout the user points to (``--reference PATH``), or from one it clones with git at a
pinned commit (``--fetch``, needs internet), and calls them on the same tensors, network shape,
batch size, epochs and thread count as ours, alternating ours / theirs round by round so a
change of machine load hits both alike.

    python benchmarks/reference_driver.py --list
    python benchmarks/reference_driver.py dd_eval_train --reference ~/src/DatasetCondensation
    python benchmarks/reference_driver.py dd_test_pass --fetch --rounds 5 --json out.json
    python benchmarks/reference_driver.py dd_eval_train --reference PATH --dry-run

Workloads (more can be added to :data:`WORKLOADS`; each names the reference, the module it
imports from it and the settings both sides run):

* ``dd_eval_train``: the evaluation training of a condensed set, the dataset-distillation
  papers' protocol: ConvNet-3 (width 128, instance norm, average pooling) trained on
  ``--images`` CIFAR-shaped images, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4,
  ``--epochs`` epochs, no augmentation.  Theirs: ``utils.get_network("ConvNet", ...)`` and
  ``utils.epoch("train", ...)`` of the DatasetCondensation code base (Zhao et al. 2021, Zhao &
  Bilen 2021 and 2023); ours: :func:`kddbench.protocol.train`.
* ``dd_test_pass``: one pass over ``--images`` test images, batch 256: theirs
  ``utils.epoch("test", ...)``, ours :func:`kddbench.protocol.evaluate`.
* ``dsa_augment``: DSA (Zhao & Bilen 2021), the augmentation every DSA/DM/MTT step and
  every evaluation epoch here applies: ``--epochs`` fresh draws on a batch of ``--images``
  CIFAR-shaped images, forward and backward through the augmentation (the condensation
  methods differentiate through it).  Theirs: ``utils.DiffAugment`` with ``ParamDiffAug()``,
  strategy ``color_crop_cutout_flip_scale_rotate``; ours: the ``dsa`` augmentation plugin.
* ``dc_match_loss``: the gradient-matching distance of DC/DSA (Zhao, Mopuri & Bilen 2021),
  ``--epochs`` evaluations, forward and backward, on ConvNet-3's parameter gradients of a real
  and a synthetic batch.  Theirs: ``utils.match_loss`` (``dis_metric = "ours"``); ours:
  ``gradient_distance`` of ``kddbench_plugins.condensation.gradient_matching``.  The driver
  also prints the relative difference of the two values (their norm product carries a
  1e-6 that ours does not).
* ``mtt_unroll``: one iteration of trajectory matching (Cazenavette et al. 2022), the part
  that costs: from an expert's parameters, ``--syn-steps`` SGD steps of ConvNet-3 on the
  ``--images`` synthetic CIFAR-shaped images (all in one batch, DSA augmentation each step),
  the normalised parameter distance to the target, and its gradient w.r.t. the images and the
  learned step size by plain autograd through every step.  Theirs: the mtt-distillation code
  base's ``ReparamModule`` over its ``get_network("ConvNet", ...)`` with its ``DiffAugment``,
  in a loop of ours that does what its ``distill.py`` does per iteration (that script keeps
  the loop in ``main``, so there is no function of theirs to call); ours:
  ``unroll_full`` of ``kddbench_plugins.condensation.trajectory_matching`` with our DSA.
* ``mtt_unroll_constant``: the same iteration with our constant-memory unroll (TESLA, Cui et
  al. 2023; ``unroll = "constant"``, the default of ``mtt``) against their plain one.

* ``pad_unroll`` / ``pad_unroll_constant``: one PAD iteration (Li et al. 2024) as its
  ``distill/PAD_depth.py`` does it: the ``mtt_unroll`` iteration on learned soft labels
  (logits, trained on as cross-entropy against their softmax) with the first half of the flat
  parameter elements (its CIFAR-10 IPC-10 ``depth_ratio``) left out of the loss's numerator
  and denominator.  Theirs: that script's loop, written here around the PAD code base's
  ``ReparamModule`` and its ``utils/utils_baseline.py`` (``get_network``, ``DiffAugment``);
  ours: ``unroll_full`` / ``unroll_constant`` with ``FlatNet.deep_mask(0.5, "parameters")``.
  The agreement covers the loss and the gradients of the images, the logits and the step size.
* ``dm_iteration``: one iteration of distribution matching (Zhao & Bilen 2023) at IPC 10:
  ConvNet-3 (instance norm) embeddings of ``--images`` real CIFAR-shaped images per class and
  of the 100 synthetic ones, DSA with one draw per class shared by its real and synthetic
  images, the summed squared distance of the class means, and its gradient w.r.t. the
  synthetic images.  Theirs: what ``main_DM.py`` of the DatasetCondensation code base does per
  iteration (its loop lives in ``main``), written here around its network's ``embed`` and its
  ``DiffAugment``; ours: ``dm_backward`` of ``kddbench_plugins.condensation.
  distribution_matching`` (chunked embeddings on a CPU, the same loss).
* ``datadam_iteration``: one iteration of DataDAM (Sajedi et al. 2023) at its released code's
  setting (batch-norm ConvNet-3, ``--images`` real images per class, IPC 10, p 1, the
  embedding term weighted 0.01, everything x100).  Theirs: what ``main_DataDAM.py`` does per
  iteration, written here around its ``networks.ConvNet`` (forward hooks on the ReLUs of
  ``features``), ``get_attention`` and ``DiffAugment``; ours: ``datadam_backward``.  Their maps
  are taken at the ReLU outputs before pooling, ours at the stage outputs after it
  (docs/condense.md); the agreement is therefore checked on both networks without pooling,
  where the two are the same maps, and the timed rounds use the pooled networks.

* ``ddwang_iteration``: one outer iteration of Wang et al. 2018's Algorithm 1 at the MNIST
  setting (LeNet, 10 classes, 1 distilled image per class per step, ``--syn-steps`` steps
  repeated for ``--epochs`` epochs, a real batch of ``--images``): the unrolled descent from
  fixed initial weights, the real batch's loss after it, and its gradient w.r.t. the distilled
  images and the step sizes.  Theirs: ``Trainer.forward``, ``Trainer.backward`` and
  ``Trainer.accumulate_grad`` of the dataset-distillation code base on its ``LeNet``; ours:
  ``unroll`` and ``backward_real_loss`` of ``kddbench_plugins.condensation.meta_learning``.

* ``kd_losses``: four knowledge-distillation losses, forward and backward, ``--epochs`` times,
  on a batch of ``--images``: Hinton et al. 2015's tempered KL (T 4) and decoupled KD (Zhao et
  al. 2022; alpha 1, beta 8, T 4) on 100-class logits, attention transfer (Zagoruyko &
  Komodakis 2017; p 2) on (N, 64, 8, 8) features and relational KD (Park et al. 2019;
  distance 25, angle 50) on a 64-wide embedding.  Theirs: ``kd_loss``, ``dkd_loss``,
  ``at_loss`` and ``rkd_loss`` of the mdistiller code base (Zhao et al. 2022); ours: the
  ``response``, ``dkd``, ``attention`` and ``relational`` losses with their cross-entropy
  weight 0, so only the distillation terms are compared.

For ``dc_match_loss``, ``kd_losses``, ``ddwang_iteration``, ``dm_iteration``,
``datadam_iteration`` and the ``mtt`` and ``pad`` workloads the driver first checks that both sides
compute the same thing and prints the relative differences (``agreement``).  For ``dm`` and
``datadam``: with augmentation off, on one network (theirs carries our weights), the loss and
the image gradient.  For ``ddwang``: from the same weights, images, step sizes and
real batch, the loss and the gradients of the images and the step sizes.  For ``mtt``: with
augmentation off, from the same parameters and images, the loss and the image gradient
(both networks have the same layers in the same order, so one flat parameter vector serves
both).

Printed: the median and best seconds of each side and ours' speed-up (their time / ours,
median of the per-round ratios and ratio of the best), with threads, device and load average.
Nothing is claimed that this run did not measure.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

EXIT_INVALID = 2  # kddbench.errors.ExitCode.INVALID_INPUT (not imported: --list needs no torch)


class DriverError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


@dataclass(frozen=True)
class Reference:
    name: str
    url: str
    commit: str       # pinned: the commit whose public functions the adapters call
    module: str       # imported from the checkout's root
    citation: str


DATASET_CONDENSATION = Reference(
    "DatasetCondensation", "https://github.com/VICO-UoE/DatasetCondensation.git",
    "306245d074cca5524694a8a83ca0797a6e85dfc8", "utils",
    "Zhao, Mopuri & Bilen 2021, 'Dataset Condensation with Gradient Matching'; Zhao & Bilen "
    "2021 (DSA) and 2023 (DM)")


DATADAM = Reference(
    "DataDAM", "https://github.com/DataDistillation/DataDAM.git",
    "0f6ea09ed019073933c9bd46382cd4aa3bec7fb8", "utils",
    "Sajedi, Khaki, Amjadian, Liu, Lawryshyn & Plataniotis 2023, 'DataDAM: Efficient Dataset "
    "Distillation with Attention Matching'; its utils.py imports kornia, scipy and tqdm")


MTT = Reference(
    "mtt-distillation", "https://github.com/GeorgeCazenavette/mtt-distillation.git",
    "50dccea47ba48b9cfb3b9c59375d7da92e4e603b", "utils",
    "Cazenavette, Wang, Torralba, Efros & Zhu 2022, 'Dataset Distillation by Matching "
    "Training Trajectories'; its utils.py imports kornia, scipy and tqdm")


PAD = Reference(
    "PAD", "https://github.com/NUS-HPC-AI-Lab/PAD.git",
    "8a344b43f8315161a694332c24859cc0b9fff3df", "reparam_module",
    "Li et al. 2024, 'Prioritize Alignment in Dataset Distillation' (distill/PAD_depth.py at this "
    "commit); its utils/utils_baseline.py imports kornia, scipy, tqdm and matplotlib")


DDWANG = Reference(
    "dataset-distillation", "https://github.com/SsnL/dataset-distillation.git",
    "24e6958cf23bc98de20a7b2714fc76fa7d38b874", "train_distilled_image",
    "Wang, Zhu, Torralba & Efros 2018, 'Dataset Distillation'; its modules import matplotlib, "
    "six, tqdm and pillow")


MDISTILLER = Reference(
    "mdistiller", "https://github.com/megvii-research/mdistiller.git",
    "a08d46f10d6102bd6e3f258ca5ac880b020ea259", "mdistiller",
    "Zhao, Cui, Song, Qiu & Liang 2022, 'Decoupled Knowledge Distillation' (the code base's "
    "own losses: KD, AT, RKD, DKD, ...)")


@dataclass(frozen=True)
class Workload:
    name: str
    reference: Reference
    doc: str
    setup: Callable[..., Any]           # (ref_module, settings) -> state
    ours: Callable[[Any], None]
    theirs: Callable[[Any], None]
    defaults: dict = field(default_factory=dict)
    images_are: str = "images"          # what --images counts, for the printed table


# -- the dataset-distillation code base: evaluation training and the test pass ---------------
def _dd_tensors(s):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (s.images,), generator=g)
    return x.to(s.device), y.to(s.device)


def _our_net(s, arch: str = "convnet3", channels: int = 3, side: int = 32, **options):
    """Our ``arch`` for 10 classes, ``options`` over its defaults, its weights drawn from
    seed 0."""
    from kddbench.plugins import get_registry
    from kddbench.protocol import seeded

    spec = get_registry().get("architecture", arch)
    with seeded(0):
        return spec.load()(channels, 10, (side, side),
                           **spec.resolve_options(options or None)).to(s.device)


def _rel_diff(ours, theirs) -> float:
    """|ours - theirs| / |theirs|, for numbers or tensors (norms)."""
    if hasattr(theirs, "norm"):
        return float((ours - theirs).norm() / theirs.norm().clamp_min(1e-30))
    return abs(float(ours) - float(theirs)) / max(abs(float(theirs)), 1e-30)


def _check_same_parameters(theirs, ours, what: str) -> None:
    """The agreement checks give both sides one parameter vector: same shapes, same order."""
    if [tuple(x) for x in theirs] != [tuple(x) for x in ours]:
        raise DriverError(f"their {what}'s parameters differ from ours in shape or order; this "
                          "workload needs the same network on both sides")


def _their_args(s):
    # the fields their training/testing helpers read; no augmentation on either side
    return SimpleNamespace(device=str(s.device), dsa=False, dc_aug_param=None, batch_train=256,
                           lr_net=0.01, epoch_eval_train=s.epochs, dis_metric="ours")


def _dd_setup(ref, s):
    import torch

    x, y = _dd_tensors(s)
    loader = torch.utils.data.DataLoader(ref.TensorDataset(x.cpu(), y.cpu()), batch_size=256,
                                         shuffle=True, num_workers=0)
    test_loader = torch.utils.data.DataLoader(ref.TensorDataset(x.cpu(), y.cpu()),
                                              batch_size=256, shuffle=False, num_workers=0)
    return SimpleNamespace(ref=ref, s=s, x=x, y=y, loader=loader, test_loader=test_loader,
                           args=_their_args(s))


def _dd_train_ours(st):
    from kddbench.protocol import Recipe, make_generator, train

    recipe = Recipe(epochs=st.s.epochs, batch_size=256, lr=0.01, momentum=0.9,
                    weight_decay=5e-4, schedule="constant")
    train(_our_net(st.s), st.x, st.y, recipe, make_generator(0, st.s.device))


def _dd_train_theirs(st):
    import torch

    net = st.ref.get_network("ConvNet", 3, 10, (32, 32)).to(st.s.device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = torch.nn.CrossEntropyLoss()
    for _ in range(st.s.epochs):
        st.ref.epoch("train", st.loader, net, opt, criterion, st.args, aug=False)


def _dd_test_ours(st):
    from kddbench.protocol import evaluate

    evaluate(st.net_ours, st.x, st.y, 10, 256)


def _dd_test_theirs(st):
    import torch

    st.ref.epoch("test", st.test_loader, st.net_theirs, None, torch.nn.CrossEntropyLoss(),
                 st.args, aug=False)


def _dd_test_setup(ref, s):
    st = _dd_setup(ref, s)
    st.net_ours = _our_net(s)
    st.net_theirs = ref.get_network("ConvNet", 3, 10, (32, 32)).to(s.device)
    return st


DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"  # the reference code bases' default
IPC = 10  # synthetic images per class of the dm and datadam workloads
PAD_DEPTH_RATIO = 0.5  # PAD's CIFAR-10 IPC-10 depth_ratio (configs/CIFAR-10/ConvIN/IPC10.yaml)


# -- the condensation methods' parts: DSA augmentation, the gradient-matching distance -------
def _dsa_setup(ref, s):
    import torch

    from kddbench_plugins.augmentations.dsa import dsa

    x, _ = _dd_tensors(s)
    return SimpleNamespace(ref=ref, s=s, x=x.requires_grad_(True), ours=dsa(None),
                           param=ref.ParamDiffAug(),
                           gen=torch.Generator(s.device).manual_seed(3))


def _dsa_ours(st):
    for _ in range(st.s.epochs):
        st.ours(st.x, st.gen).square().mean().backward()


def _dsa_theirs(st):
    for _ in range(st.s.epochs):
        st.ref.DiffAugment(st.x, DSA_STRATEGY, seed=-1, param=st.param).square().mean() \
            .backward()


def _match_setup(ref, s):
    import torch
    import torch.nn.functional as F

    from kddbench_plugins.condensation.gradient_matching import gradient_distance

    x, y = _dd_tensors(s)
    net = _our_net(s)
    params = list(net.parameters())
    half = max(1, x.shape[0] // 2)
    x_syn, y_syn = (x[half:], y[half:]) if x.shape[0] > 1 else (x, y)
    real = torch.autograd.grad(F.cross_entropy(net(x[:half]), y[:half]), params)
    syn = [g.detach().clone().requires_grad_(True) for g in torch.autograd.grad(
        F.cross_entropy(net(x_syn), y_syn), params)]
    st = SimpleNamespace(ref=ref, s=s, real=[g.detach() for g in real], syn=syn,
                         ours=gradient_distance, args=_their_args(s))
    ours = float(gradient_distance(st.real, syn).detach())
    theirs = float(ref.match_loss(syn, st.real, st.args).detach())
    st.agreement = {"distance_ours": ours, "distance_theirs": theirs,
                    "distance_rel_diff": _rel_diff(ours, theirs)}
    return st


def _match_ours(st):
    for _ in range(st.s.epochs):
        st.ours(st.real, st.syn).backward()


def _match_theirs(st):
    for _ in range(st.s.epochs):
        st.ref.match_loss(st.syn, st.real, st.args).backward()


# -- trajectory matching: one iteration's unroll -------------------------------------------
def _unroll_problem(helpers, s):
    """One unroll's tensors on both sides: ``helpers`` has ``get_network``, ``DiffAugment``
    and ``ParamDiffAug`` (mtt-distillation's utils; PAD's utils/utils_baseline.py), their
    ``reparam_module`` is importable."""
    import torch

    from kddbench_plugins.augmentations.dsa import dsa
    from kddbench_plugins.condensation import trajectory_matching as tm

    reparam = importlib.import_module("reparam_module")
    ref = helpers
    x, y = _dd_tensors(s)
    ours = tm.FlatNet(_our_net(s))
    theirs = reparam.ReparamModule(ref.get_network("ConvNet", 3, 10, (32, 32), dist=False)
                                   .to(s.device))
    _check_same_parameters(theirs._param_shapes, ours.shapes, "ConvNet")
    g = torch.Generator().manual_seed(1)
    start = ours.flat().to(s.device)
    target = start + 0.01 * torch.randn(start.shape, generator=g).to(s.device)
    st = SimpleNamespace(ref=ref, s=s, tm=tm, ours=ours, theirs=theirs, start=start,
                         target=target, y=y, images=x.clone().requires_grad_(True),
                         lr=torch.tensor(0.01, device=s.device, requires_grad=True),
                         aug=dsa(None), param=ref.ParamDiffAug(), gen=torch.Generator(
                             s.device).manual_seed(2))
    return st


def _mtt_setup(ref, s):
    st = _unroll_problem(ref, s)
    st.agreement = _mtt_agreement(st)
    return st


def _mtt_ours(st, unroll="full", aug=True):
    steps = st.tm.plan_steps(st.images.shape[0], st.s.syn_steps, 0, st.gen, st.images.device)
    run = st.tm.unroll_full if unroll == "full" else st.tm.unroll_constant
    out = run(st.ours, st.start, st.target, st.images, st.y, st.lr, steps,
              st.aug if aug else None)
    return out.loss, out.image_grad


def _mtt_theirs(st, aug=True):
    """What their distill.py does in one iteration (batch_syn = all images, no texture, one
    process), written here around their ReparamModule and DiffAugment."""
    import torch
    import torch.nn.functional as F

    params = [st.start.clone().requires_grad_(True)]
    for _ in range(st.s.syn_steps):
        idx = torch.randperm(st.images.shape[0])  # their batch: a fresh permutation
        x, y = st.images[idx], st.y[idx]
        if aug:
            x = st.ref.DiffAugment(x, DSA_STRATEGY, param=st.param)
        ce = F.cross_entropy(st.theirs(x, flat_param=params[-1]), y)
        (grad,) = torch.autograd.grad(ce, params[-1], create_graph=True)
        params.append(params[-1] - st.lr * grad)
    n = params[0].numel()
    loss = (F.mse_loss(params[-1], st.target, reduction="sum") / n) \
        / (F.mse_loss(st.start, st.target, reduction="sum") / n)
    st.images.grad, st.lr.grad = None, None
    loss.backward()
    return float(loss.detach()), st.images.grad.detach().clone()


def _pad_setup(ref, s):
    """PAD's iteration (distill/PAD_depth.py): the MTT unroll on soft labels (learned logits,
    trained on by their SoftCrossEntropy: cross-entropy against ``softmax(logits)``) with the
    first ``depth_ratio`` = 0.5 of the flat parameter elements left out of the loss's
    numerator and denominator; ours: ``unroll_full`` / ``unroll_constant`` with
    ``FlatNet.deep_mask(0.5, "parameters")``."""
    import torch

    st = _unroll_problem(_module_beside(ref, "utils/utils_baseline.py"), s)
    g = torch.Generator().manual_seed(3)
    st.y = torch.randn(st.images.shape[0], 10, generator=g).to(s.device).requires_grad_(True)
    st.mask = st.ours.deep_mask(PAD_DEPTH_RATIO, "parameters")
    st.agreement = _pad_agreement(st)
    return st


def _module_beside(ref, relative: str):
    """The module at ``relative`` in the checkout ``ref`` was imported from, by its file (a
    ``utils`` package elsewhere on ``sys.path`` would otherwise shadow a namespace folder)."""
    import importlib.util

    path = Path(ref.__file__).resolve().parent / relative
    if not path.is_file():
        raise DriverError(f"no {relative} beside {ref.__name__} in {path.parents[1]}")
    name = "_reference_" + relative.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the reference's own imports
        sys.modules.pop(name, None)
        raise DriverError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _pad_ours(st, unroll="full", aug=True):
    steps = st.tm.plan_steps(st.images.shape[0], st.s.syn_steps, 0, st.gen, st.images.device)
    run = st.tm.unroll_full if unroll == "full" else st.tm.unroll_constant
    out = run(st.ours, st.start, st.target, st.images, st.y, st.lr, steps,
              st.aug if aug else None, st.mask)
    return out.loss, out.image_grad, out.label_grad, out.lr_grad


def _pad_theirs(st, aug=True):
    """What their PAD_depth.py does per iteration (batch_syn = all images, one process),
    written here around their ReparamModule and DiffAugment."""
    import torch
    import torch.nn.functional as F

    params = [st.start.clone().requires_grad_(True)]
    for _ in range(st.s.syn_steps):
        idx = torch.randperm(st.images.shape[0])
        x, y = st.images[idx], st.y[idx]
        if aug:
            x = st.ref.DiffAugment(x, DSA_STRATEGY, param=st.param)
        out = st.theirs(x, flat_param=params[-1])
        ce = torch.sum(-F.log_softmax(out, dim=1) * F.softmax(y, dim=1)) / out.shape[0]
        (grad,) = torch.autograd.grad(ce, params[-1], create_graph=True)
        params.append(params[-1] - st.lr * grad)
    n = params[0].numel()
    keep = torch.arange(n)[int(PAD_DEPTH_RATIO * n):]
    losses = F.mse_loss(params[-1], st.target, reduction="none")
    dists = F.mse_loss(st.start, st.target, reduction="none")
    loss = (losses[keep].sum() / n) / (dists[keep].sum() / n)
    st.images.grad, st.lr.grad, st.y.grad = None, None, None
    loss.backward()
    return (float(loss.detach()), st.images.grad.detach().clone(), st.y.grad.detach().clone(),
            st.lr.grad.detach().clone())


def _pad_agreement(st) -> dict:
    """Relative differences of ours and theirs, augmentation off, same start, images, logits."""
    theirs = _pad_theirs(st, aug=False)
    out = {"loss_theirs": theirs[0]}
    for mode in ("full", "constant"):
        ours = _pad_ours(st, mode, aug=False)
        out[f"loss_ours_{mode}"] = ours[0]
        for name, o, t in zip(("loss", "image_grad", "label_grad", "step_size_grad"), ours,
                              theirs):
            out[f"{name}_rel_diff_{mode}"] = _rel_diff(o, t)
    return out


def _mtt_agreement(st) -> dict:
    """Relative differences of ours and theirs, augmentation off, same start and images."""
    loss_o, grad_o = _mtt_ours(st, "full", aug=False)
    loss_c, grad_c = _mtt_ours(st, "constant", aug=False)
    loss_t, grad_t = _mtt_theirs(st, aug=False)
    return {"loss_ours_full": loss_o, "loss_ours_constant": loss_c, "loss_theirs": loss_t,
            "loss_rel_diff_full": _rel_diff(loss_o, loss_t),
            "loss_rel_diff_constant": _rel_diff(loss_c, loss_t),
            "image_grad_rel_diff_full": _rel_diff(grad_o, grad_t),
            "image_grad_rel_diff_constant": _rel_diff(grad_c, grad_t)}


# -- distribution and attention matching: one iteration ---------------------------------------
def _by_class(s, n_per_class: int, seed: int):
    """CIFAR-shaped images sorted by class, ``n_per_class`` of each of 10 classes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10 * n_per_class, 3, 32, 32, generator=g)
    y = torch.arange(10).repeat_interleave(n_per_class)
    return x.to(s.device), y.to(s.device)


def _copy_parameters(theirs, ours, what: str) -> None:
    """Their network gets our weights (same layers in the same order)."""
    import torch

    _check_same_parameters([p.shape for p in theirs.parameters()],
                           [p.shape for p in ours.parameters()], what)
    with torch.no_grad():
        for t, o in zip(theirs.parameters(), ours.parameters()):
            t.copy_(o)


def _frozen_pair(our_net, their_net, what: str):
    """Both networks frozen in training mode (both references embed so), theirs with our
    weights."""
    _copy_parameters(their_net, our_net, what)
    for net in (our_net, their_net):
        net.requires_grad_(False)
        net.train()
    return our_net, their_net


def _matching_setup(s, our_net, their_net, what: str):
    """Shared by DM and DataDAM: one frozen network on both sides (:func:`_frozen_pair`),
    ``--images`` real images per class and IPC 10 synthetic ones, our DSA and theirs."""
    import torch

    from kddbench_plugins.augmentations.dsa import dsa

    _frozen_pair(our_net, their_net, what)
    x_real, y_real = _by_class(s, s.images, 4)
    x_syn, y_syn = _by_class(s, IPC, 5)
    return SimpleNamespace(s=s, ours_net=our_net, theirs_net=their_net, x_real=x_real,
                           y_real=y_real, images=x_syn.requires_grad_(True), y_syn=y_syn,
                           aug=dsa(None), gen=torch.Generator(s.device).manual_seed(6))


def _dsa_pairs_theirs(st, per_class):
    """Their per-class DiffAugment of real and synthetic images with one seed per class
    (what their loops do); ``per_class(c, real_c, syn_c)`` gets each class's pair."""
    for c in range(10):
        real = st.x_real[st.y_real == c]
        syn = st.images[c * IPC:(c + 1) * IPC]
        if st.augment:
            seed = int(time.time() * 1000) % 100000
            real = st.ref.DiffAugment(real, DSA_STRATEGY, seed=seed, param=st.param)
            syn = st.ref.DiffAugment(syn, DSA_STRATEGY, seed=seed, param=st.param)
        per_class(c, real, syn)


def _dm_setup(ref, s):
    from kddbench_plugins.condensation import distribution_matching as dmm
    from kddbench_plugins.condensation.synthesis import auto_chunk

    st = _matching_setup(s, _our_net(s), ref.get_network("ConvNet", 3, 10, (32, 32))
                         .to(s.device), "ConvNet")
    st.ref, st.dmm, st.param = ref, dmm, ref.ParamDiffAug()
    st.chunk = auto_chunk(st.ours_net, st.x_real[:2])
    st.agreement = _gradient_agreement(st, _dm_ours, _dm_theirs)
    return st


def _dm_ours(st, aug=True):
    """What our ``dm`` does per iteration, on the workload's network and images."""
    from kddbench_plugins.condensation.distribution_matching import _augment_pair

    st.images.grad = None
    x_real, x_syn = _augment_pair(st.aug if aug else None, st.x_real, st.y_real, st.images,
                                  st.y_syn, 10, st.gen)
    loss = st.dmm.dm_backward(st.ours_net, x_real, st.y_real, x_syn, st.y_syn, 10, False,
                              st.chunk)
    return float(loss), st.images.grad.detach().clone()


def _dm_theirs(st, aug=True):
    """What their main_DM.py does per iteration (ConvNet without batch norm), written here
    around their network's ``embed`` and their ``DiffAugment``."""
    import torch

    st.images.grad, st.augment = None, aug
    loss = torch.zeros((), device=st.images.device)

    def per_class(c, real, syn):
        nonlocal loss
        out_real = st.theirs_net.embed(real).detach()
        out_syn = st.theirs_net.embed(syn)
        loss = loss + torch.sum((out_real.mean(0) - out_syn.mean(0)) ** 2)

    _dsa_pairs_theirs(st, per_class)
    loss.backward()
    return float(loss.detach()), st.images.grad.detach().clone()


def _gradient_agreement(st, ours, theirs) -> dict:
    """Loss and image gradient of ours and theirs, augmentation off, same net and images."""
    loss_o, grad_o = ours(st, aug=False)
    loss_t, grad_t = theirs(st, aug=False)
    return {"loss_ours": loss_o, "loss_theirs": loss_t, "loss_rel_diff": _rel_diff(loss_o, loss_t),
            "image_grad_rel_diff": _rel_diff(grad_o, grad_t)}


def _datadam_setup(ref, s):
    """DataDAM at its released code's setting (batch-norm ConvNet-3, p 1, the embedding term
    weighted 0.01, x100).  Their attention maps are the ReLU outputs before pooling, ours the
    stage outputs after it; without pooling the two are the same maps, so the agreement is
    checked on a pair of networks without pooling and the rounds are timed on the pooled
    pair."""
    from kddbench_plugins.condensation import distribution_matching as dmm

    networks = importlib.import_module("networks")

    def pair(pooling: bool):
        ours = _our_net(s, norm="batchnorm", pool="avgpool" if pooling else "none")
        theirs = networks.ConvNet(channel=3, num_classes=10, net_width=128, net_depth=3,
                                  net_act="relu", net_norm="batchnorm",
                                  net_pooling="avgpooling" if pooling else "none",
                                  im_size=(32, 32)).to(s.device)
        return ours, theirs

    ours, theirs = pair(False)
    st = _matching_setup(s, ours, theirs, "ConvNet (batch norm)")
    st.ref, st.dmm, st.param, st.get_attention = ref, dmm, ref.ParamDiffAug(), ref.get_attention
    st.agreement = _gradient_agreement(st, _datadam_ours, _datadam_theirs)
    st.ours_net, st.theirs_net = _frozen_pair(*pair(True), "ConvNet (batch norm)")
    return st


def _datadam_ours(st, aug=True):
    """What our ``datadam`` does per iteration at the code setting (batch norm: no chunks)."""
    from kddbench_plugins.condensation.distribution_matching import _augment_pair

    st.images.grad = None
    x_real, x_syn = _augment_pair(st.aug if aug else None, st.x_real, st.y_real, st.images,
                                  st.y_syn, 10, st.gen)
    loss, _, _ = st.dmm.datadam_backward(st.ours_net, x_real, st.y_real, x_syn, st.y_syn, 10,
                                         1.0, 0.01, 100.0, 0)
    return float(loss), st.images.grad.detach().clone()


def _datadam_theirs(st, aug=True):
    """What their main_DataDAM.py does per iteration, written here around their ConvNet (its
    forward returns the embedding first), their ``get_attention`` and ``DiffAugment``: forward
    hooks on the ReLUs of ``features``, every map but the last's matched by class mean, and the
    embedding's class means, weighted 0.01, everything x100."""
    import torch

    st.images.grad, st.augment = None, aug
    reals, syns = [], []
    _dsa_pairs_theirs(st, lambda c, real, syn: (reals.append(real), syns.append(syn)))
    real, syn = torch.cat(reals), torch.cat(syns)
    captured: list = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
             for m in st.theirs_net.features if isinstance(m, torch.nn.ReLU)]
    try:
        emb_real = st.theirs_net(real)[0].detach()
        maps_real, captured[:] = list(captured), []
        emb_syn = st.theirs_net(syn)[0]
        maps_syn = list(captured)
    finally:
        for h in hooks:
            h.remove()
    n_real = real.shape[0] // 10

    def err(a, b, na, nb):
        return torch.sum((a.reshape(10, na, -1).mean(1) - b.reshape(10, nb, -1).mean(1)) ** 2)

    loss = torch.zeros((), device=real.device)
    for a, b in zip(maps_real[:-1], maps_syn[:-1]):
        loss = loss + 100 * err(st.get_attention(a.detach(), param=1, exp=1, norm="l2"),
                                st.get_attention(b, param=1, exp=1, norm="l2"), n_real, IPC)
    loss = loss + 100 * 0.01 * err(emb_real, emb_syn, n_real, IPC)
    loss.backward()
    return float(loss.detach()), st.images.grad.detach().clone()


# -- knowledge distillation: the losses ------------------------------------------------------
def _kd_setup(ref, s):
    import torch

    from kddbench_plugins.distillation import losses as ours

    theirs = SimpleNamespace(**{name: getattr(importlib.import_module(
        f"mdistiller.distillers.{mod}"), name) for mod, name in (
        ("KD", "kd_loss"), ("DKD", "dkd_loss"), ("AT", "at_loss"), ("RKD", "rkd_loss"))})
    g = torch.Generator().manual_seed(0)
    n, dev = s.images, s.device

    def rand(*shape, grad=False):
        return torch.randn(*shape, generator=g).to(dev).requires_grad_(grad)

    staged = SimpleNamespace(feature_names=("a", "embedding"))  # what the losses read of a net
    attention = ours.Attention(staged, staged, beta=1.0, p=2.0, ce_weight=0.0)
    attention.setup({"a": (n, 64, 8, 8)}, {"a": (n, 64, 8, 8)})
    st = SimpleNamespace(
        s=s, theirs=theirs, logits_s=rand(n, 100, grad=True), logits_t=rand(n, 100),
        target=torch.randint(0, 100, (n,), generator=g).to(dev),
        feat_s=rand(n, 64, 8, 8, grad=True), feat_t=rand(n, 64, 8, 8),
        emb_s=rand(n, 64, grad=True), emb_t=rand(n, 64),
        response=ours.Response(alpha=1.0, T=4.0),
        dkd=ours.DKD(alpha=1.0, beta=8.0, T=4.0, warmup=1, ce_weight=0.0),
        attention=attention,
        relational=ours.Relational(staged, staged, distance_weight=25.0, angle_weight=50.0,
                                   ce_weight=0.0))
    mine, other = _kd_ours_values(st), _kd_theirs_values(st)
    st.agreement = {f"{k}_rel_diff": _rel_diff(mine[k].detach(), other[k].detach())
                    for k in mine}
    return st


def _kd_ours_values(st) -> dict:
    a = st.attention
    return {
        "response": st.response(st.logits_s, {}, st.logits_t, {}, st.target),
        "dkd": st.dkd(st.logits_s, {}, st.logits_t, {}, st.target, epoch=0, epochs=1),
        "attention": a(st.logits_s, {"a": st.feat_s}, None,
                       a.prepare_teacher({"a": st.feat_t}), st.target),
        "relational": st.relational(st.logits_s, {"embedding": st.emb_s}, None,
                                    {"embedding": st.emb_t}, st.target)}


def _kd_theirs_values(st) -> dict:
    t = st.theirs
    return {"response": t.kd_loss(st.logits_s, st.logits_t, 4.0),
            "dkd": t.dkd_loss(st.logits_s, st.logits_t, st.target, 1.0, 8.0, 4.0),
            "attention": t.at_loss([st.feat_s], [st.feat_t], 2),
            "relational": t.rkd_loss(st.emb_s, st.emb_t, False, 1e-12, 25, 50)}


def _kd_ours(st):
    for _ in range(st.s.epochs):
        sum(_kd_ours_values(st).values()).backward()


def _kd_theirs(st):
    for _ in range(st.s.epochs):
        sum(_kd_theirs_values(st).values()).backward()


# -- Wang et al. 2018: one outer iteration -----------------------------------------------------
def _ddwang_setup(ref, s):
    import torch

    from kddbench_plugins.condensation import meta_learning as ml

    nets = importlib.import_module("networks")
    classes, steps, dev = 10, s.syn_steps, torch.device(s.device)
    state = SimpleNamespace(  # the fields their Trainer and LeNet read
        distill_steps=steps, distill_epochs=s.epochs, num_classes=classes,
        distilled_images_per_class_per_step=1, distill_lr=0.02, lr=0.01, device=dev, nc=1,
        input_size=28, distributed=False, decay_epochs=40, decay_factor=0.5, dropout=False,
        mode="distill_basic")
    ours = _our_net(s, "lenet", 1, 28)
    theirs = nets.LeNet(state)
    _check_same_parameters(theirs._weights_shapes, [p.shape for p in ours.parameters()],
                           "LeNet")
    w0 = {n: p.detach().clone() for n, p in ours.named_parameters()}
    flat0 = torch.cat([t.reshape(-1) for t in w0.values()])
    trainer = ref.Trainer(state, [theirs])
    g = torch.Generator().manual_seed(0)
    images = torch.randn(classes * steps, 1, 28, 28, generator=g).to(dev)  # class-ordered
    with torch.no_grad():  # their step i holds image i of every class, in class order
        for i, d in enumerate(trainer.data):
            d.copy_(images.view(classes, steps, 1, 28, 28)[:, i])
    x_real = torch.randn(s.images, 1, 28, 28, generator=g).to(dev)
    y_real = torch.randint(0, classes, (s.images,), generator=g).to(dev)
    raw = torch.full((s.epochs * steps,), ml.raw_step_size(0.02), device=dev)
    st = SimpleNamespace(ref=ref, s=s, ml=ml, net=ours, w0=w0, flat0=flat0, trainer=trainer,
                         images=images.requires_grad_(True), raw=raw.requires_grad_(True),
                         labels=torch.arange(classes, device=dev).repeat_interleave(steps),
                         groups=ml.step_groups(classes, steps, steps, dev), x_real=x_real,
                         y_real=y_real, classes=classes)
    st.agreement = _ddwang_agreement(st)
    return st


def _ddwang_ours(st):
    import torch.nn.functional as F

    w0 = {n: t.clone().requires_grad_(True) for n, t in st.w0.items()}
    plan = st.ml.schedule(st.images, st.labels, st.groups, F.softplus(st.raw), st.s.epochs)
    w = st.ml.unroll(st.net, w0, plan, create_graph=True)
    st.images.grad, st.raw.grad = None, None
    loss = st.ml.backward_real_loss(st.net, w, st.x_real, st.y_real)
    return loss, st.images.grad, st.raw.grad


def _ddwang_theirs(st):
    import torch

    t = st.trainer
    for p in t.params:
        p.grad.zero_()
    model = t.models[0]
    with torch.no_grad():  # fixed initial weights, as ours
        model.get_param().copy_(st.flat0)
    steps = t.get_steps()
    loss, saved = t.forward(model, st.x_real, st.y_real, steps)
    t.accumulate_grad([t.backward(model, st.x_real, st.y_real, steps, saved)])
    image_grad = torch.stack([d.grad for d in t.data], 1).reshape(st.images.shape)
    return float(loss.detach()), image_grad, t.raw_distill_lrs.grad.reshape(-1)


def _ddwang_agreement(st) -> dict:
    loss_o, img_o, lr_o = _ddwang_ours(st)
    loss_t, img_t, lr_t = _ddwang_theirs(st)
    return {"loss_ours": loss_o, "loss_theirs": loss_t, "loss_rel_diff": _rel_diff(loss_o, loss_t),
            "image_grad_rel_diff": _rel_diff(img_o, img_t),
            "step_size_grad_rel_diff": _rel_diff(lr_o, lr_t)}


WORKLOADS = {w.name: w for w in (
    Workload("dd_eval_train", DATASET_CONDENSATION,
             "evaluation training: ConvNet-3 on N CIFAR-shaped images, batch 256, SGD 0.01, "
             "E epochs", _dd_setup, _dd_train_ours, _dd_train_theirs,
             {"images": 500, "epochs": 2}),
    Workload("dd_test_pass", DATASET_CONDENSATION,
             "one test pass of ConvNet-3 over N CIFAR-shaped images, batch 256",
             _dd_test_setup, _dd_test_ours, _dd_test_theirs, {"images": 2000, "epochs": 0}),
    Workload("dsa_augment", DATASET_CONDENSATION,
             "DSA augmentation, forward and backward: E draws on a batch of N CIFAR-shaped "
             "images", _dsa_setup, _dsa_ours, _dsa_theirs, {"images": 256, "epochs": 10}),
    Workload("dc_match_loss", DATASET_CONDENSATION,
             "the gradient-matching distance on ConvNet-3's gradients, forward and backward, "
             "E times", _match_setup, _match_ours, _match_theirs,
             {"images": 256, "epochs": 20}),
    Workload("dm_iteration", DATASET_CONDENSATION,
             "one DM iteration: ConvNet-3 embeddings of N real images per class and IPC 10 "
             "synthetic ones (CIFAR-shaped), DSA, the class-mean distance and its image "
             "gradient", _dm_setup, _dm_ours, _dm_theirs, {"images": 256, "epochs": 0},
             "real images per class"),
    Workload("datadam_iteration", DATADAM,
             "one DataDAM iteration at its code's setting: batch-norm ConvNet-3, N real images "
             "per class and IPC 10 synthetic ones (CIFAR-shaped), DSA, attention maps and "
             "embeddings matched by class mean, the image gradient",
             _datadam_setup, _datadam_ours, _datadam_theirs, {"images": 64, "epochs": 0},
             "real images per class"),
    Workload("kd_losses", MDISTILLER,
             "four KD losses (tempered KL, DKD, attention transfer, relational KD), forward and "
             "backward, E times on a batch of N", _kd_setup, _kd_ours, _kd_theirs,
             {"images": 128, "epochs": 10}),
    Workload("ddwang_iteration", DDWANG,
             "one outer iteration of Wang et al. 2018 (MNIST, LeNet, 10 images per step, S "
             "steps x E epochs, a real batch of N)", _ddwang_setup, _ddwang_ours,
             _ddwang_theirs, {"images": 1024, "epochs": 3, "syn_steps": 10}),
    Workload("mtt_unroll", MTT,
             "one MTT iteration, plain unroll: S synthetic steps of ConvNet-3 on N CIFAR-shaped "
             "images with DSA, the matching loss and its gradient",
             _mtt_setup, _mtt_ours, _mtt_theirs, {"images": 100, "epochs": 0, "syn_steps": 10}),
    Workload("pad_unroll", PAD,
             "one PAD iteration (PAD_depth.py): the MTT unroll on learned soft labels, the "
             "first half of the parameter elements left out of the loss; ours plain",
             _pad_setup, _pad_ours, _pad_theirs, {"images": 100, "epochs": 0, "syn_steps": 10}),
    Workload("pad_unroll_constant", PAD,
             "the same iteration, ours with the constant-memory unroll, theirs plain",
             _pad_setup, lambda st: _pad_ours(st, "constant"), _pad_theirs,
             {"images": 100, "epochs": 0, "syn_steps": 10}),
    Workload("mtt_unroll_constant", MTT,
             "the same iteration, ours with the constant-memory unroll, theirs plain",
             _mtt_setup, lambda st: _mtt_ours(st, "constant"), _mtt_theirs,
             {"images": 100, "epochs": 0, "syn_steps": 10}),
)}


_CHECKED = (_match_setup, _kd_setup, _ddwang_setup, _mtt_setup, _dm_setup, _datadam_setup,
            _pad_setup)  # the setups that check agreement


# -- getting the reference ---------------------------------------------------------------------
def default_cache() -> Path:
    return Path(os.environ.get("KDDBENCH_CACHE", Path.home() / ".cache" / "kddbench")) \
        / "references"


def fetch(ref: Reference, cache: Path, runner=subprocess.run) -> Path:
    """A checkout of ``ref`` at its pinned commit under ``cache`` (cloned once, with git)."""
    target = cache / f"{ref.name}-{ref.commit[:12]}"
    if (target / ".git").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    steps = [["git", "clone", "--quiet", "--no-checkout", ref.url, str(target)],
             ["git", "-C", str(target), "checkout", "--quiet", ref.commit]]
    for cmd in steps:
        try:
            done = runner(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise DriverError("git is not installed; clone the reference yourself and pass "
                              "--reference PATH") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["failed"]
            raise DriverError(f"could not fetch {ref.url} at {ref.commit[:12]} ({last[0]}); "
                              "without internet, clone it elsewhere and pass --reference PATH")
    return target


def load_reference(ref: Reference, path: Path):
    """The reference's module, imported from the checkout at ``path``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DriverError(f"--reference {path}: no such folder")
    if not (path / f"{ref.module}.py").is_file() and not (path / ref.module).is_dir():
        raise DriverError(f"--reference {path}: no {ref.module}.py there (expected a checkout "
                          f"of {ref.url})")
    sys.path.insert(0, str(path.resolve()))
    try:
        sys.modules.pop(ref.module, None)
        return importlib.import_module(ref.module)
    except Exception as exc:  # the reference's own imports (old scipy, ...)
        raise DriverError(f"importing {ref.module} from {path} failed: "
                          f"{type(exc).__name__}: {exc}") from None


# -- timing -------------------------------------------------------------------------------------
def measure(workload: Workload, module, settings, rounds: int) -> dict:
    import torch

    dev = torch.device(settings.device)

    def timed(fn, state):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        fn(state)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    state = workload.setup(module, settings)
    timed(workload.ours, state), timed(workload.theirs, state)  # warm-up
    load = os.getloadavg()[0]
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(workload.ours, state))
        theirs.append(timed(workload.theirs, state))
    ratios = [t / o for o, t in zip(ours, theirs)]
    return {"workload": workload.name, "reference": workload.reference.name,
            "reference_commit": workload.reference.commit, "device": str(dev),
            "threads": torch.get_num_threads(), "rounds": rounds,
            "dtype": str(torch.get_default_dtype()).replace("torch.", ""),
            "images": settings.images, "images_are": workload.images_are,
            "epochs": settings.epochs,
            "load_avg_1min": [load, os.getloadavg()[0]],
            "ours_s": {"median": statistics.median(ours), "best": min(ours)},
            "theirs_s": {"median": statistics.median(theirs), "best": min(theirs)},
            "speedup_median": statistics.median(ratios), "speedup_best": min(theirs) / min(ours),
            **({"syn_steps": settings.syn_steps} if settings.syn_steps else {}),
            **({"agreement": state.agreement} if hasattr(state, "agreement") else {})}


def check(workload: Workload, module, settings) -> dict:
    """The agreement check alone (it runs in the workload's setup)."""
    import torch

    state = workload.setup(module, settings)
    if not hasattr(state, "agreement"):
        known = [w.name for w in WORKLOADS.values() if w.setup in _CHECKED]
        raise DriverError(f"{workload.name} has no agreement check (those with one: "
                          f"{', '.join(known)})")
    return {"workload": workload.name, "reference": workload.reference.name,
            "reference_commit": workload.reference.commit, "device": settings.device,
            "dtype": str(torch.get_default_dtype()).replace("torch.", ""),
            "images": settings.images, "images_are": workload.images_are,
            "epochs": settings.epochs,
            **({"syn_steps": settings.syn_steps} if settings.syn_steps else {}),
            "agreement": state.agreement}


def agreement_lines(r: dict) -> list[str]:
    return [f"agreement of ours and theirs, {k}: {v:.3g}"
            for k, v in r.get("agreement", {}).items() if "rel_diff" in k]


def table(r: dict) -> str:
    agree = agreement_lines(r)
    steps = f", {r['syn_steps']} synthetic steps" if r.get("syn_steps") else ""
    return "\n".join([
        f"{r['workload']}: ours vs {r['reference']}@{r['reference_commit'][:12]}, "
        f"{r['images']} {r.get('images_are', 'images')}, {r['epochs']} epochs{steps}, "
        f"device {r['device']}, "
        f"{r.get('dtype', 'float32')}, {r['threads']} "
        f"thread(s), {r['rounds']} alternating rounds, load average "
        f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}",
        f"ours:   median {r['ours_s']['median']:.3f} s, best {r['ours_s']['best']:.3f} s",
        f"theirs: median {r['theirs_s']['median']:.3f} s, best {r['theirs_s']['best']:.3f} s",
        f"our speed-up (their time / ours): median {r['speedup_median']:.2f}x, best "
        f"{r['speedup_best']:.2f}x", *agree])


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="reference_driver.py", description=__doc__.split("\n\n")[0],
        epilog="Workloads: " + ", ".join(WORKLOADS) + " (--list describes them).")
    p.add_argument("workload", nargs="?", help="what to time (see --list)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--reference", type=Path, help="a checkout of the reference")
    src.add_argument("--fetch", action="store_true",
                     help="clone the reference at its pinned commit (needs internet and git)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where --fetch keeps checkouts (default $KDDBENCH_CACHE/references)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, help="images (default: the workload's)")
    p.add_argument("--epochs", type=int, help="epochs (default: the workload's)")
    p.add_argument("--syn-steps", type=int,
                   help="synthetic steps per iteration, mtt workloads (default: the workload's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="both sides' tensors and networks (float64: to tell a real difference "
                        "in the agreement check from float32 rounding)")
    p.add_argument("--json", type=Path, help="also write the result to this file")
    p.add_argument("--check-only", action="store_true",
                   help="only the agreement check of a workload that has one, no timing "
                        "(with --dtype float64 where the reference's augmentation is float32 "
                        "only, as mtt-distillation's DiffAugment)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the arguments and the reference's import, time nothing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    try:
        if a.list:
            for w in WORKLOADS.values():
                ref = w.reference
                print(f"{w.name}: {w.doc}\n    reference: {ref.url} at {ref.commit} "
                      f"(module {ref.module}; {ref.citation})")
            return 0
        if not a.workload:
            raise DriverError("name a workload (see --list)")
        if a.workload not in WORKLOADS:
            raise DriverError(f"unknown workload {a.workload!r} (known: {', '.join(WORKLOADS)})")
        if not a.reference and not a.fetch:
            raise DriverError("give the reference: --reference PATH (a checkout) or --fetch")
        if a.rounds < 1:
            raise DriverError(f"--rounds must be at least 1, not {a.rounds}")
        w = WORKLOADS[a.workload]
        settings = SimpleNamespace(images=a.images or w.defaults.get("images", 500),
                                   epochs=a.epochs if a.epochs is not None
                                   else w.defaults.get("epochs", 1), device=a.device,
                                   syn_steps=a.syn_steps or w.defaults.get("syn_steps", 0))
        if settings.images < 1 or settings.epochs < 0:
            raise DriverError("--images must be >= 1 and --epochs >= 0")
        if a.syn_steps is not None and a.syn_steps < 1:
            raise DriverError(f"--syn-steps must be at least 1, not {a.syn_steps}")
        path = a.reference if a.reference else fetch(w.reference, a.cache or default_cache())
        module = load_reference(w.reference, path)
        if a.dry_run:
            print(f"{w.name}: would time ours vs {w.reference.name} ({w.reference.module} from "
                  f"{path}), {settings.images} images, {settings.epochs} epochs, {a.rounds} "
                  f"rounds, device {a.device}, threads {a.threads or 'default'}")
            return 0
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        before = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64 if a.dtype == "float64" else torch.float32)
        try:
            if a.check_only:
                result = check(w, module, settings)
            else:
                result = measure(w, module, settings, a.rounds)
        finally:  # a caller in the same process (the tests) keeps its own
            torch.set_default_dtype(before)
    except DriverError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(table(result) if not a.check_only else "\n".join(
        [f"{w.name}: agreement check only, {result['dtype']}", *agreement_lines(result)]))
    if a.json:
        import json

        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
