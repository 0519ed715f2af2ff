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


CORRUPT_RECORDS = {
    "not_utf8": b"\xff\xfe{\"cell_id\": 1}",
    "not_json": b"{half a rec",
    "a_list": b"[1, 2]",
    "no_metrics": b'{"cell_id": "no_metrics", "status": "ok"}',
    "no_status": b'{"cell_id": "no_status", "metrics": {}}',
    "text_metric": b'{"cell_id": "text_metric", "status": "ok", "metrics": {"accuracy": "high"}}',
    "bool_metric": b'{"cell_id": "bool_metric", "status": "ok", "metrics": {"ok": true}}',
    "metrics_list": b'{"cell_id": "metrics_list", "status": "ok", "metrics": [1]}',
    "wrong_id": b'{"cell_id": "someone_else", "status": "ok", "metrics": {"accuracy": 1}}',
}


def test_every_kind_of_corrupt_record_is_quarantined_with_one_line_naming_it(tmp_path):
    from kddbench.store import CorruptionWarning

    store = ResultStore(tmp_path)
    store.put({"cell_id": "good", "status": "ok", "metrics": {"accuracy": 1.0}})
    store.records_dir.mkdir(parents=True, exist_ok=True)
    for name, raw in CORRUPT_RECORDS.items():
        store.path_for(name).write_bytes(raw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r["cell_id"] for r in store.records()] == ["good"]
        for name in CORRUPT_RECORDS:
            assert store.get(name) is None and not store.is_done(name)
    messages = [str(w.message) for w in caught if w.category is CorruptionWarning]
    assert len(messages) == len(CORRUPT_RECORDS)  # once each: the file is moved aside
    for name in CORRUPT_RECORDS:
        line = next(m for m in messages if f"{name}.json" in m)
        assert "\n" not in line and "quarantine" in line and "recomputed" in line
        assert name in store.problems
    assert sorted(p.stem for p in store.quarantined()) == sorted(CORRUPT_RECORDS)
    assert sorted(p.stem for p in store.records_dir.glob("*.json")) == ["good"]
    # a second corrupt copy of one record does not overwrite the first in quarantine
    store.path_for("not_json").write_bytes(b"{")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert store.get("not_json") is None
    assert len(store.quarantined()) == len(CORRUPT_RECORDS) + 1


def test_a_record_replaced_while_read_is_not_quarantined(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.put({"cell_id": "c", "status": "ok", "metrics": {}})
    store.path_for("c").write_text("{")
    good = {"cell_id": "c", "status": "ok", "metrics": {"accuracy": 2.0}}

    def race(self, path, problem):  # another run writes a good record just before the move
        raise AssertionError("quarantined a record another run had just replaced")

    import kddbench.store as store_mod

    stat = store_mod.os.stat
    calls = []

    def stat_then_replace(path, *a, **k):
        calls.append(path)
        if len(calls) == 2:  # after the corrupt bytes were read: the other run's write lands
            store.put(good)
        return stat(path, *a, **k)

    monkeypatch.setattr(ResultStore, "_quarantine", race)
    monkeypatch.setattr(store_mod.os, "stat", stat_then_replace)
    assert store.get("c") == good


def test_a_checksum_valid_artifact_of_the_wrong_structure_is_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    key = {"k": 2}

    def check(value):
        if "w" not in value:
            return "no tensor 'w'"
        if tuple(value["w"].shape) != (3,):
            return f"'w' has shape {tuple(value['w'].shape)}, not (3,)"
        return None

    cache.get_or_build("x", key, lambda: {"v": torch.ones(3)})  # stored by an older build
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = cache.get_or_build("x", key, lambda: {"w": torch.zeros(3)}, check=check)
    assert torch.equal(value["w"], torch.zeros(3))
    data_path, _ = cache.paths("x", key)
    (line,) = [str(w.message) for w in caught]
    assert f"x/{data_path.name}" in line and "no tensor 'w'" in line and "\n" not in line
    assert cache.warnings == [line]
    cache.warnings.clear()
    # a check that itself trips over the structure counts as a wrong structure too
    cache.save("x", key, {"w": [1, 2]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = cache.get_or_build("x", key, lambda: {"w": torch.ones(3)}, check=check)
    assert torch.equal(value["w"], torch.ones(3)) and "AttributeError" in cache.warnings[0]
    # the rebuilt artifact now passes: a hit, no warning
    cache.warnings.clear()
    hits = cache.hits
    cache.get_or_build("x", key, lambda: {"w": torch.full((3,), 9.0)}, check=check)
    assert cache.hits == hits + 1 and not cache.warnings


class _Foreign:
    pass


def test_an_artifact_holding_objects_is_refused_in_one_line_without_unsafe_advice(tmp_path):
    import hashlib
    import io

    cache = ArtifactCache(tmp_path)
    key = {"k": 3}
    data_path, meta_path = cache.paths("x", key)
    buf = io.BytesIO()
    torch.save({"v": _Foreign()}, buf)  # a valid checksum over a pickle of an object
    data_path.write_bytes(buf.getvalue())
    meta_path.write_text(json.dumps({"sha256": hashlib.sha256(buf.getvalue()).hexdigest()}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = cache.get_or_build("x", key, lambda: {"v": torch.ones(1)})
    assert torch.equal(value["v"], torch.ones(1))
    (line,) = [str(w.message) for w in caught]
    assert "holds objects other than tensors" in line and "\n" not in line
    assert "weights_only" not in line and "trust" not in line


def test_claims_exclude_live_holders_and_pass_dead_or_silent_ones_on(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from kddbench.store import Claims

    mine, other = Claims(tmp_path), Claims(tmp_path)
    other.host, other.token = "elsewhere", "t"
    assert mine.claim("a") and mine.path("a").exists()
    assert not other.claim("a")  # a live holder (same host, this pid) keeps it
    assert other.holder("a")["pid"] == os.getpid()
    assert other.claim("b") and not mine.claim("b")  # a fresh heartbeat from another host
    old = time.time() - 2 * mine.timeout_s
    os.utime(other.path("b"), (old, old))  # ... that went silent
    assert mine.holder("b") is None and mine.claim("b")
    # a holder on this host whose process is gone
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True).stdout)
    mine.path("c").write_text(json.dumps({"host": mine.host, "pid": pid, "token": "z"}))
    assert mine.claim("c")
    # releasing removes only leases this holder owns
    other.held.add("a")
    other.release("a")
    assert mine.path("a").exists()
    mine.release_all()
    assert not list(tmp_path.glob("*.lease"))


def test_claims_heartbeat_keeps_a_long_cell_claimed(tmp_path):
    import os
    import time

    from kddbench.store import Claims

    mine = Claims(tmp_path, timeout_s=0.6, heartbeat_s=0.05)
    other = Claims(tmp_path, timeout_s=0.6)
    other.host = "elsewhere"
    assert mine.claim("a")
    old = time.time() - 10
    os.utime(mine.path("a"), (old, old))
    time.sleep(0.3)  # the heartbeat refreshed it
    assert other.holder("a") is not None and not other.claim("a")
    mine.release_all()
    assert other.claim("a")
    other.release_all()
