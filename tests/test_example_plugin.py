"""The example third-party package, installed with pip, adds a condenser, a KD loss, an
augmentation and a task with its own report section; a suite using all four runs and reports,
and the package's own tests run kddbench's conformance kit on its entries."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "examples" / "kddbench-example-plugin"
KDDBENCH = [sys.executable, "-c", "from kddbench.cli import main; main()"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install`` of the example package into a folder of its own (the test leaves the
    environment as it found it)."""
    import shutil

    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "pkg"  # build a copy: nothing written here
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get(
        "PYTHONPATH", "")])}
    return env


def _run(args, env, cwd, timeout=600):
    return subprocess.run(KDDBENCH + [str(a) for a in args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.mark.slow
def test_installed_package_adds_four_extension_points(installed, tmp_path):
    env = {**installed, "KDDBENCH_CACHE": str(tmp_path / "cache")}
    listing = _run(["list"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name in ("first-k", "logit-mse", "gauss-noise", "centroid", "centroid_summary"):
        assert name in listing.stdout, name
    out = tmp_path / "report"
    done = _run(["run", PACKAGE / "suite.toml", "--out", out, "--jobs", "1"], env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (out / "leaderboard.md").read_text()
    assert "## Best method by nearest-centroid accuracy" in text  # the plugin's own section
    for row in ("first-k", "logit-mse"):
        assert row in text
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all() and len(df) == 2 + 3 + 4
    assert set(df["task"]) == {"condense", "kd", "centroid"}


@pytest.mark.slow
def test_the_packages_own_tests_run_the_conformance_kit(installed):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, env=installed, cwd=PACKAGE,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    # one test per entry the package registers
    assert "5 passed" in done.stdout, done.stdout[-1500:]


def test_the_kit_fails_when_it_finds_nothing_to_check(tmp_path):
    (tmp_path / "test_kit.py").write_text(
        "from kddbench.testing import test_plugin_conforms  # noqa: F401\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_kit.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "no kddbench plugin named" in done.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--kddbench-conformance", "no-such-plugin",
                           str(tmp_path / "test_kit.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "registered no spec" in done.stdout
