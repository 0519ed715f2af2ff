"""Condensation: the ``condense`` task and its methods: real-image baselines (whole set, random,
average), coreset selection (herding, k-center,
forgetting), gradient matching (DC, DSA), distribution matching (DM) and attention matching
(DataDAM).  Registration only: the implementations load lazily, so listing imports no torch.

Options common to the synthesising methods: ``iterations`` (the papers' by default; suites set
CPU budgets), ``init`` ("real" | "noise"), ``lr_img``, ``momentum_img``, ``augment``
("dsa" | "none"), ``checkpoint_every`` (iterations between saved states; 0 = never).
"""
from kddbench import CondenserSpec, SectionSpec, TaskSpec, hookimpl
from kddbench.axes import AxisUnused, IntAxis, PluginAxis, ProtocolAxis, StrAxis
from kddbench.options import Bool, Choice, Float, Int, Str
from kddbench.metrics import PROTOCOL_METRICS, MetricSpec
from kddbench.validation import EVALUATION_METRICS

# condensation.task.shared_evaluation: an evaluation stored by an earlier run, read back
EVALUATION_REUSED = MetricSpec("evaluation_reused", None, "", 0,
                               "1 when this evaluation (the same set, network, recipe and "
                               "seeds) was stored by an earlier run and read, 0 when trained now")


def _checkpoint_every(default: int):
    """How often a long condensation saves its state: no part of the set's key (a resumed or
    differently checkpointed run computes the same set)."""
    return Int(default, min=0, doc="iterations between saved states; 0 = never", keyed=False)


_I = "kddbench_plugins.condensation.real_images:"
_C = "kddbench_plugins.condensation.coreset:"
_G = "kddbench_plugins.condensation.gradient_matching:"
_D = "kddbench_plugins.condensation.distribution_matching:"

_AUG = ("none", "dsa", "flip_rotate")  # used where the augmentation family is not registered


def _augment(default):
    return Choice(default, _AUG, family="augmentation", where={"level": "batch"},
                  doc="applied to real and synthetic batches")


def _init(default):
    return Choice(default, ("real", "noise"), doc="start from real images or from noise")


_EMBED = {"train_epochs": Int(0, min=0, doc="0 = a randomly initialised net"),
          "lr": Float(0.01, min=0), "candidates_per_class": Int(0, min=0, doc="0 = all"),
          "normalize": Bool(False)}
_GM = {"iterations": Int(1000, min=1, smoke=1),
       "outer_loop": Int(0, min=0, smoke=1, doc="0 = by IPC"),
       "inner_loop": Int(0, min=0, smoke=1, doc="0 = by IPC"), "batch_real": Int(256, min=1),
       "batch_train": Int(256, min=1), "lr_img": Float(0.1, min=0),
       "momentum_img": Float(0.5, min=0, max=1), "lr_net": Float(0.01, min=0),
       "bn_real_per_class": Int(16, min=1), "checkpoint_every": _checkpoint_every(10)}


# the condensation tasks' data-set-level transform (e.g. zca: MTT's CIFAR settings whiten).
# A string, not a plugin axis: options are keyed by plugin name, and `dsa` names both a
# condenser and an augmentation; the run context checks the name (one line when unknown).
TRANSFORM_AXIS = StrAxis(doc="a data-set-level augmentation (e.g. zca) applied to every split "
                         "before condensation and evaluation; none by default")

@hookimpl
def kddbench_condensers():
    yield CondenserSpec("full", _I + "full", "the whole real training set (upper bound)",
                        uses_ipc=False, cacheable=False)
    yield CondenserSpec("random", _I + "random", "IPC real images per class drawn at random")
    yield CondenserSpec("average", _I + "average",
                        "KD-MNIST's average real images: each class split at random into IPC "
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
        version="1", options={**_EMBED, "first": Choice("mean", ("mean", "random"))}, aliases=("k-center",))
    yield CondenserSpec(
        "forgetting", _C + "forgetting",
        "per class, the real images forgotten most often (Toneva et al.) while training the "
        "distillation net on the real set for `epochs` epochs (never-learned count as most)",
        version="1", options={"epochs": Int(3, min=1, smoke=1), "batch_size": Int(128, min=1),
                              "lr": Float(0.01, min=0), "momentum": Float(0.9, min=0, max=1),
                              "weight_decay": Float(5e-4, min=0),
                              "keep": Choice("most", ("most", "least", "most_learned"),
                                             doc="most: never-learned first (Toneva et al.); "
                                             "most_learned: never-learned last"),
                              "examples_per_class": Int(0, min=0, doc="0 = all")})
    yield CondenserSpec(
        "dc", _G + "dc",
        "DC gradient matching (Zhao et al. 2021): per-layer sum of (1 - cos) between real and "
        "synthetic gradients of fresh random nets; outer/inner loops by IPC; init noise",
        version="1", options={**_GM, "init": _init("noise"), "augment": _augment("none")})
    yield CondenserSpec(
        "dsa", _G + "dsa",
        "DSA (Zhao & Bilen 2021): DC with the same differentiable augmentation on the real and "
        "synthetic batch of each class; init real",
        version="1", options={**_GM, "init": _init("real"), "augment": _augment("dsa")})
    yield CondenserSpec(
        "dm", _D + "dm",
        "DM distribution matching (Zhao & Bilen 2023): class-mean embeddings of real vs "
        "synthetic images through a fresh frozen random net each iteration, DSA on both; "
        "lr_img 0 = the paper's (1.0; 10 at IPC >= 100)",
        version="1", options={"iterations": Int(20000, min=1, smoke=1), "batch_real": Int(256, min=1),
                              "lr_img": Float(0.0, min=0, doc="0 = the paper's"),
                              "momentum_img": Float(0.5, min=0, max=1), "init": _init("real"),
                              "augment": _augment("dsa"),
                              "checkpoint_every": _checkpoint_every(100)})
    yield CondenserSpec(
        "datadam", _D + "datadam",
        "DataDAM attention matching (Sajedi et al. 2023): class-mean normalised spatial "
        "attention at every block but the last + lambda_mmd x DM term; setting = 'paper' "
        "(p=4, instance norm, 8000 it, 256 real/class) or 'code' (released code: batch norm, "
        "p=1, 20000 it, 64 real/class); 0 / 'auto' options follow the setting",
        version="1", options={"setting": Choice("paper", ("paper", "code")),
                              "iterations": Int(0, min=0, smoke=1, doc="0 = the setting's"),
                              "p": Float(0.0, min=0, doc="0 = the setting's"),
                              "batch_real": Int(0, min=0, doc="0 = the setting's"),
                              "norm": Choice("auto", ("auto", "as_built", "batchnorm")),
                              "lr_img": Float(0.0, min=0, doc="0 = the paper's"),
                              "momentum_img": Float(0.5, min=0, max=1),
                              "lambda_mmd": Float(0.01, min=0), "loss_scale": Float(100.0, min=0),
                              "init": _init("real"), "augment": _augment("dsa"),
                              "checkpoint_every": _checkpoint_every(100)})
    yield from _performance_matching()
    yield from _trajectory_matching()
    yield CondenserSpec(
        "file", "kddbench_plugins.condensation.from_file:load_set",
        "anyone's condensed set from a .pt (tensors only) or .npz file: images, hard or soft "
        "labels, an optional learned lr; normalization 'raw' [0,1] pixels or 'dataset'",
        version="1", cacheable=False,
        options={"path": Str("", doc="the .pt or .npz file"),
                 "normalization": Choice("raw", ("raw", "dataset")),
                 "layout": Choice("NCHW", ("NCHW", "NHWC")),
                 "images_key": Str("images"), "labels_key": Str("labels"), "lr_key": Str("lr"),
                 "sha256": Str("", doc="pin the file's content (recommended)")})


def _performance_matching():
    """Wang et al. 2018 (meta-learning) and kernel ridge regression (FRePo style)."""
    yield CondenserSpec(
        "ddwang", "kddbench_plugins.condensation.meta_learning:ddwang",
        "Dataset Distillation (Wang, Zhu, Torralba & Efros 2018), Algorithm 1: images + one "
        "learned step size per GD step (steps x epochs), Adam through the unrolled descent "
        "from fixed or random initial weights; its own evaluation in condense.ddwang_accuracy",
        version="1", options={
            "iterations": Int(0, min=0, smoke=1, doc="0 = 400 passes over the real set"),
            "steps": Int(0, min=0, doc="GD steps per epoch, must divide ipc; 0 = the largest "
                         "divisor of ipc up to 10"),
            "epochs": Int(3, min=1, smoke=1, doc="passes over the steps"),
            "batch_real": Int(1024, min=1),
            "lr_img": Float(0.01, min=0, doc="Adam lr of images and step sizes"),
            "lr_step_init": Float(0.02, min=0, doc="initial step size (CIFAR-10: 0.001)"),
            "decay_every": Int(0, min=0, doc="0 = 40 passes over the real set"),
            "decay_factor": Float(0.5, min=0, max=1),
            "init_weights": Choice("random", ("fixed", "random"),
                                   doc="one seeded initial net, or fresh ones every iteration"),
            "weight_init": Choice("xavier", ("xavier", "as_built")),
            "init": _init("noise"),
            "eval_draws": Int(10, min=1, smoke=2,
                              doc="initial nets of the own evaluation (random)"),
            "checkpoint_every": _checkpoint_every(100)})
    yield CondenserSpec(
        "krr", "kddbench_plugins.condensation.kernel_ridge:krr",
        "kernel ridge regression distillation in the style of FRePo (Zhou et al. 2022): "
        "ridge regression on the synthetic set, kernel = features of a pool of networks "
        "trained online on it, predicts a real batch; hard labels or learn_labels",
        version="1", options={
            "iterations": Int(5000, min=1, smoke=1), "batch_real": Int(1024, min=1),
            "lr_img": Float(0.001, min=0), "lr_label": Float(0.001, min=0),
            "learn_labels": Bool(False), "reg": Float(1e-6, min=0,
                                                      doc="ridge x trace(K)/n"),
            "pool_size": Int(10, min=1), "max_online_steps": Int(100, min=1),
            "lr_net": Float(0.001, min=0, doc="Adam lr of the pool's online training"),
            "init": _init("real"), "checkpoint_every": _checkpoint_every(100)})



def _tm_options(**pad):
    """Options shared by mtt and pad (0 / -1 / "auto": the setting's value)."""
    opts = {
        "setting": Choice("auto", ("auto", "cifar10_ipc1", "cifar10_ipc10", "cifar10_ipc50",
                                   "cifar100_ipc1", "cifar100_ipc10", "cifar100_ipc50", "cpu"),
                          doc="the reference's per-setting defaults; auto = by data set and "
                          "IPC, else 'cpu'"),
        "iterations": Int(5000, min=1, smoke=1),
        "syn_steps": Int(0, min=0, smoke=2,
                         doc="student steps on the synthetic set; 0 = setting's"),
        "expert_epochs": Int(0, min=0, doc="M: expert epochs matched; 0 = setting's"),
        "max_start_epoch": Int(0, min=0, doc="0 = setting's"),
        "lr_img": Float(0.0, min=0, doc="0 = setting's"),
        "lr_lr": Float(0.0, min=0, doc="lr of the learned step size; 0 = setting's"),
        "lr_teacher": Float(0.0, min=0, doc="initial learned step size; 0 = setting's"),
        "momentum": Float(0.5, min=0, max=1, doc="SGD momentum of images, lr and labels"),
        "batch_syn": Int(-1, min=-1, doc="synthetic images per step; 0 = all, -1 = setting's"),
        "zca": Choice("auto", ("auto", "on", "off"),
                      doc="on: the data must come ZCA-whitened (else an error)"),
        "init": _init("real"), "augment": _augment("dsa"),
        "unroll": Choice("constant", ("constant", "full"),
                         doc="constant: TESLA's exact constant-memory gradient; full: autograd"),
        "num_experts": Int(100, min=1, smoke=2),
        "epochs": Int(50, min=1, smoke=2, doc="epochs each expert is trained"),
        "expert_lr": Float(0.01, above=0), "batch_train": Int(256, min=1),
        "expert_augment": _augment("dsa"),
        "expert_seed": Int(0, min=0, doc="experts are shared by every cell with the same one"),
        "experts_in_memory": Int(4, min=1),
        "checkpoint_every": _checkpoint_every(100)}
    opts.update(pad)
    return opts


def _trajectory_matching():
    """MTT (Cazenavette et al. 2022) and PAD (Li et al. 2024, on DATM by Guo et al. 2024)."""
    tm = "kddbench_plugins.condensation.trajectory_matching:"
    # one artifact per expert, built by the runner before the condensed sets (torch-free here)
    _EXPERTS = "kddbench_plugins.condensation.expert_artifacts:declare"
    _COST = "kddbench_plugins.condensation.trajectory_settings:cost"  # for --dry-run
    yield CondenserSpec(
        "mtt", tm + "mtt",
        "Matching Training Trajectories (Cazenavette et al. 2022): N student steps on the "
        "synthetic set from an expert's epoch t, loss ||theta_N - theta*_t+M||^2 / "
        "||theta*_t - theta*_t+M||^2, learned step size; experts are shared artifacts; "
        "unroll = constant (TESLA, Cui et al. 2023) or full",
        version="1", options=_tm_options(), artifacts=_EXPERTS, cost=_COST)
    yield CondenserSpec(
        "pad", tm + "pad",
        "PAD (Li et al. 2024) on DATM (Guo et al. 2024): mtt + a budget-aligned, growing "
        "window of start epochs, EL2N data selection, deep-layer matching, soft labels from "
        "an expert (learned); each part switchable",
        version="1", options=_tm_options(
            window=Bool(True, doc="start epochs by IPC, upper bound growing (DATM)"),
            min_start_epoch=Int(-1, min=-1, doc="-1 = by IPC"),
            initial_max_start_epoch=Int(0, min=0, doc="0 = by IPC"),
            window_growth=Int(-1, min=-1, doc="iterations to reach max; -1 = half of them"),
            deep_only=Float(0.25, min=0, max=0.99,
                            doc="share of the network (input side) left out of the loss"),
            deep_by=Choice("modules", ("modules", "parameters"), later=True,
                           doc="deep_only counts parameter-holding modules (ours) or parameter "
                           "elements in module order (the PAD reference's depth_ratio)"),
            el2n_keep=Float(0.9, above=0, max=1, doc="easiest fraction of each class kept; 1 = "
                            "no selection"),
            el2n_nets=Int(2, min=1), el2n_epochs=Int(2, min=0, smoke=1),
            soft_labels=Bool(True, doc="labels = an expert's logits on the images"),
            learn_labels=Bool(True), lr_label=Float(2.0, min=0),
            label_epoch=Int(-1, min=-1, doc="expert epoch of the labels and of the initial "
                            "images' selection; -1 = the window's end; at or above `epochs`: "
                            "the experts' last (the PAD reference's)"),
            label_init=Choice("expert0", ("expert0", "mean_correct"), later=True,
                              doc="initial logits: expert 0's (ours), or per image the mean "
                              "over the experts that classify it correctly (the PAD reference)"),
            label_momentum=Float(-1.0, min=-1, max=1, later=True,
                                 doc="SGD momentum of the learned labels; -1 = momentum's "
                                 "(the PAD reference: 0.9)"),
            loss_threshold=Float(0.0, min=0, later=True,
                                 doc="update only after a match whose loss is at most this; 0 "
                                 "= always (the PAD reference: 1.1 at IPC 1, 1.0 at IPC 10)")),
        artifacts=_EXPERTS, cost=_COST)


_CONDENSED = "kddbench_plugins.condensation.task:declared_artifacts"  # a cell's condensed set


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "condense", "kddbench_plugins.condensation.task:run",
        "condense a training set (method at ipc, on distill_arch), then train eval_arch on it "
        "with the shared protocol and test on the real test set",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True),
              "ipc": IntAxis(min=1, doc="images per class"),
              "distill_arch": PluginAxis("architecture", doc="the net condensation uses"),
              "eval_arch": PluginAxis("architecture", required=True),
              "transform": TRANSFORM_AXIS},
        rules=(AxisUnused("ipc", by="method", flag="uses_ipc"),),
        cost="kddbench_plugins.condensation.costs:condense_cost",  # image passes, for --dry-run
        artifacts=_CONDENSED,  # built first
        metrics=PROTOCOL_METRICS + EVALUATION_METRICS + (
            MetricSpec("condense.*", None, description="what the condensation method reports "
                       "about its own run (iterations, timings, counts)"),
            MetricSpec("learned_lr", None, "", 4, "the learning rate a method learned with its "
                       "images, used to train on them"),
            EVALUATION_REUSED,
        ))
    yield TaskSpec(
        "cross_arch", "kddbench_plugins.condensation.cross_arch:run",
        "cross-architecture generalisation: a set condensed on distill_arch (taken from the "
        "artifact store when any run made it) trained and tested on each eval_arch; its "
        "[[cross_arch]] section is the methods x architectures matrix and the change from "
        "the distillation architecture",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True),
              "ipc": IntAxis(min=1, doc="images per class"),
              "distill_arch": PluginAxis("architecture", required=True,
                                         doc="the net the set was condensed on"),
              "eval_arch": PluginAxis("architecture", required=True,
                                      doc="the pool, e.g. mlp, convnet3, lenet, alexnet, "
                                      "vgg11, resnet18"),
              "transform": TRANSFORM_AXIS},
        rules=(AxisUnused("ipc", by="method", flag="uses_ipc"),),
        cost="kddbench_plugins.condensation.costs:condense_cost",
        artifacts=_CONDENSED,  # the set: built first, once for the whole pool
        sections=("cross_arch",),
        metrics=PROTOCOL_METRICS + (
            MetricSpec("condense.*", None, description="what the condensation method reports "
                       "about its own run"),
            MetricSpec("learned_lr", None, "", 4, "the learning rate learned with the images"),
            MetricSpec("set_reused", None, "", 0, "1 when the set was in the artifact store "
                       "as the cell began (any run's, or this run's artifact step), 0 when "
                       "the cell condensed it itself"),
            EVALUATION_REUSED,
        ))


    yield TaskSpec(
        "dd_ranking", "kddbench_plugins.condensation.dd_ranking:run",
        "DD-Ranking's scores from our own runs: hard-label recovery, improvement over random, "
        "label- and augmentation-robust scores of a condensed set; trains the set with its "
        "labels, hard labels, without augmentation, a random subset and the whole set",
        axes={"dataset": PluginAxis("dataset", required=True),
              "method": PluginAxis("condenser", required=True),
              "ipc": IntAxis(min=1, required=True, doc="images per class"),
              "distill_arch": PluginAxis("architecture", doc="the net condensation uses"),
              "eval_arch": PluginAxis("architecture", required=True),
              "full_protocol": ProtocolAxis(required=True,
                                            doc="the recipe of the whole-set run (HLR)"),
              "transform": TRANSFORM_AXIS},
        cost="kddbench_plugins.condensation.costs:dd_ranking_cost",
        artifacts=_CONDENSED,
        sections=("dd_ranking",),
        metrics=(MetricSpec("hlr", False, "points", 2, "hard-label recovery: whole set minus "
                            "the set with hard labels"),
                 MetricSpec("ior", True, "points", 2, "improvement over a random subset"),
                 MetricSpec("lrs", True, "%", 2, "label-robust score (w = 0.5)"),
                 MetricSpec("ars", True, "%", 2, "augmentation-robust score (g = 0.5)"),
                 MetricSpec("acc_*", True, "%", 2, "the accuracies the scores come from"),
                 MetricSpec("condense_time_s", False, "s", 1, "condensation time"),
                 MetricSpec("evaluations_reused", None, "", 0, "how many of the set's own "
                            "trainings were stored by an earlier run (a condense cell of the "
                            "same set and recipe, say) and read instead of run")))


@hookimpl
def kddbench_report_sections():
    yield SectionSpec(
        "dd_ranking", "kddbench_plugins.condensation.dd_ranking:DDRankingSection",
        "[[dd_ranking]]: HLR, IOR, LRS and ARS per method, at any weights", key="dd_ranking")
    yield SectionSpec(
        "cross_arch", "kddbench_plugins.condensation.cross_arch:CrossArchSection",
        "[[cross_arch]]: methods x evaluation architectures, the distillation architecture "
        "marked, and the change from it seed by seed", key="cross_arch")
