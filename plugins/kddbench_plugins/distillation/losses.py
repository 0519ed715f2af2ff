"""Knowledge-distillation losses (registered in :mod:`kddbench_plugins.distillation`).

Every class is a :class:`kddbench.kd.KDLoss` built as ``Class(teacher, student, **options)``;
defaults are those of docs/references.md section 6.1.  Each returns the student's whole loss on a
batch, the hard-label cross-entropy term included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kddbench.errors import KddbenchError
from kddbench.kd import KDLoss, pick_stage, stage_names


# shared pieces ---------------------------------------------------------------------------
def tempered_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``: summed over classes, mean over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def class_indices(targets: torch.Tensor) -> torch.Tensor:
    """Class indices from hard (N,) or soft (N, C) targets."""
    return targets.argmax(1) if targets.dim() == 2 else targets


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise KddbenchError(f"KD option {name} must be positive, not {value!r}")
    return float(value)


# response-based (Hinton et al. 2015) -----------------------------------------------------
class Response(KDLoss):
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)``."""

    per_sample_mean = True  # batch means of per-image CE and KL

    def __init__(self, teacher=None, student=None, alpha: float = 0.9, T: float = 4.0):
        if not 0.0 <= alpha <= 1.0:
            raise KddbenchError(f"response: alpha must lie in [0, 1], not {alpha!r}")
        super().__init__(teacher, student, ce_weight=1.0 - alpha)
        self.alpha = float(alpha)
        self.T = _positive("T", T)

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        loss = self.alpha * tempered_kl(student_logits, teacher_logits, self.T)
        if self.ce_weight:
            loss = loss + self.ce_weight * self.ce(student_logits, targets)
        return loss


# feature-based: FitNets hints (Romero et al. 2015), single-stage training -----------------
class Hint(KDLoss):
    """CE + weight * MSE(regressor(student stage), teacher stage).

    The regressor is a 1x1 convolution between two feature maps, or a linear layer when either
    stage is flat (a map is then averaged over its spatial positions).  When the maps differ in
    size, the larger is average-pooled to the smaller.  ``"auto"`` stages: the middle one of
    each network (index ``len(stages) // 2``)."""

    needs_features = True
    per_sample_mean = True  # CE and an MSE over equal-sized per-image maps

    def __init__(self, teacher, student, weight: float = 100.0, ce_weight: float = 1.0,
                 student_stage: str = "auto", teacher_stage: str = "auto"):
        super().__init__(teacher, student, ce_weight=ce_weight)
        self.weight = float(weight)
        self.student_stages = (pick_stage(student, student_stage, "student"),)
        self.teacher_stages = (pick_stage(teacher, teacher_stage, "teacher"),)
        self.regressor: nn.Module | None = None
        self.flat = False
        self.size: tuple[int, int] = (0, 0)

    def setup(self, student_shapes, teacher_shapes):
        s = student_shapes[self.student_stages[0]]
        t = teacher_shapes[self.teacher_stages[0]]
        for name, shape in (("student", s), ("teacher", t)):
            if len(shape) not in (2, 4):
                raise KddbenchError(f"feature: the {name} stage has shape {tuple(shape)}; "
                                    "only (N, C) and (N, C, H, W) stages are supported")
        self.flat = len(s) == 2 or len(t) == 2
        if self.flat:
            self.regressor = nn.Linear(s[1], t[1])
        else:
            self.size = (min(s[2], t[2]), min(s[3], t[3]))
            self.regressor = nn.Conv2d(s[1], t[1], kernel_size=1)

    def _fit(self, f: torch.Tensor) -> torch.Tensor:
        if self.flat:
            return f.mean((2, 3)) if f.dim() == 4 else f
        return f if tuple(f.shape[-2:]) == self.size else F.adaptive_avg_pool2d(f, self.size)

    def prepare_teacher(self, teacher_feats):
        return {k: self._fit(teacher_feats[k]) for k in self.teacher_stages}

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        if self.regressor is None:
            raise KddbenchError("feature: setup() was not called (use kddbench.kd.build_kd_loss)")
        s = self.regressor(self._fit(student_feats[self.student_stages[0]]))
        hint = F.mse_loss(s, teacher_feats[self.teacher_stages[0]])
        return self.ce_weight * self.ce(student_logits, targets) + self.weight * hint


# attention transfer (Zagoruyko & Komodakis 2017) -----------------------------------------
class Attention(KDLoss):
    """CE + beta * sum over stage pairs of mean((map_s - map_t)^2).

    map(f) = the per-image L2-normalised, flattened channel mean of ``|f|^p``.  The last ``k``
    spatial stages of each network are paired from the end (``k`` = the smaller count); maps of
    different sizes are area-resampled to the smaller one."""

    needs_features = True
    per_sample_mean = True  # per-image maps, normalised per image; mean over equal-sized rows

    def __init__(self, teacher, student, beta: float = 1000.0, p: float = 2.0,
                 ce_weight: float = 1.0):
        super().__init__(teacher, student, ce_weight=ce_weight)
        self.beta = float(beta)
        self.p = _positive("p", p)
        self._candidates = (stage_names(student), stage_names(teacher))
        self.sizes: list[tuple[int, int]] = []

    def setup(self, student_shapes, teacher_shapes):
        s = [n for n in self._candidates[0] if len(student_shapes[n]) == 4]
        t = [n for n in self._candidates[1] if len(teacher_shapes[n]) == 4]
        k = min(len(s), len(t))
        if k == 0:
            raise KddbenchError("attention needs spatial (N, C, H, W) stages in both networks")
        self.student_stages, self.teacher_stages = tuple(s[-k:]), tuple(t[-k:])
        self.sizes = [(min(student_shapes[a][2], teacher_shapes[b][2]),
                       min(student_shapes[a][3], teacher_shapes[b][3]))
                      for a, b in zip(self.student_stages, self.teacher_stages)]

    def attention_map(self, f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        a = f.abs().pow(self.p).mean(1, keepdim=True)
        if tuple(a.shape[-2:]) != tuple(size):
            a = F.interpolate(a, size=size, mode="area")
        return F.normalize(a.flatten(1), dim=1)

    def prepare_teacher(self, teacher_feats):
        return {name: self.attention_map(teacher_feats[name], size)
                for name, size in zip(self.teacher_stages, self.sizes)}

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        transfer = student_logits.new_zeros(())
        for s, t, size in zip(self.student_stages, self.teacher_stages, self.sizes):
            diff = self.attention_map(student_feats[s], size) - teacher_feats[t]
            transfer = transfer + diff.pow(2).mean()
        return self.ce_weight * self.ce(student_logits, targets) + self.beta * transfer


# relational KD (Park et al. 2019) -------------------------------------------------------
def _inverse_distances(e: torch.Tensor, eps: float = 1e-12):
    """Pairwise Euclidean distances of the rows of ``e`` and their inverses (0 on the diagonal)
    from the Gram matrix of the centred rows, plus that Gram matrix."""
    e = e - e.mean(0, keepdim=True)  # distances and angles do not move with a translation
    gram = e @ e.t()
    sq = gram.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(eps)
    off = ~torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    dist = torch.where(off, d2.sqrt(), torch.zeros_like(d2))
    inv = torch.where(off, d2.rsqrt(), torch.zeros_like(d2))
    return dist, inv, gram, off


def distance_potential(e: torch.Tensor) -> torch.Tensor:
    """(N, N) distances divided by their mean over distinct pairs."""
    dist, _, _, off = _inverse_distances(e)
    return dist / dist[off].mean().clamp_min(1e-12)


def angle_potential(e: torch.Tensor) -> torch.Tensor:
    """(N, N, N): entry [j, i, k] is the cosine of the angle at ``e_j`` between ``e_i`` and
    ``e_k`` (0 where i or k equals j).  Built from Gram entries, so memory is O(N^3), not
    O(N^2 * dim): <e_i - e_j, e_k - e_j> = G_ik - G_ji - G_jk + G_jj."""
    _, inv, gram, _ = _inverse_distances(e)
    dots = (gram[None, :, :] - gram[:, :, None] - gram[:, None, :]
            + gram.diagonal()[:, None, None])
    return dots * (inv[:, :, None] * inv[:, None, :])


class Relational(KDLoss):
    """CE + distance_weight * smooth-L1(distance potentials) + angle_weight * smooth-L1(angle
    potentials) of the embedding (the flattened input of the classifier head)."""

    needs_features = True
    per_sample_mean = False  # distances and angles between the images of a batch

    def __init__(self, teacher, student, distance_weight: float = 25.0,
                 angle_weight: float = 50.0, ce_weight: float = 1.0, stage: str = "embedding"):
        super().__init__(teacher, student, ce_weight=ce_weight)
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)
        for role, net in (("student", student), ("teacher", teacher)):
            pick_stage(net, stage, role)
        self.student_stages = self.teacher_stages = (stage,)

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        stage = self.student_stages[0]
        s = student_feats[stage].flatten(1)
        t = teacher_feats[stage].flatten(1).detach()
        loss = self.ce_weight * self.ce(student_logits, targets)
        if s.shape[0] >= 2 and self.distance_weight:
            loss = loss + self.distance_weight * F.smooth_l1_loss(
                distance_potential(s), distance_potential(t))
        if s.shape[0] >= 3 and self.angle_weight:
            loss = loss + self.angle_weight * F.smooth_l1_loss(
                angle_potential(s), angle_potential(t))
        return loss


# decoupled KD (Zhao et al. 2022) --------------------------------------------------------
def _binary_and_rest(logits: torch.Tensor, target: torch.Tensor):
    """log [p_target, 1 - p_target] (N, 2) and the logits of the other classes (N, C-1)."""
    n, c = logits.shape
    mask = F.one_hot(target, c).bool()
    total = torch.logsumexp(logits, 1)
    rest = logits[~mask].view(n, c - 1)
    log_target = logits.gather(1, target[:, None]).squeeze(1) - total
    log_rest = torch.logsumexp(rest, 1) - total
    return torch.stack([log_target, log_rest], 1), rest


class DKD(KDLoss):
    """CE + warm-up * (alpha * TCKD + beta * NCKD).

    TCKD: KL between the binary (target, rest) distributions of teacher and student; NCKD: KL
    between their distributions over the non-target classes; both at temperature T, times
    T^2.  The warm-up factor grows linearly, min(1, (epoch + 1) / W), where W is ``warmup``
    epochs, or the recipe's epoch count if that is smaller."""

    per_sample_mean = True  # batch means of per-image CE and KLs; the warm-up is per epoch

    def __init__(self, teacher=None, student=None, alpha: float = 1.0, beta: float = 8.0,
                 T: float = 4.0, warmup: int = 20, ce_weight: float = 1.0):
        super().__init__(teacher, student, ce_weight=ce_weight)
        self.alpha, self.beta = float(alpha), float(beta)
        self.T = _positive("T", T)
        self.warmup = int(warmup)

    def warmup_factor(self, epoch: int, epochs: int) -> float:
        span = min(self.warmup, max(1, int(epochs)))
        return 1.0 if span <= 0 else min(1.0, (epoch + 1) / span)

    def forward(self, student_logits, student_feats, teacher_logits, teacher_feats, targets,
                epoch=0, epochs=1):
        target = class_indices(targets)
        t2 = self.T * self.T
        bin_s, rest_s = _binary_and_rest(student_logits / self.T, target)
        bin_t, rest_t = _binary_and_rest(teacher_logits / self.T, target)
        tckd = F.kl_div(bin_s, bin_t, reduction="batchmean", log_target=True) * t2
        nckd = F.kl_div(F.log_softmax(rest_s, 1), F.log_softmax(rest_t, 1),
                        reduction="batchmean", log_target=True) * t2
        kd = self.alpha * tckd + self.beta * nckd
        return (self.ce_weight * self.ce(student_logits, targets)
                + self.warmup_factor(epoch, epochs) * kd)
