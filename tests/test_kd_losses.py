"""Unit tests of every KD loss on tiny tensors (kddbench_plugins.distillation.losses)."""
import math

import pytest
import torch
import torch.nn.functional as F

from kddbench.errors import KddbenchError
from kddbench.kd import build_kd_loss, pick_stage
from kddbench.protocol import seeded
from kddbench_plugins.distillation import losses as L
from kddbench_plugins.architectures.networks import convnet, mlp



def _logits(n=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


def _nets(student_kw=None, teacher_kw=None, size=12):
    with seeded(0):
        teacher = convnet(1, 4, (size, size), **{"depth": 3, "width": 8, **(teacher_kw or {})})
        student = convnet(1, 4, (size, size), **{"depth": 2, "width": 4, **(student_kw or {})})
    return teacher, student


def _images(n=8, size=12, seed=1):
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# response --------------------------------------------------------------------------------
def test_response_is_zero_when_the_student_equals_the_teacher_at_alpha_1():
    s, y = _logits()
    loss = L.Response(alpha=1.0, T=4.0)(s, {}, s.clone(), {}, y)
    assert abs(float(loss)) < 1e-6
    assert float(L.Response(alpha=1.0)(s, {}, _logits(seed=3)[0], {}, y)) > 0.01


def test_response_matches_the_formula_and_alpha_0_is_cross_entropy():
    s, y = _logits()
    t, _ = _logits(seed=5)
    T, alpha = 3.5, 0.7
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean()
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * kl
    got = L.Response(alpha=alpha, T=T)(s, {}, t, {}, y)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(L.Response(alpha=0.0)(s, {}, t, {}, y)) == pytest.approx(
        float(F.cross_entropy(s, y)), rel=1e-6)
    with pytest.raises(KddbenchError, match="alpha"):
        L.Response(alpha=1.5)


def test_response_accepts_soft_labels():
    s, y = _logits()
    soft = F.one_hot(y, 5).float()
    r = L.Response(alpha=0.5)
    assert float(r(s, {}, s, {}, soft)) == pytest.approx(float(r(s, {}, s, {}, y)), rel=1e-6)


# feature (FitNets) -----------------------------------------------------------------------
def test_feature_default_stages_are_the_middle_ones_and_gradient_reaches_the_regressor():
    teacher, student = _nets()
    x = _images()
    kd = build_kd_loss(L.Hint, teacher, student, x[:2], seed=0)
    assert kd.student_stages == ("block2",) and kd.teacher_stages == ("block2",)
    assert isinstance(kd.regressor, torch.nn.Conv2d) and kd.regressor.kernel_size == (1, 1)
    s_logits, s_feats = student.forward_features(x)
    with torch.no_grad():
        t_logits, t_feats = teacher.forward_features(x)
    loss = kd(s_logits, s_feats, t_logits, kd.prepare_teacher(t_feats), torch.zeros(8).long())
    loss.backward()
    assert kd.regressor.weight.grad is not None and kd.regressor.weight.grad.abs().sum() > 0
    assert student.stages["block1"][0].weight.grad.abs().sum() > 0


def test_feature_pools_the_larger_map_and_uses_a_linear_regressor_for_flat_stages():
    teacher, student = _nets()
    x = _images()
    # student block1 (8 x 8 after pooling a 14 x 14 map... see shapes) vs teacher block3
    kd = build_kd_loss(L.Hint, teacher, student, x[:2], seed=0, student_stage="block1",
                       teacher_stage="block3")
    s_shape = student.forward_features(x)[1]["block1"].shape
    t_shape = teacher.forward_features(x)[1]["block3"].shape
    assert s_shape[-1] > t_shape[-1] and kd.size == tuple(t_shape[-2:])
    with seeded(0):
        flat_student = mlp(1, 4, (12, 12), width=16)
    kd2 = build_kd_loss(L.Hint, teacher, flat_student, x[:2], seed=0)
    assert isinstance(kd2.regressor, torch.nn.Linear)
    assert kd2.regressor.in_features == 16 and kd2.regressor.out_features == 8
    with pytest.raises(KddbenchError, match="did you mean 'block2'"):
        pick_stage(student, "blok2", "student")


def test_feature_is_zero_for_identical_maps_through_an_identity_regressor():
    teacher, _ = _nets()
    x = _images()
    kd = build_kd_loss(L.Hint, teacher, teacher, x[:2], seed=0, ce_weight=0.0)
    with torch.no_grad():
        kd.regressor.weight.copy_(torch.eye(8).view(8, 8, 1, 1))
        kd.regressor.bias.zero_()
        logits, feats = teacher.forward_features(x)
        loss = kd(logits, feats, logits, kd.prepare_teacher(feats), torch.zeros(8).long())
    assert float(loss) < 1e-10


# attention -------------------------------------------------------------------------------
def test_attention_maps_are_unit_norm_and_stages_pair_from_the_end():
    teacher, student = _nets()
    x = _images()
    kd = build_kd_loss(L.Attention, teacher, student, x[:2], seed=0)
    assert kd.teacher_stages == ("block2", "block3") and kd.student_stages == ("block1", "block2")
    feats = student.forward_features(x)[1]
    for name, size in zip(kd.student_stages, kd.sizes):
        m = kd.attention_map(feats[name], size)
        assert m.shape == (8, size[0] * size[1])
        assert torch.allclose(m.norm(dim=1), torch.ones(8), atol=1e-5)
    # the student's block1 map is larger than the teacher's block2 map: resampled down
    assert feats["block1"].shape[-1] > kd.sizes[0][1]


def test_attention_is_zero_against_itself_and_positive_otherwise():
    teacher, student = _nets()
    x = _images()
    kd = build_kd_loss(L.Attention, teacher, teacher, x[:2], seed=0, ce_weight=0.0)
    with torch.no_grad():
        logits, feats = teacher.forward_features(x)
        same = kd(logits, feats, logits, kd.prepare_teacher(feats), torch.zeros(8).long())
        other = kd(logits, feats, logits, kd.prepare_teacher(
            teacher.forward_features(_images(seed=9))[1]), torch.zeros(8).long())
    assert float(same) < 1e-10 and float(other) > 1e-4
    with seeded(0):
        flat = mlp(1, 4, (12, 12))
    with pytest.raises(KddbenchError, match="spatial"):
        build_kd_loss(L.Attention, teacher, flat, x[:2], seed=0)


# relational ------------------------------------------------------------------------------
def _angles_brute_force(e):
    n = e.shape[0]
    out = torch.zeros(n, n, n, dtype=e.dtype)
    for j in range(n):
        for i in range(n):
            for k in range(n):
                if i == j or k == j:
                    continue
                a, b = e[i] - e[j], e[k] - e[j]
                out[j, i, k] = a @ b / (a.norm() * b.norm())
    return out


def test_relational_potentials_match_their_definitions():
    e = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(L.angle_potential(e), _angles_brute_force(e), atol=1e-8)
    d = torch.cdist(e, e)
    assert torch.allclose(L.distance_potential(e), d / d[d > 0].mean(), atol=1e-8)


def test_relational_is_finite_positive_and_invariant_to_scale_and_shift():
    teacher, student = _nets()
    x = _images()
    kd = build_kd_loss(L.Relational, teacher, student, x[:2], seed=0, ce_weight=0.0)
    s_logits, s_feats = student.forward_features(x)
    t_feats = teacher.forward_features(x)[1]
    loss = kd(s_logits, s_feats, s_logits, t_feats, torch.zeros(8).long())
    assert math.isfinite(loss.item()) and loss.item() > 0
    moved = {"embedding": 3.0 * t_feats["embedding"] + 1.5}
    moved_loss = kd(s_logits, s_feats, s_logits, moved, torch.zeros(8).long())
    assert moved_loss.item() == pytest.approx(loss.item(), rel=1e-4)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    # a batch of one has no pairs: only the cross-entropy term is left
    one = kd(s_logits[:1], {"embedding": s_feats["embedding"][:1]}, s_logits[:1],
             {"embedding": t_feats["embedding"][:1]}, torch.zeros(1).long())
    assert one.item() == 0.0


# dkd -------------------------------------------------------------------------------------
def test_dkd_decomposes_classical_kd():
    """For one sample, KL(p_t || p_s) = TCKD + (1 - p_t[target]) * NCKD (Zhao et al. 2022)."""
    s, y = _logits(n=1, c=6, seed=2)
    t, _ = _logits(n=1, c=6, seed=7)
    T = 2.0
    weight = 1 - float(torch.softmax(t / T, 1)[0, y[0]])
    dkd = L.DKD(alpha=1.0, beta=weight, T=T, warmup=0, ce_weight=0.0)
    assert float(dkd(s, {}, t, {}, y)) == pytest.approx(float(L.tempered_kl(s, t, T)), rel=1e-5)


def test_dkd_is_finite_positive_and_warms_up_linearly():
    s, y = _logits(n=16, c=10)
    t, _ = _logits(n=16, c=10, seed=4)
    dkd = L.DKD(ce_weight=0.0)
    full = float(dkd(s, {}, t, {}, y, epoch=30, epochs=240))
    assert math.isfinite(full) and full > 0
    assert float(dkd(s, {}, t, {}, y, epoch=0, epochs=240)) == pytest.approx(full / 20, rel=1e-5)
    # a recipe shorter than the warm-up warms up over its own epochs
    assert dkd.warmup_factor(0, 4) == 0.25 and dkd.warmup_factor(3, 4) == 1.0
    assert float(dkd(s, {}, s, {}, y, epoch=30, epochs=240)) < 1e-6
    soft = F.one_hot(y, 10).float() * 0.9 + 0.01
    assert math.isfinite(float(L.DKD()(s, {}, t, {}, soft)))


# every loss can be optimised -------------------------------------------------------------
@pytest.mark.parametrize("cls", [L.Response, L.Hint, L.Attention, L.Relational, L.DKD])
def test_loss_decreases_when_the_student_and_extras_are_optimised(cls):
    teacher, student = _nets()
    x = _images(n=16)
    y = torch.arange(4).repeat(4)
    kd = build_kd_loss(cls, teacher, student, x[:2], seed=0)
    with torch.no_grad():
        t_logits, t_feats = teacher.forward_features(x)
        t_feats = kd.prepare_teacher(t_feats)
    opt = torch.optim.Adam(list(student.parameters()) + list(kd.parameters()), lr=0.03)
    losses = []
    for _ in range(30):
        s_logits, s_feats = student.forward_features(x)
        loss = kd(s_logits, s_feats, t_logits, t_feats, y, epoch=5, epochs=10)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.75 * losses[0], losses
