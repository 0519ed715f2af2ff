"""Artifacts released with a report: ``kddbench release SUITE`` copies the artifacts a suite's
cells declared (condensed sets by default) out of the artifact cache into the suite's report
directory, ``<report>/artifacts/<kind>/<key>.pt|json`` (the cache's own layout, checksums
included).  Every later run of that suite, on any machine, reads them from there before it
would build them (:class:`kddbench.store.ArtifactCache`'s ``released`` directories), and so does
a run of any suite whose report directory lies beside it (:func:`released_dirs`): a report
that carries its sets can be finished, re-evaluated on other networks or checked by someone
else without condensing again, and a set is the same set in every cell that uses it.

Which file belongs to which request is the build function's business (it owns the cache key,
see :mod:`kddbench.artifacts`); this module asks it: the request is resolved against a probe
that stands in for the cache, records the key of the first ``get_or_build`` and stops there,
before anything is built.  Artifacts no task declares (a stored evaluation, a baseline run
shared by a suite's cells) are found in the records instead: a finished cell's record lists,
as ``"<kind>/<key>"``, every artifact it read or built, so ``--kind`` may name those kinds too.
``--kind checkpoints`` ships the last checkpoint of each computation a killed run left
unfinished (its progress note under ``claims/`` names it): a condensation longer than one
machine's session resumes on the next machine where the last one stopped.
Nothing here knows what a kind means.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ExitCode, KddbenchError
from .store import CHECKPOINTS, ArtifactCache, atomic_write_bytes, intact, released_paths

RELEASED_DIR = "artifacts"  # under a suite's report directory
DEFAULT_KINDS = ("condensed",)


def released_dirs(out_dir: str | Path) -> list[Path]:
    """Where a run writing its report to ``out_dir`` looks for released artifacts: its own
    ``artifacts`` directory first, then those of the report directories beside it (e.g. every
    ``reports/*/artifacts``: a set released with one suite serves another that uses it; the
    key names the artifact, the checksum guards it)."""
    own = Path(out_dir) / RELEASED_DIR
    parent = Path(out_dir).resolve().parent
    others = sorted(p for p in parent.glob(f"*/{RELEASED_DIR}")  # report directories only
                    if p.is_dir() and (p.parent / "suite.toml").is_file()
                    and p.resolve() != own.resolve())
    return [own, *others]


class NothingToRelease(KddbenchError):
    """No artifact of the asked kinds is in the cache for the selected cells."""

    exit_code = ExitCode.NOTHING_COMPARED


class _Probed(Exception):
    pass


class KeyProbe:
    """Stands in for :class:`~kddbench.store.ArtifactCache` while a request resolves: the first
    ``get_or_build`` (or ``load``) records its ``(kind, key_dict)`` and stops the build."""

    def __init__(self) -> None:
        self.found: tuple[str, dict] | None = None
        self.hits = self.misses = 0
        self.warnings: list[str] = []

    def get_or_build(self, kind: str, key_dict: Mapping[str, Any], build=None,
                     provenance=None, check=None):
        self.found = (kind, json.loads(json.dumps(dict(key_dict), default=str)))
        raise _Probed

    load = get_or_build


def artifact_key(request, ctx) -> tuple[str, dict] | None:
    """The ``(kind, key_dict)`` under which ``request``'s build function stores its artifact,
    found without building it; None when the function asks the cache for nothing."""
    probe = KeyProbe()
    try:
        request.resolve(dataclasses.replace(ctx, artifacts=probe))
    except _Probed:
        return probe.found
    return None


@dataclass
class ReleaseResult:
    """What :func:`release` did: per artifact ``(kind, key, label, MB)``."""

    directory: Path
    copied: list[tuple[str, str, str, float]] = field(default_factory=list)
    present: list[tuple[str, str, str, float]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (kind, label): not built
    removed: list[tuple[str, str]] = field(default_factory=list)  # (kind, key): stale checkpoints

    def to_dict(self) -> dict[str, Any]:
        row = lambda t: {"kind": t[0], "key": t[1], "label": t[2], "MB": round(t[3], 3)}  # noqa: E731
        return {"directory": str(self.directory), "copied": [row(t) for t in self.copied],
                "already_there": [row(t) for t in self.present],
                "not_built": [{"kind": k, "label": lab} for k, lab in self.missing],
                "removed": [{"kind": k, "key": key} for k, key in self.removed]}


def _flatten(requests: Iterable) -> list:
    seen: dict[str, Any] = {}

    def visit(r) -> None:
        for n in r.needs:
            visit(n)
        seen.setdefault(r.artifact_id, r)

    for r in requests:
        visit(r)
    return list(seen.values())


def release(suite, out_dir=None, *, kinds: Iterable[str] = DEFAULT_KINDS,
            only: Iterable[str] = (), where: Iterable[str] = (), to: str | Path | None = None,
            cache_dir: str | None = None, data_root: str | None = None) -> ReleaseResult:
    """Copy the cached artifacts of ``kinds`` that the selected cells of ``suite`` declare, or
    that their records say they used, into ``to`` (default ``<report dir>/artifacts``); a kind
    none of those cells declares or used is an error ("did you mean"), and so is finding none
    of them in the cache."""
    from .api import report_dir, select_experiments
    from .artifacts import declared
    from .errors import UnknownNameError
    from .executor import RunSettings
    from .plugins import get_registry
    from .runner import make_context

    registry = get_registry()
    cells = select_experiments(suite, only, where)
    requests = _flatten(r for rs in declared(cells, registry).values() for r in rs)
    used = (_used_by_records(cells, report_dir(suite, out_dir))
            + _unfinished(cells, requests, report_dir(suite, out_dir)))
    have = sorted({r.kind for r in requests} | {kind for kind, _k, _l in used} | {CHECKPOINTS})
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        if kind not in have:
            raise UnknownNameError("artifact kind", kind, have,
                                   note=f"declared by the cells of suite {suite.name} or used "
                                   "by its finished cells")
    target = Path(to) if to else report_dir(suite, out_dir) / RELEASED_DIR
    ctx = make_context(RunSettings(device="cpu", data_root=data_root, cache_dir=cache_dir),
                       registry)
    cache = ctx.artifacts  # the cache alone: no released directory (those are the targets)
    result = ReleaseResult(target)
    done: set[tuple[str, str]] = set()
    for request in (r for r in requests if r.kind in kinds):
        found = artifact_key(request, ctx)
        if found is not None:
            kind, key_dict = found
            _copy(cache, kind, cache.key(key_dict), request.label(), target, result, done)
    for kind, key, label in used:
        if kind in kinds:
            _copy(cache, kind, key, label, target, result, done)
    if CHECKPOINTS in kinds:  # a released checkpoint of what has since finished: stale
        for path in sorted((target / CHECKPOINTS).glob("*.pt")):
            if (CHECKPOINTS, path.stem) not in done:
                for stale in released_paths(target, CHECKPOINTS, path.stem):
                    stale.unlink(missing_ok=True)
                result.removed.append((CHECKPOINTS, path.stem))
    if not (result.copied or result.present or result.removed):
        raise NothingToRelease(
            f"none of the {len(result.missing)} {'/'.join(kinds)} artifact(s) of these cells "
            f"is in the cache at {cache.root} (build them with kddbench run first)")
    return result


def _used_by_records(cells, directory) -> list[tuple[str, str, str]]:
    """``(kind, key, label)`` of the artifacts the finished cells' records say they used."""
    from .store import ResultStore

    store = ResultStore(directory)
    out = []
    for cell in cells:
        record = store.get(cell.cell_id) if store.is_done(cell.cell_id) else None
        for name in (record or {}).get("artifacts") or ():
            kind, key = _kind_and_key(name)
            if kind and key:
                out.append((kind, key, f"used by {cell.label()}"))
    return out


def _kind_and_key(name: Any) -> tuple[str, str]:
    """``"<kind>/<key>"`` (as records and progress notes name an artifact) split in two."""
    kind, _, key = str(name or "").rpartition("/")
    return kind, key


def _unfinished(cells, requests, directory) -> list[tuple[str, str, str]]:
    """``(kind, key, label)`` of the last checkpoint of every selected cell or declared
    artifact whose computation stopped unfinished (a killed run leaves its progress note, which
    names the checkpoint): released, a later run on another machine resumes from it."""
    from .store import Claims

    claims = Claims(Path(directory) / "claims")
    items = [(c.cell_id, c.label()) for c in cells] + [(r.cell_id, r.label())
                                                        for r in requests]
    out = []
    for item_id, label in items:
        note = claims.progress(item_id) or {}
        kind, key = _kind_and_key(note.get("checkpoint"))
        if kind and key:
            at = f" at iteration {note['iteration']}" if "iteration" in note else ""
            out.append((kind, key, f"unfinished{at}: {label}"))
    return out


def _copy(cache: ArtifactCache, kind: str, key: str, label: str, target: Path,
          result: ReleaseResult, done: set) -> None:
    """Copy one cached artifact into ``target`` (once per ``(kind, key)``)."""
    if (kind, key) in done:
        return
    done.add((kind, key))
    src = cache.key_paths(kind, key)
    if not intact(*src):
        result.missing.append((kind, label))
        return
    dst = released_paths(target, kind, key)
    entry = (kind, key, label, src[0].stat().st_size / 1e6)
    if dst[1].is_file() and dst[1].read_bytes() == src[1].read_bytes() and intact(*dst):
        result.present.append(entry)
        return
    atomic_write_bytes(dst[0], src[0].read_bytes())
    atomic_write_bytes(dst[1], src[1].read_bytes())
    result.copied.append(entry)
