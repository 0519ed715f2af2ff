"""Condensation: the ``condense`` task and its methods: real-image baselines (whole set, random,
average), coreset selection (herding, k-center,
forgetting), gradient matching (DC, DSA), distribution matching (DM) and attention matching
(DataDAM).  Registration only: the implementations load lazily, so listing imports no torch.

Options common to the synthesising methods: ``iterations`` (the papers' by default; suites set
CPU budgets), ``init`` ("real" | "noise"), ``lr_img``, ``momentum_img``, ``augment``
("dsa" | "none"), ``checkpoint_every`` (iterations between saved states; 0 = never).
"""
from kddbench import CondenserSpec, TaskSpec, hookimpl
from kddbench.metrics import PROTOCOL_METRICS, MetricSpec

_I = "kddbench_plugins.condensation.real_images:"
_C = "kddbench_plugins.condensation.coreset:"
_G = "kddbench_plugins.condensation.gradient_matching:"
_D = "kddbench_plugins.condensation.distribution_matching:"

_EMBED = {"train_epochs": 0, "lr": 0.01, "candidates_per_class": 0, "normalize": False}
_GM = {"iterations": 1000, "outer_loop": 0, "inner_loop": 0, "batch_real": 256,
       "batch_train": 256, "lr_img": 0.1, "momentum_img": 0.5, "lr_net": 0.01,
       "bn_real_per_class": 16, "checkpoint_every": 10}


@hookimpl
def kddbench_condensers():
    yield CondenserSpec("full", _I + "full", "the whole real training set (upper bound)",
                        uses_ipc=False, cacheable=False)
    yield CondenserSpec("random", _I + "random", "IPC real images per class drawn at random")
    yield CondenserSpec("average", _I + "average",
                        "seed 000's average real images: each class split at random into IPC "
                        "groups, each group averaged into one image")
    yield CondenserSpec(
        "herding", _C + "herding",
        "per class, greedy mean matching (herding) of real images in the embedding space of "
        "the distillation net (randomly initialised unless train_epochs > 0)",
        version="1", options=dict(_EMBED))
    yield CondenserSpec(
        "kcenter", _C + "kcenter",
        "per class, greedy k-center of real images in the distillation net's embedding space; "
        "first center: the image nearest the class mean (first = 'random' for a random one)",
        version="1", options={**_EMBED, "first": "mean"}, aliases=("k-center",))
    yield CondenserSpec(
        "forgetting", _C + "forgetting",
        "per class, the real images forgotten most often (Toneva et al.) while training the "
        "distillation net on the real set for `epochs` epochs (never-learned count as most)",
        version="1", options={"epochs": 3, "batch_size": 128, "lr": 0.01, "momentum": 0.9,
                              "weight_decay": 5e-4, "keep": "most", "examples_per_class": 0})
    yield CondenserSpec(
        "dc", _G + "dc",
        "DC gradient matching (Zhao et al. 2021): per-layer sum of (1 - cos) between real and "
        "synthetic gradients of fresh random nets; outer/inner loops by IPC; init noise",
        version="1", options={**_GM, "init": "noise", "augment": "none"})
    yield CondenserSpec(
        "dsa", _G + "dsa",
        "DSA (Zhao & Bilen 2021): DC with the same differentiable augmentation on the real and "
        "synthetic batch of each class; init real",
        version="1", options={**_GM, "init": "real", "augment": "dsa"})
    yield CondenserSpec(
        "dm", _D + "dm",
        "DM distribution matching (Zhao & Bilen 2023): class-mean embeddings of real vs "
        "synthetic images through a fresh frozen random net each iteration, DSA on both; "
        "lr_img 0 = the paper's (1.0; 10 at IPC >= 100)",
        version="1", options={"iterations": 20000, "batch_real": 256, "lr_img": 0.0,
                              "momentum_img": 0.5, "init": "real", "augment": "dsa",
                              "checkpoint_every": 100})
    yield CondenserSpec(
        "datadam", _D + "datadam",
        "DataDAM attention matching (Sajedi et al. 2023): class-mean normalised spatial "
        "attention at every block but the last + lambda_mmd x DM term; setting = 'paper' "
        "(p=4, instance norm, 8000 it, 256 real/class) or 'code' (released code: batch norm, "
        "p=1, 20000 it, 64 real/class); 0 / 'auto' options follow the setting",
        version="1", options={"setting": "paper", "iterations": 0, "p": 0.0, "batch_real": 0,
                              "norm": "auto", "lr_img": 0.0, "momentum_img": 0.5,
                              "lambda_mmd": 0.01, "loss_scale": 100.0, "init": "real",
                              "augment": "dsa", "checkpoint_every": 100})


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "condense", "kddbench_plugins.condensation.task:run",
        "condense a training set (method at ipc, on distill_arch), then train eval_arch on it "
        "with the shared protocol and test on the real test set",
        axes=("dataset", "method", "ipc", "distill_arch", "eval_arch"),
        required=("dataset", "method", "eval_arch"),
        plugin_axes={"dataset": "dataset", "method": "condenser", "distill_arch": "architecture",
                     "eval_arch": "architecture"},
        metrics=PROTOCOL_METRICS + (
            MetricSpec("condense.*", None, description="what the condensation method reports "
                       "about its own run (iterations, timings, counts)"),
            MetricSpec("learned_lr", None, "", 4, "the learning rate a method learned with its "
                       "images, used to train on them"),
        ))
