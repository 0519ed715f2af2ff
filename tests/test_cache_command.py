"""``kddbench cache``: what the artifact cache holds, and pruning old entries safely."""
import json
import os
import time

import pytest
import torch

from kddbench import cache_admin
from kddbench.store import ArtifactCache

DAY = 86400.0


def _cache(tmp_path):
    return ArtifactCache(tmp_path / "cache")  # the conftest's KDDBENCH_CACHE


def _age(cache, kind, key, days):
    """Make an entry look last written ``days`` ago."""
    when = time.time() - days * DAY
    for path in (cache.root / "artifacts" / kind).glob(f"{cache.key(key)}.*"):
        os.utime(path, (when, when))


def _fill(cache):
    old, new = {"method": "dm", "ipc": 1, "seed": 0}, {"method": "dm", "ipc": 10, "seed": 0}
    cache.save("checkpoints", {"condense": old}, {"x": torch.zeros(3)})
    cache.save("checkpoints", {"condense": new}, {"x": torch.zeros(3)})
    cache.save("condensed", old, {"images": torch.zeros(2, 1, 4, 4)},
               provenance={"cell": "dm ipc=1 on convnet, seed 0"})
    _age(cache, "checkpoints", {"condense": old}, 30)
    _age(cache, "condensed", old, 30)
    return old, new


def test_the_summary_counts_every_kind_and_the_listing_names_each_entry(tmp_path, cli):
    _fill(_cache(tmp_path))
    code, out, _ = cli("cache")
    assert code == 0
    assert "| checkpoints |         2 |" in out and "| condensed   |         1 |" in out
    code, out, _ = cli("cache", "--list", "condensed")
    assert code == 0 and "dm ipc=1 on convnet, seed 0" in out and "checkpoints" not in out
    code, out, _ = cli("cache", "--list", "checkpoints", "--json")
    listed = json.loads(out)["entries"]
    assert [e["label"] for e in listed] == ["method=dm, ipc=1, seed=0",
                                            "method=dm, ipc=10, seed=0"]  # oldest first


def test_prune_removes_only_old_entries_of_the_named_kind(tmp_path, cli):
    cache = _cache(tmp_path)
    old, new = _fill(cache)
    code, out, _ = cli("cache", "--prune", "checkpoints", "--older-than", "7", "--dry-run")
    assert code == 0 and "would remove 1 entries" in out
    assert cache.load("checkpoints", {"condense": old}) is not None  # a dry run removes nothing
    code, out, _ = cli("cache", "--prune", "checkpoints", "--older-than", "7")
    assert code == 0 and "removed 1 entries" in out
    assert cache.load("checkpoints", {"condense": old}) is None
    assert not list((cache.root / "artifacts" / "checkpoints").glob(f"{cache.key({'condense': old})}.*"))
    assert cache.load("checkpoints", {"condense": new}) is not None  # too young
    assert cache.load("condensed", old) is not None  # another kind
    code, out, _ = cli("cache", "--prune", "all", "--older-than", "7")
    assert code == 0 and cache.load("condensed", old) is None


def test_an_entry_whose_lock_a_build_holds_is_kept(tmp_path):
    import fcntl

    cache = _cache(tmp_path)
    key = {"method": "mtt", "seed": 1}
    cache.save("expert_trajectories", key, {"w": torch.zeros(2)})
    data_path, _ = cache.paths("expert_trajectories", key)
    lock = data_path.with_suffix(".lock")
    _age(cache, "expert_trajectories", key, 10)
    with open(lock, "a+") as fh:  # what get_or_build holds while it builds
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        removed, busy = cache_admin.prune(cache, ["expert_trajectories"], 1)
        assert not removed and [e.key for e in busy] == [cache.key(key)]
        assert data_path.exists()
    removed, busy = cache_admin.prune(cache, ["expert_trajectories"], 1)
    assert len(removed) == 1 and not busy and not data_path.exists()


def test_an_unknown_kind_is_one_line_with_a_suggestion_and_exit_2(tmp_path, cli):
    _fill(_cache(tmp_path))
    code, _, err = cli("cache", "--prune", "checkpiont")
    assert code == 2
    assert err.strip().count("\n") == 0 and "did you mean 'checkpoints'" in err
    code, _, err = cli("cache", "--prune", "checkpoints", "--older-than", "-1")
    assert code == 2 and "-1" in err


def test_an_empty_cache_says_so(tmp_path, cli):
    code, out, _ = cli("cache")
    assert code == 0 and "holds no artifacts" in out
    # the core's checkpoints are a known kind before the first one is written
    code, out, err = cli("cache", "--prune", "checkpoints", "--dry-run")
    assert code == 0, err
    assert cache_admin.entries(_cache(tmp_path), ["checkpoints"]) == []
    code, _, err = cli("cache", "--prune", "condensd")
    assert code == 2 and "unknown artifact kind" in err
    with pytest.raises(ValueError):
        cache_admin.prune(_cache(tmp_path), ["all"], -0.5)
