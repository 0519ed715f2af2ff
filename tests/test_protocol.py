"""The shared training/evaluation protocol."""
import math

import pytest
import torch

from kddbench.errors import KddbenchError
from kddbench.protocol import (Recipe, classification_metrics, lr_at, make_generator, seeded,
                               soft_cross_entropy, train, train_and_evaluate)


def _toy(n=64, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(classes, 1, 6, 6, generator=g)
    y = torch.arange(classes).repeat(n // classes)
    x = protos[y] + 0.3 * torch.randn(len(y), 1, 6, 6, generator=g)
    return x, y


def _net(seed=0):
    with seeded(seed):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4))


def test_metrics_on_a_known_confusion():
    pred = torch.tensor([0, 0, 1, 1, 2, 0])
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    m = classification_metrics(pred, target, 3)
    assert m["accuracy"] == pytest.approx(100 * 4 / 6)
    assert m["misclassified"] == 2
    # per class F1: c0 p=2/3 r=1 -> 0.8; c1 p=1/2 r=1 -> 2/3; c2 p=1 r=1/3 -> 0.5
    assert m["macro_f1"] == pytest.approx(100 * (0.8 + 2 / 3 + 0.5) / 3)


def test_step_half_schedule():
    r = Recipe(epochs=10)
    assert lr_at(r, 4, 0.01) == 0.01 and lr_at(r, 5, 0.01) == pytest.approx(0.001)
    assert lr_at(Recipe(epochs=4, schedule="cosine"), 4, 1.0) == pytest.approx(0.0)


def test_training_is_seed_reproducible_and_seed_sensitive():
    x, y = _toy()
    recipe = Recipe(epochs=3, batch_size=16, lr=0.1)
    runs = []
    for gseed in (0, 0, 1):
        net = _net()
        train(net, x, y, recipe, make_generator(gseed))
        runs.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_train_and_evaluate_reports_every_metric():
    x, y = _toy()
    m = train_and_evaluate(_net(), x, y, x, y, 4, Recipe(epochs=20, batch_size=16, lr=0.1),
                           make_generator(0))
    for key in ("accuracy", "misclassified", "macro_f1", "params", "size_mb", "train_time_s",
                "n_train", "train_bytes", "train_images_per_s"):
        assert key in m
    assert m["accuracy"] > 90 and m["params"] == 36 * 4 + 4
    assert m["size_mb"] == pytest.approx((36 * 4 + 4) * 4 / 1e6)
    assert m["n_train"] == 64 and m["train_bytes"] == 64 * 36 * 4


def test_soft_labels_match_hard_cross_entropy_for_one_hot():
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 2, 1, 1, 0])
    soft = torch.nn.functional.one_hot(y, 3).float()
    assert soft_cross_entropy(logits, soft) == pytest.approx(float(soft_cross_entropy(logits, y)))


def test_divergence_is_reported():
    x, y = _toy()
    with pytest.raises(KddbenchError, match="diverged"):
        train(_net(), x * 1e30, y, Recipe(epochs=2, lr=1e10), make_generator(0))


def test_custom_loss_gets_batch_indices():
    x, y = _toy(n=32)
    seen = []

    def loss_fn(model, xb, yb, idx):
        seen.append(idx.clone())
        assert torch.equal(y[idx], yb)
        return soft_cross_entropy(model(xb), yb)

    train(_net(), x, y, Recipe(epochs=2, batch_size=10), make_generator(0), loss_fn=loss_fn)
    assert sorted(torch.cat(seen[:4]).tolist()) == list(range(32))
    assert math.isclose(len(seen), 8)


def test_cpu_micro_batches_give_the_same_step(monkeypatch):
    from kddbench.protocol import micro_batch_size

    x, y = _toy(n=64)
    x = x.expand(-1, 1, 6, 6).contiguous()
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    nets = []
    for micro in ("0", "8"):
        monkeypatch.setenv("KDDBENCH_CPU_MICRO_BATCH", micro)
        net = _net()
        train(net, x, y, recipe, make_generator(0))
        nets.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.allclose(nets[0], nets[1], atol=1e-5)
    with seeded(0):
        bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert micro_batch_size(bn, x) == 0


# --- the recipe: optimisers, schedules, validation, stable identities ---------------------

def test_steps_per_epoch_cuts_each_epoch_to_its_first_batches():
    x, y = _toy()  # 64 images: 4 batches of 16
    whole = train(_net(), x, y, Recipe(epochs=3, batch_size=16, lr=0.1), make_generator(0))
    cut = train(_net(), x, y, Recipe(epochs=3, batch_size=16, lr=0.1, steps_per_epoch=2),
                make_generator(0))
    over = train(_net(), x, y, Recipe(epochs=3, batch_size=16, lr=0.1, steps_per_epoch=9),
                 make_generator(0))
    assert (whole.steps, whole.images_seen) == (12, 192)
    assert (cut.steps, cut.images_seen) == (6, 96)
    assert (over.steps, over.images_seen) == (12, 192)  # a cap above the epoch changes nothing
    assert "steps_per_epoch" not in Recipe().as_dict()  # old cells keep their identity
    with pytest.raises(KddbenchError, match="steps_per_epoch"):
        Recipe.from_mapping({"steps_per_epoch": -1})


def test_default_recipe_dict_is_unchanged_so_cells_keep_their_ids():
    # the keys and values every committed cell hashed before the recipe grew
    assert Recipe().as_dict() == {
        "epochs": 300, "batch_size": 256, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
        "weight_decay": 5e-4, "schedule": "step_half", "augment": "none",
        "test_batch_size": 256, "label_smoothing": 0.0}
    assert "milestones" in Recipe(schedule="multistep", milestones=[3]).as_dict()
    from kddbench.recipe import normalize

    assert normalize({"epochs": 5, "gamma": 0.1, "milestones": [], "warmup_epochs": 0}) == {
        "epochs": 5}


def test_multistep_with_epochs_or_fractions():
    r = Recipe(epochs=240, lr=0.05, schedule="multistep", milestones=(150, 180, 210))
    lrs = [lr_at(r, e, 0.05) for e in (0, 149, 150, 179, 180, 210, 239)]
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.00005, 0.00005])
    frac = Recipe(epochs=240, schedule="multistep", milestones=(0.625, 0.75, 0.875), gamma=0.5)
    assert frac.milestone_epochs() == [150, 180, 210]
    assert lr_at(frac, 180, 1.0) == pytest.approx(0.25)
    assert Recipe(epochs=10, schedule="multistep", milestones=(0.55,)).milestone_epochs() == [6]


def test_cosine_with_linear_warmup_and_without():
    plain = Recipe(epochs=10, schedule="cosine")
    assert lr_at(plain, 0, 1.0) == 1.0 and lr_at(plain, 5, 1.0) == pytest.approx(0.5)
    warm = Recipe(epochs=10, schedule="cosine", warmup_epochs=2)
    assert [lr_at(warm, e, 1.0) for e in (0, 1)] == pytest.approx([0.5, 1.0])
    assert lr_at(warm, 2, 1.0) == pytest.approx(1.0)  # the cosine starts after the warm-up
    assert lr_at(warm, 6, 1.0) == pytest.approx(0.5)
    assert lr_at(Recipe(epochs=4, schedule="constant", warmup_epochs=2), 0, 0.1) == \
        pytest.approx(0.05)


def test_adamw_trains_and_unknown_optimizers_suggest():
    from kddbench.protocol import make_optimizer

    x, y = _toy()
    net = _net()
    opt = make_optimizer(Recipe(optimizer="adamw", weight_decay=0.01), net.parameters())
    assert isinstance(opt, torch.optim.AdamW)
    train(net, x, y, Recipe(epochs=2, batch_size=16, optimizer="adamw", lr=0.01),
          make_generator(0))
    with pytest.raises(KddbenchError, match="did you mean 'adam'"):
        make_optimizer(Recipe(optimizer="adan"), net.parameters())
    with pytest.raises(KddbenchError, match="did you mean 'cosine'"):
        lr_at(Recipe(schedule="cosin"), 0, 0.1)


def test_recipe_checks_every_value_and_the_rules_across_keys():
    from kddbench.recipe import check_recipe

    assert check_recipe(Recipe().as_dict()) == []
    bad = dict(epochs=0, batch_size=-1, optimizer="lbfgs", lr=-1.0, momentum=1.5,
               schedule="cosin", label_smoothing=2.0, warmup_epochs=-1, gamma=0.0)
    keys = {k for k, _ in check_recipe(bad)}
    assert keys == set(bad)
    assert "did you mean 'cosine'" in dict(check_recipe({"schedule": "cosin"}))["schedule"]
    assert dict(check_recipe({"schedule": "multistep"}))["schedule"].startswith(
        "schedule 'multistep' needs milestones")
    assert check_recipe({"schedule": "multistep"}, complete=False) == []  # partial: per value
    assert "increasing" in dict(check_recipe({"schedule": "multistep", "epochs": 10,
                                              "milestones": [6, 3]}))["milestones"]
    with pytest.raises(KddbenchError, match="epochs: expected int >= 1, got 0"):
        Recipe.from_mapping({"epochs": 0})


CIFAR_KD = """
[suite]
name = "cifar100_kd"

# the CIFAR-100 KD recipe of Tian et al. 2020 (Contrastive Representation Distillation), the
# code base many KD papers reuse: 240 epochs, SGD lr 0.05, x0.1 at 150/180/210, wd 5e-4,
# 4-pixel padded random crop + horizontal flip
[protocols.cifar100_kd]
epochs = 240
batch_size = 64
optimizer = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
schedule = "multistep"
milestones = [150, 180, 210]
gamma = 0.1
augment = "crop_flip"

[[experiments]]
name = "kd"
task = "kd"
dataset = "cifar100"
teacher = "resnet50"
student = "resnet18"
kd_method = ["teacher", "none", "response"]
teacher_protocol = "cifar100_kd"
protocol = "cifar100_kd"
"""


def test_the_cifar100_kd_recipe_is_expressible_in_a_suite(tmp_path):
    from kddbench.suite import load_suite

    path = tmp_path / "cifar.toml"
    path.write_text(CIFAR_KD)
    suite = load_suite(path)
    cell = suite.cells[0]
    recipe = Recipe.from_mapping(cell.recipe)
    assert (recipe.epochs, recipe.lr, recipe.milestones, recipe.gamma, recipe.augment) == (
        240, 0.05, (150, 180, 210), 0.1, "crop_flip")
    assert cell.options["protocol:cifar100_kd"]["milestones"] == [150, 180, 210]
    assert lr_at(recipe, 209, 0.05) == pytest.approx(0.0005)
    # a smoke-sized --set keeps the schedule's shape only as fractions
    from kddbench.suite import SuiteError

    with pytest.raises(SuiteError, match="milestone epochs lie in"):
        load_suite(path, ["protocols.cifar100_kd.epochs=5"])
    short = load_suite(path, ["protocols.cifar100_kd.epochs=8",
                              "protocols.cifar100_kd.milestones=[0.625, 0.75, 0.875]"])
    assert Recipe.from_mapping(short.cells[0].recipe).milestone_epochs() == [5, 6, 7]
