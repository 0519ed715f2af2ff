"""Artifacts released with a report: ``kddbench release SUITE`` copies the artifacts a suite's
cells declared (condensed sets by default) out of the artifact cache into the suite's report
directory, ``<report>/artifacts/<kind>/<key>.pt|json`` (the cache's own layout, checksums
included).  Every later run of that suite, on any machine, reads them from there before it
would build them (:class:`kddbench.store.ArtifactCache`'s ``released`` directories): a report
that carries its sets can be finished, re-evaluated on other networks or checked by someone
else without condensing again, and a set is the same set in every cell that uses it.

Which file belongs to which request is the build function's business (it owns the cache key,
see :mod:`kddbench.artifacts`); this module asks it: the request is resolved against a probe
that stands in for the cache, records the key of the first ``get_or_build`` and stops there,
before anything is built.  Nothing here knows what a kind means.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ExitCode, KddbenchError
from .store import ArtifactCache, atomic_write_bytes, intact, released_paths

RELEASED_DIR = "artifacts"  # under a suite's report directory
DEFAULT_KINDS = ("condensed",)


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

    def to_dict(self) -> dict[str, Any]:
        row = lambda t: {"kind": t[0], "key": t[1], "label": t[2], "MB": round(t[3], 3)}  # noqa: E731
        return {"directory": str(self.directory), "copied": [row(t) for t in self.copied],
                "already_there": [row(t) for t in self.present],
                "not_built": [{"kind": k, "label": lab} for k, lab in self.missing]}


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
    """Copy the cached artifacts of ``kinds`` that the selected cells of ``suite`` declare into
    ``to`` (default ``<report dir>/artifacts``); a kind no request of those cells has is an
    error ("did you mean"), and so is finding none of them in the cache."""
    from .api import report_dir, select_experiments
    from .artifacts import declared
    from .errors import UnknownNameError
    from .executor import RunSettings
    from .plugins import get_registry
    from .runner import make_context

    registry = get_registry()
    cells = select_experiments(suite, only, where)
    requests = _flatten(r for rs in declared(cells, registry).values() for r in rs)
    have = sorted({r.kind for r in requests})
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        if kind not in have:
            raise UnknownNameError("artifact kind", kind, have,
                                   note=f"declared by the cells of suite {suite.name}")
    target = Path(to) if to else report_dir(suite, out_dir) / RELEASED_DIR
    ctx = make_context(RunSettings(device="cpu", data_root=data_root, cache_dir=cache_dir),
                       registry)
    cache = ArtifactCache(cache_dir)
    result = ReleaseResult(target)
    for request in (r for r in requests if r.kind in kinds):
        found = artifact_key(request, ctx)
        if found is None:
            continue
        kind, key_dict = found
        src = cache.paths(kind, key_dict)
        key = cache.key(key_dict)
        if not intact(*src):
            result.missing.append((kind, request.label()))
            continue
        dst = released_paths(target, kind, key)
        entry = (kind, key, request.label(), src[0].stat().st_size / 1e6)
        if dst[1].is_file() and dst[1].read_bytes() == src[1].read_bytes() and intact(*dst):
            result.present.append(entry)
            continue
        atomic_write_bytes(dst[0], src[0].read_bytes())
        atomic_write_bytes(dst[1], src[1].read_bytes())
        result.copied.append(entry)
    if not (result.copied or result.present):
        raise NothingToRelease(
            f"none of the {len(result.missing)} {'/'.join(kinds)} artifact(s) of these cells "
            f"is in the cache at {cache.root} (build them with kddbench run first)")
    return result
