"""The training recipe: what a suite protocol may set, its valid values and its schedules.

Torch-free, so validating a suite imports no torch; :mod:`kddbench.protocol` re-exports
:class:`Recipe` and runs it.

Optimisers: ``sgd`` (with ``momentum``), ``adam``, ``adamw`` (decoupled weight decay).
Schedules (the learning rate of each epoch, 0-based):

* ``step_half``: x0.1 from epoch ``epochs // 2`` on (the dataset-distillation papers' protocol).
* ``multistep``: x``gamma`` at each of ``milestones``: epoch numbers (``[150, 180, 210]``) or
  fractions of ``epochs`` (``[0.625, 0.75, 0.875]``: the first epoch at or after that fraction).
* ``cosine``: half a cosine from the base rate to 0 over the epochs after the warm-up.
* ``constant``.

``warmup_epochs`` (any schedule): the rate rises linearly, ``lr * (epoch + 1) / warmup_epochs``,
over the first epochs.  Example, the CIFAR-100 recipe of Tian et al. 2020 ("Contrastive
Representation Distillation", whose code base RepDistiller many KD papers reuse)::

    [protocols.cifar100_kd]
    epochs = 240
    batch_size = 64
    lr = 0.05
    momentum = 0.9
    weight_decay = 5e-4
    schedule = "multistep"
    milestones = [150, 180, 210]
    gamma = 0.1
    augment = "crop_flip"

Evaluation rules (applied by :mod:`kddbench.validation`, the same for every task that trains
by the protocol): ``n_models`` networks per training set, each from its own initialisation
seed (mean and std reported, per-model values in the record's info); a held-out validation
split of the real *training* set (``val_fraction`` or ``val_per_class``: seeded, stratified,
never the test set), ``select = "last" | "best_val"`` (keep the weights after the last epoch,
or those of the epoch with the best validation accuracy, checked every ``val_every`` epochs;
0, the default: every epoch under ``best_val``, the last only under ``last``),
and ``curve_every`` (keep the test accuracy every so many epochs in the record).

How the hardware runs a recipe (:mod:`kddbench.protocol`, :mod:`kddbench.stacked`):
``precision = "fp32" | "bf16"`` (bf16: the forward pass and the loss under bf16 autocast, the
weights, gradients and optimiser state kept in fp32; testing stays fp32), ``channels_last``
(4-d images and the network in channels-last memory format while training), and
``stack = "auto" | "on" | "off"``: the ``n_models`` networks of one shape trained at once with
stacked weights (``torch.func``), the same steps as one by one; ``auto`` stacks on CUDA only
(on the CPU it runs slower than one by one).

The fields added after the first protocol version (``milestones``, ``gamma``,
``warmup_epochs`` and the evaluation rules) are left out of :meth:`Recipe.as_dict` while they
hold their defaults, so
recipes that do not use them keep their cell identities.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from .errors import KddbenchError, unknown_message
from .options import Bool, Choice, Float, Int, check_option

PROTOCOL_VERSION = "1"

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step_half", "multistep", "cosine", "constant")
SOFT_LABEL_LOSSES = ("ce", "kl")
SELECTIONS = ("last", "best_val")
PRECISIONS = ("fp32", "bf16")
STACK_MODES = ("auto", "on", "off")

RECIPE_OPTIONS = {
    "epochs": Int(300, min=1, smoke=1, doc="passes over the training set"),
    "batch_size": Int(256, min=1, smoke=64, doc="a smoke run's 64 still exercises the CPU's "
                      "micro-batching (kddbench.protocol)"),
    "steps_per_epoch": Int(0, min=0, smoke=1, doc="at most this many batches per epoch (the "
                           "first of each epoch's shuffle); 0 = every batch. A budget knob for "
                           "quick and smoke runs"),
    "optimizer": Choice("sgd", OPTIMIZERS),
    "lr": Float(0.01, min=0),
    "momentum": Float(0.9, min=0, max=1, doc="sgd only"),
    "weight_decay": Float(5e-4, min=0),
    "schedule": Choice("step_half", SCHEDULES),
    "augment": Choice("none", family="augmentation", where={"level": "batch"},
                      doc="a registered batch augmentation applied to every training batch"),
    "test_batch_size": Int(256, min=1),
    "label_smoothing": Float(0.0, min=0, max=1),
    # soft (N, C) training labels, e.g. a condensed set's: cross-entropy with the soft targets, or
    # KL divergence at a temperature (targets and outputs softened by it, times T^2)
    "soft_label_loss": Choice("ce", SOFT_LABEL_LOSSES, doc="how soft labels are trained on"),
    "soft_label_temperature": Float(1.0, above=0, doc="kl only: the temperature T"),
    "milestones": (),
    "gamma": Float(0.1, above=0, max=1, doc="multistep: the factor at each milestone"),
    "warmup_epochs": Int(0, min=0),
    # evaluation rules (kddbench.validation): how many networks, which weights are kept
    "n_models": Int(1, min=1, doc="networks trained per training set, each from its own init "
                    "seed; the cell reports their mean and std"),
    "val_fraction": Float(0.0, min=0, max=0.9, doc="held-out validation share of each class of "
                          "the real training set (seeded, stratified); 0 = none"),
    "val_per_class": Int(0, min=0, doc="held-out validation images per class (instead of "
                         "val_fraction); 0 = none"),
    "select": Choice("last", SELECTIONS, doc="last: the weights after the last epoch; "
                     "best_val: those of the epoch with the best validation accuracy"),
    "val_every": Int(0, min=0, doc="epochs between validation checks (the last one always); "
                     "0 = every epoch under select = best_val, the last only under last"),
    "curve_every": Int(0, min=0, doc="epochs between test-curve points kept in the record; "
                       "0 = no curve"),
    # how the hardware runs the recipe (kddbench.protocol, kddbench.stacked)
    "precision": Choice("fp32", PRECISIONS, doc="bf16: forward and loss under bf16 autocast "
                        "(weights and optimiser state stay fp32)"),
    "channels_last": Bool(False, doc="4-d images and the network in channels-last memory "
                          "format while training"),
    "stack": Choice("auto", STACK_MODES, doc="train the n_models networks of one shape at once "
                    "with stacked weights (same steps); auto: on CUDA only"),
}
# added after protocol version 1: left out of as_dict() while at their defaults
LATER_KEYS = ("milestones", "gamma", "warmup_epochs", "n_models", "val_fraction",
              "val_per_class", "select", "val_every", "curve_every")
EVALUATION_KEYS = LATER_KEYS[3:]  # the evaluation rules; kddbench.validation applies them
LATER_KEYS += ("soft_label_loss", "soft_label_temperature")  # soft-label training
LATER_KEYS += ("precision", "channels_last", "stack")  # how the hardware runs it
LATER_KEYS += ("steps_per_epoch",)  # a cap on the batches of an epoch


@dataclass(frozen=True)
class Recipe:
    """How a model is trained and tested.  Every field can be set per suite protocol."""

    epochs: int = 300
    batch_size: int = 256
    steps_per_epoch: int = 0        # at most this many batches per epoch (0 = all)
    optimizer: str = "sgd"          # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step_half"     # step_half | multistep | cosine | constant
    augment: str = "none"           # a registered augmentation
    test_batch_size: int = 256
    label_smoothing: float = 0.0
    soft_label_loss: str = "ce"       # ce | kl: the loss on soft (N, C) labels
    soft_label_temperature: float = 1.0  # kl: temperature T
    milestones: tuple = ()          # multistep: epochs, or fractions of epochs
    gamma: float = 0.1              # multistep: lr factor at each milestone
    warmup_epochs: int = 0          # linear warm-up epochs (any schedule)
    n_models: int = 1               # networks per training set (mean and std reported)
    val_fraction: float = 0.0       # held-out validation share of the training set, per class
    val_per_class: int = 0          # or a number of validation images per class
    select: str = "last"            # last | best_val
    val_every: int = 0              # epochs between validation checks (0: by select)
    curve_every: int = 0            # epochs between test-curve points (0 = none)
    precision: str = "fp32"         # fp32 | bf16 (autocast while training)
    channels_last: bool = False     # channels-last memory format while training
    stack: str = "auto"             # auto | on | off: n_models networks at once (auto: CUDA)

    def __post_init__(self):
        if isinstance(self.milestones, list):
            object.__setattr__(self, "milestones", tuple(self.milestones))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], registry: Any = None) -> "Recipe":
        """A checked recipe (a :class:`KddbenchError` lists every unknown key or bad value)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise KddbenchError(f"unknown protocol keys {sorted(unknown)}; known: {sorted(known)}")
        problems = check_recipe(values, registry)
        if problems:
            raise KddbenchError("; ".join(f"{k}: {m}" for k, m in problems))
        return cls(**values)

    def with_(self, **changes: Any) -> "Recipe":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return normalize(asdict(self))

    def milestone_epochs(self) -> list[int]:
        """The milestones as epoch numbers (fractions resolved against ``epochs``)."""
        return milestone_epochs(self.milestones, self.epochs)


RECIPE_KEYS = tuple(f.name for f in fields(Recipe))
_DEFAULTS = {f.name: f.default for f in fields(Recipe)}
assert set(RECIPE_OPTIONS) == set(RECIPE_KEYS)


def normalize(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``recipe`` without the later keys that hold their defaults (stable cell identities)."""
    out = {}
    for key, value in recipe.items():
        if key in LATER_KEYS and _is_default(key, value):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _is_default(key: str, value: Any) -> bool:
    default = _DEFAULTS[key]
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and len(value) == 0
    return type(value) is type(default) and value == default


def epoch_images(n: int, batch_size: int, steps_per_epoch: int) -> int:
    """How many of ``n`` examples one epoch trains on: all, or the first ``steps_per_epoch``
    batches' worth when that cap is set (the training loops and the cost estimate)."""
    return n if not steps_per_epoch else min(n, steps_per_epoch * batch_size)


def batch_starts(recipe: "Recipe", n: int, bs: int) -> range:
    """Where each batch of an epoch over ``n`` shuffled examples starts (batch size ``bs``),
    cut at ``recipe.steps_per_epoch`` batches when that is set."""
    return range(0, epoch_images(n, bs, recipe.steps_per_epoch), bs)


def milestone_epochs(milestones: Any, epochs: int) -> list[int]:
    out = []
    for m in milestones:
        if isinstance(m, float):
            out.append(max(1, math.ceil(m * epochs - 1e-9)))
        else:
            out.append(int(m))
    return out


def check_recipe(values: Mapping[str, Any], registry: Any = None,
                 complete: bool = True) -> list[tuple[str, str]]:
    """``(key, message)`` for every bad value in a recipe; keys it does not know are left to
    the caller.  ``complete``: ``values`` is a whole recipe, so the rules across keys apply
    too (milestones need ``multistep`` and lie within ``epochs``, the warm-up is shorter than
    the run), with the defaults for the keys it does not set; a partial recipe (an
    experiment's or an override's) gets the checks of each value alone."""
    problems: list[tuple[str, str]] = []
    for key, value in values.items():
        if key in RECIPE_OPTIONS and key != "milestones":
            message = check_option(RECIPE_OPTIONS[key], value, registry)
            if message:
                problems.append((key, message))
    if not complete:
        if "milestones" in values:
            message = _check_milestones(values["milestones"], None)
            if message:
                problems.append(("milestones", message))
        return problems
    bad = {k for k, _ in problems}
    full = {**_DEFAULTS, **{k: v for k, v in values.items() if k in _DEFAULTS and k not in bad}}
    epochs = full["epochs"]
    milestones = values.get("milestones", ())
    message = _check_milestones(milestones, epochs) if "milestones" in values else None
    if message:
        problems.append(("milestones", message))
    elif "schedule" in bad:
        pass
    elif full["schedule"] == "multistep" and not milestones:
        problems.append(("schedule" if "milestones" not in values else "milestones",
                         "schedule 'multistep' needs milestones = [epoch, ...] or "
                         "[fraction, ...] (e.g. [150, 180, 210] or [0.5, 0.75])"))
    elif milestones and full["schedule"] != "multistep":
        problems.append(("milestones", f"milestones apply to schedule = 'multistep' only, not "
                         f"{full['schedule']!r} (set milestones = [] to drop inherited ones)"))
    if full["val_fraction"] and full["val_per_class"]:
        problems.append(("val_per_class", "set val_fraction or val_per_class, not both"))
    elif full["select"] == "best_val" and not (full["val_fraction"] or full["val_per_class"]):
        problems.append(("select", "select = 'best_val' needs a validation split: set "
                         "val_fraction (e.g. 0.1) or val_per_class"))
    if full["warmup_epochs"] and full["warmup_epochs"] >= epochs:
        problems.append(("warmup_epochs", f"expected fewer warm-up epochs than epochs "
                         f"({epochs}), got {full['warmup_epochs']!r}"))
    return problems


def _check_milestones(milestones: Any, epochs: int | None) -> str | None:
    if not isinstance(milestones, (list, tuple)):
        return f"expected a list of epochs or of fractions of the epochs, got {milestones!r}"
    if any(isinstance(m, bool) or not isinstance(m, (int, float)) for m in milestones):
        return f"expected numbers, got {list(milestones)!r}"
    kinds = {type(m) for m in milestones}
    if len(kinds) > 1:
        return (f"expected all epochs (integers) or all fractions (0 < x < 1), got "
                f"{list(milestones)!r}")
    if float in kinds and not all(0 < m < 1 for m in milestones):
        return f"fractions of the epochs lie in (0, 1); got {list(milestones)!r}"
    if int in kinds and not all(1 <= m and (epochs is None or m < epochs) for m in milestones):
        span = "are >= 1" if epochs is None else f"lie in [1, epochs - 1] = [1, {epochs - 1}]"
        return (f"milestone epochs {span}; got {list(milestones)!r} (fractions, e.g. 0.625, "
                "follow any epoch count)")
    if list(milestones) != sorted(set(milestones)):
        return f"expected increasing milestones, got {list(milestones)!r}"
    return None


def lr_at(recipe: Recipe, epoch: int, base_lr: float) -> float:
    """The learning rate of 0-based ``epoch`` under ``recipe``'s schedule and warm-up."""
    warm = recipe.warmup_epochs
    if warm and epoch < warm:
        return base_lr * (epoch + 1) / warm
    if recipe.schedule == "step_half":
        return base_lr * (0.1 if epoch >= recipe.epochs // 2 and recipe.epochs > 1 else 1.0)
    if recipe.schedule == "multistep":
        passed = sum(epoch >= m for m in recipe.milestone_epochs())
        return base_lr * recipe.gamma ** passed
    if recipe.schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, recipe.epochs
                                                                              - warm)))
    if recipe.schedule == "constant":
        return base_lr
    raise KddbenchError(unknown_message("schedule", recipe.schedule, SCHEDULES))
