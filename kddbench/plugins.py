"""The plugin manager and typed lookups over what the plugins registered.

Nothing here imports torch: specs carry lazy factories.  Use :func:`get_registry` everywhere
instead of calling ``pm.hook.*`` directly.

The families come from the spec classes (:data:`kddbench.specs.SPEC_CLASSES`: each names its
``hook``, ``title`` and ``singular``), so a new family is one spec class plus one hookspec.

A broken plugin never breaks kddbench: a plugin that fails to import, whose registration hook
raises or yields something that is not its family's spec, that implements a hook kddbench does
not have (a misspelt name), or that registers a name another plugin already registered (the
later one) is dropped with a one-line :class:`PluginLoadWarning` naming it and how to switch it
off.  Everything that does not need it works; looking up one of its names says why it is missing.
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
from typing import Any, Iterable, Sequence, TypeVar, overload

import pluggy

from . import hookspecs
from .errors import KddbenchError, UnknownNameError, unknown_message
from .specs import SPEC_CLASSES, PluginSpec

ENTRY_POINT_GROUP = "kddbench"
AUTOLOAD_ENV = "KDDBENCH_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "KDDBENCH_PLUGINS"  # extra modules or files, separated by os.pathsep or commas

S = TypeVar("S", bound=PluginSpec)


class PluginLoadWarning(UserWarning):
    """A plugin was dropped (it failed to load); the message is one line and says how to switch
    it off.  The CLI prints these as ``warning: ...`` lines."""


def families() -> dict[str, type[PluginSpec]]:
    """``{family: spec class}`` of every family whose hook exists, in the order ``list`` shows."""
    return {family: cls for family, cls in SPEC_CLASSES.items() if hasattr(hookspecs, cls.hook)}


def spec_class(family: str | type[S]) -> type[PluginSpec]:
    """The spec class of a family given by name or by class."""
    if isinstance(family, type):
        return family
    known = families()
    if family not in known:
        raise UnknownNameError("plugin family", family, known)
    return known[family]


def __getattr__(name: str):
    """The tables older code imports, derived from the spec classes."""
    if name == "FAMILY_TITLES":
        return {f: c.title for f, c in families().items()}
    if name == "FAMILY_SINGULAR":
        return {f: c.singular for f, c in families().items()}
    if name == "_HOOK_BY_FAMILY":
        return {f: c.hook for f, c in families().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Registry:
    """Specs by family and name, plus who registered each, and what was dropped and why."""

    pm: pluggy.PluginManager
    specs: dict[str, dict[str, PluginSpec]] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    load_warnings: list[str] = field(default_factory=list)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: plugin name -> why it was dropped (one line)
    dropped: dict[str, str] = field(default_factory=dict)
    #: (family, name) -> the dropped plugin that registered it
    dropped_names: dict[tuple[str, str], str] = field(default_factory=dict)
    #: plugin name -> how a user switches it off ("--disable-plugin NAME", ...)
    switch_off: dict[str, str] = field(default_factory=dict)

    def names(self, family: str | type[PluginSpec]) -> list[str]:
        return sorted(self.specs.get(spec_class(family).family, {}))

    @overload
    def get(self, family: type[S], name: str) -> S: ...

    @overload
    def get(self, family: str, name: str) -> PluginSpec: ...

    def get(self, family, name):
        """The spec called ``name`` (or an alias, or ``prefix:anything``), else a helpful error.

        ``family`` is a spec class (``registry.get(DatasetSpec, "mnist") -> DatasetSpec``) or a
        family name (``registry.get("dataset", "mnist")``).
        """
        cls = spec_class(family)
        family = cls.family
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
        silent = [p for p in self.dropped if p not in set(self.dropped_names.values())]
        raise UnknownNameError(  # a plugin that failed before registering anything may be it
            cls.singular, name, choices, because=self.why_missing(family, name),
            note="; ".join(f"{self._failure(p)}, and may be the one" for p in silent))

    def why_missing(self, family: str | type[PluginSpec], name: str) -> str | None:
        """``"plugin 'x' failed to load: ..."`` when ``name`` belongs to a dropped plugin."""
        family = spec_class(family).family
        owner = self.dropped_names.get((family, str(name).split("[", 1)[0]))
        return None if owner is None else self._failure(owner)

    def _failure(self, plugin: str, how_to_switch_off: bool = False) -> str:
        text = f"plugin {plugin!r} failed to load: {self.dropped[plugin]}"
        if how_to_switch_off:
            text += f" ({self.switch_off.get(plugin, 'remove it')} to silence this)"
        return text

    def canonical(self, family: str | type[PluginSpec], name: str) -> str:
        """Resolve aliases and normalise inline options:
        ``canonical("dataset", "fmnist") -> "fashion-mnist"``,
        ``canonical("architecture", "convnet[width=64,depth=2]") -> "convnet[depth=2,width=64]"``.
        """
        from . import names

        base, inline = names.parse(str(name))
        spec = self.get(family, base)
        base = base if spec.prefix and ":" in base else spec.name
        return names.join(base, inline)

    def owner(self, family: str | type[PluginSpec], name: str) -> str:
        return self.owners.get((spec_class(family).family, self.canonical(family, name)), "?")

    def plugin_versions(self) -> dict[str, str]:
        """Distribution versions of every loaded plugin package (for provenance)."""
        return dict(self.distributions.values())

    def drop(self, plugin_name: str, reason: str, names: Iterable[tuple[str, str]] = ()) -> None:
        """Drop a plugin before any of its specs is kept: unregister it (none of its hooks
        runs), remember why and each ``(family, name)`` it offered, and warn once."""
        self.dropped[plugin_name] = _one_line(reason)
        plugin = self.pm.get_plugin(plugin_name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for family_name in names:
            self.dropped_names.setdefault(family_name, plugin_name)
        self.distributions.pop(plugin_name, None)
        self.warn(self._failure(plugin_name, how_to_switch_off=True))

    def warn(self, message: str) -> None:
        self.load_warnings.append(message)
        warnings.warn(message, PluginLoadWarning, stacklevel=3)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _load_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"kddbench_local_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise KddbenchError(f"cannot load plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
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
    extra: Sequence[Any] = (),
    disable: Iterable[str] = (),
    autoload: bool | None = None,
) -> Registry:
    """Create a plugin manager, load entry points and ``extra`` plugins, collect every spec.

    extra:    module names or ``.py`` files to load in addition (CLI ``--plugin``), or plugin
              objects (a module, a class or an instance with ``@hookimpl`` methods).
    disable:  entry-point names to skip (CLI ``--disable-plugin``).
    autoload: load the ``kddbench`` entry-point group; defaults to true unless the environment
              variable ``KDDBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set.

    Broken plugins are dropped with a :class:`PluginLoadWarning` (see the module docstring); the
    warnings are also kept in ``registry.load_warnings``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    disable = set(disable)
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        for name in sorted(disable - {ep.name for ep in found}):  # a typo would do nothing
            registry.warn("--disable-plugin: " + unknown_message(
                "installed plugin", name, sorted(ep.name for ep in found)))
        values: dict[str, str] = {}
        for ep in found:
            if ep.name in values and values[ep.name] != ep.value:
                registry.warn(f"plugin {ep.name!r} ({ep.value}) not loaded: another installed "
                              f"plugin has that entry-point name ({values[ep.name]}); uninstall "
                              "one of them")
                continue
            values[ep.name] = ep.value
            if ep.name in disable or pm.has_plugin(ep.name) or ep.name in registry.dropped:
                continue
            registry.switch_off[ep.name] = f"switch it off with --disable-plugin {ep.name}"
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break kddbench
                registry.drop(ep.name, f"importing {ep.value}: {_exc(exc)}")
                continue
            if _register(registry, plugin, ep.name) and ep.dist is not None:
                registry.distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
    env_extra = [p for chunk in os.environ.get(PLUGINS_ENV, "").split(os.pathsep)
                 for p in chunk.split(",") if p.strip()]
    refs = [(ref.strip(), f"remove {ref.strip()} from {PLUGINS_ENV}") for ref in env_extra]
    refs += [(ref, f"remove --plugin {ref}" if isinstance(ref, (str, os.PathLike))
              else "leave it out of extra=") for ref in extra]
    for ref, off in refs:
        if isinstance(ref, (str, os.PathLike)):
            name = f"local:{ref}"
            if name in registry.dropped or pm.has_plugin(name):
                continue
            registry.switch_off[name] = off
            try:
                plugin = load_plugin_object(str(ref))
            except Exception as exc:  # an unimportable --plugin is dropped like any other
                registry.drop(name, str(exc) if isinstance(exc, KddbenchError) else _exc(exc))
                continue
        else:
            plugin = ref
            name = f"local:{getattr(ref, '__name__', type(ref).__name__)}"
            registry.switch_off[name] = off
        if pm.is_registered(plugin):
            continue
        _register(registry, plugin, name)
    _collect(registry)
    return registry


def _register(registry: Registry, plugin: Any, name: str) -> bool:
    try:
        registry.pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:  # bad hook arguments, name in use
        registry.drop(name, _exc(exc))
        return False
    return True


def _collect(registry: Registry) -> None:
    """Call every plugin's registration hooks, plugin by plugin in load order, and keep what a
    healthy plugin registers; drop the plugin as a whole at its first problem."""
    pm = registry.pm
    fams = families()
    hook_names = sorted(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))
    for family in fams:
        registry.specs[family] = {}
        registry.aliases[family] = {}
    for plugin_name, plugin in list(pm.list_name_plugin()):
        if plugin is None:
            continue
        callers = pm.get_hookcallers(plugin) or []
        misspelt = [c.name for c in callers if not c.has_spec()
                    and any(i.plugin is plugin and not i.optionalhook for i in c.get_hookimpls())]
        if misspelt:
            registry.drop(plugin_name, "its hook implementation is not a kddbench hook: "
                          + unknown_message("hook", misspelt[0], hook_names))
            continue
        if not callers:
            registry.warn(f"plugin {plugin_name!r} implements no kddbench hook (are its "
                          "functions decorated with kddbench.hookimpl?)")
            continue
        problem, found = _plugin_specs(plugin, plugin_name, fams, registry)
        if problem:
            registry.drop(plugin_name, problem, [(s.family, s.name) for s in found])
            continue
        for spec in found:  # all or nothing: the plugin is healthy, keep every spec
            registry.specs[spec.family][spec.name] = spec
            registry.owners[(spec.family, spec.name)] = plugin_name
            for alias in spec.aliases:
                registry.aliases[spec.family][alias] = spec.name
    try:
        pm.check_pending()  # nothing left that matches no hook (the loop dropped those)
    except pluggy.PluginValidationError as exc:  # pragma: no cover - the loop above drops these
        raise KddbenchError(str(exc)) from exc


def _plugin_specs(plugin: Any, plugin_name: str, fams: dict[str, type[PluginSpec]],
                  registry: Registry) -> tuple[str | None, list[PluginSpec]]:
    """``(problem or None, specs)`` from one plugin's registration hooks."""
    found: list[PluginSpec] = []
    taken: set[tuple[str, str]] = set()
    for family, cls in fams.items():
        hook = getattr(registry.pm.hook, cls.hook, None)
        if hook is None:
            continue
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                specs = list(impl.function() or ())
            except Exception as exc:  # noqa: BLE001 - a broken plugin is dropped, not fatal
                return f"{cls.hook}() raised {_exc(exc)}", found
            for spec in specs:
                if not isinstance(spec, cls):
                    return (f"{cls.hook}() yielded {type(spec).__name__}, expected a "
                            f"{cls.__name__} ({family} spec)"), found
                found.append(spec)
                for key in (spec.name, *spec.aliases):
                    what = "name" if key == spec.name else "alias"
                    table, aliases = registry.specs[family], registry.aliases[family]
                    if key in table or key in aliases:
                        first = registry.owners.get((family, aliases.get(key, key)), "?")
                        return (f"duplicate {cls.singular} {what} {key!r}: already registered "
                                f"by {first!r}"), found
                    if (family, key) in taken:
                        return f"registers the {cls.singular} {what} {key!r} twice", found
                    taken.add((family, key))
    return None, found


_DEFAULT: Registry | None = None
_DEFAULT_ARGS: tuple = ()


def configure(extra: Sequence[Any] = (), disable: Iterable[str] = (),
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
