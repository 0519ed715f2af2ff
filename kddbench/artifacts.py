"""Artifacts as declared dependencies: a task says what its cells need, the runner builds it.

An *artifact* is anything costly that several cells share and the cache keeps: a trained
teacher, a condensed set, expert trajectories.  A task declares them with
``TaskSpec(..., artifacts="module:function")`` where ``function(cell, registry)`` returns a
list of :class:`ArtifactRequest` for that cell.  The runner gathers the requests of every
unfinished cell, merges equal ones (same ``kind``, ``build`` and ``args``) and runs each once,
as a job of the run's executor (in this process, a worker pool, a Slurm job or a Ray task),
deepest ``needs`` first and before the cells that need it, which then find their artifacts in
the cache: on a lazy executor through one queue with the cells (:mod:`kddbench.schedule`),
elsewhere wave by wave (:func:`waves`).  With ``--no-cache`` nothing is built ahead: cells
build inline, as before.

The contract of a request (what a plugin author writes):

* ``build`` is a ``"module:function"`` string (importable in a worker) with the signature
  ``function(ctx, **args) -> value``.  It must *get or build* its artifact through
  ``ctx.artifacts.get_or_build(kind, key_dict, build_fn, check=...)`` with the same
  ``key_dict`` the cell uses, and return the value; the cell then calls the very same function
  (or :meth:`ArtifactRequest.resolve`) and gets a cache hit.  The function owns the cache key:
  ``args`` only say which artifact is meant (data set, method, seed, ...).
* ``args`` are plain, JSON-able values (they travel to workers and identify the request).
* ``needs`` lists requests this one depends on (e.g. a condensed set made from expert
  trajectories lists the trajectories): they are built in an earlier wave.
* ``check(value) -> None | str`` (passed to ``get_or_build``) rejects a checksum-valid artifact
  of the wrong structure (missing keys, wrong shapes); it is then rebuilt with a warning.

Where the declarations come from:

* ``TaskSpec(..., artifacts="module:declare")``, ``declare(cell, registry) -> [requests]``:
  what a cell of the task needs (the ``kd`` task: its teacher and, for a student trained on a
  condensed set, the set of ``kddbench_plugins.condensation.task.condensed_request``).
* ``CondenserSpec(..., artifacts="module:declare")``, ``declare(args, registry) ->
  [requests]``: what a condensation method needs before it runs; ``args`` are its
  condensed-set request's (``dataset``, ``dataset_options``, ``method``, ``method_options``,
  ``ipc``, ``distill_arch``, ``distill_arch_options``, ``seed``) and the requests become that
  request's ``needs``.  Keep in a request's ``args`` only what determines the artifact (drop
  ``ipc`` and ``seed`` for experts every budget and seed share), so equal ones merge.

Example: a condenser whose experts are trained on the real set first::

    def declare_experts(args, registry):
        same = {k: args[k] for k in ("dataset", "dataset_options", "distill_arch",
                                     "distill_arch_options", "method_options")}
        n = args["method_options"].get("num_experts", 10)
        return [ArtifactRequest("expert_trajectories", "my_plugin.experts:expert",
                                {**same, "index": i}, description=f"expert {i}")
                for i in range(n)]

    def expert(ctx, *, dataset, dataset_options, distill_arch, distill_arch_options,
               method_options, index):
        data = ctx.data(dataset, dataset_options)
        key = {...}  # exactly the key the method uses when it asks for expert ``index``
        return ctx.artifacts.get_or_build("expert_trajectories", key, lambda: ...,
                                          check=lambda v: None if "params" in v else "no params")

    CondenserSpec("my-mtt", "my_plugin.method:condense", artifacts="my_plugin.experts:"
                  "declare_experts")

The method itself keeps asking ``request.artifacts.get_or_build(...)`` for each expert, with
the same key: after the runner's waves those are cache hits, and without the runner (a direct
call, ``--no-cache``) they are built inline as before.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from .cells import canonical_json, short_hash

ARTIFACT_LEASE = "artifact-"  # a request's id among the cells' (leases, progress, executors)


@dataclass(frozen=True)
class ArtifactRequest:
    """One artifact a cell needs: ``load(build)(ctx, **args)`` gets or builds it."""

    kind: str
    build: str
    args: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    needs: tuple["ArtifactRequest", ...] = ()

    @property
    def artifact_id(self) -> str:
        return short_hash({"kind": self.kind, "build": self.build,
                           "args": dict(self.args)}, 20)

    # executors treat a request like a cell: an id, a label, a picklable dict
    @property
    def cell_id(self) -> str:
        return f"{ARTIFACT_LEASE}{self.artifact_id}"

    def label(self) -> str:
        if self.description:
            return f"{self.kind}[{self.description}]"
        return f"{self.kind}[{canonical_json(dict(self.args))[:80]}]"

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": {"kind": self.kind, "build": self.build, "args": dict(self.args),
                             "description": self.description,
                             "needs": [n.to_dict()["artifact"] for n in self.needs]}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArtifactRequest":
        a = data["artifact"] if "artifact" in data else data
        return cls(a["kind"], a["build"], dict(a.get("args", {})), a.get("description", ""),
                   tuple(cls.from_dict(n) for n in a.get("needs", ())))

    def function(self) -> Callable[..., Any]:
        module_name, _, attr = self.build.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj

    def resolve(self, ctx) -> Any:
        """The artifact (from the cache, or built now)."""
        return self.function()(ctx, **dict(self.args))


def build_artifact(request: ArtifactRequest, ctx) -> dict[str, Any]:
    """Run one request in whatever process calls it; a small result, never an exception."""
    start = time.perf_counter()
    hits, misses = ctx.artifacts.hits, ctx.artifacts.misses
    result: dict[str, Any] = {"artifact_id": request.artifact_id, "kind": request.kind,
                              "label": request.label()}
    try:
        request.resolve(ctx)
        result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the cells that need it will fail with the full traceback
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    result["built"] = ctx.artifacts.misses > misses
    result["loaded"] = ctx.artifacts.hits > hits
    result["wall_time_s"] = time.perf_counter() - start
    result["warnings"] = list(ctx.artifacts.warnings)
    ctx.artifacts.warnings.clear()
    return result


def declared(cells: Iterable, registry) -> dict:
    """``{cell_id: [requests]}`` for the cells whose task declares artifacts.  A cell with a
    ``tune`` grid needs what each of its points needs (a condenser option in the grid: one
    set per point), not what its untuned options would.  A declaration that raises declares
    nothing: the cell then fails, with that error, when it runs."""
    from .validation import TUNE_OPTION, grid_points, point_label, with_point

    out: dict[str, list[ArtifactRequest]] = {}
    loaded: dict[str, Any] = {}
    for cell in cells:
        try:
            spec = registry.get("task", cell.task)
            ref = getattr(spec, "artifacts", None)
            if not ref:
                continue
            if spec.name not in loaded:
                loaded[spec.name] = ref if callable(ref) else ArtifactRequest(
                    "", str(ref)).function()
            grid = cell.options.get(TUNE_OPTION)
            points = grid_points(grid) if grid else [{}]
            requests: dict[str, ArtifactRequest] = {}
            used_by: dict[str, list] = {}
            for point in points:
                for r in loaded[spec.name](with_point(cell, point) if point else cell,
                                           registry) or ():
                    requests.setdefault(r.artifact_id, r)
                    used_by.setdefault(r.artifact_id, []).append(point)
            for aid, r in requests.items():  # a point's own artifact says which, in its label
                if len(used_by[aid]) < len(points):
                    requests[aid] = replace(r, description=f"{r.description or r.kind}; "
                                            + "; ".join(map(point_label, used_by[aid])))
        except Exception:  # noqa: BLE001 - the cell reports it, with its traceback
            continue
        if requests:
            out[cell.cell_id] = list(requests.values())
    return out


def waves(requests: Iterable[ArtifactRequest]) -> list[list[ArtifactRequest]]:
    """Distinct requests (and what they need) in build order: each wave needs only earlier
    ones.  A request's depth is one more than the deepest of its ``needs``."""
    depth: dict[str, int] = {}
    by_id: dict[str, ArtifactRequest] = {}

    def visit(req: ArtifactRequest, trail: Sequence[str] = ()) -> int:
        rid = req.artifact_id
        if rid in trail:
            raise ValueError(f"artifact {req.label()} needs itself")
        if rid not in depth:
            depth[rid] = 1 + max((visit(n, (*trail, rid)) for n in req.needs), default=-1)
            by_id[rid] = req
        return depth[rid]

    for req in requests:
        visit(req)
    levels: list[list[ArtifactRequest]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for rid, d in depth.items():
        levels[d].append(by_id[rid])
    return levels
