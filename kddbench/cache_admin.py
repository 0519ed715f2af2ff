"""What the artifact cache holds, and removing what is no longer wanted (``kddbench cache``).

The cache (:class:`kddbench.store.ArtifactCache`) never deletes on its own: a condensed set,
a teacher or a set of expert trajectories is reused by every later suite that asks for it, and
a checkpoint is discarded when its cell finishes.  What piles up is what nothing will ask for
again: checkpoints of cells whose options changed or that were abandoned, artifacts of old
versions.  :func:`entries` lists every entry; :func:`prune` removes the entries of some kinds
last written before a cut-off, skipping any whose lock a running build holds.

Nothing here reads an artifact's tensors or knows what a kind means.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import UnknownNameError
from .store import CHECKPOINTS, ArtifactCache, file_lock

SUFFIXES = (".pt", ".json", ".lock")
DAY_S = 86400.0


@dataclass
class CacheEntry:
    """One artifact: its files (``<key>.pt``, ``.json``, ``.lock``), their size and the time
    the artifact was last written (the newer of the tensors and the provenance)."""

    kind: str
    key: str
    files: list[Path] = field(default_factory=list)
    size: int = 0
    written: float = 0.0
    label: str = ""

    def age_days(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.written) / DAY_S


def _label(meta_path: Path) -> str:
    """Where an artifact came from, in a few words (its provenance's cell, else its key)."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return "(no readable provenance)"
    if not isinstance(meta, dict):
        return "(no readable provenance)"
    prov = meta.get("provenance")
    if isinstance(prov, dict) and prov.get("cell"):
        return str(prov["cell"])
    key = meta.get("key")
    if isinstance(key, dict):
        inner = next(iter(key.values())) if len(key) == 1 else key
        inner = inner if isinstance(inner, dict) else key
        return ", ".join(f"{k}={inner[k]}" for k in ("method", "ipc", "seed", "arch", "dataset")
                         if k in inner) or "(key without method, ipc or seed)"
    return ""


def kinds(cache: ArtifactCache) -> list[str]:
    root = cache.root / "artifacts"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def entries(cache: ArtifactCache, only: Iterable[str] | None = None) -> list[CacheEntry]:
    """Every entry of the cache (of the kinds ``only``, when given), oldest first."""
    present = kinds(cache)
    wanted = list(only) if only is not None else present
    known = sorted({*present, CHECKPOINTS})  # the core's own kind: known with no entry yet
    for kind in wanted:
        if kind not in known:
            raise UnknownNameError("artifact kind", kind, known,
                                   note=f"cache {cache.root}")
    out: list[CacheEntry] = []
    for kind in (k for k in wanted if k in present):
        found: dict[str, CacheEntry] = {}
        for path in sorted((cache.root / "artifacts" / kind).iterdir()):
            if path.suffix not in SUFFIXES or path.name.startswith("."):
                continue
            entry = found.setdefault(path.stem, CacheEntry(kind, path.stem))
            entry.files.append(path)
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we looked
                continue
            entry.size += stat.st_size
            if path.suffix != ".lock":
                entry.written = max(entry.written, stat.st_mtime)
        for entry in found.values():
            meta = cache.root / "artifacts" / kind / f"{entry.key}.json"
            entry.label = _label(meta) if meta.exists() else "(no provenance)"
            if not entry.written:  # a lock alone: when it was last taken
                entry.written = max(p.stat().st_mtime for p in entry.files if p.exists())
            out.append(entry)
    return sorted(out, key=lambda e: (e.written, e.kind, e.key))


def prune(cache: ArtifactCache, prune_kinds: Iterable[str], older_than_days: float,
          dry_run: bool = False, now: float | None = None) -> tuple[list[CacheEntry],
                                                                    list[CacheEntry]]:
    """Remove the entries of ``prune_kinds`` (``"all"``: every kind) last written more than
    ``older_than_days`` ago.  Returns (removed, skipped because in use); with ``dry_run`` the
    first list is what would be removed and nothing is."""
    if older_than_days < 0:
        raise ValueError(f"older_than_days must be >= 0, got {older_than_days}")
    chosen = list(prune_kinds)
    selected = entries(cache, None if "all" in chosen else chosen)
    removed, busy = [], []
    for entry in selected:
        if entry.age_days(now) <= older_than_days:
            continue
        lock = next((p for p in entry.files if p.suffix == ".lock"), None)
        with (file_lock(lock, wait=False) if lock is not None and lock.exists()
              else contextlib.nullcontext(True)) as free:
            if not free:
                busy.append(entry)
                continue
            removed.append(entry)
            if not dry_run:  # the lock file last (a build that takes it next builds anew)
                for path in sorted(entry.files, key=lambda p: p.suffix == ".lock"):
                    path.unlink(missing_ok=True)
    return removed, busy


def summary(found: list[CacheEntry]) -> list[dict]:
    """Per kind: entries, megabytes, oldest and newest write (dates), for a table."""
    rows: dict[str, dict] = {}
    for e in found:
        row = rows.setdefault(e.kind, {"kind": e.kind, "entries": 0, "MB": 0.0,
                                       "oldest": e.written, "newest": e.written})
        row["entries"] += 1
        row["MB"] += e.size / 1e6
        row["oldest"] = min(row["oldest"], e.written)
        row["newest"] = max(row["newest"], e.written)
    for row in rows.values():
        for k in ("oldest", "newest"):
            row[k] = time.strftime("%Y-%m-%d %H:%M", time.localtime(row[k]))
        row["MB"] = round(row["MB"], 2)
    return [rows[k] for k in sorted(rows)]
