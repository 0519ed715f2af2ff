import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGIN = ROOT / "examples" / "kddbench-example-plugin" / "kddbench_example" / "plugin.py"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own artifact cache and data root, and the default registry."""
    monkeypatch.setenv("KDDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KDDBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("KDDBENCH_DOWNLOAD", raising=False)
    monkeypatch.delenv("KDDBENCH_PLUGINS", raising=False)
    import torch

    torch.set_num_threads(1)  # tiny tensors: threading overhead dominates (10x slower on load)
    from kddbench import plugins

    plugins.configure()
    yield
    plugins.configure()


@pytest.fixture
def cli(capsys):
    """Run the real command line in-process: ``code, out, err = cli("run", ...)``."""
    from kddbench.cli import main

    def invoke(*args):
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        from kddbench import plugins

        plugins.configure()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def registry():
    from kddbench.plugins import get_registry

    return get_registry()


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY_SUITE = """
[suite]
name = "tiny"
budget = "toy data, 3 epochs"

[protocols.quick]
epochs = 3
batch_size = 32

[[experiments]]
name = "toy"
task = "condense"
dataset = "toy"
method = ["full", "random", "average"]
ipc = [2, 5]
eval_arch = "convnet"
protocol = "quick"
seeds = [0, 1]

  [experiments.options.convnet]
  depth = 1
  width = 8

[[tables]]
name = "main"
rows = ["method"]
columns = ["ipc"]
metric = "accuracy"
"""
sys.path.insert(0, str(Path(__file__).parent))


def toy_dm_suite(path: Path, name: str, dm_options: str, seeds: int = 1) -> Path:
    """A one-experiment suite: DM at IPC 1 on the toy data, evaluated by an MLP for 1 epoch;
    ``dm_options`` is the inline table's body (``"iterations = 4"``)."""
    return write_suite(path, f"""
[suite]
name = "{name}"
budget = "toy data"

[protocols.quick]
epochs = 1

[[experiments]]
name = "e"
task = "condense"
dataset = "toy"
method = "dm"
ipc = 1
eval_arch = "mlp"
protocol = "quick"
seeds = {seeds}
options = {{ dm = {{ {dm_options} }} }}
""")
