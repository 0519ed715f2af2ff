"""`kddbench run` refuses bad options in one line with exit 2, with --dry-run as without it:
the dry run is what a user tries first, so it must not accept what the run would refuse."""
import pytest

from conftest import TINY_SUITE, write_suite

BAD = [
    (("--jobs", "0"), "--jobs must be a whole number >= 1"),
    (("--jobs", "-3"), "--jobs must be a whole number >= 1"),
    (("--jobs", "many"), "--jobs must be a whole number >= 1"),
    (("--threads", "0"), "'--threads': 0 is not in the range"),
    (("--smoke-per-class", "0"), "'--smoke-per-class': 0 is not in the range"),
    (("--device", "tpu"), "unknown --device 'tpu'"),
    (("--executor", "process[workers=0]"), "option 'workers': expected int >= 1"),
    (("--executor", "proces"), "did you mean 'process'"),
    (("--only", "tyo"), "unknown experiment 'tyo'; did you mean 'toy'"),
]


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_run_options_are_one_line_and_exit_2(tmp_path, cli, args, message, dry):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--no-progress", *args,
                         *(("--dry-run",) if dry else ()))
    assert code == 2, out + err
    assert message in err and "Traceback" not in err + out
    assert not (tmp_path / "out" / "records").exists()  # nothing ran


def test_only_narrows_the_dry_run(tmp_path, cli):
    other = ('\n[[experiments]]\nname = "other"\ntask = "condense"\ndataset = "toy"\n'
             'method = "random"\nipc = 3\neval_arch = "mlp"\nprotocol = "quick"\n'
             'seeds = [0, 1, 2]\n')
    suite = write_suite(tmp_path / "two.toml", TINY_SUITE + other)
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--dry-run")
    assert code == 0, err
    assert out.rstrip().endswith("13 cells: 13 todo") and "| full " in out
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--dry-run", "--only", "other")
    assert code == 0, err
    assert out.rstrip().endswith("3 cells: 3 todo") and "| full " not in out


@pytest.mark.parametrize("option", ["--images", "--epochs", "--repeats"])
def test_bench_refuses_a_zero_budget_in_one_line(cli, option):
    code, out, err = cli("bench", option, "0")
    assert code == 2 and f"'{option}': 0 is not in the range" in err
    assert "Traceback" not in out + err
