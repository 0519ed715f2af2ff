"""The public types of the knowledge-distillation family: the loss interface and its plumbing.

A KD method is a :class:`KDLoss`: an ``nn.Module`` that turns the student's and the frozen
teacher's outputs on one batch into the student's training loss (the hard-label term
included).  It owns its trainable extras (e.g. the regressors of FitNets) as submodules; the
shared training loop (:func:`kddbench.protocol.train`) optimises them alongside the student.

Nothing here is specific to one method.  The life of a KD loss in a run::

    kd = build_kd_loss(spec.load(), teacher, student, sample=x[:2], seed=s, **options)
    loss_fn = DistillationLoss(kd, teacher, epochs=recipe.epochs, x=x)  # x: cache teacher
    train(student, x, y, recipe, generator, loss_fn=loss_fn, extra_params=loss_fn.extra_params)

1. The factory ``factory(teacher, student, **options)`` builds the loss; it may read the two
   networks' ``feature_names`` to pick stages, but must not keep the networks as submodules.
2. :meth:`KDLoss.setup` receives the shapes of every named feature of both networks (probed on
   a two-image batch in eval mode) and creates the extras, seeded.
3. :class:`DistillationLoss` is the ``loss_fn(model, xb, yb, idx)`` that ``train`` calls: it runs
   the frozen teacher in eval mode without gradients on the same (augmented) batch, or, when the
   training images are not augmented, looks its outputs up by ``idx`` in a cache filled once.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .errors import KddbenchError, unknown_message
from .protocol import seeded, soft_cross_entropy

Features = Mapping[str, torch.Tensor]
Shapes = Mapping[str, torch.Size]

DEFAULT_CACHE_LIMIT_MB = 1024.0


class KDLoss(nn.Module):
    """Base class of every knowledge-distillation loss.

    Class attribute ``needs_features``: false for losses of logits alone (the teacher's logits
    can then be cached); true when the loss reads intermediate features, in which case the
    constructor or :meth:`setup` sets ``student_stages`` and ``teacher_stages`` to the feature
    names it reads (only these are computed for the student and cached for the teacher).

    Subclasses implement :meth:`forward`; ``ce_weight`` and :meth:`ce` give the usual hard-label
    (or soft-label, for condensed sets) cross-entropy term.

    Class attribute ``per_sample_mean``: true when the loss of a batch is the mean over its
    images of a term of each image alone (a batch-mean cross-entropy, KL or MSE); the training
    loop may then split a step into micro-batches and sum their size-weighted gradients, which
    is the same step (see :func:`kddbench.protocol.splits_batches`).  False (the default, the
    safe choice) when any term couples the images of a batch: pairwise relations, batch
    statistics, a normalisation over the batch.
    """

    needs_features: bool = False
    per_sample_mean: bool = False

    def __init__(self, teacher: nn.Module | None = None, student: nn.Module | None = None,
                 ce_weight: float = 1.0):
        super().__init__()
        self.ce_weight = float(ce_weight)
        self.student_stages: tuple[str, ...] = ()
        self.teacher_stages: tuple[str, ...] = ()

    def setup(self, student_shapes: Shapes, teacher_shapes: Shapes) -> None:
        """Create trainable extras from the feature shapes (batch dimension included).

        Called once, before training, under a seeded RNG.  The default creates nothing."""

    def prepare_teacher(self, teacher_feats: Features) -> dict[str, torch.Tensor]:
        """Work on the teacher's features that depends on the teacher alone (e.g. attention
        maps, pooling), run without gradients.  When the teacher's outputs are cached this runs
        once per image and only its result is kept.  The default returns them unchanged."""
        return dict(teacher_feats)

    def ce(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices (N,) or soft labels (N, C)."""
        return soft_cross_entropy(logits, targets)

    def forward(self, student_logits: torch.Tensor, student_feats: Features,
                teacher_logits: torch.Tensor, teacher_feats: Features, targets: torch.Tensor,
                epoch: int = 0, epochs: int = 1) -> torch.Tensor:
        """The student's total loss on one batch (a scalar).

        student_feats: ``{stage: tensor}`` with the declared ``student_stages``; teacher_feats:
        what :meth:`prepare_teacher` returned for the ``teacher_stages`` (both empty when
        ``needs_features`` is false).  targets: class indices or soft labels.
        epoch, epochs: 0-based current epoch and the recipe's epoch count (for warm-ups)."""
        raise NotImplementedError


# helpers for implementations -------------------------------------------------------------
def stage_names(net: nn.Module) -> list[str]:
    """The named intermediate stages of ``net`` (its ``feature_names`` minus ``embedding``)."""
    return [n for n in getattr(net, "feature_names", ()) if n != "embedding"]


def pick_stage(net: nn.Module, wanted: str, role: str) -> str:
    """``wanted`` checked against ``net``'s stages; ``"auto"`` is the middle one
    (index ``len(stages) // 2``)."""
    names = list(getattr(net, "feature_names", ()))
    stages = stage_names(net)
    if wanted in ("", "auto"):
        if not stages:
            raise KddbenchError(f"the {role} network ({type(net).__name__}) names no stages")
        return stages[len(stages) // 2]
    if wanted not in names:
        raise KddbenchError(f"the {role} network: "
                            + unknown_message("stage", wanted, names, listing="stages"))
    return wanted


def logits_and_features(net: nn.Module, x: torch.Tensor, stages: Sequence[str] | None):
    """``(logits, {stage: tensor})`` for the listed stages; no features when ``stages`` is
    falsy (plain forward, the cheapest)."""
    if not stages:
        return net(x), {}
    if not hasattr(net, "forward_features"):
        raise KddbenchError(f"{type(net).__name__} has no forward_features(); wrap it with "
                            "kddbench.nn.with_features to use feature-based KD")
    logits, feats = net.forward_features(x)
    missing = [s for s in stages if s not in feats]
    if missing:
        raise KddbenchError(f"{type(net).__name__}.forward_features() gave no {missing} "
                            f"(it gives {sorted(feats)})")
    return logits, {s: feats[s] for s in stages}


@torch.no_grad()
def probe_shapes(net: nn.Module, sample: torch.Tensor) -> dict[str, torch.Size]:
    """Shapes of every feature of ``net`` on ``sample``, run in eval mode (no state changes)."""
    was_training = net.training
    net.eval()
    try:
        _, feats = net.forward_features(sample)
    finally:
        net.train(was_training)
    return {k: v.shape for k, v in feats.items()}


def build_kd_loss(factory: Callable[..., KDLoss], teacher: nn.Module, student: nn.Module,
                  sample: torch.Tensor, seed: int, **options: Any) -> KDLoss:
    """Build a KD loss and its extras, seeded, on ``sample``'s device.

    ``sample``: a few training images (two are enough) to probe the feature shapes."""
    with seeded(seed):
        kd = factory(teacher, student, **options)
        if not isinstance(kd, KDLoss):
            raise KddbenchError(f"KD factory {factory!r} returned {type(kd).__name__}, "
                                "not a kddbench.kd.KDLoss")
        if kd.needs_features:
            kd.setup(probe_shapes(student, sample), probe_shapes(teacher, sample))
    return kd.to(sample.device)


# the loss_fn that kddbench.protocol.train calls ------------------------------------------
class DistillationLoss:
    """``loss_fn(model, xb, yb, idx)`` for :func:`kddbench.protocol.train`.

    kd:       the :class:`KDLoss`.
    teacher:  the trained teacher; it is frozen here (eval mode, no gradients).
    epochs:   the recipe's epoch count (passed on to the loss with the current epoch, which
              ``train`` sets through :meth:`set_epoch`).
    x:        the training images, when they are **not** augmented: the teacher's outputs on
              them are then computed once and looked up by index.  Leave it ``None`` when the
              loop augments batches; the teacher then sees every augmented batch.
    cache_limit_mb: cache only if logits plus the needed features fit in this many MB; above
              it the teacher runs on every batch.
    """

    def __init__(self, kd: KDLoss, teacher: nn.Module, epochs: int = 1,
                 x: torch.Tensor | None = None, cache_limit_mb: float = DEFAULT_CACHE_LIMIT_MB,
                 batch_size: int = 512):
        self.kd = kd.train()
        self.teacher = teacher.eval().requires_grad_(False)
        self.epochs = int(epochs)
        self.epoch = 0
        self.student_stages = tuple(kd.student_stages) if kd.needs_features else ()
        self.teacher_stages = tuple(kd.teacher_stages) if kd.needs_features else ()
        self.cache: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        self.cache_bytes = 0
        if x is not None:
            self.cache = self._fill_cache(x, cache_limit_mb, batch_size)

    @property
    def extra_params(self) -> list[torch.Tensor]:
        return [p for p in self.kd.parameters() if p.requires_grad]

    @property
    def cached(self) -> bool:
        return self.cache is not None

    @property
    def per_sample_mean(self) -> bool:
        """The KD loss's own declaration (:attr:`KDLoss.per_sample_mean`): whether
        :func:`kddbench.protocol.train` may call this on micro-batches of a step."""
        return bool(getattr(self.kd, "per_sample_mean", False))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor):
        logits, feats = logits_and_features(self.teacher, x, self.teacher_stages)
        return logits, (self.kd.prepare_teacher(feats) if feats else {})

    def _fill_cache(self, x: torch.Tensor, limit_mb: float, batch_size: int):
        n = int(x.shape[0])
        if n == 0:
            return None
        logits, feats = self.teacher_outputs(x[:1])
        per_image = logits[0].numel() * logits.element_size() + sum(
            f[0].numel() * f.element_size() for f in feats.values())
        if per_image * n > limit_mb * 1e6:
            return None
        parts = [self.teacher_outputs(x[i:i + batch_size]) for i in range(0, n, batch_size)]
        all_logits = torch.cat([p[0] for p in parts])
        all_feats = {s: torch.cat([p[1][s] for p in parts]) for s in feats}
        self.cache_bytes = per_image * n
        return all_logits, all_feats

    def __call__(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                 idx: torch.Tensor) -> torch.Tensor:
        s_logits, s_feats = logits_and_features(model, xb, self.student_stages)
        if self.cache is not None:
            if idx.numel() != xb.shape[0]:
                raise KddbenchError("cached teacher outputs need one index per image")
            t_logits = self.cache[0][idx]
            t_feats = {s: f[idx] for s, f in self.cache[1].items()}
        else:
            t_logits, t_feats = self.teacher_outputs(xb)
        return self.kd(s_logits, s_feats, t_logits, t_feats, yb, epoch=self.epoch,
                       epochs=self.epochs)

