"""Knowledge-distillation registrations: the KD methods and the ``kd`` task.

Implementations: :mod:`kddbench_plugins.distillation.losses` (methods) and :mod:`kddbench_plugins.distillation.task`
(task).  Nothing heavy is imported here.

Names follow the literature.  Belinga et al. 2024 calls response-based KD "RKD" and
intermediate/feature KD "IKD": its RKD is ``response`` (alias ``kd``/``hinton``) and its IKD is
``feature`` (alias ``ikd``).  "RKD" is *not* registered as an alias, because in the literature
RKD is relational KD (Park et al. 2019), registered here as ``relational``.
"""
from kddbench import KDMethodSpec, TaskSpec, hookimpl
from kddbench.axes import AxisUnused, IntAxis, PluginAxis, ProtocolAxis
from kddbench.options import Float, Int, Str
from kddbench.metrics import PROTOCOL_METRICS, MetricSpec
from kddbench.validation import EVALUATION_METRICS

_L = "kddbench_plugins.distillation.losses:"
_CE = Float(1.0, min=0, doc="weight of the cross-entropy term")


def _temperature(default):
    return Float(default, above=0, doc="softmax temperature")


@hookimpl
def kddbench_kd_methods():
    yield KDMethodSpec(
        "response", _L + "Response",
        "Hinton et al. 2015: (1-alpha)*CE + alpha*T^2*KL(teacher_T || student_T); Belinga et al. 2024's "
        "'RKD' (not relational KD)",
        options={"alpha": Float(0.9, min=0, max=1), "T": _temperature(4.0)},
        aliases=("kd", "hinton"))
    yield KDMethodSpec(
        "feature", _L + "Hint",
        "FitNets hints (Romero et al. 2015), single stage: CE + 100*MSE(1x1-conv regressed "
        "student stage, teacher stage); 'auto' = each net's middle stage; Belinga et al. 2024's 'IKD'",
        options={"weight": Float(100.0, min=0), "ce_weight": _CE,
                 "student_stage": Str("auto", doc="a stage name of the student, or auto"),
                 "teacher_stage": Str("auto", doc="a stage name of the teacher, or auto")},
        aliases=("fitnets", "fitnet", "hint", "ikd"))
    yield KDMethodSpec(
        "attention", _L + "Attention",
        "attention transfer (Zagoruyko & Komodakis 2017): CE + 1000*sum of mean squared "
        "differences of L2-normalised |f|^2 channel-mean maps, last stages paired",
        options={"beta": Float(1000.0, min=0), "p": Float(2.0, above=0), "ce_weight": _CE},
        aliases=("at",))
    yield KDMethodSpec(
        "relational", _L + "Relational",
        "relational KD (Park et al. 2019): CE + 25*distance + 50*angle smooth-L1 terms on "
        "the embedding",
        options={"distance_weight": Float(25.0, min=0), "angle_weight": Float(50.0, min=0),
                 "ce_weight": _CE, "stage": Str("embedding")})
    yield KDMethodSpec(
        "dkd", _L + "DKD",
        "decoupled KD (Zhao et al. 2022): CE + warm-up*(1*TCKD + 8*NCKD), T 4, linear "
        "warm-up over min(20, recipe epochs) epochs",
        options={"alpha": Float(1.0, min=0), "beta": Float(8.0, min=0), "T": _temperature(4.0),
                 "warmup": Int(20, min=0, doc="epochs of linear warm-up; 0 = none"),
                 "ce_weight": _CE},
        aliases=("decoupled",))


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "kd", "kddbench_plugins.distillation.task:run",
        "train a teacher once (a cached artifact), then a student with a KD method on the full "
        "training set or a condensed one; kd_method 'teacher' reports the teacher itself, "
        "'none' the student trained without a teacher",
        axes={"dataset": PluginAxis("dataset", required=True),
              "teacher": PluginAxis("architecture", required=True),
              "student": PluginAxis("architecture", required=True),
              "kd_method": PluginAxis("kd_method", reserved=("teacher", "none"), required=True,
                                      doc="teacher: the teacher's own row; none: no teacher"),
              "teacher_protocol": ProtocolAxis(doc="how the teacher is trained"),
              "method": PluginAxis("condenser", doc="train the student on a condensed set"),
              "ipc": IntAxis(min=1, doc="images per class of the condensed set"),
              "distill_arch": PluginAxis("architecture", doc="the net condensation uses")},
        rules=(AxisUnused("ipc", by="method", flag="uses_ipc"),),
        cost="kddbench_plugins.distillation.costs:kd_cost",  # image passes, for --dry-run
        artifacts="kddbench_plugins.distillation.task:declared_artifacts",  # built first
        metrics=PROTOCOL_METRICS + EVALUATION_METRICS + (
            MetricSpec("teacher_accuracy", True, "%", 2, "the teacher's test accuracy"),
            MetricSpec("teacher_macro_f1", True, "%", 2, "the teacher's test macro F1"),
            MetricSpec("teacher_misclassified", False, "images", 0,
                       "test images the teacher classifies wrongly"),
            MetricSpec("teacher_params", False, "", 0, "the teacher's parameters"),
            MetricSpec("teacher_size_mb", False, "MB", 3, "the teacher's weights"),
            MetricSpec("teacher_epochs", None, "", 0, "the teacher's training epochs"),
            MetricSpec("kd_extra_params", False, "", 0,
                       "parameters the KD method adds during training (regressors)"),
            MetricSpec("learned_lr", None, "", 4, "the learning rate learned with condensed "
                       "images, used to train the student on them"),
        ))
