"""Performance matching on tiny tensors: ``ddwang`` (Wang et al. 2018) and ``krr`` (kernel
ridge regression, FRePo style)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.context import RunContext
from kddbench.errors import KddbenchError
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator
from kddbench_plugins.condensation import kernel_ridge as kr
from kddbench_plugins.condensation import meta_learning as ml

TINY = {"iterations": 3, "batch_real": 16, "checkpoint_every": 0}


def toy_request(ipc=2, seed=0, arch="lenet", options=None):
    ctx = RunContext(registry=get_registry())
    data = ctx.data("toy")
    return CondenseRequest(
        data=data, ipc=ipc, arch=arch,
        build_net=lambda s: ctx.build_net(arch, data, s, options=options),
        generator=make_generator(seed), device=ctx.device, seed=seed)


# ddwang: the layout of the set --------------------------------------------------------------
def test_steps_follow_ipc_and_must_divide_it():
    assert ml.auto_steps(1, 0) == 1 and ml.auto_steps(10, 0) == 10
    assert ml.auto_steps(50, 0) == 10 and ml.auto_steps(12, 0) == 6 and ml.auto_steps(7, 0) == 7
    assert ml.auto_steps(10, 5) == 5
    with pytest.raises(KddbenchError, match="must divide"):
        ml.auto_steps(10, 3)


def test_step_groups_take_the_same_number_of_images_of_every_class():
    groups = ml.step_groups(num_classes=3, ipc=4, steps=2)
    labels = torch.arange(3).repeat_interleave(4)
    assert torch.equal(torch.sort(torch.cat(groups)).values, torch.arange(12))
    for grp in groups:
        assert torch.bincount(labels[grp], minlength=3).tolist() == [2, 2, 2]
    assert groups[0].tolist() == [0, 1, 4, 5, 8, 9]


def test_step_sizes_are_softplus_parametrised():
    raw = ml.raw_step_size(0.02)
    assert float(F.softplus(torch.tensor(raw))) == pytest.approx(0.02, rel=1e-6)


def test_xavier_weights_have_the_xavier_scale_and_zero_biases():
    net = nn.Sequential(nn.Conv2d(3, 64, 5), nn.Flatten(), nn.Linear(400, 300))
    w = ml.xavier_weights(net, torch.Generator().manual_seed(0))
    assert set(w) == {n for n, _ in net.named_parameters()}
    assert float(w["2.weight"].std()) == pytest.approx(math.sqrt(2 / 700), rel=0.03)
    assert float(w["0.weight"].std()) == pytest.approx(math.sqrt(2 / (75 + 1600)), rel=0.03)
    assert float(w["0.bias"].abs().sum()) == 0.0 and float(w["2.bias"].abs().sum()) == 0.0


# ddwang: the unrolled descent ---------------------------------------------------------------
def test_unroll_is_plain_gradient_descent():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    w0 = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    lrs = torch.tensor([0.5, 0.25])
    w = ml.unroll(net, w0, [(x, y, lrs[0]), (x, y, lrs[1])], create_graph=False)
    sgd = torch.optim.SGD(net.parameters(), lr=0.5)
    for lr in (0.5, 0.25):
        for group in sgd.param_groups:
            group["lr"] = lr
        sgd.zero_grad()
        F.cross_entropy(net(x), y).backward()
        sgd.step()
    assert torch.allclose(w["weight"], net.weight, atol=1e-6)
    assert torch.allclose(w["bias"], net.bias, atol=1e-6)


def test_gradients_reach_the_images_and_every_step_size():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    images = torch.randn(6, 1, 4, 4, requires_grad=True)
    labels = torch.arange(3).repeat_interleave(2)
    raw = torch.full((4,), ml.raw_step_size(0.1), requires_grad=True)
    groups = ml.step_groups(3, 2, 2)
    plan = ml.schedule(images, labels, groups, F.softplus(raw), epochs=2)
    assert len(plan) == 4 and plan[2][0].shape == (3, 1, 4, 4)
    w0 = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    w = ml.unroll(net, w0, plan, create_graph=True)
    x_real, y_real = torch.randn(10, 1, 4, 4), torch.randint(0, 3, (10,))
    F.cross_entropy(ml.logits(net, w, x_real), y_real).backward()
    assert images.grad is not None and bool((images.grad.abs().flatten(1).sum(1) > 0).all())
    assert raw.grad is not None and bool((raw.grad != 0).all())


def test_the_real_loss_backward_in_chunks_is_the_whole_batch_gradient():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    images = torch.randn(3, 1, 4, 4, requires_grad=True)
    raw = torch.full((2,), ml.raw_step_size(0.1), requires_grad=True)
    x_real, y_real = torch.randn(10, 1, 4, 4), torch.randint(0, 3, (10,))
    w0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = []
    for chunk in (0, 3):
        images.grad = raw.grad = None
        start = {n: t.clone().requires_grad_(True) for n, t in w0.items()}
        plan = ml.schedule(images, torch.arange(3), [torch.arange(3)], F.softplus(raw), 2)
        w = ml.unroll(net, start, plan, create_graph=True)
        loss = ml.backward_real_loss(net, w, x_real, y_real, chunk)
        grads.append((loss, images.grad.clone(), raw.grad.clone()))
    net.eval()
    plan = ml.schedule(images, torch.arange(3), [torch.arange(3)], F.softplus(raw), 2)
    w = ml.unroll(net, {n: t.clone().requires_grad_(True) for n, t in w0.items()}, plan, True)
    whole = F.cross_entropy(ml.logits(net, w, x_real), y_real)
    gi, gr = torch.autograd.grad(whole, [images, raw])
    for loss, g_img, g_raw in grads:
        assert loss == pytest.approx(float(whole), rel=1e-5)
        assert torch.allclose(g_img, gi, atol=1e-6) and torch.allclose(g_raw, gr, atol=1e-6)


def test_fixed_init_is_reproducible_from_the_seed_and_stored_with_the_set():
    a = ml.ddwang(toy_request(seed=0), init_weights="fixed", **TINY)
    b = ml.ddwang(toy_request(seed=0), init_weights="fixed", **TINY)
    c = ml.ddwang(toy_request(seed=1), init_weights="fixed", **TINY)
    keys = sorted(k for k in a.extras if k.startswith("init_weights."))
    assert keys and a.info["init_seed"] == b.info["init_seed"] != c.info["init_seed"]
    assert all(torch.equal(a.extras[k], b.extras[k]) for k in keys)
    assert not all(torch.equal(a.extras[k], c.extras[k]) for k in keys)
    assert torch.equal(a.images, b.images) and torch.equal(a.extras["step_sizes"],
                                                           b.extras["step_sizes"])
    assert a.extras["step_sizes"].shape == (2 * 3,)  # ipc 2 -> 2 steps, x 3 epochs
    # the stored weights are the draw from the seed, and the stored set alone reproduces the
    # method's own evaluation
    back = SyntheticSet.from_tensors(a.to_tensors())
    request = toy_request(seed=0)
    template = request.build_net(0)
    redrawn = ml.InitialWeights(request, template, "xavier").draw(a.info["init_seed"])
    assert all(torch.equal(redrawn[k.split(".", 1)[1]], back.extras[k]) for k in keys)
    data = request.data
    plan = ml.schedule(back.images, back.labels, ml.step_groups(data.num_classes, 2, 2),
                       back.extras["step_sizes"], 3)
    weights = {k.split(".", 1)[1]: back.extras[k] for k in keys}
    before, after = ml.evaluate_steps(template, weights, plan, data.x_test, data.y_test)
    assert after == pytest.approx(a.info["ddwang_accuracy"])
    assert before == pytest.approx(a.info["ddwang_init_accuracy"])


def test_random_init_reports_mean_and_std_over_draws():
    syn = ml.ddwang(toy_request(), init_weights="random", eval_draws=3, **TINY)
    assert syn.info["ddwang_eval_draws"] == 3 and "ddwang_accuracy_std" in syn.info
    assert not any(k.startswith("init_weights.") for k in syn.extras)
    assert 0.0 <= syn.info["ddwang_accuracy"] <= 100.0


def test_ddwang_learns_step_sizes_and_lowers_the_real_loss_with_a_fixed_init():
    # the whole toy training set as the real batch: the same objective every iteration
    syn = ml.ddwang(toy_request(ipc=1, arch="mlp", options={"width": 16}),
                    init_weights="fixed", iterations=30, batch_real=160, lr_img=0.1,
                    lr_step_init=0.1, checkpoint_every=0)
    losses = [row["loss"] for row in syn.curve]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert not torch.allclose(syn.extras["step_sizes"], torch.full((3,), 0.1))
    assert syn.info["ddwang_accuracy"] > syn.info["ddwang_init_accuracy"] + 10


# krr -------------------------------------------------------------------------------------------
def test_ridge_solve_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    phi_s = torch.randn(4, 3, generator=g, dtype=torch.float64)
    phi_t = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y_s = torch.randn(4, 2, generator=g, dtype=torch.float64)
    reg = 0.1
    k = phi_s @ phi_s.T
    lam = reg * torch.trace(k) / 4
    closed = phi_t @ phi_s.T @ torch.linalg.inv(k + lam * torch.eye(4, dtype=k.dtype)) @ y_s
    assert torch.allclose(kr.krr_predict(phi_t, phi_s, y_s, reg), closed, atol=1e-10)
    # the same regression in the primal (feature) form
    primal = phi_t @ torch.linalg.inv(phi_s.T @ phi_s + lam * torch.eye(3, dtype=k.dtype)) \
        @ phi_s.T @ y_s
    assert torch.allclose(kr.krr_predict(phi_t, phi_s, y_s, reg), primal, atol=1e-10)


def test_ridge_without_regularisation_interpolates_the_synthetic_targets():
    g = torch.Generator().manual_seed(1)
    phi_s = torch.randn(3, 8, generator=g)
    y_s = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    assert torch.allclose(kr.krr_predict(phi_s, phi_s, y_s, 0.0), y_s, atol=1e-4)
    assert float(kr.krr_loss(phi_s, y_s, phi_s, y_s, 0.0)) == pytest.approx(0.0, abs=1e-6)


def test_learned_labels_start_near_one_hot_and_receive_gradients():
    logits = kr.initial_logits(torch.tensor([0, 2]), 3).requires_grad_(True)
    p = F.softmax(logits, 1)
    assert torch.allclose(p[0], torch.tensor([0.9, 0.05, 0.05]), atol=1e-6)
    phi_s = torch.randn(2, 5, requires_grad=True)
    phi_t, y_t = torch.randn(7, 5), F.one_hot(torch.randint(0, 3, (7,)), 3).float()
    kr.krr_loss(phi_t, y_t, phi_s, p, 1e-3).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    assert phi_s.grad is not None and float(phi_s.grad.abs().sum()) > 0


def test_krr_with_learned_labels_returns_distributions():
    syn = kr.krr(toy_request(arch="convnet", options={"depth": 2, "width": 8}),
                 learn_labels=True, pool_size=2, max_online_steps=2, lr_img=0.01,
                 lr_label=0.05, **TINY)
    data = toy_request().data
    assert syn.labels.shape == (syn.images.shape[0], data.num_classes)
    assert torch.allclose(syn.labels.sum(1), torch.ones(syn.labels.shape[0]), atol=1e-5)
    assert not torch.allclose(syn.labels, F.softmax(kr.initial_logits(
        torch.arange(data.num_classes).repeat_interleave(2), data.num_classes), 1))


def test_pool_ages_are_staggered_and_an_old_network_is_replaced():
    request = toy_request(arch="convnet", options={"depth": 2, "width": 8})
    pool = kr.Pool(request, size=4, max_steps=4, lr=0.01)
    assert pool.ages == [0, 1, 2, 3]
    x = request.data.x_train[:6]
    y = request.data.y_train[:6]
    old = pool.nets[3]
    pool.train_step(3, x, y)  # age 3 -> 4: trained, kept
    assert pool.nets[3] is old and pool.ages[3] == 4
    pool.train_step(3, x, y)  # at the limit: a fresh network, then one step
    assert pool.nets[3] is not old and pool.ages[3] == 1


def test_krr_lowers_its_loss_on_toy_data():
    syn = kr.krr(toy_request(arch="convnet", options={"depth": 2, "width": 8}),
                 iterations=30, batch_real=64, pool_size=1, max_online_steps=1000,
                 lr_img=0.05, lr_net=0.0, checkpoint_every=0)
    losses = [row["loss"] for row in syn.curve]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
