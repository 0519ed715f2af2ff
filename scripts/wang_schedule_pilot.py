"""Choose the outer schedule of Wang et al. 2018's fixed-initialisation experiment on mnist-5k on
a validation split, never on the test set.

    python scripts/wang_schedule_pilot.py ITERATIONS DECAY_EVERY SEEDS     e.g. 6000 2000 0

The distillation sees 3,200 of mnist-5k's 4,000 training images (per class the first 320);
the method's own evaluation (the fixed initial LeNet trained by the learned step sizes on the
10 distilled images) measures the other 800 training images.  One JSON line per seed:
validation accuracy before and after, CPU and wall seconds (one torch thread, as each worker of
``kddbench run --jobs N``).  A seed draws what the ``condense`` task's cell of that seed draws
(the same initial network and starting images).  docs/condense.md gives what it measured (its
first two rows with the generator seeded by the bare seed, before the script drew as the cell
does) and what was chosen.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from kddbench.condense import CondenseRequest
from kddbench.context import derive_seed
from kddbench.data import DataSplits
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator, seeded

VAL_PER_CLASS = 80


def validation_split(data: DataSplits) -> DataSplits:
    """The training images as (train, held-out): per class the last VAL_PER_CLASS held out."""
    held = torch.zeros(len(data.y_train), dtype=torch.bool)
    for c in range(data.num_classes):
        held[torch.nonzero(data.y_train == c).flatten()[-VAL_PER_CLASS:]] = True
    return DataSplits(f"{data.name}-val", data.x_train[~held], data.y_train[~held],
                      data.x_train[held], data.y_train[held], data.classes, data.mean, data.std)


def main(iterations: int, decay_every: int, seeds: list[int]) -> None:
    torch.set_num_threads(1)
    registry = get_registry()
    data = validation_split(registry.get("dataset", "mnist-5k").load()(Path("."), False))
    lenet = registry.get("architecture", "lenet")

    def build(seed: int):
        with seeded(seed):
            return lenet.load()(1, data.num_classes, data.image_size, **lenet.resolve_options({}))

    ddwang = registry.get("condenser", "ddwang").load()
    for seed in seeds:
        cpu, wall = time.process_time(), time.perf_counter()
        stream = derive_seed(seed, "condense")  # what the condense task's cell draws
        request = CondenseRequest(data=data, ipc=1, arch="lenet", build_net=build,
                                  generator=make_generator(stream), device=torch.device("cpu"),
                                  seed=stream)
        out = ddwang(request, iterations=iterations, decay_every=decay_every,
                     init_weights="fixed", checkpoint_every=0)
        print(json.dumps({"iterations": iterations, "decay_every": decay_every, "seed": seed,
                          "val_accuracy": out.info["ddwang_accuracy"],
                          "val_accuracy_before": out.info["ddwang_init_accuracy"],
                          "cpu_s": round(time.process_time() - cpu, 1),
                          "wall_s": round(time.perf_counter() - wall, 1)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(int(sys.argv[1]), int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")])
