"""Finding plugins and collecting what they register.

Load order, as in tox: the hook specs, then the built-in plugins of `DEFAULT_PLUGINS`, then
third-party plugins from the ``odplug`` entry-point group, then ``check_pending()`` so a
misspelled hook fails loudly.

Registration hooks run through pluggy's own call loop, one plugin at a time
(``pm.subset_hook_caller``), so each plugin gets a `Registrar` that knows whose call it is:
what a plugin registers is credited to it, and a plugin that raises is withdrawn whole while
the others keep working. The plugins are called in pluggy's order (``tryfirst`` first,
``trylast`` last, otherwise the plugin registered last first) and every hook wrapper runs
around each plugin's call. The built-ins are ``trylast``, so a third-party plugin that
registers a built-in's name is called first and wins on purpose; when two plugins register one
name the first called keeps it and the other is warned about, its other registrations kept.

A third-party plugin that fails to import (``sys.exit()`` included), implements an unknown
hook, raises while registering or registers a component that lacks its kind's working method
(an importer without ``read()``...) is reported as one error line naming it and left out.

Disable plugins by name with ``ODPLUG_DISABLE=name,other`` (or ``disabled=`` here).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Generic, TypeVar, cast

import pluggy

from odplug import __version__, hookspecs
from odplug.components import Component, DatasetWriter, Exporter, Importer, Trainer
from odplug.errors import OdplugError, UsageError
from odplug.suggest import unknown

DEFAULT_PLUGINS: tuple[str, ...] = (
    "odplug_builtins.supervisely",
    "odplug_builtins.tf_csv",
    "odplug_builtins.coco",
    "odplug_builtins.voc",
    "odplug_builtins.yolo",
    "odplug_builtins.tfrecord",
    "odplug_builtins.tfjs",
    "odplug_builtins.trainer",
    "odplug_builtins.tflite",
    "odplug_builtins.edgetpu",
)
DISABLE_ENV = "ODPLUG_DISABLE"


@dataclass(frozen=True)
class BuiltinDefaults:
    """The built-in components odplug uses when the user names none: the one place the core
    names them, next to the plugins that register them, so every default and help text agrees.
    A plugin that registers one of these names (or `ODPLUG_DISABLE`) changes what it means."""

    writer: str = "tfrecord"
    """``data.import --to``"""
    trainer: str = "ssd"
    """``model.train --trainer``, ``model.config --trainer``, the pipeline's trainer"""
    exporters: tuple[str, ...] = ("tflite", "edgetpu", "tfjs")
    """``model.export --to`` and the pipeline's exports"""


BUILTIN_DEFAULTS: BuiltinDefaults = BuiltinDefaults()

C = TypeVar("C", bound=Component)


@dataclass(frozen=True)
class Kind(Generic[C]):
    """One kind of component: its registration hook, base class and user-facing words."""

    key: str
    hook: str
    base: type[C]
    option: str
    required: str
    """The method a component of this kind must implement: the base class's only raises."""

    @property
    def noun(self) -> str:
        return self.key[:-1]


IMPORTERS: Kind[Importer] = Kind("importers", "odplug_register_importers", Importer, "--format",
                                 "read")
WRITERS: Kind[DatasetWriter] = Kind("writers", "odplug_register_writers", DatasetWriter, "--to",
                                    "write")
TRAINERS: Kind[Trainer] = Kind("trainers", "odplug_register_trainers", Trainer, "--trainer",
                               "train")
EXPORTERS: Kind[Exporter] = Kind("exporters", "odplug_register_exporters", Exporter, "--to",
                                 "export")
KINDS: tuple[Kind[Any], ...] = (IMPORTERS, WRITERS, TRAINERS, EXPORTERS)


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
    warnings: list[str] = field(default_factory=list)


class Registrar(Generic[C]):
    """The `register` callable one plugin's registration hook receives.

    It knows whose call it is (`plugin`, which a hook wrapper can read too) and holds what the
    plugin registers until every hook has run (`collect`): a plugin that raises in any of its
    hooks leaves nothing behind.
    """

    def __init__(self, kind: Kind[C], plugin: str) -> None:
        self.kind = kind
        self.plugin = plugin
        self.components: list[C] = []

    def __call__(self, component: object) -> None:
        base = self.kind.base
        if not isinstance(component, base):
            raise OdplugError(f"register() takes {base.__module__}.{base.__name__} objects, "
                              f"got {type(component).__name__}")
        if not component.name:
            raise OdplugError(f"{base.__name__} was registered without a name")
        method = self.kind.required
        if getattr(type(component), method, None) is getattr(base, method):
            raise OdplugError(f"{self.kind.noun} {component.name!r} does not implement "
                              f"{method}()")
        self.components.append(component)


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
        """One line per plugin left out: it failed to load, to validate or to register."""
        return [info.error for info in self.plugins.values() if info.error]

    @property
    def warnings(self) -> list[str]:
        """One line per registration not used because another plugin took the name first."""
        return [line for info in self.plugins.values() for line in info.warnings]

    def table(self, kind: Kind[C]) -> dict[str, C]:
        """The components of one kind by name."""
        # Only a Registrar fills the tables, and it refuses anything that is not a `kind.base`.
        return cast("dict[str, C]", self.components[kind.key])

    @property
    def importers(self) -> dict[str, Importer]:
        return self.table(IMPORTERS)

    @property
    def writers(self) -> dict[str, DatasetWriter]:
        return self.table(WRITERS)

    @property
    def trainers(self) -> dict[str, Trainer]:
        return self.table(TRAINERS)

    @property
    def exporters(self) -> dict[str, Exporter]:
        return self.table(EXPORTERS)

    def get(self, kind: Kind[C], name: str) -> C:
        """The component called `name`, or a `UsageError` listing the choices and a likely
        typo (a name the user gave that nothing registers)."""
        table = self.table(kind)
        if name in table:
            return table[name]
        raise UsageError(unknown(kind.noun, name, table))

    def owner(self, kind: str, name: str) -> str:
        """The name of the plugin whose `kind` component (``"importers"``...) `name` is."""
        return self.owners[(kind, name)]

    def add(self, registrar: Registrar[Any]) -> None:
        """Keep what one plugin's hook registered; a name already taken stays with its owner."""
        info = self.plugins[registrar.plugin]
        kind = registrar.kind
        table = self.components[kind.key]
        for component in registrar.components:
            name = component.name
            if name in table:
                info.warnings.append(
                    f"{kind.noun} {name!r} of plugin {info.name!r} is not used: plugin "
                    f"{self.owner(kind.key, name)!r} registered that name first"
                )
                continue
            table[name] = component
            self.owners[(kind.key, name)] = info.name
            info.registered.setdefault(kind.key, []).append(name)


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
            # A broken plugin must not take the others down, nor end the process: SystemExit
            # is not an Exception, and a sys.exit() at import would exit with status 0.
            except (Exception, SystemExit) as error:
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
    """Call every registration hook through pluggy, one plugin at a time, in pluggy's order.

    What the plugins register is kept only once every hook has been called, so a plugin that
    fails in a later hook leaves nothing behind and the names it would have taken go to the
    next plugin that registered them.
    """
    registry = Registry(plugins=infos)
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin_name not in infos:  # registered inline, e.g. by a test or an embedding program
            version = str(getattr(plugin, "__version__", "?"))
            infos[plugin_name] = PluginInfo(plugin_name, version, "registered inline", False)
    calls: list[Registrar[Any]] = []
    for kind in KINDS:
        impls = getattr(pm.hook, kind.hook).get_hookimpls()
        # pluggy's call loop runs its list from the end: tryfirst last in the list, trylast first.
        for impl in reversed([impl for impl in impls if not _is_wrapper(impl)]):
            calls.append(_call_one(pm, registry, kind, impl))
    for registrar in calls:
        if not infos[registrar.plugin].error:
            registry.add(registrar)
    return registry


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def _call_one(pm: pluggy.PluginManager, registry: Registry, kind: Kind[Any],
              impl: pluggy.HookImpl) -> Registrar[Any]:
    """Call one plugin's hook, with every healthy wrapper around it; what it registered.

    If the call raises, the implementation whose code raised is to blame and gets the error
    line: the plugin, or a wrapper, which is then left out and the plugin called again.
    """
    info = registry.plugins[impl.plugin_name]
    register = Registrar(kind, info.name)
    while not info.error:
        wrappers = [w for w in getattr(pm.hook, kind.hook).get_hookimpls()
                    if _is_wrapper(w) and not registry.plugins[w.plugin_name].error]
        taking_part = {impl.plugin, *(w.plugin for w in wrappers)}
        caller = pm.subset_hook_caller(
            kind.hook, remove_plugins=[p for p in pm.get_plugins() if p not in taking_part])
        register = Registrar(kind, info.name)
        try:
            caller(register=register)
            break
        except (Exception, SystemExit) as error:
            culprit = registry.plugins[_culprit(error, [impl, *wrappers]).plugin_name]
            reason = str(error) if isinstance(error, OdplugError) else _short(error)
            culprit.error = (f"plugin {culprit.name!r} from {culprit.source} failed in "
                             f"{kind.hook}: {reason}")
    return register


def _culprit(error: BaseException, impls: Sequence[pluggy.HookImpl]) -> pluggy.HookImpl:
    """The implementation whose frame is innermost in the traceback; the first one if none is.

    A plugin's own frame is inner to the wrappers around it, so a wrapper that only passes a
    plugin's exception on is not blamed for it.
    """
    culprit = impls[0]
    for frame, _line in traceback.walk_tb(error.__traceback__):
        culprit = next((impl for impl in impls if _runs(frame, impl)), culprit)
    return culprit


def _runs(frame: FrameType, impl: pluggy.HookImpl) -> bool:
    """Whether `frame` runs `impl`: its code, and for a method, its plugin object as `self`."""
    function = impl.function
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    if code is None or frame.f_code is not code:
        return False
    owner = getattr(function, "__self__", None)
    return owner is None or frame.f_locals.get(code.co_varnames[0]) is owner


_cache: dict[tuple[frozenset[str], bool], Registry] = {}


def load_registry(*, disabled: Iterable[str] = (), entry_points: bool = True) -> Registry:
    """The registry for this process (cached: plugins are loaded once)."""
    key = (frozenset(disabled) | frozenset(_disabled_from_env()), entry_points)
    if key not in _cache:
        pm, infos = get_plugin_manager(disabled=key[0], entry_points=entry_points)
        _cache[key] = collect(pm, infos)
    return _cache[key]
