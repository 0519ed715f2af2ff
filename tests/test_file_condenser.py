"""The ``file`` condenser: a condensed set written by another program is evaluated by a suite
and appears in a leaderboard; every mismatch with the data set is a one-line error."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import write_suite
from kddbench.errors import KddbenchError
from kddbench_plugins.condensation.from_file import load_set

CLASSES, SIZE = 10, 8  # scikit-learn's digits


def _data():
    x = torch.zeros(20, 1, SIZE, SIZE)
    return SimpleNamespace(x_train=x, num_classes=CLASSES, mean=[0.3], std=[0.4],
                           name="digits")


def _request(ipc=2):
    return SimpleNamespace(data=_data(), ipc=ipc)


def _raw_set(ipc=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(CLASSES * ipc, 1, SIZE, SIZE, generator=g)
    labels = torch.arange(CLASSES).repeat_interleave(ipc)
    return images, labels


def test_a_pt_set_written_elsewhere_is_evaluated_and_reported(tmp_path, cli):
    images, labels = _raw_set()
    path = tmp_path / "released_set.pt"
    torch.save({"images": images, "labels": labels, "lr": torch.tensor(0.02)}, path)
    suite = write_suite(tmp_path / "s.toml", f"""
[suite]
name = "fileset"
budget = "digits, 2 epochs"

[protocols.quick]
epochs = 2
batch_size = 32

[[experiments]]
name = "theirs"
task = "condense"
dataset = "digits"
method = ["file", "random"]
ipc = 2
eval_arch = "mlp[width=16]"
protocol = "quick"

  [experiments.options.file]
  path = "{path}"

[[tables]]
name = "main"
rows = ["method"]
columns = ["ipc"]
""")
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--jobs", "1")
    assert code == 0, out + err
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    row = next(line for line in board.splitlines() if line.startswith("| file"))
    assert "(n=1)" in row


def test_npz_nhwc_uint8_and_soft_labels_load():
    images, labels = _raw_set()
    u8 = (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    soft = torch.nn.functional.one_hot(labels, CLASSES).float().numpy() * 0.9 + 0.01
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "set.npz"
        np.savez(path, images=u8, labels=soft)
        syn = load_set(_request(), path=str(path), layout="NHWC")
    assert syn.images.shape == (20, 1, SIZE, SIZE) and syn.labels.shape == (20, CLASSES)
    assert torch.allclose(syn.images, (images - 0.3) / 0.4, atol=1 / 255 / 0.4)
    assert syn.info["sha256"] and syn.lr is None


@pytest.mark.parametrize("case, message", [
    ("shape", "images of shape"),
    ("classes", "labels in"),
    ("dtype", "hard labels must be integers"),
    ("normalised_as_raw", "not raw pixels"),
    ("raw_as_normalised", "as raw pixels do"),
    ("missing_key", "has no 'labels'"),
    ("ipc", "per-class image counts"),
    ("corrupt", "unreadable as tensors"),
    ("not_dict", "expected a dict of tensors"),
    ("pinned", "changed: sha256"),
    ("soft_rows", "distribution"),
])
def test_every_mismatch_is_one_line(tmp_path, case, message):
    images, labels = _raw_set()
    kwargs = {}
    content = {"images": images, "labels": labels}
    if case == "shape":
        content["images"] = torch.rand(20, 3, SIZE, SIZE)
    elif case == "classes":
        content["labels"] = labels + 1
    elif case == "dtype":
        content["labels"] = labels.float()
    elif case == "normalised_as_raw":
        content["images"] = images * 4 - 2
    elif case == "raw_as_normalised":
        kwargs["normalization"] = "dataset"
    elif case == "missing_key":
        del content["labels"]
    elif case == "pinned":
        kwargs["sha256"] = "0" * 64
    elif case == "soft_rows":
        content["labels"] = torch.rand(20, CLASSES) * 3
    path = tmp_path / "set.pt"
    if case == "corrupt":
        path.write_bytes(b"\x80\x04garbage" * 10)
    elif case == "not_dict":
        torch.save([images, labels], path)
    else:
        torch.save(content, path)
    with pytest.raises(KddbenchError) as err:
        load_set(_request(ipc=3 if case == "ipc" else 2), path=str(path), **kwargs)
    text = str(err.value)
    assert message in text and "\n" not in text, text


def test_no_path_and_missing_file_are_explained(tmp_path):
    with pytest.raises(KddbenchError, match="needs options.file.path"):
        load_set(_request())
    with pytest.raises(KddbenchError, match="not found"):
        load_set(_request(), path=str(tmp_path / "nope.pt"))
