"""Trajectory matching (mtt, pad) and expert trajectories on tiny tensors and toy data."""
import pytest
import torch
from torch import nn

from kddbench.condense import CondenseRequest
from kddbench.context import Checkpoint, RunContext
from kddbench.errors import KddbenchError
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator
from kddbench.store import ArtifactCache
from kddbench_plugins.condensation import trajectory_matching as tm

TINY = {"iterations": 3, "num_experts": 2, "epochs": 3, "syn_steps": 3, "expert_epochs": 1,
        "max_start_epoch": 1, "checkpoint_every": 0, "augment": "none",
        "expert_augment": "none", "batch_train": 32, "expert_lr": 0.05, "lr_img": 10.0}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tm._MEMO.clear()
    yield
    torch.set_num_threads(before)


def toy_request(seed=0, cache=None, checkpoint=None, log=None, net_options=None):
    ctx = RunContext(registry=get_registry())
    data = ctx.data("toy")
    opts = net_options or {"depth": 2, "width": 8}
    kwargs = {"log": log} if log is not None else {}
    return CondenseRequest(
        data=data, ipc=2, arch="convnet",
        build_net=lambda s: ctx.build_net("convnet", data, s, options=opts),
        generator=make_generator(seed), device=ctx.device, seed=seed, checkpoint=checkpoint,
        augment=lambda name: ctx.augment(name, data), artifacts=cache,
        net_key={"arch": "convnet", "options": opts}, **kwargs)


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.GroupNorm(3, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).double()


def scale_jitter(x, generator):  # a random, differentiable augmentation
    return x * (1 + 0.1 * torch.rand(x.shape[0], 1, 1, 1, generator=generator, dtype=x.dtype))


def unroll_inputs(learned_labels: bool, steps=4, batch=4):
    fnet = tm.FlatNet(tiny_net())
    g = torch.Generator().manual_seed(1)
    start = fnet.flat().clone()
    target = start + 0.05 * torch.randn(start.shape, generator=g, dtype=start.dtype)
    images = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.double)
    labels = (torch.randn(6, 3, generator=g, dtype=torch.double) if learned_labels
              else torch.tensor([0, 0, 1, 1, 2, 2]))
    plan = tm.plan_steps(6, steps, batch, g, torch.device("cpu"))
    return fnet, start, target, images, labels, plan


def leaves(images, labels):
    lr = torch.tensor(0.1, dtype=torch.double, requires_grad=True)
    labels = labels.clone().requires_grad_(True) if labels.dtype.is_floating_point else labels
    return images.clone().requires_grad_(True), labels, lr


@pytest.mark.parametrize("learned_labels", [False, True])
@pytest.mark.parametrize("deep_only", [0.0, 0.4])
def test_constant_memory_unroll_gives_the_full_unrolls_gradients(learned_labels, deep_only):
    fnet, start, target, images, labels, plan = unroll_inputs(learned_labels)
    mask = fnet.deep_mask(deep_only)
    if deep_only:
        assert mask is not None and 0 < int(mask.sum()) < fnet.numel
    full = tm.unroll_full(fnet, start, target, *leaves(images, labels), plan, scale_jitter,
                          mask)
    const = tm.unroll_constant(fnet, start, target, *leaves(images, labels), plan,
                               scale_jitter, mask)
    assert const.loss == pytest.approx(full.loss, rel=1e-10)
    assert full.image_grad.abs().max() > 0 and full.lr_grad.abs() > 0
    torch.testing.assert_close(const.image_grad, full.image_grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(const.lr_grad, full.lr_grad, rtol=1e-9, atol=1e-12)
    if learned_labels:
        assert full.label_grad.abs().max() > 0
        torch.testing.assert_close(const.label_grad, full.label_grad, rtol=1e-9, atol=1e-12)


def test_deep_mask_counts_modules_or_parameter_elements():
    fnet = tm.FlatNet(tiny_net())  # 3 modules: conv 27+3, norm 3+3, linear 48x3+3
    sizes = [b - a for _, a, b in fnet.layers]
    assert sizes == [30, 6, 147] and fnet.numel == 183
    by_modules = fnet.deep_mask(0.34)  # floor(0.34 x 3) = 1 module: the convolution
    assert by_modules[:30].sum() == 0 and by_modules[30:].sum() == 153
    by_elements = fnet.deep_mask(0.5, "parameters")  # floor(0.5 x 183) = 91 elements
    assert by_elements[:91].sum() == 0 and by_elements[91:].sum() == 92
    assert fnet.deep_mask(0.0, "parameters") is None and fnet.deep_mask(0.2) is None


def test_pad_deep_by_parameters_matches_the_deeper_share_and_keeps_old_identities():
    syn = tm.pad(toy_request(), **TINY, deep_only=0.5, deep_by="parameters", el2n_keep=1.0)
    numel = tm.FlatNet(toy_request().build_net(0)).numel
    assert syn.info["matched_params"] == numel - int(0.5 * numel)
    assert syn.info["deep_by"] == "parameters"
    with pytest.raises(KddbenchError, match="deep_by"):
        tm.pad(toy_request(), **TINY, deep_by="layers")
    spec = get_registry().get("condenser", "pad")
    assert "deep_by" not in spec.resolve_options({})  # at its default: not in identities
    assert spec.resolve_options({"deep_by": "parameters"})["deep_by"] == "parameters"


def test_the_loss_is_the_normalised_parameter_distance():
    fnet, start, target, images, labels, _ = unroll_inputs(False)
    out = tm.unroll_constant(fnet, start, target, *leaves(images, labels), [], None)
    assert out.loss == pytest.approx(1.0)  # no step: theta_N = theta*_t
    assert out.start_distance == pytest.approx(float(((start - target) ** 2).sum()))


def test_constant_unroll_memory_does_not_grow_with_steps_but_the_full_one_does():
    peaks = {}
    for mode in ("constant", "full"):
        for steps in (2, 8):
            fnet, start, target, images, labels, plan = unroll_inputs(False, steps=steps)
            with tm.SavedTensorMeter() as meter:
                tm.UNROLL[mode](fnet, start, target, *leaves(images, labels), plan,
                                scale_jitter)
            peaks[mode, steps] = meter.peak_bytes
    assert peaks["constant", 8] <= 1.1 * peaks["constant", 2]
    assert peaks["full", 8] > 2.5 * peaks["full", 2]


def test_flat_net_runs_the_module_with_the_given_parameters():
    net = tiny_net()
    fnet = tm.FlatNet(net)
    x = torch.randn(5, 1, 4, 4, dtype=torch.double)
    theta = fnet.flat()
    torch.testing.assert_close(fnet(theta, x), net(x))
    assert not torch.allclose(fnet(theta * 0.5, x), net(x))
    assert [m for m, _, _ in fnet.layers] == ["0", "1", "4"]


def test_an_expert_is_plain_sgd_on_the_real_set():
    request = toy_request()
    data = request.data
    plan = tm.ExpertPlan(1, 2, 0.05, 10_000, "none", 0)  # one full-batch step per epoch
    traj = tm.train_expert(request, plan, 0, data)["params"]
    assert traj.shape[0] == 3
    g = make_generator(tm.derive_seed(0, "expert", 0))
    net = request.build_net(tm.draw_seed(g))
    fnet = tm.FlatNet(net)
    theta = fnet.flat().requires_grad_(True)
    torch.testing.assert_close(traj[0], theta.detach())
    for epoch in range(2):
        loss = nn.functional.cross_entropy(fnet(theta, data.x_train), data.y_train)
        (grad,) = torch.autograd.grad(loss, theta)
        theta = (theta - 0.05 * grad).detach().requires_grad_(True)
        torch.testing.assert_close(traj[epoch + 1], theta.detach(), rtol=1e-4, atol=1e-6)


class Boom(Exception):
    pass


def test_experts_are_artifacts_shared_across_cells_and_a_killed_build_keeps_finished_ones(
        tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path / "cache")
    plan = tm.ExpertPlan(3, 2, 0.01, 64, "none", 7)
    real = tm.train_expert

    def dies_at_2(request, plan, index, data):
        if index == 2:
            raise Boom()
        return real(request, plan, index, data)

    monkeypatch.setattr(tm, "train_expert", dies_at_2)
    request = toy_request(cache=cache)
    fnet = tm.FlatNet(request.build_net(0))
    experts = tm.Experts(request, plan, request.data, fnet)
    with pytest.raises(Boom):
        experts.build_all()
    assert experts.built == 3  # 0, 1 finished; 2 died
    assert len(list((tmp_path / "cache" / "artifacts" / "expert_trajectories").glob("*.pt"))) == 2
    monkeypatch.setattr(tm, "train_expert", real)
    again = tm.Experts(toy_request(seed=5, cache=cache), plan, request.data, fnet)
    again.build_all()
    assert again.built == 1  # only the one that died; the cell seed is not in the key
    third = tm.Experts(toy_request(seed=9, cache=cache), plan, request.data, fnet)
    third.build_all()
    assert third.built == 0 and third[1].shape == (3, fnet.numel)
    # a different network is a different artifact
    wider = toy_request(cache=cache, net_options={"depth": 2, "width": 6})
    other = tm.Experts(wider, plan, wider.data, tm.FlatNet(wider.build_net(0)))
    other.build_all()
    assert other.built == 3


class Interrupt(Exception):
    pass


def test_a_killed_mtt_cell_resumes_from_its_checkpoint_and_reuses_the_experts(tmp_path):
    opts = dict(TINY, iterations=5, checkpoint_every=2)
    whole = tm.mtt(toy_request(), **opts)

    cache = ArtifactCache(tmp_path / "cache")
    ck = Checkpoint(cache, {"cell": "mtt"})

    def crash_at_3(step, **scalars):
        if step == 3:
            raise Interrupt()

    tm._MEMO.clear()
    with pytest.raises(Interrupt):
        tm.mtt(toy_request(cache=cache, checkpoint=ck, log=crash_at_3), **opts)
    assert int(ck.load()["iteration"]) == 2
    tm._MEMO.clear()
    seen = []
    resumed = tm.mtt(toy_request(cache=cache, checkpoint=ck,
                                 log=lambda step, **s: seen.append(step)), **opts)
    assert seen == [2, 3, 4]
    assert resumed.info["experts_built"] == 0 and resumed.info["resumed_from_iteration"] == 2
    assert torch.equal(resumed.images, whole.images)
    assert resumed.lr == whole.lr and resumed.lr != pytest.approx(0.01, rel=1e-9)
    assert [r["loss"] for r in resumed.curve] == [r["loss"] for r in whole.curve]


def test_both_unrolls_give_the_same_mtt_set():
    full = tm.mtt(toy_request(), **dict(TINY, unroll="full"))
    const = tm.mtt(toy_request(), **dict(TINY, unroll="constant"))
    moved = (full.images - full.init_images).abs().max()
    assert moved > 0.01  # float32 rounding, amplified by lr_img, is all that differs
    assert (const.images - full.images).abs().max() < 1e-2 * moved
    assert const.lr == pytest.approx(full.lr, rel=1e-3)


def test_zca_on_without_whitened_data_is_a_clear_error():
    with pytest.raises(KddbenchError, match="zca"):
        tm.mtt(toy_request(), **dict(TINY, zca="on"))
    with pytest.raises(KddbenchError, match="zca"):  # the CIFAR-10 IPC-1 setting uses ZCA
        tm.mtt(toy_request(), **dict(TINY, setting="cifar10_ipc1"))


def test_settings_follow_the_reference_table_and_fall_back_to_cpu():
    assert tm.setting_for("auto", "cifar10", 10) == ("cifar10_ipc10", tm.SETTINGS["cifar10_ipc10"])
    assert tm.SETTINGS["cifar100_ipc50"]["batch_syn"] == 125
    assert tm.setting_for("auto", "fashion-mnist", 10)[0] == "cpu"
    assert tm.SETTINGS["cpu"]["zca"] is False
    with pytest.raises(KddbenchError):
        tm.setting_for("cifar10_ipc3", "cifar10", 3)


# pad ----------------------------------------------------------------------------------------
def test_el2n_selection_keeps_the_easiest_of_every_class():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.8])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert tm.easiest(scores, labels, 2, 2 / 3).tolist() == [1, 2, 3, 4]


def test_class_first_raises_only_the_rows_whose_class_is_not_first():
    logits = torch.tensor([[3.0, 1.0], [3.0, 1.0]])
    out = tm.class_first(logits, torch.tensor([0, 1]))
    assert out[0].tolist() == [3.0, 1.0] and out[1].argmax() == 1 and out[1, 0] == 3.0


def test_pad_soft_labels_and_each_part_can_be_switched_off():
    syn = tm.pad(toy_request(), **TINY)
    assert syn.labels.shape == (8, 4) and torch.allclose(syn.labels.sum(1), torch.ones(8))
    assert syn.labels.argmax(1).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    info = syn.info
    assert info["kept_real"] < 160 and info["matched_params"] < tm.FlatNet(
        toy_request().build_net(0)).numel
    off = tm.pad(toy_request(), **TINY, window=False, el2n_keep=1.0, deep_only=0.0,
                 soft_labels=False)
    assert off.labels.dtype == torch.int64 and off.info["kept_real"] == 160
    assert off.info["matched_params"] == tm.FlatNet(toy_request().build_net(0)).numel


def test_pad_reference_options_labels_from_correct_experts_momentum_and_threshold():
    """The PAD reference's label initialisation (the mean logits of the experts that classify
    an image correctly), label momentum and loss threshold; at their defaults ours, and out
    of the resolved options (cell identities kept)."""
    spec = get_registry().get("condenser", "pad")
    resolved = spec.resolve_options({})
    assert not {"label_init", "label_momentum", "loss_threshold"} & set(resolved)
    ours = tm.pad(toy_request(), **TINY, learn_labels=False)
    ref = tm.pad(toy_request(), **TINY, learn_labels=False, label_init="mean_correct",
                 label_momentum=0.9)
    assert ref.info["label_init"] == "mean_correct" and ref.info["label_momentum"] == 0.9
    assert ours.info["label_momentum"] == 0.5  # momentum's value
    assert not torch.allclose(ours.labels, ref.labels)  # several experts, not expert 0 alone
    assert ref.labels.argmax(1).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    never = tm.pad(toy_request(), **TINY, loss_threshold=1e-9)  # every match is worse
    assert never.info["skipped_updates"] == TINY["iterations"]
    assert torch.equal(never.images, never.init_images)
    always = tm.pad(toy_request(), **TINY, loss_threshold=1e9)
    assert always.info["skipped_updates"] == 0 and not torch.equal(always.images,
                                                                    always.init_images)
    with pytest.raises(KddbenchError, match="label_init"):
        tm.pad(toy_request(), **TINY, label_init="expert1")


def test_label_epoch_at_or_above_epochs_takes_the_experts_last(monkeypatch):
    """``label_epoch`` >= ``epochs`` (the PAD reference's last stored epoch) selects the
    initial images and the labels at epoch ``epochs``; -1 at the window's end."""
    seen = []
    real = tm.mean_correct_logits

    def spy(fnet, experts, epoch, *args):
        seen.append(epoch)
        return real(fnet, experts, epoch, *args)

    monkeypatch.setattr(tm, "mean_correct_logits", spy)
    runs = {e: tm.pad(toy_request(), **{**TINY, "iterations": 1}, learn_labels=False,
                      label_init="mean_correct", label_epoch=e) for e in (-1, 3, 99)}
    assert seen == [TINY["max_start_epoch"], TINY["epochs"], TINY["epochs"]]
    assert torch.equal(runs[3].labels, runs[99].labels)
    assert torch.equal(runs[3].init_images, runs[99].init_images)
    assert not torch.equal(runs[-1].labels, runs[3].labels)


def test_mean_correct_logits_averages_only_the_experts_that_are_right():
    class Net:
        def __call__(self, theta, x):
            return theta.view(1, -1).expand(x.shape[0], -1)

    class Experts:  # three experts, one epoch each: constant logits
        plan = type("Plan", (), {"num_experts": 3})()

        def __getitem__(self, e):
            return [torch.tensor([[2.0, 0.0], [0.0, 1.0], [4.0, 0.0]][e])]

    images, labels = torch.zeros(2, 1), torch.tensor([0, 1])
    out = tm.mean_correct_logits(Net(), Experts(), 0, images, labels, "cpu")
    assert out[0].tolist() == [3.0, 0.0]  # experts 0 and 2 are right on class 0
    assert out[1].tolist() == [0.0, 1.0]  # only expert 1 on class 1


def test_pad_window_grows_with_the_iterations_and_the_budget():
    assert tm.pad_window(1)[2] < tm.pad_window(10)[2] < tm.pad_window(50)[2]
    syn = tm.pad(toy_request(), **dict(TINY, iterations=8, epochs=6, max_start_epoch=0),
                 min_start_epoch=0, initial_max_start_epoch=1, window_growth=8,
                 el2n_keep=1.0, soft_labels=False)
    starts = [row["start_epoch"] for row in syn.curve]
    # start epochs in [0, upper), upper growing from 1 to the bound of 6 epochs - 1 + 1
    assert all(s < max(1, round(1 + 5 * it / 8)) for it, s in enumerate(starts))
    assert starts[0] == 0 and syn.info["max_start_epoch"] == 6


def test_declared_expert_artifacts_are_the_ones_the_method_reads(tmp_path):
    from kddbench_plugins.condensation import expert_artifacts

    registry = get_registry()
    ctx = RunContext(registry=registry, artifacts=ArtifactCache(tmp_path / "cache"))
    arch_options = {"depth": 2, "width": 8}
    args = {"dataset": "toy", "dataset_options": None, "method": "mtt",
            "method_options": TINY, "ipc": 2, "distill_arch": "convnet",
            "distill_arch_options": arch_options, "seed": 0}
    requests = expert_artifacts.declare(args, registry)
    assert [r.args["index"] for r in requests] == [0, 1]
    ids = [r.artifact_id for r in requests]
    assert len(set(ids)) == 2
    # neither the cell seed nor the method name matters: pad without data selection shares them
    same = expert_artifacts.declare(dict(args, seed=4, method="pad",
                                         method_options=dict(TINY, el2n_keep=1.0)), registry)
    assert [r.artifact_id for r in same] == ids
    selected = expert_artifacts.declare(dict(args, method="pad"), registry)
    assert not set(r.artifact_id for r in selected) & set(ids)
    for r in requests:
        r.resolve(ctx)
    data = ctx.data("toy")
    request = CondenseRequest(
        data=data, ipc=2, arch="convnet",
        build_net=lambda s: ctx.build_net("convnet", data, s, arch_options),
        generator=make_generator(0), device=ctx.device,
        augment=lambda name: ctx.augment(name, data), artifacts=ctx.artifacts,
        net_key=expert_artifacts.net_key(registry, "convnet", arch_options))
    syn = tm.mtt(request, **TINY)
    assert syn.info["experts_built"] == 0


# soft labels in the shared evaluation -------------------------------------------------------
def test_soft_labels_train_by_the_recipes_declared_loss():
    from kddbench.protocol import Recipe, label_loss, soft_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, requires_grad=True)
    soft = torch.softmax(torch.randn(5, 4, generator=g), 1)
    hard = torch.tensor([0, 1, 2, 3, 0])
    ce = Recipe()
    assert float(label_loss(logits, soft, ce)) == pytest.approx(
        float(soft_cross_entropy(logits, soft)))
    kl1, kl4 = Recipe(soft_label_loss="kl"), Recipe(soft_label_loss="kl",
                                                    soft_label_temperature=4.0)
    assert float(label_loss(logits, hard, kl4)) == pytest.approx(
        float(nn.functional.cross_entropy(logits, hard)))  # hard labels: always cross-entropy
    # at T = 1, KL = cross-entropy minus the targets' entropy: the same gradient
    (g_ce,) = torch.autograd.grad(label_loss(logits, soft, ce), logits)
    (g_kl,) = torch.autograd.grad(label_loss(logits, soft, kl1), logits)
    torch.testing.assert_close(g_kl, g_ce)
    p = torch.softmax(torch.log(soft) / 4, 1)
    q = torch.log_softmax(logits / 4, 1)
    manual = 16 * (p * (torch.log(p) - q)).sum(1).mean()
    assert float(label_loss(logits, soft, kl4)) == pytest.approx(float(manual), rel=1e-5)
    # later keys: the default recipe's identity is unchanged
    assert "soft_label_loss" not in Recipe().as_dict()
    assert Recipe(soft_label_loss="kl").as_dict()["soft_label_loss"] == "kl"


def test_training_on_soft_labels_with_kl_is_the_same_in_micro_batches(monkeypatch):
    from kddbench.protocol import Recipe, train

    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 8, 8, generator=g)
    y = torch.softmax(3 * torch.randn(24, 4, generator=g), 1)
    recipe = Recipe(epochs=2, batch_size=24, soft_label_loss="kl", soft_label_temperature=2.0)
    nets = []
    for micro in ("0", "8"):
        monkeypatch.setenv("KDDBENCH_CPU_MICRO_BATCH", micro)
        torch.manual_seed(3)
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 4))
        train(net, x, y, recipe, torch.Generator().manual_seed(1))
        nets.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.testing.assert_close(nets[0], nets[1], rtol=1e-4, atol=1e-6)


E2E_SUITE = """
[suite]
name = "tm_e2e"
budget = "toy data, tiny trajectory matching"

[protocols.quick]
epochs = 2
batch_size = 32
soft_label_loss = "kl"
soft_label_temperature = 2.0

[[experiments]]
name = "tm"
task = "condense"
dataset = "toy"
method = ["mtt", "pad"]
ipc = IPC
eval_arch = "convnet"
protocol = "quick"
seeds = [0]

  [experiments.options.convnet]
  depth = 2
  width = 8
  [experiments.options.mtt]
OPTIONS
  [experiments.options.pad]
OPTIONS
"""


def test_a_suite_builds_the_experts_once_ahead_and_every_cell_shares_them(tmp_path):
    from kddbench import api

    opts = "\n".join(f"  {k} = {v!r}".replace("'", '"') for k, v in TINY.items())
    cache = tmp_path / "cache"

    def run(ipc, name):
        text = E2E_SUITE.replace("IPC", str(ipc)).replace("OPTIONS", opts).replace(
            "tm_e2e", name)
        suite = tmp_path / f"{name}.toml"
        suite.write_text(text)
        return api.run(str(suite), tmp_path / name, cache_dir=str(cache), jobs=1,
                       progress=False, threads=1, device="cpu")

    df = run(2, "first")
    assert len(df) == 2 and (df["status"] == "ok").all()
    assert (df["condense.experts_built"] == 0).all()  # the runner built them before the cells
    assert (df["condense.experts_train_s"] > 0).all()  # their cost, reported apart
    experts = cache / "artifacts" / "expert_trajectories"
    # mtt's 2 experts, and pad's 2 trained on its EL2N selection
    assert len(list(experts.glob("*.pt"))) == 4
    assert len(list((cache / "artifacts" / "el2n_scores").glob("*.pt"))) == 1
    pad_rows = df[df["method"] == "pad"]
    assert (pad_rows["condense.kept_real"] < 160).all() and df["learned_lr"].notna().all()
    # another suite, another budget: the same experts
    again = run(3, "second")
    assert (again["status"] == "ok").all() and (again["condense.experts_built"] == 0).all()
    assert len(list(experts.glob("*.pt"))) == 4


def test_experts_of_a_cell_with_a_validation_split_train_on_the_same_split(tmp_path):
    """A set condensed on the training images less a validation split reads experts trained
    on that same split: the runner's declared experts are the ones the method uses."""
    from kddbench import api

    opts = "\n".join(f"  {k} = {v!r}".replace("'", '"') for k, v in TINY.items())
    text = E2E_SUITE.replace("IPC", "2").replace("OPTIONS", opts).replace(
        "epochs = 2\n", "epochs = 2\nval_per_class = 5\n", 1)
    suite = tmp_path / "val.toml"
    suite.write_text(text)
    df = api.run(str(suite), tmp_path / "val", cache_dir=str(tmp_path / "cache"), jobs=1,
                 progress=False, threads=1, device="cpu")
    assert len(df) == 2 and (df["status"] == "ok").all()
    assert (df["condense.experts_built"] == 0).all()  # all built ahead, on the split
    experts = tmp_path / "cache" / "artifacts" / "expert_trajectories"
    assert len(list(experts.glob("*.pt"))) == 4  # none on the whole training set


def test_a_zca_setting_runs_on_whitened_data_and_names_the_fix_without_it(tmp_path):
    """`transform = "zca"` whitens every split (experts, condensation and evaluation see the
    same data, a different artifact from the raw one); without it a ZCA setting fails in one
    line that names the fix."""
    from kddbench import api

    opts = "\n".join(f"  {k} = {v!r}".replace("'", '"') for k, v in {**TINY, "zca": "on"}.items())
    cache = tmp_path / "cache"

    def run(extra, name):
        text = (E2E_SUITE.replace("IPC", "2").replace("OPTIONS", opts).replace("tm_e2e", name)
                .replace('method = ["mtt", "pad"]', 'method = "mtt"' + extra)
                .split("  [experiments.options.pad]")[0])
        suite = tmp_path / f"{name}.toml"
        suite.write_text(text)
        return api.run(str(suite), tmp_path / name, cache_dir=str(cache), jobs=1,
                       progress=False, threads=1, device="cpu")

    whitened = run('\ntransform = "zca"', "zca")
    assert len(whitened) == 1 and (whitened["status"] == "ok").all(), whitened.get("error")
    assert len(list((cache / "artifacts" / "transforms").glob("*.pt"))) == 1
    raw = run("", "raw")
    assert (raw["status"] == "error").all()
    message = raw["error"].iloc[0]
    assert 'transform = "zca"' in message and "\n" not in message
    # experts are keyed by the data they saw: 2 on the whitened data (the set's), 2 on the raw
    import json

    def keys(kind):
        return [json.loads(p.read_text())["key"]["data"]
                for p in (cache / "artifacts" / kind).glob("*.json")]

    (whitened_data,) = keys("condensed")
    experts = keys("expert_trajectories")
    assert len(experts) == 4 and experts.count(whitened_data) == 2 and len(set(experts)) == 2
