"""DD-Ranking's scores, computed from our own cells: the ``dd_ranking`` task and its section.

DD-Ranking (the benchmark of "DD-Ranking: Rethinking the Evaluation of Dataset Distillation",
NUS HPC-AI Lab, 2025; library version 0.2.0) separates what a condensed set is worth from what
its evaluation recipe adds (soft labels, which are knowledge distillation, and augmentation).
With accuracies as fractions:

* hard-label recovery   HLR = Acc(real, hard) - Acc(syn, hard)                 (lower is better)
* improvement over random IOR = Acc(syn, any) - Acc(random, any)                (higher is better)
* label-robust score    LRS = 100 (e^a - e^-1) / (e - e^-1),  a = w IOR - (1 - w) HLR
* augmentation-robust   ARS = 100 (e^b - e^-1) / (e - e^-1),
                        b = g (Acc(syn, aug) - Acc(rdm, aug)) + (1 - g) (Acc(syn, no aug) - Acc(rdm, no aug))

"any" is the set's own evaluation (its labels, hard or soft, and the recipe's augmentation);
"random" is a random real subset of the same budget under that same evaluation — the very subset
the ``random`` method draws for the same seed, so ``random`` itself scores IOR = 0.  One cell of the
task trains every network these need — the set with its own labels, with hard labels (argmax; the
same run when its labels are hard), without augmentation, the random subset with and without
augmentation, and the whole real set under ``full_protocol`` — so a suite names only the method.
The random subset's and the whole set's runs are artifacts shared by every method of a suite.
The cell reports HLR, IOR, LRS and ARS (at w = g = 0.5, the leaderboard's default) and every
accuracy; the ``[[dd_ranking]]`` section recomputes LRS and ARS from them at any other weights.

Where we differ from DD-Ranking 0.2.0 (checked on 2026-12-02 against its source,
``ddranking/metrics/hard_label.py``, ``soft_label.py`` and ``aug_robust.py``, and its docs;
docs/condense.md, "DD-Ranking's scores", has the details):

* units: its code takes the accuracy differences in percentage points (its accuracies are
  0-100) into the exponent of the normalisation, which the paper defines on fractions in
  [-1, 1] (a 5-point IOR with a 30-point HLR gives LRS 21.9 on fractions, -0.16 on points);
  we use fractions, as defined, and report the scores in percent;
* accuracy: it keeps each run's best test accuracy over the evaluated epochs; we keep the last
  epoch (or the best on a validation split, ``select = "best_val"``), never the best on test;
* rounds and learning rates: it averages ``num_eval`` = 5 rounds and searches the learning rate
  of the random subset (and of a set that brings none) on the test accuracy; we run one round
  per seed and use the recipe's learning rate (or the set's learned one) for every run, so the
  comparison is at equal settings rather than each at its best;
* "real": its full-data accuracy is a network trained on the whole set with its recipe (or a
  cached number per data set and network); ours is ``full_protocol`` (a CPU budget states its
  epochs).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from kddbench.protocol import PROTOCOL_VERSION, Recipe, train_and_evaluate
from kddbench.sections import key_problems, label
from kddbench.suite import PROTOCOL_OPTION_PREFIX

from kddbench.validation import uses_rules

from .task import cell_data, condensed_set, shared_evaluation

EVAL_VERSION = "1"  # bump when the runs below change
RANDOM = "random"   # the random-subset condenser of this package


def normalised_score(x: float) -> float:
    """DD-Ranking's map of a weighted accuracy difference in [-1, 1] to a percentage."""
    return 100.0 * (math.exp(x) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def scores(acc: Mapping[str, float], w: float = 0.5, g: float = 0.5) -> dict[str, float]:
    """HLR, IOR, LRS, ARS from accuracies in % (keys real_hard, syn_hard, syn_any, rdm_any,
    syn_naug, rdm_naug; syn_any/rdm_any are the augmented ones)."""
    # 4 decimals of a percentage: an accuracy is a ratio of counts, exact at that precision
    # for test sets of up to a million images, while a run stored as float32 carries up to
    # ~4e-6 of rounding (so random against itself scores exactly 0)
    f = {k: round(v, 4) / 100.0 for k, v in acc.items()}
    hlr = f["real_hard"] - f["syn_hard"]
    ior = f["syn_any"] - f["rdm_any"]
    beta = g * (f["syn_any"] - f["rdm_any"]) + (1 - g) * (f["syn_naug"] - f["rdm_naug"])
    return {"hlr": 100 * hlr, "ior": 100 * ior,
            "lrs": normalised_score(w * ior - (1 - w) * hlr), "ars": normalised_score(beta)}


def _full_recipe(cell) -> Recipe:
    key = PROTOCOL_OPTION_PREFIX + str(cell["full_protocol"])
    return Recipe.from_mapping(cell.options[key])


def _train(ctx, cell, data, x, y, recipe, stream, lr=None) -> dict:
    """The metrics of one network trained on ``(x, y)`` by ``recipe`` (the condense task's
    evaluation without rules: the same seeds, so the same numbers)."""
    arch = cell["eval_arch"]
    net = ctx.build_net(arch, data, ctx.seed(cell, "eval-net", arch), cell=cell)
    return train_and_evaluate(net, x.to(ctx.device), y.to(ctx.device), data.x_test,
                              data.y_test, data.num_classes, recipe,
                              ctx.generator(cell, stream, arch),
                              augment=ctx.augment(recipe.augment, data), lr=lr)


def _shared(ctx, cell, data, what: str, recipe: Recipe, build) -> float:
    """A run shared by every method of a suite (random subset, whole set): an artifact."""
    arch = cell["eval_arch"]
    spec = ctx.registry.get("architecture", arch)
    key = {"what": what, "data": data.fingerprint(), "arch": arch, "arch_version": spec.version,
           "arch_options": dict(cell.options.get(spec.name, {})), "recipe": recipe.as_dict(),
           "ipc": cell.get("ipc"), "protocol": PROTOCOL_VERSION, "version": EVAL_VERSION,
           "seed": cell.seed}
    import torch

    stored = ctx.artifacts.get_or_build(
        "dd_ranking", key, lambda: {"accuracy": torch.tensor(build(), dtype=torch.float64)})
    return float(stored["accuracy"])


def run(cell, ctx) -> dict:
    data = cell_data(cell, ctx)
    recipe = ctx.recipe(cell)
    plain = recipe.with_(augment="none")
    syn, seconds, set_key = condensed_set(cell, ctx, data)
    reused = []

    def on_set(labels, r, stream: str) -> float:
        """The set trained by ``r``: the same run (network seed and streams) as the condense
        task's evaluation, so one stored evaluation serves both (recipes without evaluation
        rules only: this task trains one network and keeps its last epoch)."""
        def compute():
            return _train(ctx, cell, data, syn.images, labels, r, stream, syn.lr)

        if uses_rules(r):
            return compute()["accuracy"]
        metrics, before = shared_evaluation(ctx, cell, data, set_key, cell["eval_arch"], r,
                                            ("eval-net", stream), compute)
        reused.append(before)
        return float(metrics["accuracy"])

    acc = {"syn_any": on_set(syn.labels, recipe, "eval-train")}
    if syn.labels.dim() == 2:  # soft labels: the hard-label run is its own
        acc["syn_hard"] = on_set(syn.hard_labels(), recipe, "eval-train-hard")
    else:
        acc["syn_hard"] = acc["syn_any"]
    acc["syn_naug"] = on_set(syn.labels, plain, "eval-train-naug") \
        if recipe.augment != "none" else acc["syn_any"]

    from kddbench.condense import CondenseRequest

    def random_subset():
        spec = ctx.registry.get("condenser", RANDOM)
        request = CondenseRequest(data=data, ipc=cell.get("ipc"), arch=cell["eval_arch"],
                                  build_net=None, generator=ctx.generator(cell, "condense"),
                                  device=ctx.device, seed=ctx.seed(cell, "condense"))
        return spec.load()(request)

    subset = []

    def rdm(r):
        if not subset:
            subset.append(random_subset())
        return _train(ctx, cell, data, subset[0].images, subset[0].labels, r,
                      "eval-train")["accuracy"]

    acc["rdm_any"] = _shared(ctx, cell, data, "random", recipe, lambda: rdm(recipe))
    acc["rdm_naug"] = _shared(ctx, cell, data, "random", plain, lambda: rdm(plain)) \
        if recipe.augment != "none" else acc["rdm_any"]
    full = _full_recipe(cell)
    acc["real_hard"] = _shared(ctx, cell, data, "full", full, lambda: _train(
        ctx, cell, data, data.x_train, data.y_train, full, "eval-train-full")["accuracy"])
    out = {f"acc_{k}": v for k, v in acc.items()}
    out.update(scores(acc))
    out["condense_time_s"] = seconds
    out["evaluations_reused"] = sum(reused)
    return out


class DDRankingSection:
    """``[[dd_ranking]]`` entries: ``experiment`` (a dd_ranking experiment; implicit for each),
    ``lrs_weight`` (w, default 0.5), ``ars_weight`` (g, default 0.5), ``title``, ``note``."""

    KEYS = ("experiment", "lrs_weight", "ars_weight", "title", "note")

    def parse(self, entry: Mapping[str, Any], path: str, scope):
        problems = key_problems(path, entry, self.KEYS, ("experiment",))
        if "experiment" in entry:
            problems += scope.experiment(entry["experiment"], f"{path}.experiment")
        for key in ("lrs_weight", "ars_weight"):
            value = entry.get(key, 0.5)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                problems.append((f"{path}.{key}", f"a weight in [0, 1], got {value!r}"))
        return (None if problems else dict(entry)), problems

    def implicit(self, experiments):
        return [{"experiment": name} for name in experiments]

    def markdown(self, parsed, df, suite) -> str:
        w = float(parsed.get("lrs_weight", 0.5))
        g = float(parsed.get("ars_weight", 0.5))
        title = parsed.get("title") or f"DD-Ranking scores ({parsed['experiment']})"
        lines = [f"## {title}", "",
                 f"LRS weight w = {w:g}, ARS weight g = {g:g}; mean ± std over seeds. HLR lower "
                 "is better; IOR, LRS and ARS higher.", ""]
        rows = df[df["experiment"] == parsed["experiment"]]
        if "status" in rows:
            rows = rows[rows["status"] == "ok"]
        needed = ["acc_real_hard", "acc_syn_hard", "acc_syn_any", "acc_rdm_any",
                  "acc_syn_naug", "acc_rdm_naug"]
        if rows.empty or any(c not in rows for c in needed):
            return "\n".join(lines + ["no finished cells yet", ""])
        group = [a for a in ("dataset", "method", "ipc", "eval_arch") if a in rows]
        lines += ["| " + " | ".join(group + ["HLR", "IOR", "LRS", "ARS", "n"]) + " |",
                  "|" + "---|" * (len(group) + 5)]
        table: dict[tuple, list[dict[str, float]]] = {}
        for _, r in rows.iterrows():
            acc = {c[4:]: float(r[c]) for c in needed}
            table.setdefault(tuple(label(r[a]) for a in group), []).append(scores(acc, w, g))
        for key in sorted(table):
            runs = table[key]
            cells = []
            for metric in ("hlr", "ior", "lrs", "ars"):
                values = [s[metric] for s in runs]
                mean = sum(values) / len(values)
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
                    if len(values) > 1 else 0.0
                cells.append(f"{mean:.2f} ± {std:.2f}")
            lines.append("| " + " | ".join([*key, *cells, str(len(runs))]) + " |")
        if parsed.get("note"):
            lines += ["", str(parsed["note"]).strip()]
        return "\n".join(lines) + "\n"
