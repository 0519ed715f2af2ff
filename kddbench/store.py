"""Results and artifacts on disk, written atomically and verified when read.

Layout of a suite's report directory (``reports/<suite>/``)::

    records/<cell_id>.json   one record per finished cell (status ok or error)
    results.csv              tidy table derived from the records (always rebuildable)
    leaderboard*.md|csv      derived by kddbench.report

Artifacts (trained teachers, condensed sets, checkpoints) live in a content-addressed cache
(``$KDDBENCH_CACHE``, default ``~/.cache/kddbench``)::

    artifacts/<kind>/<key>.pt    tensors only, loadable with torch.load(weights_only=True)
    artifacts/<kind>/<key>.json  provenance + sha256 of the .pt file

A record that is not UTF-8 JSON of the expected shape (see :func:`record_problem`) is moved to
``records/quarantine/`` with a one-line warning and its cell counts as not done.  Two runs on
one report directory share the work through per-cell claims (:class:`Claims`, under
``claims/``): a cell is computed by the run that holds its claim, and a claim whose holder died
is taken over.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .cells import canonical_json, short_hash

CACHE_ENV = "KDDBENCH_CACHE"
CLAIM_TIMEOUT_ENV = "KDDBENCH_CLAIM_TIMEOUT_S"
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
def file_lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock (fcntl where available; a no-op elsewhere).  Yields True
    while held; with ``wait=False`` it yields False at once when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


CHECKPOINTS = "checkpoints"  # the artifact kind of kddbench.context.Checkpoint's states


def released_paths(directory: Path, kind: str, key: str) -> tuple[Path, Path]:
    return directory / kind / f"{key}.pt", directory / kind / f"{key}.json"


def intact(data_path: Path, meta_path: Path) -> bool:
    """Both files exist and the tensors' checksum is the provenance's."""
    if not (data_path.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("sha256") == sha256_file(data_path)


class CorruptionWarning(UserWarning):
    """A record or artifact on disk was corrupt; it was set aside (records) or rebuilt."""


def warn(message: str) -> None:
    """A one-line warning (the CLI prints it as ``warning: <message>``)."""
    warnings.warn(message, CorruptionWarning, stacklevel=3)


def record_problem(record: Any, cell_id: str | None = None) -> str | None:
    """What is wrong with ``record`` as a stored cell record, or None when nothing is.

    A record is a dict with a string ``cell_id`` (equal to ``cell_id`` when given: the file
    name), a string ``status`` and a dict ``metrics`` of numbers."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [k for k in ("cell_id", "status", "metrics") if k not in record]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(record["cell_id"], str):
        return "cell_id is not a string"
    if cell_id is not None and record["cell_id"] != cell_id:
        return f"its cell_id {record['cell_id'][:40]!r} is not its file name"
    if not isinstance(record["status"], str):
        return "status is not a string"
    metrics = record["metrics"]
    if not isinstance(metrics, dict):
        return "metrics is not an object"
    bad = [k for k, v in metrics.items()
           if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        return f"non-numeric metric(s) {', '.join(map(str, bad[:3]))}"
    return None


class ResultStore:
    """Per-cell records under ``root/records``; corrupt ones are moved to
    ``root/records/quarantine`` (each move is a :class:`CorruptionWarning` naming the file,
    remembered in :attr:`problems` so the cell's next record can carry it)."""

    QUARANTINE = "quarantine"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.quarantine_dir = self.records_dir / self.QUARANTINE
        self.problems: dict[str, str] = {}  # cell_id -> the warning its record got

    def path_for(self, cell_id: str) -> Path:
        return self.records_dir / f"{cell_id}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The record in ``path``; None (after quarantining it) when it is corrupt."""
        for _ in range(3):
            try:
                before = os.stat(path)
                raw = path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                problem = f"unreadable ({exc.strerror or exc})"
            else:
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    problem = "not UTF-8 text"
                except json.JSONDecodeError as exc:
                    problem = f"not JSON ({exc.msg} at line {exc.lineno})"
                else:
                    problem = record_problem(record, path.stem)
                    if problem is None:
                        return record
                try:  # another run may have just replaced it with a good record
                    now = os.stat(path)
                except FileNotFoundError:
                    return None
                if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
                    continue
            self._quarantine(path, problem)
            return None
        return None

    def _quarantine(self, path: Path, problem: str) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / path.name
        n = 1
        while target.exists():
            target = self.quarantine_dir / f"{path.stem}.{n}{path.suffix}"
            n += 1
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another run moved it first
            return
        self.problems[path.stem] = (f"record {path.name} was corrupt ({problem}); moved to "
                                    f"records/{self.QUARANTINE}/{target.name} and recomputed")
        warn(f"record {path} is corrupt ({problem}); moved to {target}, its cell will be "
             "recomputed")

    def get(self, cell_id: str) -> dict[str, Any] | None:
        return self._read(self.path_for(cell_id))

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
            record = self._read(path)
            if record is not None:
                yield record

    def quarantined(self) -> list[Path]:
        """The records moved aside as corrupt (by this run or earlier ones)."""
        if not self.quarantine_dir.is_dir():
            return []
        return sorted(self.quarantine_dir.glob("*.json"))

    def claims(self, **kwargs: Any) -> "Claims":
        return Claims(self.root / "claims", **kwargs)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Claims:
    """Per-cell leases, so that runs sharing one report directory compute each cell once.

    ``claim(cell_id)`` creates ``<dir>/<cell_id>.lease`` with ``O_CREAT | O_EXCL`` (atomic on
    local and NFS v3+ filesystems) holding the holder's host, pid and a random token.  While a
    run holds leases a thread refreshes their mtime every ``heartbeat_s``.  A lease whose
    holder is dead (same host, pid gone) or whose heartbeat is older than ``timeout_s``
    (default 300 s, env ``KDDBENCH_CLAIM_TIMEOUT_S``) is broken and may be taken over.
    """

    def __init__(self, directory: str | Path, timeout_s: float | None = None,
                 heartbeat_s: float | None = None):
        self.dir = Path(directory)
        self.timeout_s = float(timeout_s if timeout_s is not None
                               else os.environ.get(CLAIM_TIMEOUT_ENV) or 300.0)
        self.heartbeat_s = float(heartbeat_s if heartbeat_s is not None
                                 else max(0.05, min(30.0, self.timeout_s / 4)))
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, cell_id: str) -> Path:
        return self.dir / f"{cell_id}.lease"

    def progress_path(self, cell_id: str) -> Path:
        """Where the worker computing ``cell_id`` notes its last checkpoint (JSON: ``time``,
        and ``iteration`` where the checkpoint says)."""
        return self.dir / f"{cell_id}.progress"

    def progress(self, cell_id: str) -> dict[str, Any] | None:
        """The last checkpoint noted for ``cell_id``, or None (none yet, or unreadable)."""
        try:
            note = json.loads(self.progress_path(cell_id).read_text())
        except (OSError, ValueError):
            return None
        return note if isinstance(note, dict) else None

    # holder ---------------------------------------------------------------------------------
    def _content(self, path: Path) -> tuple[dict[str, Any] | None, float | None]:
        """(holder info or None if unreadable, mtime or None if the lease is gone)."""
        try:
            mtime = os.stat(path).st_mtime
            info = json.loads(path.read_text())
            return (info if isinstance(info, dict) else None), mtime
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError):
            return None, mtime

    def _is_live(self, info: dict[str, Any] | None, mtime: float) -> bool:
        age = time.time() - mtime
        if info is None:  # being written right now, or garbage
            return age < min(10.0, self.timeout_s)
        if age > self.timeout_s:
            return False
        if info.get("host") == self.host:
            if info.get("token") == self.token:
                return True
            pid = info.get("pid")
            if not isinstance(pid, int) or not _pid_alive(pid):
                return False
        return True

    def holder(self, cell_id: str) -> dict[str, Any] | None:
        """The live holder of ``cell_id``'s lease (host, pid), or None."""
        info, mtime = self._content(self.path(cell_id))
        if mtime is None or not self._is_live(info, mtime):
            return None
        return info or {}

    # claiming -------------------------------------------------------------------------------
    def claim(self, cell_id: str, label: str | None = None) -> bool:
        """True when this process now holds ``cell_id`` (a live holder elsewhere: False).
        ``label`` (what the lease is for, in words) is kept in the lease for ``status``."""
        if cell_id in self.held:
            return True
        path = self.path(cell_id)
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            # leases left by a killed run are not results: keep them out of version control
            (self.dir / ".gitignore").write_text("*\n")
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                info, mtime = self._content(path)
                if mtime is None:
                    continue  # released meanwhile: try again
                if self._is_live(info, mtime) or not self._break(path, info):
                    return False
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"host": self.host, "pid": self.pid, "token": self.token,
                           "since": time.time(), **({"label": label} if label else {})}, fh)
            with self._lock:
                self.held.add(cell_id)
            self._start_heartbeat()
            return True
        return False

    def _break(self, path: Path, seen: dict[str, Any] | None) -> bool:
        """Remove the dead lease ``path`` (as ``seen``); False if someone else claimed it."""
        aside = path.with_name(f"{path.name}.stale.{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        info, _ = self._content(aside)
        if seen is not None and (info or {}).get("token") != seen.get("token"):
            try:  # we moved a fresh claim of another run: put it back
                os.link(aside, path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def live(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Every live lease whose id starts with ``prefix``: id -> holder info."""
        if not self.dir.is_dir():
            return {}
        found = {}
        for lease in sorted(self.dir.glob(f"{prefix}*.lease")):
            info = self.holder(lease.stem)
            if info is not None:
                found[lease.stem] = info
        return found

    def release(self, cell_id: str) -> None:
        with self._lock:
            if cell_id not in self.held:
                return
            self.held.discard(cell_id)
        path = self.path(cell_id)
        info, _ = self._content(path)
        if info is not None and info.get("token") == self.token:
            path.unlink(missing_ok=True)

    def release_all(self) -> None:
        for cell_id in list(self.held):
            self.release(cell_id)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # heartbeat ------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="kddbench-claims", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self.held)
            for cell_id in held:
                try:
                    os.utime(self.path(cell_id))
                except OSError:  # taken over after we looked dead (a suspended laptop)
                    pass


class ArtifactCache:
    """Content-addressed tensors: ``get_or_build(kind, key_dict, build, check=...)``.

    ``key_dict`` must hold everything that determines the artifact; its hash is the file name.
    ``build()`` returns a dict of tensors (nested dicts/lists of tensors and plain numbers are
    fine).  A file whose checksum does not match its provenance, that holds anything but
    tensors, or whose structure ``check`` rejects, is rebuilt with a one-line warning; the
    warnings of a cell are kept in :attr:`warnings` (the runner moves them into its record).

    ``released`` directories (read-only, the layout ``<dir>/<kind>/<key>.pt|json``; a suite's
    ``reports/<suite>/artifacts``, written by ``kddbench release``) are looked in for an
    artifact the cache lacks: one whose checksum holds is copied into the cache and counts as a
    hit; a damaged one is passed over with a warning.

    :attr:`used` lists, as ``"<kind>/<key>"``, every artifact served or built since it was last
    cleared (the runner keeps a cell's in its record, so ``kddbench release`` can ship the
    artifacts a finished cell used even where no task declared them).
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True,
                 released: Iterable[str | Path] = ()):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.released = [Path(p) for p in released]
        self.hits = self.misses = 0
        self.warnings: list[str] = []
        self.used: list[str] = []

    def _use(self, kind: str, key_dict: Mapping[str, Any]) -> None:
        name = f"{kind}/{self.key(key_dict)}"
        if name not in self.used:
            self.used.append(name)

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
        return self.key_paths(kind, self.key(key_dict))

    def key_paths(self, kind: str, key: str) -> tuple[Path, Path]:
        d = self._dir(kind)
        return d / f"{key}.pt", d / f"{key}.json"

    def available(self, kind: str, key_dict: Mapping[str, Any]) -> bool:
        """Whether the artifact is stored intact, here or in a released directory (nothing is
        copied or created)."""
        key = self.key(key_dict)  # the cache has a released directory's layout
        return any(intact(*released_paths(d, kind, key))
                   for d in (self.root / "artifacts", *self.released))

    def _corrupt(self, kind: str, path: Path, why: str) -> None:
        message = f"artifact {kind}/{path.name} is corrupt ({why}); rebuilding it"
        self.warnings.append(message)
        warn(message)

    def load(self, kind: str, key_dict: Mapping[str, Any],
             check: Callable[[Any], str | None] | None = None) -> Any | None:
        """The stored artifact, or None when it is missing or corrupt (a warning says why).

        ``check(value)`` returns what is wrong with a loaded value's structure, or None."""
        import pickle

        import torch

        data_path, meta_path = self.paths(kind, key_dict)
        if not (data_path.exists() and meta_path.exists()) and not self._adopt(
                kind, data_path, meta_path):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("sha256") != sha256_file(data_path):
                raise ValueError("checksum mismatch")
            value = torch.load(data_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # torch's message advises loading unsafely: never
            self._corrupt(kind, data_path, "it holds objects other than tensors")
            return None
        except Exception as exc:  # truncated write, foreign file, bad provenance
            why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            self._corrupt(kind, data_path, why or type(exc).__name__)
            return None
        if check is not None:
            try:
                problem = check(value)
            except Exception as exc:  # noqa: BLE001 - a check that trips is a wrong structure
                problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
            if problem:
                self._corrupt(kind, data_path, f"checksum valid, but {problem}")
                return None
        self._use(kind, key_dict)
        return value

    def _adopt(self, kind: str, data_path: Path, meta_path: Path) -> bool:
        """Copy a released copy of this artifact into the cache; False when none is intact."""
        for directory in self.released:
            src = released_paths(directory, kind, data_path.stem)
            if not src[0].exists():
                continue
            if not intact(*src):
                message = (f"released artifact {src[0]} does not match its checksum; "
                           "not using it")
                self.warnings.append(message)
                warn(message)
                continue
            atomic_write_bytes(data_path, src[0].read_bytes())
            atomic_write_bytes(meta_path, src[1].read_bytes())
            return True
        return False

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
                     provenance: Mapping[str, Any] | None = None,
                     check: Callable[[Any], str | None] | None = None) -> Any:
        """Load the artifact, or build and store it.  A lock file makes concurrent workers
        that need the same artifact build it once: the others wait, then read it.

        ``check(value) -> None | str`` validates a loaded artifact's structure (the keys and
        tensor shapes the caller expects); a message makes it corrupt: it is rebuilt."""
        if not self.enabled:
            self.misses += 1
            return build()
        data_path, _ = self.paths(kind, key_dict)
        with file_lock(data_path.with_suffix(".lock")):
            value = self.load(kind, key_dict, check)
            if value is not None:
                self.hits += 1
                return value
            self.misses += 1
            value = build()
            self.save(kind, key_dict, value, provenance)
            self._use(kind, key_dict)
        return value

    def discard(self, kind: str, key_dict: Mapping[str, Any]) -> None:
        for p in self.paths(kind, key_dict):
            p.unlink(missing_ok=True)
