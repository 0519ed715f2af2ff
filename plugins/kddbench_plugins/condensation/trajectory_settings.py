"""Settings of the trajectory-matching methods (``mtt``, ``pad``) and their cost estimate;
torch-free, so registrations, validation and ``--dry-run`` import no torch."""
from __future__ import annotations

from typing import Any

from kddbench.errors import KddbenchError

UNROLLS = ("constant", "full")
ZCA_CHOICES = ("auto", "on", "off")
# what pad's deep_only is a share of: parameter-holding modules (ours) or parameter elements
# in module order (the PAD reference's depth_ratio)
DEEP_BY = ("modules", "parameters")

# MTT's per-setting hyper-parameters (Cazenavette et al. 2022, the released code's table):
# (syn_steps, expert_epochs, max_start_epoch, lr_img, lr_lr, lr_teacher, zca, batch_syn)
# [not checked against the paper]
SETTINGS: dict[str, dict[str, Any]] = {
    "cifar10_ipc1": dict(syn_steps=50, expert_epochs=2, max_start_epoch=2, lr_img=100.0,
                         lr_lr=1e-7, lr_teacher=0.01, zca=True, batch_syn=0),
    "cifar10_ipc10": dict(syn_steps=30, expert_epochs=2, max_start_epoch=20, lr_img=100.0,
                          lr_lr=1e-5, lr_teacher=0.001, zca=True, batch_syn=0),
    "cifar10_ipc50": dict(syn_steps=30, expert_epochs=2, max_start_epoch=40, lr_img=1000.0,
                          lr_lr=1e-5, lr_teacher=0.001, zca=False, batch_syn=0),
    "cifar100_ipc1": dict(syn_steps=20, expert_epochs=3, max_start_epoch=20, lr_img=1000.0,
                          lr_lr=1e-5, lr_teacher=0.01, zca=True, batch_syn=0),
    "cifar100_ipc10": dict(syn_steps=20, expert_epochs=2, max_start_epoch=20, lr_img=1000.0,
                           lr_lr=1e-5, lr_teacher=0.01, zca=False, batch_syn=0),
    "cifar100_ipc50": dict(syn_steps=80, expert_epochs=2, max_start_epoch=40, lr_img=1000.0,
                           lr_lr=1e-5, lr_teacher=0.01, zca=True, batch_syn=125),
    # ours, for small grey-scale sets on a CPU (no published MTT setting; not tuned):
    "cpu": dict(syn_steps=20, expert_epochs=2, max_start_epoch=10, lr_img=100.0,
                lr_lr=1e-5, lr_teacher=0.01, zca=False, batch_syn=0),
}
SETTING_NAMES = ("auto", *SETTINGS)


def setting_for(name: str, data_name: str, ipc: int) -> tuple[str, dict[str, Any]]:
    """The named setting, or for ``auto`` the reference's for (data set, IPC) when it has
    one and ``cpu`` otherwise."""
    if name != "auto":
        if name not in SETTINGS:
            raise KddbenchError(f"setting must be one of {list(SETTING_NAMES)}, not {name!r}")
        return name, SETTINGS[name]
    base = data_name.split("[")[0].replace("-", "").lower()
    key = f"{base}_ipc{ipc}"
    return (key, SETTINGS[key]) if key in SETTINGS else ("cpu", SETTINGS["cpu"])


# PAD's window by budget: (min_start_epoch, initial max, final max).  Ours, after the DATM
# idea that small budgets match early expert epochs and large ones later epochs
# [not checked against the papers' tables].
PAD_WINDOWS = ((1, (0, 2, 4)), (10, (0, 10, 20)), (50, (0, 20, 40)), (10 ** 9, (20, 40, 60)))


def pad_window(ipc: int) -> tuple[int, int, int]:
    for bound, window in PAD_WINDOWS:
        if ipc <= bound:
            return window
    return PAD_WINDOWS[-1][1]


# ---------------------------------------------------------------------------------------------
# cost (kddbench.cost): image passes of one cell's condensation; the experts (shared artifacts,
# built once for every cell that uses them) are counted by expert_costs
def cost(options, ipc, data) -> float:
    """Image passes of ``mtt`` / ``pad``: per iteration ``syn_steps`` training steps on
    ``batch_syn`` images forward, and in the backward sweep each step again with its double
    backward (constant: ~5 training steps per step in all, full: ~3; measured by
    benchmarks/bench_trajectory.py at MNIST scale)."""
    from kddbench.cost import TRAIN_PASSES

    ipc = int(ipc or 1)
    _, st = setting_for(options.get("setting", "auto"), getattr(data, "name", ""), ipc)
    steps = options.get("syn_steps") or st["syn_steps"]
    n = data.classes * ipc
    batch = options.get("batch_syn", -1)
    batch = st["batch_syn"] if batch is None or batch < 0 else batch
    batch = n if batch <= 0 else min(batch, n)
    per_step = 5.0 if options.get("unroll", "constant") == "constant" else 3.0
    return float(options.get("iterations", 5000)) * steps * batch * per_step * TRAIN_PASSES


def expert_costs(options, data) -> list[tuple[tuple, float]]:
    """``(key, image passes)`` of each expert a cell asks for: ``epochs`` training epochs on
    the real set (PAD: on its EL2N selection, whose scoring nets count once too).  The keys
    follow what determines an expert (expert_artifacts.EXPERT_OPTIONS), so an estimate counts
    each expert once however many cells share it."""
    from kddbench.cost import train_passes

    from .expert_artifacts import EXPERT_OPTIONS

    keep = float(options.get("el2n_keep", 1.0))
    which = {k: options.get(k) for k in EXPERT_OPTIONS if k in options
             and (keep < 1.0 or not k.startswith("el2n"))}
    images = max(1, int(round(data.train * min(1.0, keep))))
    out = []
    if keep < 1.0:
        nets = int(options.get("el2n_nets", 2))
        out.append((("el2n", which), nets * (train_passes(int(options.get("el2n_epochs", 2)),
                                                          data.train) + data.train)))
    for index in range(int(options.get("num_experts", 100))):
        out.append((("expert", which, index),
                    train_passes(int(options.get("epochs", 50)), images)))
    return out
