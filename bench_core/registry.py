"""Registries of plugins, filled from the ``bdbench`` entry-point group through pluggy.

Built-in plugins and third-party packages arrive by exactly the same path: the core never imports a plugin by
name. One :class:`Registry` per kind; a duplicate name or a class of the wrong base is an error, an unknown
name gets a "did you mean".
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, Iterator, TypeVar

import pluggy

from bench_core import hookspecs
from bench_core.errors import BenchError, unknown_name_error
from bench_core.interfaces import BASES, KINDS, Attack, Defense, Detector, Kind, Plugin, Probe

T = TypeVar("T", bound=Plugin)
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_HOOKS: dict[Kind, str] = {
    "attack": "bdbench_register_attacks",
    "defense": "bdbench_register_defenses",
    "detector": "bdbench_register_detectors",
    "probe": "bdbench_register_probes",
}


class RegistryError(BenchError):
    """A plugin package registered something invalid (duplicate, bad name, wrong base class)."""


@dataclass
class Registry(Generic[T]):
    """Name -> plugin class for one kind."""

    kind: Kind
    _classes: dict[str, type[T]] = field(default_factory=dict)
    _sources: dict[str, str] = field(default_factory=dict)

    def add(self, cls: type[T], source: str) -> None:
        base = BASES[self.kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RegistryError(f"{source} registered {cls!r} as a {self.kind}, but it is not a {base.__name__}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"{source}: {self.kind} name {name!r} must be lowercase snake_case "
                                f"with optional dotted variant tags, e.g. 'decomp_rep.oracle'")
        if name in self._classes:
            raise RegistryError(f"duplicate {self.kind} name {name!r}: registered by {self._sources[name]} "
                                f"and by {source}")
        self._classes[name] = cls
        self._sources[name] = source

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise unknown_name_error(self.kind, name, self._classes) from None

    def source(self, name: str) -> str:
        return self._sources[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names, sorted; ``pattern`` is a shell wildcard (``decomp_rep*``)."""
        return sorted(n for n in self._classes if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)


@dataclass
class PluginRegistry:
    """All four registries together."""

    attacks: Registry[Attack] = field(default_factory=lambda: Registry("attack"))
    defenses: Registry[Defense] = field(default_factory=lambda: Registry("defense"))
    detectors: Registry[Detector] = field(default_factory=lambda: Registry("detector"))
    probes: Registry[Probe] = field(default_factory=lambda: Registry("probe"))

    def of(self, kind: Kind) -> Registry:
        return {"attack": self.attacks, "defense": self.defenses,
                "detector": self.detectors, "probe": self.probes}[kind]

    def create(self, kind: Kind, name: str, config: dict | None = None, preset: str | None = None) -> Plugin:
        """Instantiate plugin ``name`` with ``config`` applied over ``preset``; errors are one-line BenchErrors."""
        from pydantic import ValidationError

        from bench_core.errors import config_error

        cls = self.of(kind).get(name)
        if preset is not None:
            if preset not in cls.presets:
                raise unknown_name_error(f"preset of {kind} {name!r}", preset, cls.presets)
            config = {**cls.presets[preset], **(config or {})}
        try:
            return cls(config)
        except ValidationError as exc:
            raise config_error(f"config for {kind} {name!r}", exc) from None


def plugin_manager(extra_plugins: tuple[object, ...] = ()) -> pluggy.PluginManager:
    """A pluggy manager with the bdbench hookspecs and every ``bdbench`` entry point loaded."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    _load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise RegistryError(f"plugin {exc.plugin!r} implements a hook that bdbench does not define: {exc}") from None
    return pm


ALLOWLIST_ENV = "BDBENCH_PLUGINS"
"""A comma-separated allowlist of plugin distributions (``bdbench-attacks,bdbench-decomp``): when set, only
their entry points are imported — an installed package not listed never runs code in bdbench."""


def plugin_allowlist() -> set[str] | None:
    """The normalised distribution names ``BDBENCH_PLUGINS`` allows, or None when it is unset (all)."""
    import os

    text = os.environ.get(ALLOWLIST_ENV)
    if text is None:
        return None
    return {_normalise(name) for name in text.split(",") if name.strip()}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Import every ``bdbench`` entry point (of the allowed distributions, see :data:`ALLOWLIST_ENV`); a
    plugin that fails to import is a one-line error naming it, and so is an allowlist entry that names no
    installed plugin distribution."""
    import importlib.metadata

    allowed = plugin_allowlist()
    available: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        if any(ep.group == hookspecs.PROJECT for ep in dist.entry_points):
            available[_normalise(dist.metadata["name"])] = dist.metadata["name"]
    if allowed is not None and not allowed:
        raise RegistryError(f"{ALLOWLIST_ENV} is set but names no distribution, so it would load no plugin; unset "
                            f"it to load every installed plugin, or list some: "
                            f"{', '.join(sorted(available.values())) or 'none installed'}")
    if allowed is not None:
        unknown = sorted(allowed - set(available))
        if unknown:
            import difflib

            hints = [f"{u!r} (did you mean {near[0]!r}?)" if (near := difflib.get_close_matches(u, available, n=1))
                     else repr(u) for u in unknown]
            raise RegistryError(f"{ALLOWLIST_ENV} names {', '.join(hints)}, not an installed bdbench plugin "
                                f"distribution; installed: {', '.join(sorted(available.values())) or 'none'}")
    for dist in importlib.metadata.distributions():
        if allowed is not None and _normalise(dist.metadata["name"]) not in allowed:
            continue
        for ep in dist.entry_points:
            if ep.group != hookspecs.PROJECT or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party package must not take the whole CLI down
                raise RegistryError(f"plugin package {dist.metadata['name']} (entry point {ep.name!r} = "
                                    f"{ep.value}) failed to import: {type(exc).__name__}: {exc}") from None
            pm.register(plugin, name=ep.name)
            _SOURCES[id(plugin)] = f"{dist.metadata['name']} {dist.version}"


_SOURCES: dict[int, str] = {}
"""id(plugin module) -> "distribution version", for `bdbench list` and error messages."""


def build_registry(pm: pluggy.PluginManager) -> PluginRegistry:
    """Call every registration hook and fill the registries, remembering which plugin provided what."""
    registry = PluginRegistry()
    for kind in KINDS:
        hook = getattr(pm.hook, _HOOKS[kind])
        for impl in hook.get_hookimpls():
            source = _source_name(pm, impl.plugin)
            for cls in impl.function() or ():
                registry.of(kind).add(cls, source)
    return registry


def _source_name(pm: pluggy.PluginManager, plugin: object) -> str:
    return _SOURCES.get(id(plugin)) or pm.get_name(plugin) or repr(plugin)


@lru_cache(maxsize=1)
def default_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager of every installed plugin package (loaded once per process): the registration
    hooks fill :func:`default_registry`; the report hooks (metric metadata, report sections) are called on it."""
    return plugin_manager()


@lru_cache(maxsize=1)
def default_registry() -> PluginRegistry:
    """The registry of every installed plugin package (loaded once per process)."""
    return build_registry(default_plugin_manager())
