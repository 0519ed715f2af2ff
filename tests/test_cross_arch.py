"""The cross_arch task: sets condensed once (by any suite) are evaluated on a pool of
architectures; its section is the methods x architectures matrix with the change from the
distillation architecture."""
import pandas as pd

from conftest import toy_dm_suite, write_suite

HEAD = """
[suite]
name = "{name}"
budget = "toy data, 2 epochs"

[protocols.quick]
epochs = 2
batch_size = 32

[[experiments]]
name = "{name}"
task = "{task}"
dataset = "toy"
method = ["random", "average"]
ipc = 2
{arch}
protocol = "quick"
seeds = 2

  [experiments.options.convnet]
  depth = 1
  width = 8
"""


def test_cross_arch_reuses_stored_sets_and_reports_the_matrix(tmp_path, cli):
    first = write_suite(tmp_path / "a.toml", HEAD.format(
        name="made", task="condense", arch='distill_arch = "convnet"\neval_arch = "convnet"'))
    code, out, err = cli("run", first, "--out", tmp_path / "a", "--jobs", "1")
    assert code == 0, out + err
    second = write_suite(tmp_path / "b.toml", HEAD.format(
        name="pool", task="cross_arch",
        arch='distill_arch = "convnet"\neval_arch = ["convnet", "mlp[width=16]"]'))
    code, out, err = cli("run", second, "--out", tmp_path / "b", "--jobs", "1")
    assert code == 0, out + err
    df = pd.read_csv(tmp_path / "b" / "results.csv")
    assert len(df) == 2 * 2 * 2 and (df["status"] == "ok").all()
    assert (df["set_reused"] == 1).all()  # every set came from the first suite's run
    text = (tmp_path / "b" / "leaderboard.md").read_text()
    assert "## Cross-architecture accuracy (pool)" in text
    assert "†" in text and "Change from it, seed by seed" in text
    # the same convnet cell's accuracy equals the condense suite's (same set, same seed)
    a = pd.read_csv(tmp_path / "a" / "results.csv").set_index(["method", "seed"])["accuracy"]
    b = df[df["eval_arch"] == "convnet"].set_index(["method", "seed"])["accuracy"]
    assert (a.sort_index() == b.sort_index()).all()
    # the pool's sets are declared, so they travel with its report
    code, out, err = cli("release", second, "--out", tmp_path / "b")
    assert code == 0 and "4 released" in out, out + err
    assert len(list((tmp_path / "b" / "artifacts" / "condensed").glob("*.pt"))) == 4


def test_cross_arch_needs_its_distillation_architecture(tmp_path, cli):
    bad = write_suite(tmp_path / "c.toml", HEAD.format(
        name="bad", task="cross_arch", arch='eval_arch = "convnet"'))
    code, out, err = cli("validate", bad)
    assert code == 2 and "distill_arch" in (out + err)


def test_a_set_released_with_one_report_serves_a_suite_beside_it(tmp_path, cli):
    """A fresh machine (empty cache): the pool reads the sets released with the condense
    report next to its own, condenses nothing, and its records name what they used, so the
    evaluations (declared by no task) can be released too."""
    first = write_suite(tmp_path / "a.toml", HEAD.format(
        name="made", task="condense", arch='distill_arch = "convnet"\neval_arch = "convnet"'))
    code, out, err = cli("run", first, "--out", tmp_path / "r" / "made", "--jobs", "1",
                         "--cache-dir", tmp_path / "cache1")
    assert code == 0, out + err
    code, out, err = cli("release", first, "--out", tmp_path / "r" / "made", "--cache-dir",
                         tmp_path / "cache1")
    assert code == 0 and "4 released" in out, out + err
    doctored = {p.name: _doctor(p) for p in (tmp_path / "r" / "made" / "artifacts"
                                             / "condensed").glob("*.pt")}
    second = write_suite(tmp_path / "b.toml", HEAD.format(
        name="pool", task="cross_arch",
        arch='distill_arch = "convnet"\neval_arch = ["convnet", "mlp[width=16]"]'))
    pool = tmp_path / "r" / "pool"
    code, out, err = cli("run", second, "--out", pool, "--jobs", "1",
                         "--cache-dir", tmp_path / "cache2")
    assert code == 0, out + err
    df = pd.read_csv(pool / "results.csv")
    assert len(df) == 8 and (df["set_reused"] == 1).all()
    adopted = {p.name: p.read_bytes()
               for p in (tmp_path / "cache2" / "artifacts" / "condensed").glob("*.pt")}
    assert adopted == doctored  # the released (doctored) sets, not sets condensed anew
    code, out, err = cli("release", second, "--out", pool, "--cache-dir", tmp_path / "cache2",
                         "--kind", "evaluation")
    assert code == 0 and "8 released" in out, out + err
    code, out, err = cli("release", second, "--out", pool, "--cache-dir", tmp_path / "cache2",
                         "--kind", "evalution")
    assert code == 2 and "evaluation" in out + err


def _doctor(path):
    """Rewrite a released set (images all 0.5) with a checksum that holds: a run that reads it
    is told apart from one that condensed the set again."""
    import hashlib
    import io
    import json

    import torch

    value = torch.load(path, weights_only=True)
    value["images"] = torch.full_like(value["images"], 0.5)
    buf = io.BytesIO()
    torch.save(value, buf)
    path.write_bytes(buf.getvalue())
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    return buf.getvalue()


def test_how_often_a_condensation_checkpoints_is_not_part_of_its_set(tmp_path, cli):
    """``checkpoint_every`` (declared ``keyed=False``) changes the cell, not the set: a suite
    that checkpoints less often reads the set another condensed."""
    import json

    def run(name, every):
        suite = toy_dm_suite(tmp_path / f"{name}.toml", name,
                             f"iterations = 4, checkpoint_every = {every}")
        code, out, err = cli("run", suite, "--out", tmp_path / name, "--jobs", "1",
                             "--no-progress", "--cache-dir", tmp_path / "cache")
        assert code == 0, out + err
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / name / "records").glob("*.json")]
        return record

    first, second = run("often", 1), run("seldom", 3)
    assert first["cell_id"] != second["cell_id"]
    sets = [[a for a in r["artifacts"] if a.startswith("condensed/")] for r in (first, second)]
    assert sets[0] == sets[1] and len(sets[0]) == 1
    assert len(list((tmp_path / "cache" / "artifacts" / "condensed").glob("*.pt"))) == 1
