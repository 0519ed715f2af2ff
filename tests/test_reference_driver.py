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


def _laid_out(tmp_path, files: dict):
    """Write a stand-in reference's ``files`` ({relative path: text}) under ``tmp_path``; yield
    it; then forget the modules it imported and its place on ``sys.path``."""
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    tops = {Path(rel).parts[0].removesuffix(".py") for rel in files}
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in tops]:
        sys.modules.pop(name)
    if str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


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

class ParamDiffAug:
    pass

def DiffAugment(x, strategy="", seed=-1, param=None):
    CALLS.append("augment")
    return x.flip(3)

def match_loss(gw_syn, gw_real, args):
    CALLS.append("match")
    total = 0.0
    for r, s in zip(gw_real, gw_syn):
        if r.dim() > 1:
            r, s = r.reshape(r.shape[0], -1), s.reshape(s.shape[0], -1)
            total = total + (1 - (r * s).sum(1) / (r.norm(dim=1) * s.norm(dim=1) + 1e-6)).sum()
    return total

CALLS = []
'''


@pytest.fixture
def stand_in(tmp_path):
    yield from _laid_out(tmp_path, {"utils.py": STAND_IN})


def _run(driver, tmp_path, argv) -> dict:
    """``reference_driver.py ARGV --json FILE``: exit 0, and the result it wrote."""
    out = tmp_path / "r.json"
    assert driver.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


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
    result = _run(driver, tmp_path, [workload, "--reference", str(stand_in), "--images", "8",
                                     "--epochs", "1", "--rounds", "2"])
    assert "our speed-up" in capsys.readouterr().out
    assert result["rounds"] == 2 and result["ours_s"]["best"] > 0
    assert sys.modules["utils"].CALLS == [mode] * 3  # warm-up + 2 rounds


@pytest.mark.parametrize("workload, call", [("dsa_augment", "augment"),
                                            ("dc_match_loss", "match")])
def test_the_condensation_parts_against_a_stand_in(driver, stand_in, capsys, tmp_path,
                                                   workload, call):
    result = _run(driver, tmp_path, [workload, "--reference", str(stand_in), "--images", "4",
                                     "--epochs", "2", "--rounds", "1"])
    capsys.readouterr()
    calls = sys.modules["utils"].CALLS
    if workload == "dc_match_loss":  # the same distance on both sides, up to the 1e-6
        assert result["agreement"]["distance_rel_diff"] < 1e-4
        calls = calls[1:]  # the agreement check's own call
    assert calls == [call] * 4  # (warm-up + 1 round) x 2 epochs


MTT_STAND_IN = '''
import torch
from torch import nn

def get_network(model, channel, num_classes, im_size=(32, 32), dist=True):
    assert model == "ConvNet" and not dist
    layers, c = [], channel
    for _ in range(WIDTHS):
        layers += [nn.Conv2d(c, 128, 3, padding=1), nn.GroupNorm(128, 128), nn.ReLU(),
                   nn.AvgPool2d(2)]
        c = 128
    side = im_size[0] // 2 ** WIDTHS
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * side * side, num_classes))

class ParamDiffAug:
    pass

def DiffAugment(x, strategy="", seed=-1, param=None):
    CALLS.append(strategy)
    return x

CALLS = []
WIDTHS = 3
'''

REPARAM_STAND_IN = '''
import torch

class ReparamModule(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module
        named = list(module.named_parameters())
        self._names = [n for n, _ in named]
        self._param_shapes = [p.shape for _, p in named]
    def forward(self, x, flat_param=None):
        sizes = [s.numel() for s in self._param_shapes]
        views = [t.view(s) for t, s in zip(flat_param.split(sizes), self._param_shapes)]
        return torch.func.functional_call(self.module, dict(zip(self._names, views)), (x,))
'''


@pytest.fixture
def mtt_stand_in(tmp_path):
    yield from _laid_out(tmp_path, {"utils.py": MTT_STAND_IN,
                                    "reparam_module.py": REPARAM_STAND_IN})


def _unroll_agreement(driver, stand_in, capsys, tmp_path, workload) -> dict:
    """A tiny timed run of an unroll workload (4 images, 2 steps, 1 round): its agreement."""
    result = _run(driver, tmp_path, [workload, "--reference", str(stand_in), "--images", "4",
                                     "--syn-steps", "2", "--rounds", "1"])
    assert "agreement of ours and theirs" in capsys.readouterr().out
    assert result["syn_steps"] == 2
    return result["agreement"]


@pytest.fixture
def pad_stand_in(tmp_path):
    """PAD's layout: reparam_module.py at the root, its helpers in utils/utils_baseline.py."""
    yield from _laid_out(tmp_path, {"utils/utils_baseline.py": MTT_STAND_IN,
                                    "reparam_module.py": REPARAM_STAND_IN})


@pytest.mark.parametrize("workload, stand_in, helpers", [
    ("mtt_unroll", "mtt_stand_in", "utils"),
    ("mtt_unroll_constant", "mtt_stand_in", "utils"),
    ("pad_unroll", "pad_stand_in", "_reference_utils_utils_baseline"),
    ("pad_unroll_constant", "pad_stand_in", "_reference_utils_utils_baseline")])
def test_unroll_workloads_check_agreement_then_time(driver, request, capsys, tmp_path,
                                                    workload, stand_in, helpers):
    agreement = _unroll_agreement(driver, request.getfixturevalue(stand_in), capsys, tmp_path,
                                  workload)
    # the same network and parameters on both sides (for PAD: the soft labels and the
    # deep-layer mask too): the same loss and gradients
    assert agreement["loss_rel_diff_full"] < 1e-5
    assert agreement["image_grad_rel_diff_constant"] < 1e-3
    if workload.startswith("pad"):
        assert agreement["label_grad_rel_diff_full"] < 1e-4
    # DSA on their side in the timed calls (warm-up + 1 round), none in the check
    assert sys.modules[helpers].CALLS == ["color_crop_cutout_flip_scale_rotate"] * 4


def test_pad_workload_agrees_exactly_in_float64(driver, pad_stand_in, capsys, tmp_path):
    result = _run(driver, tmp_path, ["pad_unroll", "--reference", str(pad_stand_in), "--images",
                                     "4", "--syn-steps", "2", "--check-only", "--dtype",
                                     "float64"])
    assert max(v for k, v in result["agreement"].items() if "rel_diff" in k) < 1e-12


def test_mtt_workload_refuses_a_different_network(driver, mtt_stand_in, capsys):
    text = (mtt_stand_in / "utils.py").read_text().replace("WIDTHS = 3", "WIDTHS = 2")
    (mtt_stand_in / "utils.py").write_text(text)
    assert driver.main(["mtt_unroll", "--reference", str(mtt_stand_in), "--images", "2",
                        "--syn-steps", "1", "--rounds", "1"]) == 2
    assert "differ from ours" in _err(capsys)


def test_syn_steps_must_be_positive(driver, mtt_stand_in, capsys):
    assert driver.main(["mtt_unroll", "--reference", str(mtt_stand_in), "--syn-steps",
                        "0"]) == 2
    assert "--syn-steps" in _err(capsys)


MATCHING_UTILS = '''
import torch
from torch import nn

class ConvNet(nn.Module):
    """Three conv blocks and a linear head; ``embed`` is the flattened features."""
    def __init__(self, channel, num_classes, net_width=128, net_depth=3, net_act="relu",
                 net_norm="instancenorm", net_pooling="avgpooling", im_size=(32, 32)):
        super().__init__()
        layers, c, side = [], channel, im_size[0]
        for _ in range(net_depth):
            norm = (nn.BatchNorm2d(net_width) if net_norm == "batchnorm"
                    else nn.GroupNorm(net_width, net_width, affine=True))
            layers += [nn.Conv2d(c, net_width, 3, padding=1), norm, nn.ReLU(inplace=True)]
            if net_pooling == "avgpooling":
                layers.append(nn.AvgPool2d(2))
                side //= 2
            c = net_width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(net_width * side * side * WIDE, num_classes)
    def embed(self, x):
        return self.features(x).flatten(1)
    def forward(self, x):  # as DataDAM's: the embedding first
        emb = self.embed(x)
        return emb, self.classifier(emb)

def get_network(model, channel, num_classes, im_size=(32, 32)):
    assert model == "ConvNet"
    return ConvNet(channel, num_classes, im_size=im_size)

class ParamDiffAug:
    pass

def DiffAugment(x, strategy="", seed=-1, param=None):
    CALLS.append(seed >= 0)
    return x.flip(3)

def get_attention(feature_set, param=0, exp=4, norm="l2"):
    assert param == 1 and norm == "l2"
    a = feature_set.abs().pow(exp).sum(1).reshape(feature_set.shape[0], -1)
    return torch.nn.functional.normalize(a, p=2.0)

CALLS = []
WIDE = 1
'''


@pytest.fixture
def matching_stand_in(tmp_path):
    yield from _laid_out(tmp_path, {"utils.py": MATCHING_UTILS,
                                    "networks.py": "from utils import ConvNet\n"})


@pytest.mark.parametrize("workload", ["dm_iteration", "datadam_iteration"])
def test_matching_workloads_check_agreement_then_time(driver, matching_stand_in, capsys,
                                                      tmp_path, workload):
    result = _run(driver, tmp_path, [workload, "--reference", str(matching_stand_in),
                                     "--images", "2", "--rounds", "1"])
    assert "agreement of ours and theirs" in capsys.readouterr().out
    agreement = result["agreement"]
    assert agreement["loss_rel_diff"] < 1e-5 and agreement["image_grad_rel_diff"] < 1e-4
    # their DSA, one seeded draw for each class's real and synthetic images, in the timed
    # calls only (warm-up + 1 round)
    assert sys.modules["utils"].CALLS == [True] * 2 * 10 * 2


@pytest.mark.parametrize("workload", ["dm_iteration", "datadam_iteration"])
def test_matching_workloads_refuse_a_different_network(driver, matching_stand_in, capsys,
                                                       workload):
    text = (matching_stand_in / "utils.py").read_text().replace("WIDE = 1", "WIDE = 2")
    (matching_stand_in / "utils.py").write_text(text)
    assert driver.main([workload, "--reference", str(matching_stand_in), "--images", "1",
                        "--rounds", "1"]) == 2
    assert "differ from ours" in _err(capsys)


DDWANG_NETWORKS = '''
import torch
from torch import nn

class LeNet(nn.Module):
    def __init__(self, state):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, state.num_classes * WIDE))
        named = list(self.net.named_parameters())
        self._names = [n for n, _ in named]
        self._weights_shapes = [p.shape for _, p in named]
        self.flat_w = nn.Parameter(torch.cat([p.detach().reshape(-1) for _, p in named]))
    def get_param(self):
        return self.flat_w
    def forward_with_param(self, x, w):
        sizes = [s.numel() for s in self._weights_shapes]
        views = [t.view(s) for t, s in zip(w.split(sizes), self._weights_shapes)]
        return torch.func.functional_call(self.net, dict(zip(self._names, views)), (x,))

WIDE = 1
'''

DDWANG_TRAINER = '''
import torch
import torch.nn.functional as F

class Trainer:
    """Plain autograd through the unrolled steps (the real one saves memory by hand)."""
    def __init__(self, state, models):
        self.state, self.models = state, models
        n = state.num_classes
        self.data = [torch.randn(n, 1, 28, 28, requires_grad=True)
                     for _ in range(state.distill_steps)]
        self.labels = [torch.arange(n) for _ in range(state.distill_steps)]
        T = state.distill_steps * state.distill_epochs
        self.raw_distill_lrs = torch.full((T, 1), state.distill_lr).expm1().log() \\
            .requires_grad_()
        self.params = self.data + [self.raw_distill_lrs]
        for p in self.params:
            p.grad = torch.zeros_like(p)
    def get_steps(self):
        lrs = F.softplus(self.raw_distill_lrs).unbind()
        pairs = [p for _ in range(self.state.distill_epochs) for p in zip(self.data, self.labels)]
        return [(d, l, lr) for (d, l), lr in zip(pairs, lrs)]
    def forward(self, model, rdata, rlabel, steps):
        w = model.get_param()
        for d, l, lr in steps:
            (g,) = torch.autograd.grad(F.cross_entropy(model.forward_with_param(d, w), l), w,
                                       create_graph=True)
            w = w - lr.squeeze() * g
        loss = F.cross_entropy(model.forward_with_param(rdata, w), rlabel)
        return loss, loss
    def backward(self, model, rdata, rlabel, steps, saved):
        CALLS.append("backward")
        return torch.autograd.grad(saved, self.params)
    def accumulate_grad(self, grad_infos):
        for grads in grad_infos:
            for p, g in zip(self.params, grads):
                p.grad.add_(g)

CALLS = []
'''


@pytest.fixture
def ddwang_stand_in(tmp_path):
    yield from _laid_out(tmp_path, {"networks.py": DDWANG_NETWORKS,
                                    "train_distilled_image.py": DDWANG_TRAINER})


def test_ddwang_workload_checks_agreement_then_times(driver, ddwang_stand_in, capsys, tmp_path):
    result = _run(driver, tmp_path, ["ddwang_iteration", "--reference", str(ddwang_stand_in),
                                     "--images", "16", "--epochs", "1", "--syn-steps", "2",
                                     "--rounds", "1"])
    capsys.readouterr()
    agreement = result["agreement"]
    assert agreement["loss_rel_diff"] < 1e-5
    assert agreement["image_grad_rel_diff"] < 1e-4
    assert agreement["step_size_grad_rel_diff"] < 1e-4
    assert sys.modules["train_distilled_image"].CALLS == ["backward"] * 3  # check, warm-up, 1


def test_ddwang_workload_refuses_a_different_network(driver, ddwang_stand_in, capsys):
    text = (ddwang_stand_in / "networks.py").read_text().replace("WIDE = 1", "WIDE = 2")
    (ddwang_stand_in / "networks.py").write_text(text)
    assert driver.main(["ddwang_iteration", "--reference", str(ddwang_stand_in), "--images",
                        "4", "--epochs", "1", "--syn-steps", "1", "--rounds", "1"]) == 2
    assert "differ from ours" in _err(capsys)


def test_check_only_runs_the_agreement_check_and_times_nothing(driver, mtt_stand_in, capsys,
                                                              tmp_path):
    result = _run(driver, tmp_path, ["mtt_unroll", "--reference", str(mtt_stand_in),
                                     "--images", "4", "--syn-steps", "2", "--check-only",
                                     "--dtype", "float64"])
    assert result["dtype"] == "float64" and "ours_s" not in result
    assert result["agreement"]["image_grad_rel_diff_full"] < 1e-12  # float64: exact
    assert sys.modules["utils"].CALLS == []  # no timed call, so no augmentation
    import torch

    assert torch.get_default_dtype() == torch.float32  # restored for the rest of the process


def test_check_only_on_a_workload_without_a_check_fails(driver, stand_in, capsys):
    assert driver.main(["dd_eval_train", "--reference", str(stand_in), "--images", "4",
                        "--epochs", "1", "--check-only"]) == 2
    assert "no agreement check" in _err(capsys)


KD_STAND_INS = {  # one module per loss, as the code base lays them out; a few lines of ours
    "KD": '''
import torch.nn.functional as F

def kd_loss(logits_student, logits_teacher, temperature):
    CALLS.append("kd")
    p = F.softmax(logits_teacher / temperature, 1)
    log_q = F.log_softmax(logits_student / temperature, 1)
    return (p * (p.log() - log_q)).sum(1).mean() * temperature ** 2

CALLS = []
''',
    "DKD": "def dkd_loss(s, t, target, alpha, beta, temperature):\n"
           "    return (s - t).pow(2).mean()\n",
    "AT": "def at_loss(g_s, g_t, p):\n"
          "    return sum((a - b).pow(2).mean() for a, b in zip(g_s, g_t))\n",
    "RKD": "def rkd_loss(f_s, f_t, squared, eps, dw, aw):\n"
           "    return (f_s - f_t).abs().mean()\n",
}


@pytest.fixture
def kd_stand_in(tmp_path):
    files = {"mdistiller/__init__.py": "", "mdistiller/distillers/__init__.py": ""}
    files.update({f"mdistiller/distillers/{name}.py": text
                  for name, text in KD_STAND_INS.items()})
    yield from _laid_out(tmp_path, files)


def test_kd_losses_workload_compares_each_loss_then_times(driver, kd_stand_in, capsys, tmp_path):
    result = _run(driver, tmp_path, ["kd_losses", "--reference", str(kd_stand_in), "--images",
                                     "6", "--epochs", "2", "--rounds", "1"])
    agreement = result["agreement"]
    assert set(agreement) == {"response_rel_diff", "dkd_rel_diff", "attention_rel_diff",
                              "relational_rel_diff"}
    assert agreement["response_rel_diff"] < 1e-5  # the stand-in's KL is Hinton's
    assert agreement["relational_rel_diff"] > 1e-3  # its placeholder is not relational KD
    # the check once, then (warm-up + 1 round) x 2 epochs
    assert sys.modules["mdistiller.distillers.KD"].CALLS == ["kd"] * 5
