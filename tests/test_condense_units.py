"""Unit tests of the condensation building blocks on tiny tensors (issue 5)."""
import math

import pytest
import torch
from torch import nn

from kddbench.condense import CondenseRequest
from kddbench.context import RunContext
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator
from kddbench_plugins.condensation import coreset, distribution_matching as dmm, gradient_matching as gm
from kddbench_plugins.condensation import synthesis as synth


def toy_request(ipc=2, seed=0, fixed_net=None, arch_options=None):
    ctx = RunContext(registry=get_registry())
    data = ctx.data("toy")
    opts = arch_options or {"depth": 2, "width": 8}

    def build(s):
        return ctx.build_net("convnet", data, fixed_net if fixed_net is not None else s,
                             options=opts)

    return CondenseRequest(data=data, ipc=ipc, arch="convnet", build_net=build,
                           generator=make_generator(seed), device=ctx.device, seed=seed,
                           augment=lambda name: ctx.augment(name, data))


# gradient matching --------------------------------------------------------------------------
def test_gradient_distance_is_zero_for_identical_gradients_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 3, 3, 3, generator=g), torch.randn(10, 8, generator=g)]
    assert float(gm.gradient_distance(grads, grads)) == pytest.approx(0.0, abs=1e-5)
    scaled = [2.5 * t for t in grads]
    assert float(gm.gradient_distance(grads, scaled)) == pytest.approx(0.0, abs=1e-5)
    # opposite gradients: 1 - cos = 2 for each of the 4 + 10 output units
    assert float(gm.gradient_distance(grads, [-t for t in grads])) == pytest.approx(28.0)


def test_gradient_distance_ignores_biases_and_norm_parameters():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 6, generator=g)
    a = [w, torch.randn(5, generator=g), torch.randn(6, generator=g)]
    b = [w, torch.randn(5, generator=g), torch.randn(6, generator=g)]
    assert float(gm.gradient_distance(a, b)) == pytest.approx(0.0, abs=1e-6)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(4, 4),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    matched = gm.matched_parameters(net)
    assert [tuple(p.shape) for p in matched] == [(4, 1, 3, 3), (3, 64)]


def test_loops_follow_the_reference_table():
    assert gm.loops_for(1) == (1, 1) and gm.loops_for(10) == (10, 50)
    assert gm.loops_for(50) == (50, 10) and gm.loops_for(12) == (10, 50)


def test_batchnorm_stats_are_frozen_on_the_real_batch():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    x = torch.randn(8, 1, 4, 4) * 3 + 1
    gm.freeze_batchnorm_stats(net, x)
    bn = net[1]
    assert not bn.training
    ref = net[0](x).detach()
    assert torch.allclose(bn.running_mean, ref.mean((0, 2, 3)), atol=1e-5)


def test_dc_matching_loss_decreases_with_a_fixed_network():
    request = toy_request(fixed_net=3)
    syn = gm.gradient_matching(request, iterations=12, outer_loop=1, inner_loop=1,
                               batch_real=1000, init="noise", augment="none",
                               checkpoint_every=0)
    losses = [row["loss"] for row in syn.curve]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]


# coreset selection ----------------------------------------------------------------------------
def test_herding_picks_the_points_that_keep_the_running_mean_on_the_mean():
    feats = torch.tensor([[0.0], [10.0], [4.0], [6.0], [5.1]])  # mean 5.02
    # 1st: 5.1 (nearest the mean); 2nd: (5.1 + 4) / 2 = 4.55 beats (5.1 + 6) / 2 = 5.55;
    # 3rd: (9.1 + 6) / 3 = 5.03
    assert coreset.herding_select(feats, 3).tolist() == [4, 2, 3]
    assert sorted(coreset.herding_select(feats, 5).tolist()) == [0, 1, 2, 3, 4]


def test_kcenter_picks_the_farthest_points_from_the_chosen_centers():
    feats = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    # from 0: 20 is farthest; then 10 (10 from both) beats 11 (9 from 20)
    assert coreset.kcenter_select(feats, 3, first=0).tolist() == [0, 5, 3]
    assert coreset.kcenter_select(feats, 6, first=2).tolist()[0] == 2


def test_forgetting_counts_correct_to_incorrect_transitions():
    t = coreset.ForgettingTracker(4)
    seq = [  # rows: visits; columns: examples a, b, c, d
        [1, 0, 1, 0],
        [0, 0, 1, 1],
        [1, 0, 1, 1],
        [0, 0, 1, 0],
    ]
    for row in seq:
        t.update(torch.arange(4), torch.tensor(row, dtype=torch.bool))
    scores = t.scores()
    assert scores[:1].tolist() == [2.0] and math.isinf(scores[1])
    assert scores[2:].tolist() == [0.0, 1.0]
    # a partial minibatch only touches its own examples
    t.update(torch.tensor([2]), torch.tensor([False]))
    assert t.scores()[2] == 1.0 and t.scores()[0] == 2.0


def test_rank_select_keeps_most_forgotten_and_breaks_ties_reproducibly():
    scores = torch.tensor([0.0, 3.0, math.inf, 1.0, 1.0, 1.0])
    most = coreset._rank_select(scores, 3, True, torch.Generator().manual_seed(0))
    assert most[:2].tolist() == [2, 1] and int(most[2]) in (3, 4, 5)
    again = coreset._rank_select(scores, 3, True, torch.Generator().manual_seed(0))
    assert torch.equal(most, again)
    assert coreset._rank_select(scores, 1, False, torch.Generator()).tolist() == [0]


# distribution / attention matching -----------------------------------------------------------
def test_dm_loss_decreases_with_a_fixed_network_and_no_augmentation():
    request = toy_request(fixed_net=5)
    syn = dmm.dm(request, iterations=15, batch_real=1000, lr_img=1.0, augment="none",
                 checkpoint_every=0)
    losses = [row["loss"] for row in syn.curve]
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(syn.images, syn.init_images)


def test_datadam_loss_decreases_with_a_fixed_network_and_no_augmentation():
    request = toy_request(fixed_net=6, arch_options={"depth": 3, "width": 8})
    syn = dmm.datadam(request, iterations=15, batch_real=1000, augment="none",
                      checkpoint_every=0)
    losses = [row["loss"] for row in syn.curve]
    assert losses[-1] < 0.7 * losses[0]
    assert {"attention", "embedding"} <= set(syn.curve[0])


def test_attention_map_is_a_unit_vector_of_channel_powers():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0], a[0, 1, 0, 0], a[0, 1, 1, 1] = 1.0, -1.0, 2.0
    att = dmm.attention_map(a, p=2)
    assert torch.allclose(att, torch.tensor([[2.0, 0.0, 0.0, 4.0]]) / math.sqrt(20.0))


def test_datadam_settings_fill_their_defaults():
    request = toy_request()
    code = dmm.datadam(request, setting="code", iterations=1, checkpoint_every=0)
    assert code.info["p"] == 1 and code.info["batch_real"] == 64
    assert code.info["norm"] == "batchnorm"
    paper = dmm.datadam(toy_request(), iterations=1, checkpoint_every=0)
    assert paper.info["p"] == 4 and paper.info["norm"] == "as_built"
    with pytest.raises(Exception, match="setting"):
        dmm.datadam(toy_request(), setting="blog")


# shared pieces ---------------------------------------------------------------------------------
def test_class_sampler_draws_distinct_images_of_every_class():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 2, 2])
    sampler = synth.ClassSampler(labels, 4)  # class 3 is empty
    idx, cls = sampler.sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(labels[idx], cls)
    assert torch.bincount(cls, minlength=4).tolist() == [2, 2, 2, 0]
    assert len(set(idx.tolist())) == idx.numel()
    idx, cls = sampler.sample(10, torch.Generator().manual_seed(1))
    assert torch.bincount(cls, minlength=4).tolist() == [2, 3, 5, 0]


def test_chunked_passes_equal_unchunked_ones():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(4, 4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(7, 1, 6, 6)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    params = [p for p in net.parameters() if p.ndim >= 2]
    whole = synth.mean_loss_grads(net, x, y, params, 0)
    parts = synth.mean_loss_grads(net, x, y, params, 3)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, parts))

    def loss_of(out):
        return (synth.class_means(out, y, 3) ** 2).sum()

    grads = []
    for chunk in (0, 2):
        leaf = x.clone().requires_grad_(True)
        loss, _ = synth.backward_through(net, leaf * 1.0, loss_of, chunk)
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert synth.auto_chunk(net, x) >= 1


def test_initial_sets_are_real_images_or_noise_in_class_order():
    request = toy_request(ipc=3)
    images, labels = synth.initial_set(request, "real")
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    train = request.data.x_train
    for img, lab in zip(images, labels):
        match = (train == img).flatten(1).all(1).nonzero().flatten()
        assert match.numel() >= 1 and int(request.data.y_train[match[0]]) == int(lab)
    noise, _ = synth.initial_set(toy_request(ipc=3), "noise")
    assert noise.shape == images.shape and abs(float(noise.std()) - 1.0) < 0.2
    with pytest.raises(Exception, match="init"):
        synth.initial_set(request, "zeros")


def test_instance_norm_swaps_for_batch_norm():
    net = toy_request().build_net(0)
    assert synth.swap_instancenorm_for_batchnorm(net) == 2
    assert synth.has_batchnorm(net)


def test_real_initialisation_is_the_random_baselines_set_of_the_same_seed():
    from kddbench_plugins.condensation import real_images as coreset_basic

    random_set = coreset_basic.random(toy_request(ipc=3, seed=7))
    syn = dmm.dm(toy_request(ipc=3, seed=7), iterations=1, checkpoint_every=0)
    assert torch.equal(syn.init_images, random_set.images)  # a paired comparison per seed


def test_batchnorm_networks_take_the_exact_paths():
    """BN nets: DC freezes statistics on real images, DM embeds class by class, DataDAM's code
    setting swaps instance norm for batch norm; all run and move the images."""
    bn = {"depth": 2, "width": 8, "norm": "batchnorm"}
    dc = gm.gradient_matching(toy_request(arch_options=bn), iterations=2, outer_loop=2,
                              inner_loop=1, batch_real=16, init="real", checkpoint_every=0)
    dm = dmm.dm(toy_request(arch_options=bn), iterations=2, batch_real=16, checkpoint_every=0)
    assert dm.info["per_class_forward"] is True
    code = dmm.datadam(toy_request(), setting="code", iterations=2, checkpoint_every=0)
    for syn in (dc, dm, code):
        assert torch.isfinite(syn.images).all() and not torch.equal(syn.images, syn.init_images)
