"""Training throughput of the shared protocol against a bare torch loop on the same tensors.

    python -m pytest benchmarks/bench_protocol.py --benchmark-enable

Both loops train a fresh ConvNet-3 on the same 512 MNIST-shaped images; the ratio printed at
the end is the framework's overhead (100% = none).  Absolute images/s move between machines, so
only the ratio, measured in one run, is meaningful.
"""
import pytest
import torch

from kddbench.bench import bare_loop
from kddbench.plugins import get_registry
from kddbench.protocol import Recipe, make_generator, seeded, train

N = 512
RESULTS = {}


@pytest.fixture(scope="module")
def tensors():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 1, 28, 28, generator=g), torch.randint(0, 10, (N,), generator=g)


def _net():
    spec = get_registry().get("architecture", "convnet3")
    with seeded(0):
        return spec.load()(1, 10, (28, 28), **spec.resolve_options(None))


RECIPE = Recipe(epochs=1, schedule="constant")


def test_bare_torch_loop(benchmark, tensors):
    x, y = tensors
    benchmark.pedantic(lambda: bare_loop(_net(), x, y, RECIPE, 0), rounds=3, iterations=1)
    RESULTS["bare"] = N / benchmark.stats.stats.min


def test_protocol_train(benchmark, tensors):
    x, y = tensors
    benchmark.pedantic(lambda: train(_net(), x, y, RECIPE, make_generator(0)), rounds=3,
                       iterations=1)
    RESULTS["protocol"] = N / benchmark.stats.stats.min
    if "bare" in RESULTS:
        print(f"\nprotocol {RESULTS['protocol']:.0f} img/s, bare loop {RESULTS['bare']:.0f} img/s:"
              f" protocol/bare = {100 * RESULTS['protocol'] / RESULTS['bare']:.0f}%")
