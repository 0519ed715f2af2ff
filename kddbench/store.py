"""Results and artifacts on disk, written atomically and verified when read.

Layout of a suite's report directory (``reports/<suite>/``)::

    records/<cell_id>.json   one record per finished cell (status ok or error)
    results.csv              tidy table derived from the records (always rebuildable)
    leaderboard*.md|csv      derived by kddbench.report

Artifacts (trained teachers, condensed sets, checkpoints) live in a content-addressed cache
(``$KDDBENCH_CACHE``, default ``~/.cache/kddbench``)::

    artifacts/<kind>/<key>.pt    tensors only, loadable with torch.load(weights_only=True)
    artifacts/<kind>/<key>.json  provenance + sha256 of the .pt file
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .cells import canonical_json, short_hash

CACHE_ENV = "KDDBENCH_CACHE"
CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# kddbench artifact cache\n"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kddbench"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl where available; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class ResultStore:
    """Per-cell records under ``root/records``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.records_dir = self.root / "records"

    def path_for(self, cell_id: str) -> Path:
        return self.records_dir / f"{cell_id}.json"

    def get(self, cell_id: str) -> dict[str, Any] | None:
        path = self.path_for(cell_id)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            warnings.warn(f"ignoring unreadable record {path}; the cell will be re-run")
            return None

    def is_done(self, cell_id: str) -> bool:
        record = self.get(cell_id)
        return record is not None and record.get("status") == "ok"

    def put(self, record: Mapping[str, Any]) -> Path:
        path = self.path_for(record["cell_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        return path

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.records_dir.exists():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                yield json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                warnings.warn(f"skipping unreadable record {path}")


class ArtifactCache:
    """Content-addressed tensors: ``get_or_build(kind, key_dict, build)``.

    ``key_dict`` must hold everything that determines the artifact; its hash is the file name.
    ``build()`` returns a dict of tensors (nested dicts/lists of tensors and plain numbers are
    fine).  A file whose checksum does not match its provenance is rebuilt with a warning.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0

    def _dir(self, kind: str) -> Path:
        d = self.root / "artifacts" / kind
        if not d.exists():
            d.mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                atomic_write_text(tag, CACHEDIR_TAG)
        return d

    def key(self, key_dict: Mapping[str, Any]) -> str:
        return short_hash(key_dict, 24)

    def paths(self, kind: str, key_dict: Mapping[str, Any]) -> tuple[Path, Path]:
        key = self.key(key_dict)
        d = self._dir(kind)
        return d / f"{key}.pt", d / f"{key}.json"

    def load(self, kind: str, key_dict: Mapping[str, Any]) -> Any | None:
        import torch

        data_path, meta_path = self.paths(kind, key_dict)
        if not (data_path.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") != sha256_file(data_path):
                raise ValueError("checksum mismatch")
            return torch.load(data_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file, truncated write, foreign pickle
            warnings.warn(f"artifact {data_path.name} ({kind}) is unreadable ({exc}); rebuilding")
            return None

    def save(self, kind: str, key_dict: Mapping[str, Any], value: Any,
             provenance: Mapping[str, Any] | None = None) -> Path:
        import io

        import torch

        data_path, meta_path = self.paths(kind, key_dict)
        buf = io.BytesIO()
        torch.save(value, buf)
        atomic_write_bytes(data_path, buf.getvalue())
        meta = {"kind": kind, "key": json.loads(canonical_json(key_dict)),
                "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                "provenance": dict(provenance or {})}
        atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True, default=str))
        return data_path

    def get_or_build(self, kind: str, key_dict: Mapping[str, Any], build: Callable[[], Any],
                     provenance: Mapping[str, Any] | None = None) -> Any:
        """Load the artifact, or build and store it.  A lock file makes concurrent workers
        that need the same artifact build it once: the others wait, then read it."""
        if not self.enabled:
            self.misses += 1
            return build()
        data_path, _ = self.paths(kind, key_dict)
        with _file_lock(data_path.with_suffix(".lock")):
            value = self.load(kind, key_dict)
            if value is not None:
                self.hits += 1
                return value
            self.misses += 1
            value = build()
            self.save(kind, key_dict, value, provenance)
        return value

    def discard(self, kind: str, key_dict: Mapping[str, Any]) -> None:
        for p in self.paths(kind, key_dict):
            p.unlink(missing_ok=True)
