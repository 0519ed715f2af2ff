"""Evaluation rules, the same for every task that trains by the shared protocol.

A recipe (:mod:`kddbench.recipe`) may declare:

* ``n_models``: networks trained on the same training set, each from its own initialisation
  seed and batch order; the cell reports the mean of every metric, ``accuracy_std`` across the
  networks, and the per-network values in its info (``accuracy_per_model``...).  Network 0 uses
  the cell's usual random streams, so ``n_models = 1`` is the cell as before.
* a **validation split** of the real *training* set, ``val_fraction`` of every class or
  ``val_per_class`` images of every class: stratified, drawn from a seed derived from the
  cell's seed (:func:`holdout`), and held out of everything the cell trains (a condensation
  method's input, a teacher, the evaluated networks).  The test set is never used to choose.
* ``select``: ``"last"`` keeps the weights after the last epoch; ``"best_val"`` those of the
  epoch with the best validation accuracy (checked every ``val_every`` epochs and after the
  last; the earliest epoch wins a tie).  ``val_every = 0``, the default: every epoch under
  ``best_val``, after the last epoch only under ``last`` (a check costs a pass over the split,
  which for a 100-image condensed set is several times an epoch's training).
* ``curve_every``: the test accuracy every so many epochs (and after the last) is kept in the
  record's info (``test_curve``), and ``best_on_test_accuracy`` reports the best point of the
  curve -- the number a paper gets by picking its best epoch on the test set.  It is **not a
  valid selection** (it is chosen on the data it is scored on) and is reported only to show
  what that choice is worth.

A suite experiment may also declare ``tune = { "<plugin>.<option>" = [...], "recipe.<key>" =
[...] }``: every cell whose configuration names that plugin (or, for ``recipe.``, every cell)
trains once per point of the grid (the product of the lists, in the order written) on the
training part, scores each on the validation split, and reports the test metrics of the point
with the best validation accuracy only (the first point wins a tie), with the chosen values as
``tune.<key>`` and every point's validation accuracy in its info (``tune_grid``).  The grid is
part of the cell's identity (``cell.options[TUNE_OPTION]``); the rule is the same for every
method.

Torch-free at import: task registrations import :data:`EVALUATION_METRICS`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any, Callable, Mapping

from .errors import KddbenchError
from .metrics import MetricSpec

TUNE_OPTION = "tune:"     # cell.options key of a cell's tuning grid {"plugin.option": [...]}
RECIPE_PREFIX = "recipe"  # tune keys "recipe.<key>" set a recipe key
SPLIT_STREAM = "validation-split"

EVALUATION_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy_std", None, "points", 2,
               "standard deviation of the test accuracy across the n_models networks"),
    MetricSpec("val_accuracy", True, "%", 2, "accuracy of the kept weights on the validation "
               "split held out of the real training set"),
    MetricSpec("selected_epoch", None, "", 1, "epoch (1-based) of the kept weights, mean over "
               "the networks"),
    MetricSpec("best_on_test_accuracy", None, "%", 2, "NOT A VALID SELECTION: the best test "
               "accuracy along the test curve (best epoch chosen on the test set), mean over "
               "the networks; shows what that choice is worth"),
    MetricSpec("best_on_test_epoch", None, "", 1, "the epoch of best_on_test_accuracy (not a "
               "valid selection)"),
    MetricSpec("n_models", None, "", 0, "networks trained per training set"),
    MetricSpec("stacked", None, "", 0, "1 when the n_models networks trained at once "
               "(recipe stack; kddbench.stacked), 0 when one by one after all"),
    MetricSpec("n_val", None, "images", 0, "validation images held out of the training set"),
    MetricSpec("tune.*", None, "", 4, "tuning on the validation split: the chosen value of "
               "each tuned key, and the number of grid points tried"),
)


# ---------------------------------------------------------------------------------------------
# the validation split
def holdout(recipe: Any, seed: int) -> dict | None:
    """The validation split a recipe declares, as a plain dict (part of artifact keys), or
    None.  ``seed`` is the cell's seed; the split's own seed is derived from it."""
    from .cells import short_hash

    values = recipe if isinstance(recipe, Mapping) else recipe.as_dict()
    fraction = float(values.get("val_fraction", 0.0) or 0.0)
    per_class = int(values.get("val_per_class", 0) or 0)
    if not fraction and not per_class:
        return None
    return {"val_fraction": fraction, "val_per_class": per_class,
            "seed": int(short_hash([int(seed), SPLIT_STREAM], 15), 16)}


def split_indices(labels, num_classes: int, spec: Mapping[str, Any]):
    """``(train_index, val_index)`` of a stratified split of ``labels``: per class, a seeded
    random ``val_per_class`` images (or ``round(val_fraction * n)``, at least one), always
    leaving one for training.  Both index tensors are sorted (the data keeps its order)."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(spec["seed"]))
    y = labels.detach().cpu()
    train, val = [], []
    for c in range(int(num_classes)):
        idx = torch.nonzero(y == c).flatten()
        n = int(idx.numel())
        if n == 0:
            continue
        k = int(spec.get("val_per_class") or 0)
        if not k:
            k = max(1, int(round(float(spec["val_fraction"]) * n)))
        k = min(k, n - 1)
        perm = idx[torch.randperm(n, generator=g)]
        val.append(perm[:k])
        train.append(perm[k:])
    if not val or sum(int(v.numel()) for v in val) == 0:
        raise KddbenchError("the validation split is empty: the training set has too few "
                            "images per class")
    train_idx = torch.sort(torch.cat(train)).values
    val_idx = torch.sort(torch.cat(val)).values
    return train_idx.to(labels.device), val_idx.to(labels.device)


_SPLITS: dict[tuple, tuple] = {}  # (data fingerprint, split) -> (training part, x_val, y_val)


def split_data(data, spec: Mapping[str, Any] | None):
    """``(training part, x_val, y_val)``: ``data`` with the validation images taken out of its
    training split (its own fingerprint, so every artifact built from it has its own key) and
    those images.  ``spec`` None: ``(data, None, None)``."""
    if not spec:
        return data, None, None
    from .cells import canonical_json
    from .data import DataSplits

    key = (data.fingerprint(), canonical_json(dict(spec)), str(data.x_train.device))
    if key not in _SPLITS:
        train_idx, val_idx = split_indices(data.y_train, data.num_classes, spec)
        part = DataSplits(
            data.name, data.x_train[train_idx], data.y_train[train_idx], data.x_test,
            data.y_test, data.classes, data.mean, data.std,
            (data.notes + "; " if data.notes else "")
            + f"{int(val_idx.numel())} training images held out for validation",
            None, frozenset(data.traits))
        part.fingerprint()
        while len(_SPLITS) >= 4:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = (part, data.x_train[val_idx], data.y_train[val_idx])
    return _SPLITS[key]


# ---------------------------------------------------------------------------------------------
# training and testing under the rules
def _accuracy(model, x, y, num_classes: int, batch_size: int) -> float:
    """Top-1 accuracy (%) in the middle of training (no_grad, not inference mode, and the
    weights' memory format untouched, so training goes on with the same tensors)."""
    import torch

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch_size]).argmax(1)
                          for i in range(0, int(x.shape[0]), batch_size)])
    return 100.0 * float((pred == y).sum()) / max(1, int(y.numel()))


def val_period(recipe) -> int:
    """Epochs between validation checks: ``val_every``, or with ``val_every = 0`` (the default)
    every epoch under ``select = "best_val"`` and the last epoch only under ``"last"`` (whose
    weights, hence its validation accuracy, are the last epoch's whatever else is checked)."""
    if int(recipe.val_every):
        return int(recipe.val_every)
    return 1 if recipe.select == "best_val" else int(recipe.epochs)


def uses_rules(recipe) -> bool:
    """Whether ``recipe`` asks for anything beyond one network kept after its last epoch."""
    return (recipe.n_models > 1 or recipe.select != "last" or bool(recipe.curve_every)
            or bool(recipe.val_fraction or recipe.val_per_class))


def fit_and_test(make: Callable[[int], tuple], x, y, data, recipe, generator: Callable[[int], Any],
                 *, val: tuple | None = None, augment=None, lr: float | None = None) -> dict:
    """Train and test by ``recipe`` and its evaluation rules.

    make(m):      ``(network, loss_fn or None, extra_params or None)`` of network ``m``
                  (its own initialisation seed; ``m = 0`` the cell's usual one).
    generator(m): the batch-order generator of network ``m``.
    val:          ``(x_val, y_val)``, the validation split (None: no validation).
    Returns the metrics of :func:`kddbench.protocol.train_and_evaluate` (means over the
    networks), plus the rules' own numbers and per-network lists (which go to the info)."""
    from .protocol import train_and_evaluate

    if not uses_rules(recipe) and val is None:
        net, loss_fn, extra = make(0)
        return train_and_evaluate(net, x, y, data.x_test, data.y_test, data.num_classes,
                                  recipe, generator(0), augment, loss_fn, extra, lr)
    if recipe.select == "best_val" and val is None:
        raise KddbenchError("select = 'best_val' needs a validation split (val_fraction or "
                            "val_per_class)")
    if int(recipe.n_models) > 1 and _stacking_asked(recipe, x):
        return _aggregate(_fit_stacked(make, x, y, data, recipe, generator, val, augment, lr),
                          recipe, val)
    runs = []
    for m in range(int(recipe.n_models)):
        net, loss_fn, extra = make(m)
        runs.append(_fit_one(net, loss_fn, extra, x, y, data, recipe, generator(m), val,
                             augment, lr))
    return _aggregate(runs, recipe, val)


def _stacking_asked(recipe, x) -> bool:
    from .stacked import wants_stacking

    return wants_stacking(recipe, x.device)


class _Rules:
    """What the rules keep of one network while it trains: the validation curve and the
    best-on-validation weights, the test curve (``on_epoch`` after every epoch)."""

    def __init__(self, recipe, data, val):
        self.recipe, self.data, self.val = recipe, data, val
        self.epochs = int(recipe.epochs)
        self.best, self.epoch, self.weights = -math.inf, self.epochs, None
        self.val_curve: list = []
        self.test_curve: list = []

    @property
    def needed(self) -> bool:
        return self.val is not None or bool(self.recipe.curve_every)

    def on_epoch(self, epoch: int, model) -> None:
        recipe, last = self.recipe, epoch == self.epochs - 1
        if self.val is not None and ((epoch + 1) % val_period(recipe) == 0 or last):
            acc = _accuracy(model, self.val[0], self.val[1], self.data.num_classes,
                            recipe.test_batch_size)
            self.val_curve.append([epoch + 1, acc])
            if recipe.select == "best_val" and acc > self.best:
                self.best, self.epoch = acc, epoch + 1
                self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        every = int(recipe.curve_every)
        if every and ((epoch + 1) % every == 0 or last):
            self.test_curve.append([epoch + 1, _accuracy(
                model, self.data.x_test, self.data.y_test, self.data.num_classes,
                recipe.test_batch_size)])

    def finish(self, net, result, x) -> dict:
        """The network's test metrics (with the kept weights) and the rules' own numbers."""
        from .protocol import evaluate, model_metrics

        recipe, data = self.recipe, self.data
        if recipe.select == "best_val":
            net.load_state_dict(self.weights)
        metrics = evaluate(net, data.x_test, data.y_test, data.num_classes,
                           recipe.test_batch_size)
        metrics.update(model_metrics(net))
        metrics.update({
            "train_time_s": result.train_time_s,
            "train_images_per_s": result.images_seen / max(result.train_time_s, 1e-9),
            "n_train": int(x.shape[0]), "train_bytes": int(x.numel() * x.element_size()),
            "epochs": self.epochs, "selected_epoch": self.epoch})
        if self.val is not None:
            metrics["val_accuracy"] = (self.best if recipe.select == "best_val"
                                       else self.val_curve[-1][1])
            metrics["val_curve"] = self.val_curve
        if recipe.curve_every:
            best = max(self.test_curve, key=lambda p: (p[1], -p[0]))
            metrics["best_on_test_accuracy"], metrics["best_on_test_epoch"] = best[1], best[0]
            metrics["test_curve"] = self.test_curve
        return metrics


def _fit_one(net, loss_fn, extra, x, y, data, recipe, generator, val, augment, lr) -> dict:
    from .protocol import train

    rules = _Rules(recipe, data, val)
    result = train(net, x, y, recipe, generator, augment, loss_fn, extra, lr,
                   on_epoch=rules.on_epoch if rules.needed else None)
    return rules.finish(net, result, x)


def _fit_stacked(make, x, y, data, recipe, generator, val, augment, lr) -> list[dict]:
    """The ``n_models`` networks trained at once where the recipe's ``stack`` key asks for it
    (:func:`kddbench.stacked.train_many`: stacked when the networks allow it, else one by one,
    with the same steps either way); each network's rules as in :func:`_fit_one`."""
    from .stacked import train_many

    built = [make(m) for m in range(int(recipe.n_models))]
    nets = [b[0] for b in built]
    rules = [_Rules(recipe, data, val) for _ in nets]
    many = train_many(nets, x, y, recipe, [generator(m) for m in range(len(nets))], augment,
                      lr, [b[1] for b in built], [b[2] for b in built],
                      on_epoch=(lambda e, m, net: rules[m].on_epoch(e, net))
                      if rules[0].needed else None)
    runs = [r.finish(net, result, x) for r, net, result in zip(rules, nets, many.results)]
    for run in runs:
        run["stacked"] = int(many.stacked)
    return runs


PER_MODEL = ("accuracy", "macro_f1", "val_accuracy", "selected_epoch", "best_on_test_accuracy")


def _aggregate(runs: list[dict], recipe, val) -> dict:
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        values = [float(r[key]) for r in runs]
        mean = sum(values) / len(values)
        out[key] = int(values[0]) if key in ("n_train", "train_bytes", "epochs", "params") \
            else mean
    accs = [float(r["accuracy"]) for r in runs]
    out["accuracy_std"] = _std(accs)
    out["misclassified"] = sum(float(r["misclassified"]) for r in runs) / len(runs)
    out["n_models"] = len(runs)
    if val is not None:
        out["n_val"] = int(val[1].numel())
        out["val_curve"] = [r["val_curve"] for r in runs]
    for key in PER_MODEL:
        if key in runs[0]:
            out[f"{key}_per_model"] = [r[key] for r in runs]
    if "test_curve" in runs[0]:
        out["test_curve"] = [r["test_curve"] for r in runs]
    out["selection"] = recipe.select
    return out


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---------------------------------------------------------------------------------------------
# tuning on the validation split
def grid_points(grid: Mapping[str, list]) -> list[dict[str, Any]]:
    """Every point of a tuning grid: the product of its lists, keys in the order given."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


def with_point(cell, point: Mapping[str, Any]):
    """``cell`` with a grid point's values set (``plugin.option`` in its options,
    ``recipe.key`` in its recipe) and no grid left."""
    options = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cell.options.items()
               if k != TUNE_OPTION}
    recipe = dict(cell.recipe)
    for key, value in point.items():
        head, _, name = key.partition(".")
        if head == RECIPE_PREFIX:
            recipe[name] = value
        else:
            options.setdefault(head, {})[name] = value
    return replace(cell, options=options, recipe=recipe, _ids={})


def point_label(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def run_tuned(cell, ctx, run_one: Callable[[Any, Any], dict]) -> dict:
    """``run_one(cell, ctx)``, once per point of the cell's tuning grid (if any), keeping the
    point with the best validation accuracy; see the module's docstring."""
    grid = cell.options.get(TUNE_OPTION)
    if not grid:
        return run_one(cell, ctx)
    tried = []
    for point in grid_points(grid):
        ctx.log(f"tuning {cell.label()}: {point_label(point)}")
        result = run_one(with_point(cell, point), ctx)
        if "val_accuracy" not in result:
            raise KddbenchError("tune needs a validation split: set val_fraction or "
                                "val_per_class in the experiment's protocol")
        tried.append((point, result))
    best = max(range(len(tried)), key=lambda i: (float(tried[i][1]["val_accuracy"]), -i))
    point, chosen = tried[best]
    out = dict(chosen)
    out.update({f"tune.{k}": v for k, v in point.items()})
    out["tune.points"] = len(tried)
    out["tune_grid"] = [{"point": dict(p), "val_accuracy": float(r["val_accuracy"])}
                        for p, r in tried]
    return out


def grid_columns(info: Mapping[str, Any]) -> dict[str, float]:
    """A tuned record's every grid point as a column of the results table:
    ``tune.val_accuracy[<point>]`` (e.g. ``tune.val_accuracy[mtt.lr_img=100.0]``), from the
    record's ``tune_grid``, so a report table can show what each point scored."""
    out: dict[str, float] = {}
    for entry in info.get("tune_grid") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("point"), Mapping):
            out[f"tune.val_accuracy[{point_label(entry['point'])}]"] = float(
                entry.get("val_accuracy", math.nan))
    return out


# ---------------------------------------------------------------------------------------------
# the suite's ``tune`` key
def check_tune(tune: Any, path: str, plugins: Mapping[str, Any], registry=None
               ) -> tuple[dict[str, list], list[tuple[str, str]]]:
    """``(canonical grid, problems)`` of an experiment's ``tune`` table.

    plugins: the specs the experiment names, by the names it may use (aliases included);
    keys become ``<canonical plugin name>.<option>`` or ``recipe.<key>``."""
    from .options import check_option
    from .recipe import RECIPE_KEYS, check_recipe

    problems: list[tuple[str, str]] = []
    if not isinstance(tune, Mapping):
        return {}, [(path, f"expected a table of \"plugin.option\" = [values], got {tune!r}")]
    grid: dict[str, list] = {}
    for key, values in tune.items():
        where = f"{path}.{key}"
        head, dot, name = str(key).partition(".")
        if not dot or not name:
            problems.append((where, "expected \"<plugin>.<option>\" or \"recipe.<key>\""))
            continue
        if not isinstance(values, list) or not values:
            problems.append((where, f"expected a non-empty list of values, got {values!r}"))
            continue
        if len(values) != len({repr(v) for v in values}):
            problems.append((where, f"values repeat: {values!r}"))
            continue
        if head == RECIPE_PREFIX:
            if name not in RECIPE_KEYS:
                problems.append((where, f"unknown recipe key {name!r}"))
                continue
            for value in values:
                problems += [(where, m) for _, m in check_recipe({name: value}, registry,
                                                                  complete=False)]
            if name in ("val_fraction", "val_per_class"):
                problems.append((where, "the validation split itself cannot be tuned"))
            grid[f"{RECIPE_PREFIX}.{name}"] = list(values)
            continue
        spec = plugins.get(head)
        if spec is None:
            problems.append((where, f"{head!r} is not a plugin this experiment names "
                             f"(named: {', '.join(sorted(plugins)) or 'none'}; or recipe.<key>)"))
            continue
        declared = dict(spec.options or {})
        if name not in declared:
            problems.append((where, f"{spec.name!r} has no option {name!r} (options: "
                             f"{', '.join(sorted(declared)) or 'none'})"))
            continue
        for value in values:
            message = check_option(declared[name], value, registry)
            if message:
                problems.append((where, message))
        grid[f"{spec.name}.{name}"] = list(values)
    return grid, problems


def cell_grid(grid: Mapping[str, list], cell_options: Mapping[str, Any]) -> dict[str, list]:
    """The part of an experiment's grid that applies to one cell: ``recipe.`` keys, and the
    keys of plugins the cell's configuration holds options for."""
    return {k: list(v) for k, v in grid.items()
            if k.partition(".")[0] == RECIPE_PREFIX or k.partition(".")[0] in cell_options}
