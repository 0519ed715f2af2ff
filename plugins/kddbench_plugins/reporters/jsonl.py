"""A minimal experiment log: one JSON line per finished record."""
from __future__ import annotations

import json
from pathlib import Path


def jsonl(out_dir):
    path = Path(out_dir) / "records.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(record):
        with open(path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")

    return write
