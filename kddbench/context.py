"""What a task plugin may use while it runs one cell: data, networks, recipes, artifacts."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import names
from .cells import Cell, short_hash
from .data import DataSplits
from .errors import KddbenchError
from .plugins import Registry
from .protocol import Recipe, make_generator, seeded
from .store import CHECKPOINTS, ArtifactCache, atomic_write_text

DATA_ENV = "KDDBENCH_DATA"
DOWNLOAD_ENV = "KDDBENCH_DOWNLOAD"


def _smoke_per_class() -> int | None:
    from .smoke import env_per_class

    return env_per_class()


def default_data_root() -> Path:
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kddbench" / "data"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KddbenchError("--device cuda was asked for but torch sees no GPU; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise KddbenchError(f"unknown --device {name!r}: expected auto, cpu, cuda, cuda:N or "
                            "another device type torch knows (mps, xpu, ...)") from None


def derive_seed(seed: int, *stream: Any) -> int:
    """An independent 63-bit seed for one named random stream of a cell."""
    return int(short_hash([seed, *stream], 15), 16)


class Checkpoint:
    """Resumable state of one long computation, kept in the artifact cache.  ``on_save(state)``
    hears of every save (the run context notes the progress for ``kddbench status``)."""

    def __init__(self, cache: ArtifactCache, key: Mapping[str, Any],
                 on_save: Callable[[Any], None] | None = None):
        self.cache, self.key, self.on_save = cache, dict(key), on_save

    def load(self) -> Any | None:
        return self.cache.load(CHECKPOINTS, self.key) if self.cache.enabled else None

    def save(self, state: Any) -> None:
        if self.cache.enabled:
            self.cache.save(CHECKPOINTS, self.key, state)
            if self.on_save is not None:
                self.on_save(state)

    def clear(self) -> None:
        self.cache.discard(CHECKPOINTS, self.key)

    @property
    def name(self) -> str:
        """``"checkpoints/<key>"``: what names this state in the cache (and in a release)."""
        return f"{CHECKPOINTS}/{self.cache.key(self.key)}"


@dataclass
class RunContext:
    registry: Registry
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_root: Path = field(default_factory=default_data_root)
    download: bool = field(default_factory=lambda: bool(os.environ.get(DOWNLOAD_ENV)))
    # smoke runs (kddbench.smoke): at most this many images per class in each split
    data_per_class: int | None = field(default_factory=lambda: _smoke_per_class())
    artifacts: ArtifactCache = field(default_factory=ArtifactCache)
    log: Callable[[str], None] = lambda message: None
    output_dir: Path | None = None  # the suite's report directory, for pictures and curves
    # where the work item now running notes its last checkpoint (kddbench.runner.execute)
    progress_file: Path | None = None
    _data: dict[str, DataSplits] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # per-cell scratch (e.g. curves)

    # data -----------------------------------------------------------------
    def data(self, name: str, options: Mapping[str, Any] | None = None,
             cell: Cell | None = None) -> DataSplits:
        """A data set's splits on this context's device (loaded once per process).

        Options come from ``options``, else from the suite's options for it in ``cell``."""
        spec = self.registry.get("dataset", name)
        if options is None and cell is not None:
            options = cell.options.get(spec.name)
        opts = spec.resolve_options(options)
        opts.update(names.parse(name)[1])
        key = f"{spec.name}:{short_hash(opts)}:{self.data_per_class or ''}"
        if key not in self._data:
            splits = spec.load()(self.data_root, self.download, **opts)
            if self.data_per_class:
                from .smoke import cap_per_class

                splits = cap_per_class(splits, self.data_per_class)
            splits.traits = frozenset(splits.traits) | frozenset(getattr(spec, "traits", ()))
            splits.fingerprint()
            self._data[key] = splits.to(self.device)
        return self._data[key]

    # networks --------------------------------------------------------------
    def build_net(self, arch: str, data: DataSplits, seed: int,
                  options: Mapping[str, Any] | None = None,
                  cell: Cell | None = None, empty: bool = False) -> torch.nn.Module:
        """A fresh network for ``data``, its weights drawn from ``seed`` alone.

        Options come from ``options``, else from the suite's options for it in ``cell``.
        ``empty``: the caller loads every weight from a stored state, so the network is built
        on the meta device and materialised uninitialised (no initialisation is computed: a
        ResNet-50's takes a second on a CPU); where that cannot be done safely (a buffer a
        state dict does not hold, a constructor that needs real tensors) it is built as usual."""
        spec = self.registry.get("architecture", arch)
        if options is None and cell is not None:
            options = cell.options.get(spec.name)
        base, inline = names.parse(arch)
        opts = spec.resolve_options(options)
        opts.update(inline)
        if spec.prefix and ":" in base:
            opts["name"] = base.split(":", 1)[1]
        build = spec.load()
        if empty:
            try:
                with torch.device("meta"):
                    net = build(data.channels, data.num_classes, data.image_size, **opts)
                stored = set(net.state_dict())
                if all(name in stored for name, _ in net.named_buffers()):
                    return net.to_empty(device=self.device)
            except Exception:  # noqa: BLE001 - any failure: the usual build below
                pass
        with seeded(seed):
            net = build(data.channels, data.num_classes, data.image_size, **opts)
        return net.to(self.device)

    def checkpoint(self, key: Mapping[str, Any]) -> Checkpoint:
        checkpoint = Checkpoint(self.artifacts, key)
        checkpoint.on_save = lambda state: self.note_progress(state, checkpoint.name)
        return checkpoint

    def note_progress(self, state: Any, checkpoint: str | None = None) -> None:
        """A checkpoint of the running item was saved: its iteration (where the state says),
        the time and the checkpoint's ``"checkpoints/<key>"`` (so ``kddbench release --kind
        checkpoints`` can ship an unfinished computation), for ``kddbench status``; never an
        error for the computation."""
        if self.progress_file is None:
            return
        note: dict[str, Any] = {"time": time.time()}
        if isinstance(state, Mapping) and isinstance(state.get("iteration"), int):
            note["iteration"] = state["iteration"]
        if checkpoint:
            note["checkpoint"] = checkpoint
        try:
            atomic_write_text(self.progress_file, json.dumps(note))
        except OSError:
            pass

    # randomness and recipes --------------------------------------------------
    def generator(self, cell: Cell, *stream: Any) -> torch.Generator:
        return make_generator(derive_seed(cell.seed, *stream), self.device)

    def seed(self, cell: Cell, *stream: Any) -> int:
        return derive_seed(cell.seed, *stream)

    @staticmethod
    def recipe(cell: Cell) -> Recipe:
        return Recipe.from_mapping(cell.recipe)

    def augment(self, name: str | None, data: DataSplits):
        """The batched augmentation ``name`` (inline options allowed: ``dsa[single=false]``)
        for ``data``, or None for no augmentation."""
        if name in ("", None):
            return None
        spec = self.registry.get("augmentation", name)
        if getattr(spec, "level", "batch") != "batch":
            raise KddbenchError(f"{spec.name!r} is a data-set-level transform, not a batch "
                                "augmentation")
        opts = spec.resolve_options(names.parse(str(name))[1])
        return spec.load()(data, **opts)

    def transform(self, name: str | None, data: DataSplits) -> DataSplits:
        """``data`` with the data-set-level transform ``name`` (e.g. ``zca``) applied to both
        splits; the fitted state is an artifact keyed by the data set's fingerprint, and the
        transformed splits are kept for this process like the loaded ones."""
        if name in ("", "none", None):
            return data
        spec = self.registry.get("augmentation", name)
        if getattr(spec, "level", "batch") != "dataset":
            raise KddbenchError(f"{spec.name!r} is a batch augmentation, not a data-set-level "
                                "transform")
        opts = spec.resolve_options(names.parse(str(name))[1])
        key = {"transform": spec.name, "version": spec.version, "options": opts,
               "data": data.fingerprint()}
        kept = f"transform:{short_hash(key)}"
        if kept in self._data:
            return self._data[kept]
        transform = spec.load()(data, **opts)
        state = self.artifacts.get_or_build("transforms", key, lambda: transform.fit(data.x_train))
        problem = transform.check(state) if hasattr(transform, "check") else None
        if problem:
            self.artifacts.discard("transforms", key)
            state = self.artifacts.get_or_build("transforms", key,
                                                lambda: transform.fit(data.x_train))
        out = DataSplits(data.name, transform.apply(state, data.x_train), data.y_train,
                         transform.apply(state, data.x_test), data.y_test, data.classes,
                         data.mean, data.std, data.notes, None,
                         frozenset(data.traits) | {spec.name})  # methods can tell (e.g. zca)
        out.fingerprint()
        self._data[kept] = out
        return out
