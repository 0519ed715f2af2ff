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


# ---- stand-ins in each data set's real on-disk format, read by the real loaders ----------
from kddbench_plugins.datasets import standins  # noqa: E402

STANDIN = {"mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10),
           "usps": ((1, 16, 16), 10), "cifar10": ((3, 32, 32), 10),
           "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10),
           "mhist": ((3, 224, 224), 2)}


@pytest.mark.parametrize("name", sorted(STANDIN))
def test_loaders_read_standins_in_the_real_format(name, tmp_path):
    shape, classes = STANDIN[name]
    standins.write_standin(name, tmp_path, per_class=3, seed=1)
    d = _load(name, tmp_path)
    assert d.num_classes == classes and d.x_train.shape == (3 * classes, *shape)
    assert d.x_test.shape == (3 * classes, *shape)
    assert torch.bincount(d.y_train, minlength=classes).tolist() == [3] * classes
    assert torch.bincount(d.y_test, minlength=classes).tolist() == [3] * classes
    assert "stand-in" in d.notes
    # normalised with the data set's mean/std: undoing it gives pixels in [0, 1]
    mean = torch.tensor(d.mean).view(1, -1, 1, 1)
    std = torch.tensor(d.std).view(1, -1, 1, 1)
    raw = d.x_train * std + mean
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5
    assert float(d.x_train.mean().abs()) < 3  # normalised, not raw bytes
    again = _load(name, tmp_path)
    assert again.fingerprint() == d.fingerprint()


def test_standin_arrays_match_torchvisions_own_readers(tmp_path):
    """MNIST and USPS: torchvision reads the stand-ins offline; our loaders give its arrays."""
    import torchvision.datasets as tvd

    for name in ("mnist", "usps"):
        standins.write_standin(name, tmp_path, per_class=2)
    ours = _load("mnist", tmp_path)
    theirs = tvd.MNIST(str(tmp_path), train=True)
    pixels = (ours.x_train[:, 0] * 0.3081 + 0.1307).mul(255).round().to(torch.uint8)
    assert torch.equal(pixels, theirs.data) and ours.y_train.tolist() == theirs.targets.tolist()
    ours = _load("usps", tmp_path)
    theirs = tvd.USPS(str(tmp_path / "usps"), train=False)
    pixels = (ours.x_test[:, 0] * ours.std[0] + ours.mean[0]).mul(255).round().to(torch.uint8)
    assert pixels.numpy().tolist() == theirs.data.tolist()
    assert ours.y_test.tolist() == list(theirs.targets)


def test_mnist_reads_the_published_gz_files_offline(tmp_path):
    import gzip

    raw = standins.write_standin("mnist", tmp_path, per_class=2)
    plain = _load("mnist", tmp_path)
    for f in list(raw.glob("*-ubyte")):
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    assert _load("mnist", tmp_path).fingerprint() == plain.fingerprint()


# a damaged file: which one, and what to do, in one line (the CLI prints it without traceback)
CORRUPT = {"mnist": "MNIST/raw/train-images-idx3-ubyte", "usps": "usps/usps.t.bz2",
           "cifar10": "cifar-10-batches-py/data_batch_1", "cifar100": "cifar-100-python/meta",
           "svhn": "svhn/test_32x32.mat", "mhist": "mhist/images/MHIST_001.png",
           "fashion-mnist": "FashionMNIST/raw/t10k-labels-idx1-ubyte"}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_truncated_file_is_one_line_naming_it(name, tmp_path):
    standins.write_standin(name, tmp_path, per_class=2)
    path = tmp_path / CORRUPT[name]
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
    with pytest.raises(DataMissingError) as err:
        _load(name, tmp_path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "--download" in text


def test_real_cifar_files_must_match_the_published_checksums(tmp_path, monkeypatch):
    """A copy without the stand-in marker is checked like torchvision checks it; the documented
    switch reads a local copy as it is."""
    folder = standins.write_standin("cifar10", tmp_path, per_class=2)
    (folder / standins.MARKER).unlink()
    with pytest.raises(DataMissingError) as err:
        _load("cifar10", tmp_path)
    assert "md5" in str(err.value) and "KDDBENCH_TRUST_LOCAL_DATA" in str(err.value)
    monkeypatch.setenv("KDDBENCH_TRUST_LOCAL_DATA", "1")
    assert len(_load("cifar10", tmp_path).x_train) == 20


@pytest.mark.parametrize("name,cls_name", [("mnist", "MNIST"), ("cifar10", "CIFAR10"),
                                           ("svhn", "SVHN"), ("usps", "USPS")])
def test_download_goes_through_torchvision(name, cls_name, tmp_path, monkeypatch):
    """With download allowed, missing files are fetched by torchvision's downloader (here a
    fake that writes stand-ins where torchvision would), then read."""
    import torchvision.datasets as tvd

    calls = []

    class Fake:
        def __init__(self, root, download=False, **kw):
            calls.append((root, download, kw))
            standins.write_standin(name, tmp_path, per_class=2)

    monkeypatch.setattr(tvd, cls_name, type(cls_name, (Fake,), {
        k: getattr(getattr(tvd, cls_name), k) for k in ("train_list", "test_list", "meta",
                                                         "split_list")
        if hasattr(getattr(tvd, cls_name), k)}))
    spec = REG.get("dataset", name)
    d = spec.load()(tmp_path, True)
    assert calls and all(download for _root, download, _kw in calls)
    assert d.num_classes == 10 and len(d.x_train) == 20


def test_corrupt_data_is_one_line_from_the_cli(tmp_path, cli):
    folder = standins.write_standin("cifar10", tmp_path / "data", per_class=2)
    (folder / "test_batch").write_bytes(b"not a pickle")
    suite = tmp_path / "s.toml"
    suite.write_text('[[experiments]]\nname = "e"\ntask = "condense"\ndataset = "cifar10"\n'
                     'method = "random"\nipc = 1\neval_arch = "mlp"\nrecipe = { epochs = 1 }\n')
    code, out, err = cli("run", suite, "--out", tmp_path / "o", "--jobs", "1", "--no-progress",
                         "--data-root", tmp_path / "data")
    assert "Traceback" not in err
    from kddbench import load_results

    message = load_results(tmp_path / "o")["error"].iloc[0]
    assert "test_batch" in message and "--download" in message
