"""A minimal experiment log: one JSON line per finished record.

Runs sharing one report directory append to the same ``records.jsonl``; each line is written
with a single ``write`` on a file opened for appending (under an advisory lock where there is
one), so lines from two runs never interleave, and each run sends only the records it computed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def jsonl(out_dir):
    path = Path(out_dir) / "records.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(record):
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - Windows
                pass
            os.write(fd, line)
        finally:
            os.close(fd)  # closing releases the lock

    return write
