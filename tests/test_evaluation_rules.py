"""Evaluation rules (kddbench.validation): n_models, the validation split, select, the test
curve, and tuning a declared grid on the validation split.  Toy data only."""
import json

import pytest
import torch

from conftest import write_suite
from kddbench.recipe import Recipe, check_recipe
from kddbench.suite import SuiteError, load_suite
from kddbench.validation import (TUNE_OPTION, fit_and_test, grid_points, holdout, run_tuned,
                                 split_data, split_indices, with_point)


# the recipe keys ----------------------------------------------------------------------------
def test_recipes_that_use_no_rule_keep_their_identity():
    assert set(Recipe().as_dict()) == {"epochs", "batch_size", "optimizer", "lr", "momentum",
                                       "weight_decay", "schedule", "augment", "test_batch_size",
                                       "label_smoothing"}
    used = Recipe(n_models=3, val_fraction=0.1, select="best_val").as_dict()
    assert used["n_models"] == 3 and used["select"] == "best_val" and "curve_every" not in used


def test_recipe_rules_are_checked():
    assert "validation split" in dict(check_recipe({"select": "best_val"}))["select"]
    assert "not both" in dict(check_recipe({"val_fraction": 0.1, "val_per_class": 5}))[
        "val_per_class"]
    assert "val_fraction" in dict(check_recipe({"val_fraction": 0.95}))
    assert "n_models" in dict(check_recipe({"n_models": 0}))
    assert "select" in dict(check_recipe({"select": "best_test"}))
    assert check_recipe({"select": "best_val", "val_per_class": 2, "n_models": 2}) == []


# the split ----------------------------------------------------------------------------------
def test_split_is_stratified_seeded_disjoint_and_from_the_training_set_only():
    y = torch.arange(4).repeat_interleave(25)  # 4 classes x 25
    spec = holdout({"val_fraction": 0.2}, seed=0)
    train, val = split_indices(y, 4, spec)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.bincount(y[val], minlength=4).tolist() == [5, 5, 5, 5]
    again = split_indices(y, 4, holdout({"val_fraction": 0.2}, seed=0))[1]
    other = split_indices(y, 4, holdout({"val_fraction": 0.2}, seed=1))[1]
    assert torch.equal(val, again) and not torch.equal(val, other)
    per = split_indices(y, 4, holdout({"val_per_class": 3}, seed=0))[1]
    assert torch.bincount(y[per], minlength=4).tolist() == [3, 3, 3, 3]
    assert holdout(Recipe(), 0) is None


def _toy(classes=3, train=20, test=10):
    from kddbench.data import DataSplits

    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, 1, 6, 6, generator=g)

    def sample(n):
        y = torch.arange(classes).repeat_interleave(n)
        return protos[y] + 0.5 * torch.randn(len(y), 1, 6, 6, generator=g), y

    (xt, yt), (xs, ys) = sample(train), sample(test)
    return DataSplits("toy", xt, yt, xs, ys, [f"c{i}" for i in range(classes)], [0.0], [1.0])


def test_split_data_holds_the_validation_images_out_and_leaves_the_test_set_alone():
    data = _toy()
    part, x_val, y_val = split_data(data, holdout({"val_per_class": 4}, seed=0))
    assert part.x_train.shape[0] == 60 - 12 and x_val.shape[0] == 12
    assert torch.equal(part.x_test, data.x_test)
    assert part.fingerprint() != data.fingerprint()  # artifacts built on it get their own keys
    rows = {tuple(r.tolist()) for r in part.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in rows for r in x_val.flatten(1))
    assert split_data(data, None) == (data, None, None)


# training under the rules ---------------------------------------------------------------------
def _make(data):
    def make(m):
        torch.manual_seed(100 + m)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3)), None, None
    return make


def test_plain_recipe_is_the_protocol_itself():
    from kddbench.protocol import train_and_evaluate

    data, recipe = _toy(), Recipe(epochs=3, batch_size=16, lr=0.1)
    gen = lambda m: torch.Generator().manual_seed(5 + m)  # noqa: E731
    ours = fit_and_test(_make(data), data.x_train, data.y_train, data, recipe, gen)
    net = _make(data)(0)[0]
    ref = train_and_evaluate(net, data.x_train, data.y_train, data.x_test, data.y_test, 3,
                             recipe, gen(0))
    assert ours["accuracy"] == ref["accuracy"] and "n_models" not in ours


def test_n_models_best_val_and_the_curve():
    data = _toy()
    part, x_val, y_val = split_data(data, holdout({"val_per_class": 5}, seed=0))
    recipe = Recipe(epochs=6, batch_size=8, lr=0.5, schedule="constant", n_models=3,
                    val_per_class=5, select="best_val", val_every=2, curve_every=1)
    out = fit_and_test(_make(part), part.x_train, part.y_train, part, recipe,
                       lambda m: torch.Generator().manual_seed(m), val=(x_val, y_val))
    assert out["n_models"] == 3 and len(out["accuracy_per_model"]) == 3
    assert out["accuracy"] == pytest.approx(sum(out["accuracy_per_model"]) / 3)
    assert out["accuracy_std"] >= 0 and out["n_val"] == 15
    for m in range(3):
        checks = out["val_curve"][m]
        assert [e for e, _ in checks] == [2, 4, 6]  # every val_every epochs, and the last
        best = max(checks, key=lambda p: (p[1], -p[0]))
        assert out["val_accuracy_per_model"][m] == best[1]
        assert out["selected_epoch_per_model"][m] == best[0]
        curve = out["test_curve"][m]
        assert [e for e, _ in curve] == list(range(1, 7))
        # the kept weights are those of the selected epoch: their test accuracy is on the curve
        assert out["accuracy_per_model"][m] == dict(map(tuple, curve))[best[0]]
    assert out["best_on_test_accuracy"] >= out["accuracy"] - 1e-9  # chosen on test: optimistic


def test_validation_is_checked_every_epoch_for_best_val_and_once_for_last_by_default():
    """val_every = 0 (the default): a check per epoch where the epoch is chosen by it, one
    after the last epoch where the last is kept anyway; the trained weights are the same
    either way (a check changes nothing the training reads)."""
    data = _toy()
    part, x_val, y_val = split_data(data, holdout({"val_per_class": 5}, seed=0))
    base = dict(epochs=5, batch_size=8, lr=0.5, schedule="constant", val_per_class=5)
    outs = {}
    for name, extra in {"best": {"select": "best_val"}, "last": {"select": "last"},
                        "last_every": {"select": "last", "val_every": 1}}.items():
        outs[name] = fit_and_test(_make(part), part.x_train, part.y_train, part,
                                  Recipe(**base, **extra), lambda m: torch.Generator().manual_seed(m),
                                  val=(x_val, y_val))
    assert [e for e, _ in outs["best"]["val_curve"][0]] == [1, 2, 3, 4, 5]
    assert [e for e, _ in outs["last"]["val_curve"][0]] == [5]
    assert [e for e, _ in outs["last_every"]["val_curve"][0]] == [1, 2, 3, 4, 5]
    assert outs["last"]["accuracy"] == outs["last_every"]["accuracy"]
    assert outs["last"]["val_accuracy"] == outs["last_every"]["val_curve"][0][-1][1]
    assert "val_every" not in Recipe(val_per_class=5).as_dict()  # the default keeps identities


def test_stacked_networks_follow_the_same_rules_as_one_by_one():
    """recipe stack = "on": the n_models networks train at once (kddbench.stacked), with the
    same steps, the same validation checks, kept weights and curves as one by one."""
    data = _toy()
    part, x_val, y_val = split_data(data, holdout({"val_per_class": 5}, seed=0))
    rules = dict(epochs=6, batch_size=8, lr=0.5, schedule="constant", n_models=3,
                 val_per_class=5, select="best_val", val_every=2, curve_every=1)
    runs = {}
    for mode in ("off", "on"):
        runs[mode] = fit_and_test(
            _make(part), part.x_train, part.y_train, part, Recipe(stack=mode, **rules),
            lambda m: torch.Generator().manual_seed(m), val=(x_val, y_val))
    alone, stacked = runs["off"], runs["on"]
    assert stacked["stacked"] == 1 and "stacked" not in alone
    for key in ("accuracy_per_model", "selected_epoch_per_model", "val_accuracy_per_model",
                "test_curve", "val_curve"):
        assert stacked[key] == alone[key], key


def test_best_val_without_a_split_is_an_error():
    from kddbench.errors import KddbenchError

    data = _toy()
    with pytest.raises(KddbenchError, match="validation split"):
        fit_and_test(_make(data), data.x_train, data.y_train, data,
                     Recipe(epochs=1, select="best_val", val_per_class=2),
                     lambda m: torch.Generator())


# tuning ---------------------------------------------------------------------------------------
def test_grid_points_and_with_point():
    assert grid_points({"a.x": [1, 2], "recipe.lr": [0.1]}) == [
        {"a.x": 1, "recipe.lr": 0.1}, {"a.x": 2, "recipe.lr": 0.1}]
    from kddbench.cells import Cell

    cell = Cell("e", "kd", {"kd_method": "feature"}, {"feature": {"weight": 100.0},
                                                      TUNE_OPTION: {"feature.weight": [1.0]}},
                {"lr": 0.01}, "p", {}, 0)
    variant = with_point(cell, {"feature.weight": 1.0, "recipe.lr": 0.2})
    assert variant.options == {"feature": {"weight": 1.0}} and variant.recipe["lr"] == 0.2
    assert cell.options["feature"]["weight"] == 100.0  # the cell itself is untouched


def test_run_tuned_keeps_the_best_on_validation_and_never_reports_the_others():
    from kddbench.cells import Cell

    cell = Cell("e", "t", {}, {"m": {"w": 0}, TUNE_OPTION: {"m.w": [1, 2, 3]}}, {}, "p", {}, 0)
    val = {1: 50.0, 2: 70.0, 3: 70.0}
    test = {1: 99.0, 2: 60.0, 3: 61.0}  # the best test point is not the one validation picks

    class Ctx:
        log = staticmethod(lambda message: None)

    def run_one(c, ctx):
        w = c.options["m"]["w"]
        return {"accuracy": test[w], "val_accuracy": val[w]}

    out = run_tuned(cell, Ctx(), run_one)
    assert out["tune.m.w"] == 2 and out["accuracy"] == 60.0  # tie -> the first point
    assert [p["val_accuracy"] for p in out["tune_grid"]] == [50.0, 70.0, 70.0]
    assert "99.0" not in json.dumps(out) and out["tune.points"] == 3


SUITE = """
[suite]
name = "tunetoy"
budget = "toy"

[protocols.p]
epochs = 2
batch_size = 16
lr = 0.05
{val}

[[experiments]]
name = "kd"
task = "kd"
dataset = "toy"
teacher = "convnet3"
student = "convnet"
kd_method = ["none", "feature"]
protocol = "p"
seeds = [0]
tune = {tune}

  [experiments.options.convnet3]
  width = 8
  depth = 2

  [experiments.options.convnet]
  width = 4
  depth = 1

[[tables]]
name = "main"
rows = ["kd_method"]
columns = ["dataset"]
"""


def _suite(tmp_path, tune='{ "ikd.weight" = [1.0, 10.0] }', val="val_per_class = 5"):
    return write_suite(tmp_path / "t.toml", SUITE.format(tune=tune, val=val))


def test_suite_tune_grid_goes_only_to_the_cells_it_applies_to(tmp_path):
    cells = {c["kd_method"]: c for c in load_suite(_suite(tmp_path)).cells}
    assert cells["feature"].options[TUNE_OPTION] == {"feature.weight": [1.0, 10.0]}
    assert TUNE_OPTION not in cells["none"].options  # same identity as without the grid
    plain = {c["kd_method"]: c for c in load_suite(_suite(tmp_path, tune="{}")).cells}
    assert plain["none"].cell_id == cells["none"].cell_id
    assert plain["feature"].cell_id != cells["feature"].cell_id


def test_a_tuned_cell_declares_the_set_of_each_grid_point_and_not_the_untuned_one(tmp_path):
    from kddbench.artifacts import declared
    from kddbench.plugins import get_registry

    suite = write_suite(tmp_path / "dm.toml", """
[suite]
name = "dm_tuned"
[protocols.p]
epochs = 1
val_per_class = 2
[[experiments]]
name = "e"
task = "condense"
dataset = "toy"
method = "dm"
ipc = 1
eval_arch = "mlp"
protocol = "p"
seeds = [0]
tune = { "dm.lr_img" = [0.3, 3.0] }
  [experiments.options.dm]
  iterations = 2
""")
    (cell,) = load_suite(suite).cells
    (requests,) = declared([cell], get_registry()).values()
    assert sorted(r.args["method_options"]["lr_img"] for r in requests) == [0.3, 3.0]
    assert sorted(r.label().split("; ")[-1] for r in requests) == ["dm.lr_img=0.3]",
                                                                    "dm.lr_img=3.0]"]


@pytest.mark.parametrize("tune, val, message", [
    ('{ "feature.wieght" = [1.0] }', "val_per_class = 5", "no option 'wieght'"),
    ('{ "dkd.beta" = [1.0] }', "val_per_class = 5", "not a plugin this experiment names"),
    ('{ "feature.weight" = [] }', "val_per_class = 5", "non-empty list"),
    ('{ "feature.weight" = [-1.0] }', "val_per_class = 5", "expected"),
    ('{ "recipe.lrr" = [0.1] }', "val_per_class = 5", "unknown recipe key"),
    ('{ "weight" = [1.0] }', "val_per_class = 5", "<plugin>.<option>"),
    ('{ "feature.weight" = [1.0] }', "", "needs a validation split"),
])
def test_bad_tune_declarations_are_one_line_problems(tmp_path, tune, val, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(_suite(tmp_path, tune=tune, val=val))


def test_kd_run_with_rules_and_tuning_end_to_end(tmp_path, cli):
    path = _suite(tmp_path, tune='{ "feature.weight" = [0.0, 1.0] }',
                  val="val_per_class = 5\nn_models = 2\nselect = \"best_val\"\ncurve_every = 1")
    out = tmp_path / "out"
    code, text, err = cli("run", path, "--out", out, "--cache-dir", tmp_path / "c")
    assert code == 0, err
    records = {r["axes"]["kd_method"]: r for r in
               (json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json")))}
    feat, none = records["feature"], records["none"]
    assert feat["metrics"]["tune.feature.weight"] in (0.0, 1.0)
    grid = feat["info"]["tune_grid"]
    assert len(grid) == 2 and max(p["val_accuracy"] for p in grid) == feat["metrics"][
        "val_accuracy"]
    for r in (feat, none):
        assert r["metrics"]["n_models"] == 2 and len(r["info"]["accuracy_per_model"]) == 2
        assert r["metrics"]["n_val"] == 20  # 4 toy classes x 5, held out of the training set
        assert len(r["info"]["test_curve"][0]) == 2
    # the teacher never saw the validation images: it is trained on the training part only
    assert none["metrics"]["n_train"] == feat["metrics"]["n_train"] == 4 * 40 - 20


def test_every_grid_point_of_a_tuned_cell_is_a_column_of_the_results():
    from kddbench.report import tidy

    record = {"cell_id": "c", "experiment": "e", "axes": {"method": "dm"},
              "metrics": {"accuracy": 90.0, "tune.dm.lr_img": 1.0},
              "info": {"tune_grid": [{"point": {"dm.lr_img": 0.3}, "val_accuracy": 88.5},
                                     {"point": {"dm.lr_img": 1.0}, "val_accuracy": 89.25}]}}
    row = tidy([record]).iloc[0]
    assert row["tune.val_accuracy[dm.lr_img=0.3]"] == 88.5
    assert row["tune.val_accuracy[dm.lr_img=1.0]"] == 89.25
