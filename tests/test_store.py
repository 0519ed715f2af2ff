"""Atomic, verified storage of records and artifacts."""
import json
import warnings

import torch

from kddbench.store import ArtifactCache, ResultStore


def test_records_round_trip_and_unreadable_ones_are_skipped(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"cell_id": "abc", "status": "ok", "metrics": {"accuracy": 1.0}})
    assert store.is_done("abc") and store.get("abc")["metrics"]["accuracy"] == 1.0
    store.path_for("bad").write_text("{half a rec")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert store.get("bad") is None and not store.is_done("bad")
        assert [r["cell_id"] for r in store.records()] == ["abc"]
    assert not list(store.records_dir.glob("*.tmp"))


def test_failed_records_are_not_done(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"cell_id": "x", "status": "error", "metrics": {}})
    assert not store.is_done("x")


def test_artifacts_build_once_then_load(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(4.0)}

    key = {"kind": "teacher", "seed": 0}
    a = cache.get_or_build("teacher", key, build, provenance={"why": "test"})
    b = cache.get_or_build("teacher", key, build)
    assert len(calls) == 1 and torch.equal(a["w"], b["w"])
    data_path, meta_path = cache.paths("teacher", key)
    assert torch.load(data_path, weights_only=True)["w"].tolist() == [0, 1, 2, 3]
    assert json.loads(meta_path.read_text())["provenance"] == {"why": "test"}
    assert (tmp_path / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f")


def test_corrupt_artifacts_are_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    key = {"k": 1}
    cache.get_or_build("x", key, lambda: {"v": torch.ones(3)})
    data_path, _ = cache.paths("x", key)
    data_path.write_bytes(data_path.read_bytes()[:-5] + b"xxxxx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = cache.get_or_build("x", key, lambda: {"v": torch.zeros(3)})
    assert torch.equal(value["v"], torch.zeros(3))
    assert any("checksum mismatch" in str(w.message) for w in caught)
    assert torch.equal(cache.load("x", key)["v"], torch.zeros(3))


def test_disabled_cache_always_builds(tmp_path):
    cache = ArtifactCache(tmp_path, enabled=False)
    calls = []
    for _ in range(2):
        cache.get_or_build("x", {"k": 1}, lambda: calls.append(1) or {"v": torch.ones(1)})
    assert len(calls) == 2 and not (tmp_path / "artifacts").exists()
