"""Cells: one independent, hashable experiment each.

A cell's identity is a hash of everything that determines its result: the task, its axes
(data set, method, budget, architectures, ...), the method options, the resolved training
recipe, the versions of every plugin it names and of the protocol, and the seed.  The store,
resume, ``compare`` and every executor key on it.  ``config_id`` is the same hash without the
seed, so seeds of one configuration can be aggregated.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One experiment.

    experiment: the suite experiment it came from (a label, not part of the identity).
    task:       the task plugin's name.
    axes:       the task's axes, e.g. {"dataset": "mnist", "method": "dm", "ipc": 10, ...}.
    options:    method options, by plugin family/name (already merged with defaults).
    recipe:     the resolved training recipe (a dict of :class:`kddbench.protocol.Recipe`).
    protocol:   the name of the suite protocol the recipe came from (a label).
    versions:   versions of the protocol, the task and every plugin the cell names.
    seed:       the seed every generator of this cell derives from.
    """

    experiment: str
    task: str
    axes: Mapping[str, Any]
    options: Mapping[str, Any]
    recipe: Mapping[str, Any]
    protocol: str
    versions: Mapping[str, str]
    seed: int
    _ids: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def identity(self, with_seed: bool = True) -> dict[str, Any]:
        ident = {
            "task": self.task,
            "axes": dict(self.axes),
            "options": dict(self.options),
            "recipe": dict(self.recipe),
            "versions": dict(self.versions),
        }
        if with_seed:
            ident["seed"] = self.seed
        return ident

    @property
    def cell_id(self) -> str:
        if "cell" not in self._ids:
            self._ids["cell"] = short_hash(self.identity())
        return self._ids["cell"]

    @property
    def config_id(self) -> str:
        if "config" not in self._ids:
            self._ids["config"] = short_hash(self.identity(with_seed=False))
        return self._ids["config"]

    def get(self, key: str, default: Any = None) -> Any:
        return self.axes.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.axes[key]

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.axes.items() if v is not None]
        return f"{self.task}[{', '.join(parts)}, seed={self.seed}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "task": self.task,
            "axes": dict(self.axes),
            "options": dict(self.options),
            "recipe": dict(self.recipe),
            "protocol": self.protocol,
            "versions": dict(self.versions),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Cell":
        return cls(data["experiment"], data["task"], dict(data["axes"]), dict(data["options"]),
                   dict(data["recipe"]), data["protocol"], dict(data["versions"]),
                   int(data["seed"]))
