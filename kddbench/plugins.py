"""The plugin manager and typed lookups over what the plugins registered.

Nothing here imports torch: specs carry lazy factories.  Use :func:`get_registry` everywhere
instead of calling ``pm.hook.*`` directly.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pluggy

from . import hookspecs
from .errors import KddbenchError, UnknownNameError
from .specs import PluginSpec

ENTRY_POINT_GROUP = "kddbench"
AUTOLOAD_ENV = "KDDBENCH_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "KDDBENCH_PLUGINS"  # extra modules or files, separated by os.pathsep or commas

_HOOK_BY_FAMILY = {
    "dataset": "kddbench_datasets",
    "architecture": "kddbench_architectures",
    "kd_method": "kddbench_kd_methods",
    "condenser": "kddbench_condensers",
    "task": "kddbench_tasks",
    "executor": "kddbench_executors",
    "reporter": "kddbench_reporters",
    "augmentation": "kddbench_augmentations",
    "section": "kddbench_report_sections",
}
FAMILY_TITLES = {
    "dataset": "datasets",
    "architecture": "architectures",
    "kd_method": "knowledge-distillation methods",
    "condenser": "condensation methods",
    "task": "tasks",
    "executor": "executors",
    "reporter": "reporters",
    "augmentation": "augmentations",
    "section": "report sections",
}

FAMILY_SINGULAR = {
    "dataset": "dataset",
    "architecture": "architecture",
    "kd_method": "KD method",
    "condenser": "condensation method",
    "task": "task",
    "executor": "executor",
    "reporter": "reporter",
    "augmentation": "augmentation",
    "section": "report section",
}


@dataclass
class Registry:
    """Specs by family and name, plus who registered each."""

    pm: pluggy.PluginManager
    specs: dict[str, dict[str, PluginSpec]] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    load_warnings: list[str] = field(default_factory=list)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def names(self, family: str) -> list[str]:
        return sorted(self.specs.get(family, {}))

    def get(self, family: str, name: str) -> PluginSpec:
        """The spec called ``name`` (or an alias, or ``prefix:anything``), else a helpful error."""
        table = self.specs.get(family, {})
        name = str(name).split("[", 1)[0]  # inline options: convnet[width=64] -> convnet
        key = self.aliases.get(family, {}).get(name, name)
        if key in table:
            return table[key]
        if ":" in str(name):
            head = str(name).split(":", 1)[0]
            spec = table.get(head)
            if spec is not None and spec.prefix:
                return spec
        choices = list(table) + list(self.aliases.get(family, {}))
        choices += [f"{n}:<name>" for n, s in table.items() if s.prefix]
        raise UnknownNameError(FAMILY_SINGULAR[family], name, choices)

    def canonical(self, family: str, name: str) -> str:
        """Resolve aliases and normalise inline options:
        ``canonical("dataset", "fmnist") -> "fashion-mnist"``,
        ``canonical("architecture", "convnet[width=64,depth=2]") -> "convnet[depth=2,width=64]"``.
        """
        from . import names

        base, inline = names.parse(str(name))
        spec = self.get(family, base)
        base = base if spec.prefix and ":" in base else spec.name
        return names.join(base, inline)

    def owner(self, family: str, name: str) -> str:
        return self.owners.get((family, self.canonical(family, name)), "?")

    def plugin_versions(self) -> dict[str, str]:
        """Distribution versions of every loaded plugin package (for provenance)."""
        return dict(self.distributions.values())


def _load_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"kddbench_local_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise KddbenchError(f"cannot load plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_plugin_object(ref: str):
    """Import a plugin given as a module name or a path to a ``.py`` file."""
    path = Path(ref)
    if ref.endswith(".py") or path.exists():
        if not path.exists():
            raise KddbenchError(f"plugin file not found: {ref}")
        return _load_file(path.resolve())
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise KddbenchError(f"cannot import plugin module {ref!r}: {exc}") from exc


def build_registry(
    extra: Sequence[str] = (),
    disable: Iterable[str] = (),
    autoload: bool | None = None,
) -> Registry:
    """Create a plugin manager, load entry points and ``extra`` plugins, collect every spec.

    extra:    module names or ``.py`` files to load in addition (CLI ``--plugin``).
    disable:  entry-point names to skip (CLI ``--disable-plugin``).
    autoload: load the ``kddbench`` entry-point group; defaults to true unless the environment
              variable ``KDDBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    disable = set(disable)
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disable or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break kddbench
                msg = f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}"
                registry.load_warnings.append(msg)
                warnings.warn(msg, stacklevel=2)
                continue
            pm.register(plugin, name=ep.name)
            if ep.dist is not None:
                registry.distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
    env_extra = [p for chunk in os.environ.get(PLUGINS_ENV, "").split(os.pathsep)
                 for p in chunk.split(",") if p.strip()]
    for ref in [*env_extra, *extra]:
        plugin = load_plugin_object(ref.strip())
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=f"local:{ref}")
    _collect(registry)
    return registry


def _collect(registry: Registry) -> None:
    pm = registry.pm
    for family, hook_name in _HOOK_BY_FAMILY.items():
        table: dict[str, PluginSpec] = {}
        aliases: dict[str, str] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            owner = pm.get_name(impl.plugin) or repr(impl.plugin)
            for spec in impl.function() or ():
                if getattr(spec, "family", None) != family:
                    raise KddbenchError(
                        f"plugin {owner!r} returned {type(spec).__name__} from {hook_name}; "
                        f"expected a {family} spec")
                if spec.name in table or spec.name in aliases:
                    raise KddbenchError(
                        f"duplicate {family} name {spec.name!r}: registered by "
                        f"{registry.owners[(family, aliases.get(spec.name, spec.name))]!r} "
                        f"and {owner!r}")
                table[spec.name] = spec
                registry.owners[(family, spec.name)] = owner
                for alias in spec.aliases:
                    if alias in table or alias in aliases:
                        raise KddbenchError(
                            f"duplicate {family} alias {alias!r} (from {owner!r})")
                    aliases[alias] = spec.name
        registry.specs[family] = table
        registry.aliases[family] = aliases


_DEFAULT: Registry | None = None
_DEFAULT_ARGS: tuple = ()


def configure(extra: Sequence[str] = (), disable: Iterable[str] = (),
              autoload: bool | None = None) -> Registry:
    """(Re)build the process-wide registry with these options and return it."""
    global _DEFAULT, _DEFAULT_ARGS
    _DEFAULT = build_registry(extra, disable, autoload)
    _DEFAULT_ARGS = (tuple(extra), tuple(disable), autoload)
    return _DEFAULT


def get_registry() -> Registry:
    """The process-wide registry (built with default options on first use)."""
    if _DEFAULT is None:
        configure()
    assert _DEFAULT is not None
    return _DEFAULT


def registry_args() -> tuple:
    """The options the current registry was built with (for worker processes)."""
    return _DEFAULT_ARGS
