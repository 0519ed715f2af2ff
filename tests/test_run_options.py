"""`kddbench run` refuses bad options in one line with exit 2, with --dry-run as without it:
the dry run is what a user tries first, so it must not accept what the run would refuse."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    (("--where", "ipcc=2"), "unknown axis 'ipcc'; did you mean 'ipc'"),
    (("--where", "method=randm"), "unknown value of method 'randm'; did you mean 'random'"),
    (("--where", "ipc=7"), "unknown value of ipc '7'"),
    (("--where", "ipc"), "expected KEY=VALUE"),
    (("--where", "ipc=2|"), "expected KEY=VALUE"),
    (("--where", "method=full", "--where", "ipc=2"), "no cell matches every --where clause"),
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


def test_where_narrows_the_dry_run_to_the_cells_of_those_values(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--dry-run",
                         "--where", "method=random|average", "--where", "ipc=5",
                         "--where", "seed=1")
    assert code == 0, err
    assert out.rstrip().endswith("2 cells: 2 todo")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
            if line.startswith("| toy ") and "condense" in line]
    header = next([c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
                  if line.startswith("| experiment ") and "seed" in line)
    picked = {(r[header.index("method")], r[header.index("ipc")], r[header.index("seed")])
              for r in rows}
    assert picked == {("random", "5", "1"), ("average", "5", "1")}


def test_a_slice_run_with_where_fills_the_whole_suites_cells(tmp_path, cli):
    suite = write_suite(tmp_path / "tiny.toml", TINY_SUITE)
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--no-progress", "--jobs", "1",
                         "--where", "method=average", "--where", "ipc=2")
    assert code == 0, err
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 2
    code, out, err = cli("run", suite, "--out", tmp_path / "out", "--dry-run")
    assert code == 0, err
    assert out.rstrip().endswith("10 cells: 2 done, 8 todo")


@given(key=st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
       values=st.lists(st.from_regex(r"[a-z0-9.\-]{1,6}(\[[a-z]=[a-z0-9|]{1,5}\])?",
                                     fullmatch=True), min_size=1, max_size=4))
def test_a_where_clause_parses_back_to_its_key_and_values(key, values):
    from kddbench.api import parse_where

    assert parse_where(f"{key}={'|'.join(values)}") == (key, tuple(values))


@pytest.mark.parametrize("option", ["--images", "--epochs", "--repeats"])
def test_bench_refuses_a_zero_budget_in_one_line(cli, option):
    code, out, err = cli("bench", option, "0")
    assert code == 2 and f"'{option}': 0 is not in the range" in err
    assert "Traceback" not in out + err


def test_a_duration_is_seconds_or_one_error():
    """--stop-starting-after's parser: every positive number with s/m/h (or none) is its
    seconds; anything else is one KddbenchError (one line, exit 2), never another exception."""
    from hypothesis import given
    from hypothesis import strategies as st

    from kddbench.cli import parse_duration
    from kddbench.errors import KddbenchError

    assert parse_duration("90m") == 5400 and parse_duration(" 1.5H ") == 5400
    assert parse_duration("600") == parse_duration("600s") == 600

    @given(st.floats(min_value=1e-3, max_value=1e6), st.sampled_from(["", "s", "m", "h"]))
    def good(value, unit):
        scale = {"": 1, "s": 1, "m": 60, "h": 3600}[unit]
        assert abs(parse_duration(f"{value!r}{unit}") - value * scale) <= 1e-9 * value * scale

    @given(st.text(max_size=8))
    def anything(text):
        try:
            assert parse_duration(text) > 0
        except KddbenchError as exc:
            assert "positive duration" in str(exc)

    good()
    anything()
    for bad in ("0", "-5m", "nan", "inf", "5x", "", "m"):
        with pytest.raises(KddbenchError, match="positive duration"):
            parse_duration(bad)
