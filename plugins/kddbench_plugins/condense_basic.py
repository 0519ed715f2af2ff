"""The simplest condensers: the whole set, random real images, averaged real images."""
from kddbench import CondenserSpec, hookimpl

_I = "kddbench_plugins.coreset_basic:"


@hookimpl
def kddbench_condensers():
    yield CondenserSpec("full", _I + "full", "the whole real training set (upper bound)",
                        uses_ipc=False, cacheable=False)
    yield CondenserSpec("random", _I + "random", "IPC real images per class drawn at random")
    yield CondenserSpec("average", _I + "average",
                        "seed 000's average real images: each class split at random into IPC "
                        "groups, each group averaged into one image")
