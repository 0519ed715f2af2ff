"""An example third-party plugin: the ``first-k`` condenser keeps the first IPC images of each
class in data-set order (a deterministic baseline).  Install it with
``pip install examples/kddbench-example-plugin`` or load it with
``kddbench --plugin examples/kddbench-example-plugin/kddbench_example/plugin.py run ...``.
"""
from kddbench import CondenserSpec, hookimpl


def first_k(request, stride=1):
    import torch

    picks = [idx[::stride][:request.ipc] for idx in request.data.indices_by_class()]
    idx = torch.cat(picks)
    from kddbench.condense import SyntheticSet

    return SyntheticSet(request.data.x_train[idx].clone(), request.data.y_train[idx].clone())


@hookimpl
def kddbench_condensers():
    yield CondenserSpec("first-k", first_k, "the first IPC images of each class (example plugin)",
                        options={"stride": 1})
