"""A tiny condensation suite through the real command line: coreset and synthesising methods,
cached sets, pictures and curves beside the report."""
import json

import torch

from conftest import write_suite

TINY_CONDENSE = """
[suite]
name = "tiny-condense"
budget = "toy data, a few iterations, 3 epochs"

[protocols.quick]
epochs = 3
batch_size = 32
augment = "dsa"

[[experiments]]
name = "toy"
task = "condense"
dataset = "toy"
method = ["random", "herding", "kcenter", "dm", "dm[init=noise]", "dsa"]
ipc = 2
eval_arch = "convnet[depth=1,width=8]"
distill_arch = "convnet[depth=2,width=8]"
protocol = "quick"
seeds = [0]

  [experiments.options.dm]
  iterations = 4
  batch_real = 16

  [experiments.options.dsa]
  iterations = 2
  batch_real = 8
  inner_loop = 1

[[tables]]
name = "main"
rows = ["method"]
columns = ["ipc"]
"""


def test_tiny_condensation_suite_writes_records_pictures_and_curves(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_CONDENSE)
    out = tmp_path / "out"
    code, _, err = cli("run", suite, "--out", out, "--cache-dir", tmp_path / "cache",
                       "--jobs", "1", "--no-progress")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 6 and all(r["status"] == "ok" for r in records), \
        [r.get("error") for r in records]
    by_method = {r["axes"]["method"]: r for r in records}
    assert by_method["dm"]["metrics"]["condense.iterations"] == 4
    assert by_method["dm"]["info"]["condense.init"] == "real"
    assert by_method["dm[init=noise]"]["info"]["condense.init"] == "noise"  # inline option
    pictures = sorted(p.name for p in (out / "pictures").glob("*.png"))
    for method in ("dm", "dsa"):
        for kind in ("init", "final", "curve"):
            assert sum(name.startswith(f"toy_{method}_ipc2_seed0")
                       and name.endswith(f"_{kind}.png") for name in pictures) == 1, pictures
    assert sum(p.startswith("toy_dm-init-noise-_ipc2") for p in pictures) == 3, pictures
    assert not [p for p in pictures if p.startswith(("toy_random", "toy_herding"))]
    assert all((out / "pictures" / p).stat().st_size > 1000 for p in pictures)
    board = (out / "leaderboard.md").read_text()
    assert "| dm" in board and "| herding" in board

    # the condensed sets are cached tensors: a second run into a new report reuses them
    stored = sorted((tmp_path / "cache" / "artifacts" / "condensed").glob("*.pt"))
    assert len(stored) == 6
    data = torch.load(stored[0], weights_only=True)
    assert "images" in data and "labels" in data
    code, _, err = cli("run", suite, "--out", tmp_path / "out2", "--cache-dir",
                       tmp_path / "cache", "--jobs", "1", "--no-progress")
    assert code == 0, err
    again = {json.loads(p.read_text())["axes"]["method"]: json.loads(p.read_text())
             for p in (tmp_path / "out2" / "records").glob("*.json")}
    assert again["dm"]["metrics"]["accuracy"] == by_method["dm"]["metrics"]["accuracy"]
    assert (tmp_path / "out2" / "pictures").is_dir()  # pictures drawn from the cached set
    assert not list((tmp_path / "cache" / "artifacts").glob("checkpoints/*.pt"))
