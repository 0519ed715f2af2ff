"""benchmarks/reference_driver.py offline: argument handling, fetching (git faked), importing a
reference from a path, and a tiny timed run against a stand-in reference written here (a few
lines of our own with the same function names, not the reference's code)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("reference_driver",
                                                  ROOT / "benchmarks" / "reference_driver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


STAND_IN = '''
import torch
from torch.utils.data import Dataset

class TensorDataset(Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels
    def __getitem__(self, i):
        return self.images[i], self.labels[i]
    def __len__(self):
        return len(self.labels)

def get_network(model, channel, num_classes, im_size=(32, 32)):
    assert model == "ConvNet"
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channel * im_size[0] * im_size[1], num_classes))

def epoch(mode, dataloader, net, optimizer, criterion, args, aug):
    CALLS.append(mode)
    for x, y in dataloader:
        loss = criterion(net(x.to(args.device)), y.to(args.device))
        if mode == "train":
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    return 0.0, 0.0

CALLS = []
'''


@pytest.fixture
def stand_in(tmp_path):
    (tmp_path / "utils.py").write_text(STAND_IN)
    yield tmp_path
    sys.modules.pop("utils", None)
    if str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


def _err(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_list_names_every_workload_and_the_pinned_commit(driver, capsys):
    assert driver.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, w in driver.WORKLOADS.items():
        assert name in out and w.reference.commit in out


@pytest.mark.parametrize("argv, message", [
    ([], "name a workload"),
    (["nope", "--fetch"], "unknown workload 'nope'"),
    (["dd_eval_train"], "--reference PATH"),
    (["dd_eval_train", "--reference", "/no/such/dir"], "no such folder"),
    (["dd_eval_train", "--reference", ".", "--rounds", "0"], "--rounds"),
])
def test_bad_arguments_are_one_line_and_exit_2(driver, capsys, argv, message):
    assert driver.main(argv) == 2
    assert message in _err(capsys)


def test_a_folder_without_the_module_or_with_a_broken_one(driver, capsys, tmp_path):
    assert driver.main(["dd_eval_train", "--reference", str(tmp_path)]) == 2
    assert "no utils.py" in _err(capsys)
    (tmp_path / "utils.py").write_text("import a_module_nobody_has\n")
    try:
        assert driver.main(["dd_eval_train", "--reference", str(tmp_path)]) == 2
        assert "ModuleNotFoundError" in _err(capsys)
    finally:
        sys.modules.pop("utils", None)


def test_fetch_clones_the_pinned_commit_once(driver, tmp_path):
    calls = []

    def runner(cmd, **kw):
        calls.append(cmd)
        if cmd[1] == "clone":
            (Path(cmd[-1]) / ".git").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    ref = driver.DATASET_CONDENSATION
    path = driver.fetch(ref, tmp_path, runner)
    assert path.parent == tmp_path and ref.commit[:12] in path.name
    assert calls[0][:2] == ["git", "clone"] and ref.url in calls[0]
    assert calls[1][-1] == ref.commit
    assert driver.fetch(ref, tmp_path, runner) == path and len(calls) == 2  # cached


def test_fetch_without_internet_says_what_to_do(driver, tmp_path):
    def offline(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 128, "", "fatal: unable to access: Could not "
                                           "resolve host: github.com")

    with pytest.raises(driver.DriverError, match="resolve host.*--reference PATH"):
        driver.fetch(driver.DATASET_CONDENSATION, tmp_path, offline)


def test_dry_run_imports_the_reference_and_times_nothing(driver, stand_in, capsys):
    assert driver.main(["dd_eval_train", "--reference", str(stand_in), "--dry-run"]) == 0
    assert "would time" in capsys.readouterr().out
    assert sys.modules["utils"].CALLS == []


@pytest.mark.parametrize("workload, mode", [("dd_eval_train", "train"),
                                            ("dd_test_pass", "test")])
def test_a_tiny_interleaved_run_against_a_stand_in(driver, stand_in, capsys, tmp_path,
                                                   workload, mode):
    out = tmp_path / "r.json"
    assert driver.main([workload, "--reference", str(stand_in), "--images", "8", "--epochs",
                        "1", "--rounds", "2", "--json", str(out)]) == 0
    assert "our speed-up" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["rounds"] == 2 and result["ours_s"]["best"] > 0
    assert sys.modules["utils"].CALLS == [mode] * 3  # warm-up + 2 rounds
