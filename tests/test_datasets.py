"""Data set plugins: offline ones load for real; missing ones say how to get them."""
from pathlib import Path

import pytest
import torch

from kddbench.errors import DataMissingError
from kddbench.plugins import build_registry

REG = build_registry()
OFFLINE = [n for n in REG.names("dataset") if REG.specs["dataset"][n].offline]
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _load(name, tmp_path, **options):
    spec = REG.get("dataset", name)
    return spec.load()(tmp_path, False, **spec.resolve_options(options))


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_dataset_conformance(name, tmp_path):
    d = _load(name, tmp_path)
    assert d.x_train.dim() == 4 and d.x_train.dtype == torch.float32
    assert d.x_train.shape[1:] == d.x_test.shape[1:]
    assert d.y_train.dtype == torch.int64 and len(d.y_train) == len(d.x_train)
    assert set(d.y_train.unique().tolist()) == set(range(d.num_classes))
    assert len(d.mean) == len(d.std) == d.channels
    assert len(d.fingerprint()) == 16 and d.fingerprint() == _load(name, tmp_path).fingerprint()


def test_mnist_5k_split_is_documented_one(tmp_path):
    d = _load("mnist-5k", tmp_path)
    assert len(d.x_train) == 4000 and len(d.x_test) == 1000
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    assert d.x_train.shape[1:] == (1, 28, 28)
    # normalised with the MNIST constants: the raw mean is near 0.13
    raw = d.x_train * 0.3081 + 0.1307
    assert 0.0 <= float(raw.min()) and float(raw.max()) <= 1.0 + 1e-5


def test_toy_options_change_the_data(tmp_path):
    a = _load("toy", tmp_path)
    b = _load("toy", tmp_path, classes=3, size=6)
    assert a.num_classes == 4 and b.num_classes == 3 and b.image_size == (6, 6)
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.skipif(not DEBIAN_FMNIST.exists(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_found_in_the_debian_package(tmp_path):
    d = _load("fashion-mnist", tmp_path)
    assert len(d.x_train) == 60000 and len(d.x_test) == 10000
    assert "fashion-mnist" in d.notes or "/usr/share" in d.notes


@pytest.mark.parametrize("name", ["mnist", "usps", "cifar10", "cifar100", "svhn", "mhist"])
def test_missing_data_says_how_to_get_it(name, tmp_path):
    with pytest.raises(DataMissingError) as err:
        _load(name, tmp_path / "empty")
    text = str(err.value)
    if name == "mhist":
        assert "data-use agreement" in text
    else:
        assert "--download" in text and "--data-root" in text and "KDDBENCH_DATA" in text


def test_missing_data_fails_the_cell_not_the_run(tmp_path, cli):
    suite = tmp_path / "s.toml"
    suite.write_text("""
[[experiments]]
name = "needs-download"
task = "condense"
dataset = "cifar10"
method = "random"
ipc = 1
eval_arch = "mlp"

[[experiments]]
name = "offline"
task = "condense"
dataset = "toy"
method = "random"
ipc = 1
eval_arch = "mlp"
recipe = { epochs = 1 }
""")
    code, out, err = cli("run", suite, "--out", tmp_path / "o", "--jobs", "1", "--no-progress")
    assert code == 3 and "1 cell(s) failed" in err  # ExitCode.FAILED_CELLS
    from kddbench import load_results

    df = load_results(tmp_path / "o")
    assert sorted(df["status"]) == ["error", "ok"]
    assert "--download" in df.loc[df["status"] == "error", "error"].iloc[0]
