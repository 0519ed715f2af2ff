"""Knowledge-distillation registrations: the KD methods and the ``kd`` task.

Implementations: :mod:`kddbench_plugins.distillation.losses` (methods) and :mod:`kddbench_plugins.distillation.task`
(task).  Nothing heavy is imported here.

Names follow the literature.  The seed paper 004 calls response-based KD "RKD" and
intermediate/feature KD "IKD": its RKD is ``response`` (alias ``kd``/``hinton``) and its IKD is
``feature`` (alias ``ikd``).  "RKD" is *not* registered as an alias, because in the literature
RKD is relational KD (Park et al. 2019), registered here as ``relational``.
"""
from kddbench import KDMethodSpec, TaskSpec, hookimpl
from kddbench.metrics import PROTOCOL_METRICS, MetricSpec

_L = "kddbench_plugins.distillation.losses:"


@hookimpl
def kddbench_kd_methods():
    yield KDMethodSpec(
        "response", _L + "Response",
        "Hinton et al. 2015: (1-alpha)*CE + alpha*T^2*KL(teacher_T || student_T); seed 004's "
        "'RKD' (not relational KD)",
        options={"alpha": 0.9, "T": 4.0}, aliases=("kd", "hinton"))
    yield KDMethodSpec(
        "feature", _L + "Hint",
        "FitNets hints (Romero et al. 2015), single stage: CE + 100*MSE(1x1-conv regressed "
        "student stage, teacher stage); 'auto' = each net's middle stage; seed 004's 'IKD'",
        options={"weight": 100.0, "ce_weight": 1.0, "student_stage": "auto",
                 "teacher_stage": "auto"},
        aliases=("fitnets", "fitnet", "hint", "ikd"))
    yield KDMethodSpec(
        "attention", _L + "Attention",
        "attention transfer (Zagoruyko & Komodakis 2017): CE + 1000*sum of mean squared "
        "differences of L2-normalised |f|^2 channel-mean maps, last stages paired",
        options={"beta": 1000.0, "p": 2.0, "ce_weight": 1.0}, aliases=("at",))
    yield KDMethodSpec(
        "relational", _L + "Relational",
        "relational KD (Park et al. 2019): CE + 25*distance + 50*angle smooth-L1 terms on "
        "the embedding",
        options={"distance_weight": 25.0, "angle_weight": 50.0, "ce_weight": 1.0,
                 "stage": "embedding"})
    yield KDMethodSpec(
        "dkd", _L + "DKD",
        "decoupled KD (Zhao et al. 2022): CE + warm-up*(1*TCKD + 8*NCKD), T 4, linear "
        "warm-up over min(20, recipe epochs) epochs",
        options={"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup": 20, "ce_weight": 1.0},
        aliases=("decoupled",))


@hookimpl
def kddbench_tasks():
    yield TaskSpec(
        "kd", "kddbench_plugins.distillation.task:run",
        "train a teacher once (a cached artifact), then a student with a KD method on the full "
        "training set or a condensed one; kd_method 'teacher' reports the teacher itself, "
        "'none' the student trained without a teacher",
        axes=("dataset", "teacher", "student", "kd_method", "teacher_protocol", "method",
              "ipc", "distill_arch"),
        required=("dataset", "teacher", "student", "kd_method"),
        plugin_axes={"dataset": "dataset", "teacher": "architecture",
                     "student": "architecture", "kd_method": "kd_method",
                     "method": "condenser", "distill_arch": "architecture"},
        reserved={"kd_method": ("teacher", "none")},
        protocol_axes=("teacher_protocol",),
        metrics=PROTOCOL_METRICS + (
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
