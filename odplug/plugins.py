"""Finding plugins and collecting what they register.

Load order, as in tox: the hook specs, then the built-in plugins of `DEFAULT_PLUGINS`, then
third-party plugins from the ``odplug`` entry-point group, then ``check_pending()`` so a
misspelled hook fails loudly. A third-party plugin that fails to import, implements an unknown
hook, raises while registering, or registers a name already taken is reported as one error line
naming it and is left out; every other plugin keeps working. Built-ins register first, so their
names cannot be taken over by accident.

Disable plugins by name with ``ODPLUG_DISABLE=name,other`` (or ``disabled=`` here).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from odplug import __version__, hookspecs
from odplug.components import Component, DatasetWriter, Exporter, Importer, Trainer
from odplug.errors import OdplugError

DEFAULT_PLUGINS: tuple[str, ...] = (
    "odplug_builtins.supervisely",
    "odplug_builtins.tf_csv",
    "odplug_builtins.tfrecord",
    "odplug_builtins.tfjs",
    "odplug_builtins.trainer",
    "odplug_builtins.tflite",
    "odplug_builtins.edgetpu",
)
DISABLE_ENV = "ODPLUG_DISABLE"

C = TypeVar("C", bound=Component)


@dataclass(frozen=True)
class Kind(Generic[C]):
    """One kind of component: its registration hook, base class and user-facing words."""

    key: str
    hook: str
    base: type[C]
    option: str


KINDS: tuple[Kind[Any], ...] = (
    Kind("importers", "odplug_register_importers", Importer, "--format"),
    Kind("writers", "odplug_register_writers", DatasetWriter, "--to"),
    Kind("trainers", "odplug_register_trainers", Trainer, "--trainer"),
    Kind("exporters", "odplug_register_exporters", Exporter, "--to"),
)


@dataclass
class PluginInfo:
    """What `inv plugins` shows for one plugin."""

    name: str
    version: str
    source: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)
    disabled: bool = False
    error: str | None = None


@dataclass
class Registry:
    """Every registered component by kind and name, and which plugin gave it."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {kind.key: {} for kind in KINDS}
    )
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [info.error for info in self.plugins.values() if info.error]

    @property
    def importers(self) -> dict[str, Importer]:
        return self.components["importers"]  # type: ignore[return-value]

    @property
    def writers(self) -> dict[str, DatasetWriter]:
        return self.components["writers"]  # type: ignore[return-value]

    @property
    def trainers(self) -> dict[str, Trainer]:
        return self.components["trainers"]  # type: ignore[return-value]

    @property
    def exporters(self) -> dict[str, Exporter]:
        return self.components["exporters"]  # type: ignore[return-value]

    def get(self, kind: str, name: str) -> Component:
        """The component called `name`, or an error listing the choices and a likely typo."""
        table = self.components[kind]
        if name in table:
            return table[name]
        singular = kind.rstrip("s")
        choices = ", ".join(sorted(table)) or "none registered"
        hint = difflib.get_close_matches(name, list(table), n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise OdplugError(f"unknown {singular} {name!r}.{did_you_mean} Available: {choices}.")

    def owner(self, kind: str, name: str) -> str:
        return self.owners[(kind, name)]


def _disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def get_plugin_manager(
    *, disabled: Iterable[str] = (), entry_points: bool = True
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """The plugin manager with specs, built-ins and (optionally) entry-point plugins loaded."""
    blocked = set(disabled) | _disabled_from_env()
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    for module_name in DEFAULT_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        info = PluginInfo(name, __version__, "built-in", builtin=True)
        infos[name] = info
        if name in blocked:
            info.disabled = True
            pm.set_blocked(name)
            continue
        pm.register(importlib.import_module(module_name), name=name)

    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.NAME):
            dist = getattr(ep, "dist", None)
            version = dist.version if dist is not None else "?"
            source = f"{dist.name if dist is not None else '?'} (entry point {ep.value})"
            if ep.name in infos:
                other = infos[ep.name]
                infos[f"{ep.name} ({source})"] = PluginInfo(
                    ep.name, version, source, builtin=False,
                    error=f"plugin {ep.name!r} from {source}: the name is already used by "
                    f"{other.source} plugin {other.name!r}; ignored",
                )
                continue
            info = PluginInfo(ep.name, version, source, builtin=False)
            infos[ep.name] = info
            if ep.name in blocked:
                info.disabled = True
                pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as error:  # a broken plugin must not take the others down
                info.error = f"plugin {ep.name!r} from {source} failed to load: " + _short(error)

    _check_pending(pm, infos)
    return pm, infos


def _check_pending(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    """Like `pm.check_pending()`, but drops the offending third-party plugin instead of dying."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as error:
            name = pm.get_name(error.plugin) or "?"
            info = infos.get(name)
            if info is None or info.builtin:
                raise
            pm.unregister(error.plugin)
            info.error = f"plugin {name!r} from {info.source}: " + _short(error)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def collect(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> Registry:
    """Call every registration hook, one plugin at a time, so each is isolated and credited."""
    registry = Registry(plugins=infos)
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin_name not in infos:  # registered inline, e.g. by a test or an embedding program
            version = str(getattr(plugin, "__version__", "?"))
            infos[plugin_name] = PluginInfo(plugin_name, version, "registered inline", False)
    for kind in KINDS:
        impls = list(reversed(getattr(pm.hook, kind.hook).get_hookimpls()))
        impls.sort(key=lambda impl: not infos[impl.plugin_name].builtin)
        for impl in impls:
            info = infos[impl.plugin_name]
            if info.error:
                continue
            register = _registrar(registry, kind, info)
            try:
                impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
            except Exception as error:
                info.error = f"plugin {info.name!r} from {info.source} failed in {kind.hook}: " + (
                    str(error) if isinstance(error, OdplugError) else _short(error)
                )
                _withdraw(registry, info)
    return registry


def _registrar(registry: Registry, kind: Kind[Any], info: PluginInfo) -> Callable[[Any], None]:
    def register(component: Any) -> None:
        if not isinstance(component, kind.base):
            raise OdplugError(
                f"register() takes {kind.base.__module__}.{kind.base.__name__} objects, "
                f"got {type(component).__name__}"
            )
        name = component.name
        if not name:
            raise OdplugError(f"{kind.base.__name__} was registered without a name")
        table = registry.components[kind.key]
        if name in table:
            owner = registry.owner(kind.key, name)
            raise OdplugError(
                f"{kind.key[:-1]} name {name!r} is already registered by plugin {owner!r}"
            )
        table[name] = component
        registry.owners[(kind.key, name)] = info.name
        info.registered.setdefault(kind.key, []).append(name)

    return register


def _withdraw(registry: Registry, info: PluginInfo) -> None:
    """Remove what a failing plugin registered before it failed: all of it or nothing."""
    for kind_key, names in info.registered.items():
        for name in names:
            registry.components[kind_key].pop(name, None)
            registry.owners.pop((kind_key, name), None)
    info.registered.clear()


_cache: dict[tuple[frozenset[str], bool], Registry] = {}


def load_registry(*, disabled: Iterable[str] = (), entry_points: bool = True) -> Registry:
    """The registry for this process (cached: plugins are loaded once)."""
    key = (frozenset(disabled) | frozenset(_disabled_from_env()), entry_points)
    if key not in _cache:
        pm, infos = get_plugin_manager(disabled=key[0], entry_points=entry_points)
        _cache[key] = collect(pm, infos)
    return _cache[key]
