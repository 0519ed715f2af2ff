"""kddbench status: done / running / failed / pending from a store a run may be writing to."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from test_html_report import fabricate


@pytest.fixture
def store(tmp_path):
    """The fabricated report (15 cells, one failed), then: 3 records removed (pending), one of
    them claimed by a live holder (running), one with a stale claim, and one corrupt record."""
    from kddbench.store import Claims, ResultStore

    suite, out = fabricate(tmp_path)
    store = ResultStore(out)
    cells = [c for c in suite.cells if c.axes["method"] == "average"]
    gone = cells[:4]
    for cell in gone:
        store.path_for(cell.cell_id).unlink()
    live = Claims(out / "claims")
    assert live.claim(gone[0].cell_id)
    stale = out / "claims" / f"{gone[1].cell_id}.lease"
    stale.write_text(json.dumps({"host": live.host, "pid": 2 ** 22 + 12345, "token": "old",
                                 "since": time.time() - 999}))
    old = time.time() - 3600
    os.utime(stale, (old, old))
    store.path_for(gone[3].cell_id).write_text("{ not json")
    yield suite, out, gone
    live.release_all()


def test_counts_per_experiment_and_in_total(store):
    from kddbench.status import format_status, status

    suite, out, gone = store
    st = status(suite, out, estimate=False)
    assert st.total == {**st.total, "cells": 15, "done": 10, "running": 1, "failed": 1,
                        "pending": 3}
    assert st.stale_claims == 1
    states = {s.cell.cell_id: s.state for s in st.cells}
    assert states[gone[0].cell_id] == "running" and states[gone[1].cell_id] == "pending"
    # compute left: the 5 unfinished cells at the finished cells' mean wall time (2 s)
    assert st.total["seconds_left"] == pytest.approx(5 * 2.0)
    text = format_status(st)
    assert "| **total** | 15 | 10 | 1 | 1 | 3 |" in text
    assert "RuntimeError: out of patience" in text and "Traceback" not in text
    assert f"pid {os.getpid()}" in text and "1 stale claim(s)" in text
    assert "unreadable records (1" in text and "compute left: 5 cell(s)" in text
    # status writes nothing: the corrupt record is still there, not quarantined
    assert (out / "records" / f"{gone[3].cell_id}.json").read_text() == "{ not json"
    assert not (out / "records" / "quarantine").exists()


def test_the_cli(store, cli):
    suite, out, _ = store
    code, text, err = cli("status", suite.path, "--out", out, "--no-estimate")
    assert code == 0 and "| **total** | 15 | 10 | 1 | 1 | 3 |" in text, err
    code, text, _ = cli("status", suite.path, "--out", out, "--json", "--no-estimate")
    data = json.loads(text)
    assert data["total"]["done"] == 10 and len(data["failed"]) == 1
    assert data["running"][0]["holder"]["pid"] == os.getpid()
    code, _, err = cli("status", out / "nope.toml")
    assert code == 2 and err.count("\n") == 1


def test_where_narrows_the_status_as_it_narrows_a_run(store, cli):
    suite, out, gone = store
    average = [c for c in suite.cells if c.axes["method"] == "average"]
    code, text, err = cli("status", suite.path, "--out", out, "--no-estimate",
                          "--where", "method=average")
    assert code == 0, err
    # the 4 average cells taken out above: one running, two pending, one corrupt (pending)
    assert f"| **total** | {len(average)} | {len(average) - 4} | 1 | 0 | 3 |" in text
    code, _, err = cli("status", suite.path, "--out", out, "--where", "method=averag")
    assert code == 2 and "did you mean 'average'" in err


def test_an_empty_store_is_all_pending(tmp_path):
    from kddbench.status import format_status, status

    suite, out = fabricate(tmp_path)
    st = status(suite, tmp_path / "elsewhere", estimate=False)
    assert st.total["pending"] == 15 and st.total["done"] == 0
    assert "compute left: 15 cell(s), not timed yet" in format_status(st)


def test_it_works_while_a_run_writes_the_store(store):
    """Records replaced (atomically) and claims taken and released meanwhile: every status
    call reads a consistent count, never fails."""
    from kddbench.status import _read_record, status
    from kddbench.store import Claims, ResultStore

    suite, out, gone = store
    rs = ResultStore(out)
    records = [r for r in (_read_record(p)[0] for p in sorted((out / "records").glob("*.json")))
               if r is not None]  # (not rs.records(): it would move the corrupt one aside)
    stop = threading.Event()

    def writer():
        claims = Claims(out / "claims")
        while not stop.is_set():
            for r in records:
                rs.put(r)
            claims.claim(gone[2].cell_id)
            claims.release(gone[2].cell_id)
        claims.release_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = [status(suite, out, estimate=False).total for _ in range(8)]
    finally:
        stop.set()
        thread.join()
    for total in seen:
        assert total["cells"] == 15 and total["done"] == 10 and total["failed"] == 1
        assert total["running"] in (1, 2) and total["running"] + total["pending"] == 4


def test_an_artifact_being_built_is_listed_and_unestimated_work_is_not_summed_as_zero(store):
    import math

    from kddbench.status import format_status, status
    from kddbench.store import Claims

    suite, out, _ = store
    builder = Claims(out / "claims")
    assert builder.claim("artifact-0123abcd", label="condensed[dm ipc=10 seed 2]")
    try:
        st = status(suite, out, estimate=False)
        text = format_status(st)
    finally:
        builder.release_all()
    assert "artifacts being built (1" in text and "condensed[dm ipc=10 seed 2]" in text
    assert st.to_dict()["building"][0]["pid"] == os.getpid()
    assert st.total["running"] == 1  # the artifact's lease is not a cell's
    assert status(suite, out, estimate=False).building == []
    # without the estimate the image passes left are unknown, never 0
    assert math.isnan(st.total["passes_left"])
    assert "image passes" not in text.split("compute left")[-1]


def test_a_total_with_nothing_left_timed_is_unknown_not_zero(tmp_path):
    """One experiment finished, the other not started: the total time left is "?"."""
    import math

    from kddbench.status import CellState, Status, format_status

    rows = [{"experiment": "done", "cells": 2, "done": 2, "running": 0, "failed": 0,
             "pending": 0, "passes_left": 0.0, "seconds_left": 0.0, "unknown_left": 0},
            {"experiment": "new", "cells": 3, "done": 0, "running": 0, "failed": 0,
             "pending": 3, "passes_left": math.nan, "seconds_left": math.nan,
             "unknown_left": 3}]
    cells = [CellState(None, "done")] * 2 + [CellState(None, "pending")] * 3
    st = Status("s", tmp_path, cells, rows)
    assert math.isnan(st.total["seconds_left"]) and math.isnan(st.total["passes_left"])
    text = format_status(st)
    assert "| **total** | 5 | 2 | 0 | 0 | 3 | ? | ? |" in text
    assert "not timed yet" in text
