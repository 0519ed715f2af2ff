"""Cost estimate (image passes, :mod:`kddbench.cost`) of the ``kd`` task; torch-free.

The teacher is trained once per (data set, teacher, its recipe, seed) and cached, so its
training is counted once for all the cells that share it; a distilled student also runs the
teacher forward on every training image of every epoch (live teacher outputs: the upper
bound; cached outputs without augmentation cost one pass per image).
"""
from __future__ import annotations

from kddbench.cost import TRAIN_PASSES, Work, evaluation_passes, recipe_train_passes

RESERVED_TEACHER, RESERVED_NONE = "teacher", "none"


def kd_cost(cell, info) -> list[Work]:
    data = info.data(cell["dataset"], cell)
    if data is None:
        raise ValueError("data set size unknown")
    teacher, student = cell["teacher"], cell["student"]
    t_opts = info.options(cell, "architecture", teacher)
    t_recipe = info.recipe(cell, "teacher_protocol")
    works = [Work(teacher, data, recipe_train_passes(t_recipe, data.train) + data.test,
                  "teacher", key=("teacher", data.name, teacher, t_opts, t_recipe, cell.seed),
                  arch_options=t_opts)]
    role = cell["kd_method"]
    if role == RESERVED_TEACHER:
        return works
    n = data.train
    if cell.get("method"):
        if cell.get("ipc"):
            n = min(int(cell["ipc"]), data.train_per_class) * data.classes
        from kddbench_plugins.condensation.costs import method_cost

        spec = info.spec("condenser", cell["method"])
        passes = method_cost(spec, info.options(cell, "condenser", cell["method"]),
                             cell.get("ipc"), data)
        if passes is None:
            raise ValueError(f"condensation method {spec.name!r} declares no cost")
        distill = cell.get("distill_arch") or student
        works.append(Work(distill, data, passes, "condense",
                          arch_options=info.options(cell, "architecture", distill)))
    recipe = info.recipe(cell)
    s_opts = info.options(cell, "architecture", student)
    works.append(Work(student, data, evaluation_passes(recipe, n, data.test), "student",
                      arch_options=s_opts))
    if role != RESERVED_NONE:
        models = int(recipe.get("n_models") or 1)  # each student sees the teacher's outputs
        works.append(Work(teacher, data, models * recipe_train_passes(recipe, n) / TRAIN_PASSES,
                          "teacher outputs",
                          arch_options=t_opts))
    return works
