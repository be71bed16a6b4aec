"""The plugin system: hooks, built-ins, entry points, the disable switch and every failure mode.

Three kinds of plugin are used here. Fake plugins are small objects registered on a plugin
manager for one test. Fake third-party plugins are tiny distributions written into a temporary
folder (a module plus a ``.dist-info`` with an ``odplug`` entry point) and found through
``sys.path`` or ``PYTHONPATH``, so real entry-point loading runs without touching the
environment. The example package in ``tests/plugin_example``, pip-installed and driven
through the real command line, is tests/e2e/test_example_plugin.py's.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

import odplug.plugins
from odplug import __version__, hookimpl, hookspecs
from odplug.components import (
    NO_INPUTS,
    DatasetWriter,
    ExportedModel,
    Exporter,
    Importer,
    Trainer,
    WriteJob,
)
from odplug.data.convert import choose_importer
from odplug.dataset_report import Report
from odplug.errors import UsageError
from odplug.plugins import (
    BUILTIN_DEFAULTS,
    DEFAULT_PLUGINS,
    DISABLE_ENV,
    EXPORTERS,
    TRAINERS,
    WRITERS,
    PluginInfo,
    Registrar,
    Registry,
    collect,
    get_plugin_manager,
    load_registry,
)
from odplug.run import RunInfo
from odplug.samples import Sample
from tests.support.tools import ROOT, Run, warnings, write_plugin

if TYPE_CHECKING:
    from odplug.trained import TrainedDetector

HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("odplug_"))
BUILTINS = {module.rsplit(".", 1)[-1] for module in DEFAULT_PLUGINS}
BUILTIN_IMPORTERS = {"coco", "supervisely", "tf_csv", "tfrecord", "voc", "yolo"}
BUILTIN_WRITERS = {"coco", "tf_csv", "tfrecord", "yolo"}
META_TESTS = ("test_every_hook_is_documented", "test_every_hook_has_a_test")


@pytest.fixture(autouse=True)
def clean_plugin_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """No disable switch from the caller's shell, and a fresh registry cache for every test."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.setattr(odplug.plugins, "_cache", {})


# Fake components and the fake plugins that register them.


class FakeImporter(Importer):
    summary = "a format only these tests know"

    def __init__(self, name: str) -> None:
        self.name = name

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        return iter(())


class FakeWriter(DatasetWriter):
    name = "fake_writer"
    summary = "writes nothing"

    def write(self, job: WriteJob) -> Report:
        return Report()


class FakeTrainer(Trainer):
    name = "fake_trainer"
    summary = "trains nothing, quickly"

    def train(self, records: Path, run_dir: Path, **options: object) -> RunInfo:
        return RunInfo(run_dir=run_dir, trainer=self.name, records=records,
                       label_map=run_dir / "label_map.pbtxt", saved_model=run_dir / "model")


class FakeExporter(Exporter):
    name = "fake_export"
    summary = "a format nothing reads"
    suffix = ".fake"
    requires = ("tflite",)
    variants = ("plain",)

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        path = out / f"model{self.suffix}"
        return [ExportedModel(self.name, v, path, out / "manifest.json", 0) for v in variants]


class ImporterPlugin:
    """Registers importers by name; `fail` raises after registering them."""

    def __init__(self, *names: str, fail: Exception | None = None) -> None:
        self.names = names
        self.fail = fail

    @hookimpl
    def odplug_register_importers(self, register: Callable[[Importer], None]) -> None:
        for name in self.names:
            register(FakeImporter(name))
        if self.fail is not None:
            raise self.fail


def importer_plugin(*names: str, calls: list[str] | None = None, **order: bool) -> object:
    """A plugin whose importers hook has the given pluggy options (``tryfirst=True``...)."""

    class Ordered:
        @hookimpl(**order)
        def odplug_register_importers(self, register: Registrar[Importer]) -> None:
            if calls is not None:
                calls.append(register.plugin)
            for name in names:
                register(FakeImporter(name))

    return Ordered()


class ToolsPlugin:
    """One writer, one trainer and one exporter: the kinds no built-in fake covers."""

    @hookimpl
    def odplug_register_writers(self, register: Callable[[DatasetWriter], None]) -> None:
        register(FakeWriter())

    @hookimpl
    def odplug_register_trainers(self, register: Callable[[Trainer], None]) -> None:
        register(FakeTrainer())

    @hookimpl
    def odplug_register_exporters(self, register: Callable[[Exporter], None]) -> None:
        register(FakeExporter())


class Plugins:
    """A plugin manager with the built-ins, plus fake plugins added (and removed) per test."""

    def __init__(self) -> None:
        self.pm, self.infos = get_plugin_manager(entry_points=False)
        self.added: list[str] = []

    def add(self, plugin: object, name: str) -> None:
        self.pm.register(plugin, name=name)
        self.pm.check_pending()
        self.infos[name] = PluginInfo(name, "9.9", "tests", builtin=False)
        self.added.append(name)

    def collect(self) -> Registry:
        return collect(self.pm, self.infos)


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    manager = Plugins()
    yield manager
    for name in manager.added:
        manager.pm.unregister(name=name)


# Fake third-party distributions with real entry points.


class FakeSite:
    """A folder of fake installed distributions, each one module with an ``odplug`` entry point."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        self._monkeypatch = monkeypatch
        self._on_path = False
        # The importers of this environment before any fake is added: the built-ins and those
        # of any real plugin installed here (the example-plugin nox session installs one).
        self.installed = set(load_registry().importers)

    def add(self, name: str, source: str, *, version: str = "1.0") -> str:
        """Write distribution ``odplug-fake-<name>`` whose entry point `name` is `source`."""
        module = f"odplug_fake_{name}"
        write_plugin(self.root, module, source, entry_point=name, version=version)
        self.modules.append(module)
        return module

    def load(self, **options: Any) -> tuple[pluggy.PluginManager, Registry]:
        """Load every plugin in process, these fake distributions included."""
        if not self._on_path:
            self._monkeypatch.syspath_prepend(str(self.root))
            self._on_path = True
        pm, infos = get_plugin_manager(**options)
        return pm, collect(pm, infos)

    @property
    def env(self) -> dict[str, str]:
        """The environment that lets a subprocess find these distributions."""
        return {"PYTHONPATH": str(self.root)}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    root = tmp_path / "site"
    root.mkdir()
    fake = FakeSite(root, monkeypatch)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


def importer_source(*names: str) -> str:
    """A plugin module that registers a fake importer for each name."""
    registers = "".join(f"    register(Fake({name!r}))\n" for name in names)
    return (
        "from odplug import hookimpl\n"
        "from odplug.components import Importer\n\n"
        "class Fake(Importer):\n"
        "    summary = 'fake'\n\n"
        "    def __init__(self, name):\n"
        "        self.name = name\n\n"
        "    def read(self, source, report):\n"
        "        return iter(())\n\n"
        "@hookimpl\n"
        "def odplug_register_importers(register):\n" + registers
    )


# Hooks, built-ins and fake plugins.


def test_builtins_register_through_the_same_hooks(pm: pluggy.PluginManager) -> None:
    assert {name for name, _ in pm.list_name_plugin()} == BUILTINS
    importers: list[Importer] = []
    writers: list[DatasetWriter] = []
    pm.hook.odplug_register_importers(register=importers.append)
    pm.hook.odplug_register_writers(register=writers.append)
    assert {i.name for i in importers} == BUILTIN_IMPORTERS and len(importers) == len(
        BUILTIN_IMPORTERS)
    assert {w.name for w in writers} == BUILTIN_WRITERS and len(writers) == len(BUILTIN_WRITERS)
    assert all(c.summary for c in [*importers, *writers])


def test_the_builtin_defaults_are_registered_by_builtins(plugins: Plugins) -> None:
    registry = plugins.collect()
    defaults = [(WRITERS, BUILTIN_DEFAULTS.writer), (TRAINERS, BUILTIN_DEFAULTS.trainer),
                *((EXPORTERS, name) for name in BUILTIN_DEFAULTS.exporters)]
    for kind, name in defaults:
        assert registry.plugins[registry.owner(kind.key, name)].builtin, name


def test_builtins_are_credited_in_the_registry(plugins: Plugins) -> None:
    registry = plugins.collect()
    assert registry.errors == []
    assert registry.owner("importers", "supervisely") == "supervisely"
    assert registry.owner("writers", "tfrecord") == "tfrecord"
    tf_csv = registry.plugins["tf_csv"]
    assert tf_csv.builtin and tf_csv.version == __version__
    assert tf_csv.registered == {"importers": ["tf_csv"], "writers": ["tf_csv"]}


def test_odplug_register_trainers_and_exporters_with_fake_components(
    pm: pluggy.PluginManager,
) -> None:
    pm.register(ToolsPlugin(), name="tools")
    pm.check_pending()
    trainers: list[Trainer] = []
    exporters: list[Exporter] = []
    pm.hook.odplug_register_trainers(register=trainers.append)
    pm.hook.odplug_register_exporters(register=exporters.append)
    assert [type(t) for t in trainers if isinstance(t, FakeTrainer)] == [FakeTrainer]
    assert [type(e) for e in exporters if isinstance(e, FakeExporter)] == [FakeExporter]

    pm.unregister(name="tools")
    trainers.clear()
    pm.hook.odplug_register_trainers(register=trainers.append)
    assert not any(isinstance(t, FakeTrainer) for t in trainers)


def test_fake_plugin_components_are_usable_from_the_registry(
    plugins: Plugins, tmp_path: Path
) -> None:
    plugins.add(ToolsPlugin(), "tools")
    registry = plugins.collect()
    assert registry.errors == []
    assert registry.plugins["tools"].registered == {
        "writers": ["fake_writer"], "trainers": ["fake_trainer"], "exporters": ["fake_export"],
    }
    assert registry.owner("trainers", "fake_trainer") == "tools"
    trainer = registry.get(TRAINERS, "fake_trainer")
    assert isinstance(trainer, FakeTrainer)
    run = trainer.train(tmp_path / "records", tmp_path / "run")
    assert run.saved_model == tmp_path / "run" / "model" and run.trainer == "fake_trainer"
    exporter = registry.exporters["fake_export"]
    written = exporter.export(None, tmp_path, variants=["plain"])  # type: ignore[arg-type]
    assert [m.path for m in written] == [tmp_path / "model.fake"]
    assert exporter.requires == ("tflite",)
    assert set(registry.writers) == BUILTIN_WRITERS | {"fake_writer"}
    with pytest.raises(UsageError, match="unknown exporter 'fake_exprt'.*'fake_export'"):
        registry.get(EXPORTERS, "fake_exprt")


def test_fake_importer_is_removed_with_its_plugin(plugins: Plugins) -> None:
    plugins.add(ImporterPlugin("fake_format"), "fake")
    registry = plugins.collect()
    assert registry.owner("importers", "fake_format") == "fake"
    assert set(registry.importers) == BUILTIN_IMPORTERS | {"fake_format"}

    plugins.pm.unregister(name="fake")
    assert "fake_format" not in plugins.collect().importers


def test_raise_inside_register_withdraws_that_plugin_only(plugins: Plugins) -> None:
    plugins.add(ImporterPlugin("half_done", fail=RuntimeError("disk on fire")), "explodes")
    plugins.add(ImporterPlugin("good_format"), "good")
    registry = plugins.collect()
    assert registry.errors == [
        "plugin 'explodes' from tests failed in odplug_register_importers: "
        "RuntimeError: disk on fire"
    ]
    assert "half_done" not in registry.importers
    assert registry.plugins["explodes"].registered == {}
    assert registry.owner("importers", "good_format") == "good"
    assert {"supervisely", "tf_csv"} <= set(registry.importers)


class Incomplete:
    """Registers one component of `kind` whose class lacks the kind's working method."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @hookimpl
    def odplug_register_importers(self, register: Callable[[Importer], None]) -> None:
        if self.kind == "importers":
            register(type("NoRead", (Importer,), {"name": "no_read"})())

    @hookimpl
    def odplug_register_writers(self, register: Callable[[DatasetWriter], None]) -> None:
        if self.kind == "writers":
            register(type("NoWrite", (DatasetWriter,), {"name": "no_write"})())

    @hookimpl
    def odplug_register_trainers(self, register: Callable[[Trainer], None]) -> None:
        if self.kind == "trainers":
            register(type("NoTrain", (Trainer,), {"name": "no_train"})())

    @hookimpl
    def odplug_register_exporters(self, register: Callable[[Exporter], None]) -> None:
        if self.kind == "exporters":
            register(type("NoExport", (Exporter,), {"name": "no_export"})())


@pytest.mark.parametrize("kind,name,method", [
    ("importers", "no_read", "read"), ("writers", "no_write", "write"),
    ("trainers", "no_train", "train"), ("exporters", "no_export", "export"),
])
def test_a_component_without_its_working_method_is_broken_and_left_out(
        plugins: Plugins, kind: str, name: str, method: str) -> None:
    plugins.add(Incomplete(kind), "incomplete")
    registry = plugins.collect()
    assert registry.errors == [
        f"plugin 'incomplete' from tests failed in odplug_register_{kind}: "
        f"{kind[:-1]} {name!r} does not implement {method}()"
    ]
    assert name not in registry.components[kind]
    assert {"supervisely", "tf_csv"} <= set(registry.importers)


class DetectRaises(FakeImporter):
    def detect(self, source: Path) -> bool:
        raise RuntimeError("cannot cope")


class DetectRaisesPlugin:
    @hookimpl
    def odplug_register_importers(self, register: Callable[[Importer], None]) -> None:
        register(DetectRaises("fragile"))


def test_an_importer_whose_detect_raises_is_named_and_left_out(
        plugins: Plugins, demo_project: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugins.add(DetectRaisesPlugin(), "fragile_plugin")
    registry = plugins.collect()
    assert choose_importer(registry, demo_project, None).name == "supervisely"
    assert [r.getMessage() for r in caplog.records] == [
        f"importer 'fragile' of plugin 'fragile_plugin' failed to detect {demo_project} "
        "(RuntimeError: cannot cope); it is left out of format detection (give --format "
        "fragile to use it)"
    ]


def test_raise_in_a_later_hook_withdraws_earlier_kinds_too(plugins: Plugins) -> None:
    class LateFailure:
        @hookimpl
        def odplug_register_importers(self, register: Callable[[Importer], None]) -> None:
            register(FakeImporter("early_format"))

        @hookimpl
        def odplug_register_exporters(self, register: Callable[[Exporter], None]) -> None:
            raise ValueError("no exporter today")

    plugins.add(LateFailure(), "late")
    registry = plugins.collect()
    assert len(registry.errors) == 1
    assert "plugin 'late'" in registry.errors[0] and "odplug_register_exporters" in (
        registry.errors[0]
    )
    assert "early_format" not in registry.importers
    assert registry.plugins["late"].registered == {}


def test_builtins_are_trylast(pm: pluggy.PluginManager) -> None:
    impls = [impl for hook in HOOKS for impl in getattr(pm.hook, hook).get_hookimpls()]
    assert {impl.plugin_name for impl in impls} == BUILTINS
    assert all(impl.trylast for impl in impls)


def test_third_party_plugin_overrides_a_builtin_name_on_purpose(plugins: Plugins) -> None:
    plugins.add(ImporterPlugin("own_format", "tf_csv"), "fancy")
    registry = plugins.collect()
    assert registry.errors == []
    assert registry.owner("importers", "tf_csv") == "fancy"
    assert isinstance(registry.importers["tf_csv"], FakeImporter)
    assert registry.plugins["fancy"].registered == {"importers": ["own_format", "tf_csv"]}
    assert registry.warnings == [
        "importer 'tf_csv' of plugin 'tf_csv' is not used: plugin 'fancy' registered that "
        "name first"
    ]
    assert registry.plugins["tf_csv"].registered == {"writers": ["tf_csv"]}, (
        "the loser keeps its other registrations"
    )


def test_entry_point_plugin_overrides_a_builtin_name(site: FakeSite) -> None:
    site.add("fancy", importer_source("supervisely"))
    _pm, registry = site.load()
    assert registry.errors == []
    assert registry.owner("importers", "supervisely") == "fancy"
    assert type(registry.importers["supervisely"]).__module__ == "odplug_fake_fancy"
    assert registry.plugins["supervisely"].registered == {}
    assert registry.plugins["supervisely"].warnings == [
        "importer 'supervisely' of plugin 'supervisely' is not used: plugin 'fancy' registered "
        "that name first"
    ]


def test_override_that_fails_later_gives_the_name_back(plugins: Plugins) -> None:
    class OverrideThenFail:
        @hookimpl
        def odplug_register_importers(self, register: Registrar[Importer]) -> None:
            register(FakeImporter("tf_csv"))

        @hookimpl
        def odplug_register_exporters(self, register: Registrar[Exporter]) -> None:
            raise ValueError("no exporter today")

    plugins.add(OverrideThenFail(), "flaky")
    registry = plugins.collect()
    assert len(registry.errors) == 1 and "plugin 'flaky'" in registry.errors[0]
    assert registry.owner("importers", "tf_csv") == "tf_csv"
    assert type(registry.importers["tf_csv"]).__module__ == "odplug_builtins.tf_csv"
    assert registry.warnings == []


@pytest.mark.parametrize(
    ("first", "second", "order"),
    [
        ({}, {}, ["second", "first"]),
        ({"tryfirst": True}, {}, ["first", "second"]),
        ({}, {"trylast": True}, ["first", "second"]),
        ({"trylast": True}, {"tryfirst": True}, ["second", "first"]),
        ({"tryfirst": True}, {"tryfirst": True}, ["second", "first"]),
    ],
    ids=["registered-last-first", "tryfirst", "trylast", "both", "both-tryfirst"],
)
def test_tryfirst_and_trylast_decide_who_registers_a_name_first(
    plugins: Plugins, first: dict[str, bool], second: dict[str, bool], order: list[str]
) -> None:
    calls: list[str] = []
    plugins.add(importer_plugin("shared_format", "first_format", calls=calls, **first), "first")
    plugins.add(importer_plugin("shared_format", "second_format", calls=calls, **second),
                "second")
    registry = plugins.collect()
    assert calls == order
    winner, loser = order
    assert registry.owner("importers", "shared_format") == winner
    assert registry.warnings == [
        f"importer 'shared_format' of plugin {loser!r} is not used: plugin {winner!r} "
        "registered that name first"
    ]
    assert {"first_format", "second_format", "supervisely", "tf_csv"} <= set(registry.importers)
    assert registry.errors == []


def test_a_trylast_third_party_plugin_is_a_fallback_behind_the_builtins(
    plugins: Plugins,
) -> None:
    plugins.add(importer_plugin("supervisely", "fallback_format", trylast=True), "fallback")
    registry = plugins.collect()
    assert registry.owner("importers", "supervisely") == "supervisely"
    assert registry.owner("importers", "fallback_format") == "fallback"
    assert registry.plugins["fallback"].warnings == [
        "importer 'supervisely' of plugin 'fallback' is not used: plugin 'supervisely' "
        "registered that name first"
    ]


class Wrapper:
    """A hook wrapper: it sees each plugin's call and adds an alias for every importer."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    @hookimpl(wrapper=True)
    def odplug_register_importers(self, register: Registrar[Importer]) -> Any:
        result = yield
        names = [importer.name for importer in register.components]
        self.seen.append((register.plugin, names))
        for name in names:
            register(FakeImporter(f"{name}_alias"))
        return result


def test_wrapper_sees_and_extends_every_plugins_call(plugins: Plugins) -> None:
    wrapper = Wrapper()
    plugins.add(wrapper, "aliases")
    plugins.add(ImporterPlugin("fake_format"), "fake")
    registry = plugins.collect()
    assert registry.errors == []
    assert wrapper.seen[0] == ("fake", ["fake_format"]), "the plugin registered last goes first"
    assert sorted(wrapper.seen) == sorted(
        [("fake", ["fake_format"]), *((name, [name]) for name in BUILTIN_IMPORTERS)])
    assert registry.plugins["fake"].registered == {
        "importers": ["fake_format", "fake_format_alias"]
    }
    assert registry.owner("importers", "tf_csv_alias") == "tf_csv"
    assert registry.plugins["aliases"].registered == {}


def test_wrapper_passing_an_error_on_is_not_blamed(plugins: Plugins) -> None:
    plugins.add(Wrapper(), "aliases")
    plugins.add(ImporterPlugin("half_done", fail=RuntimeError("disk on fire")), "explodes")
    registry = plugins.collect()
    assert registry.errors == [
        "plugin 'explodes' from tests failed in odplug_register_importers: "
        "RuntimeError: disk on fire"
    ]
    assert "half_done" not in registry.importers and "half_done_alias" not in registry.importers
    assert registry.owner("importers", "supervisely_alias") == "supervisely"


def test_failing_wrapper_is_left_out_and_the_plugins_called_again(plugins: Plugins) -> None:
    class Broken:
        @hookimpl(wrapper=True)
        def odplug_register_importers(self, register: Registrar[Importer]) -> Any:
            yield
            raise KeyError("wrapped wrong")

    plugins.add(ImporterPlugin("fake_format"), "fake")
    plugins.add(Broken(), "broken")
    registry = plugins.collect()
    assert registry.errors == [
        "plugin 'broken' from tests failed in odplug_register_importers: KeyError: 'wrapped wrong'"
    ]
    assert {"fake_format", "supervisely", "tf_csv"} <= set(registry.importers)
    assert registry.owner("importers", "fake_format") == "fake"


@pytest.mark.parametrize(
    ("thing", "message"),
    [
        ("voc", r"register\(\) takes odplug\.components\.Importer objects, got str"),
        (FakeExporter(), r"takes odplug\.components\.Importer objects, got FakeExporter"),
        (FakeImporter(""), "Importer was registered without a name"),
    ],
    ids=["string", "wrong-kind", "no-name"],
)
def test_registering_a_non_component_is_refused(
    plugins: Plugins, thing: object, message: str
) -> None:
    class Odd:
        @hookimpl
        def odplug_register_importers(self, register: Callable[[Any], None]) -> None:
            register(thing)

    plugins.add(Odd(), "odd")
    registry = plugins.collect()
    assert len(registry.errors) == 1
    assert registry.errors[0].startswith("plugin 'odd' from tests failed in ")
    assert re.search(message, registry.errors[0])
    assert set(registry.importers) == BUILTIN_IMPORTERS


def test_misspelled_hook_in_a_builtin_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("odplug_test_typo_builtin")

    @hookimpl
    def odplug_register_importer(register: Callable[[Importer], None]) -> None:
        """One letter short of a real hook."""

    module.odplug_register_importer = odplug_register_importer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(odplug.plugins, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, module.__name__))
    with pytest.raises(pluggy.PluginValidationError, match="odplug_register_importer"):
        get_plugin_manager(entry_points=False)


# The disable switch.


def test_disable_builtin_by_argument() -> None:
    pm, infos = get_plugin_manager(entry_points=False, disabled=["tf_csv"])
    registry = collect(pm, infos)
    assert registry.plugins["tf_csv"].disabled
    assert set(registry.importers) == BUILTIN_IMPORTERS - {"tf_csv"}
    assert set(registry.writers) == BUILTIN_WRITERS - {"tf_csv"}
    assert registry.errors == []


def test_disable_by_environment(site: FakeSite, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add("broken", "raise ImportError('needs libfoo')\n")
    site.add("extra", importer_source("extra_format"))
    monkeypatch.setenv(DISABLE_ENV, " supervisely , broken")
    _pm, registry = site.load()
    assert registry.errors == [], "a disabled plugin is not even imported"
    assert "odplug_fake_broken" not in sys.modules
    assert registry.plugins["supervisely"].disabled and registry.plugins["broken"].disabled
    assert set(registry.importers) == site.installed - {"supervisely"} | {"extra_format"}
    assert load_registry().plugins["supervisely"].disabled


def test_disable_third_party_by_argument(site: FakeSite) -> None:
    site.add("extra", importer_source("extra_format"))
    pm, registry = site.load(disabled={"extra"})
    assert registry.plugins["extra"].disabled
    assert pm.is_blocked("extra")
    assert "extra_format" not in registry.importers


# Third-party plugins found through entry points.


def test_entry_point_plugin_is_found_and_credited(site: FakeSite) -> None:
    site.add("extra", importer_source("extra_format"), version="2.5.1")
    pm, registry = site.load()
    assert registry.errors == []
    info = registry.plugins["extra"]
    assert (info.version, info.builtin) == ("2.5.1", False)
    assert info.source == "odplug-fake-extra (entry point odplug_fake_extra)"
    assert info.registered == {"importers": ["extra_format"]}
    assert pm.get_plugin("extra") is sys.modules["odplug_fake_extra"]


def test_entry_points_can_be_left_out(site: FakeSite) -> None:
    site.add("extra", importer_source("extra_format"))
    _pm, registry = site.load(entry_points=False)
    assert set(registry.plugins) == BUILTINS


def test_plugin_that_fails_to_import_is_one_error_line(site: FakeSite) -> None:
    site.add("broken", "import odplug_no_such_module_anywhere\n")
    site.add("extra", importer_source("extra_format"))
    _pm, registry = site.load()
    assert registry.errors == [
        "plugin 'broken' from odplug-fake-broken (entry point odplug_fake_broken) failed to "
        "load: ModuleNotFoundError: No module named 'odplug_no_such_module_anywhere'"
    ]
    assert set(registry.importers) == site.installed | {"extra_format"}


def test_plugin_named_like_a_builtin_is_ignored(site: FakeSite) -> None:
    site.add("tf_csv", importer_source("impostor_format"))
    _pm, registry = site.load()
    assert registry.errors == [
        "plugin 'tf_csv' from odplug-fake-tf-csv (entry point odplug_fake_tf_csv): the name is "
        "already used by built-in plugin 'tf_csv'; ignored"
    ]
    assert "odplug_fake_tf_csv" not in sys.modules
    assert "impostor_format" not in registry.importers
    assert registry.plugins["tf_csv"].builtin
    assert registry.owner("importers", "tf_csv") == "tf_csv"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("@hookimpl\ndef odplug_register_importer(register):\n    pass\n",
         "unknown hook 'odplug_register_importer'"),
        ("@hookimpl\ndef odplug_register_importers(registr):\n    pass\n",
         "{'registr'} are declared in the hookimpl but can not be found"),
    ],
    ids=["hook-name", "argument-name"],
)
def test_misspelled_hook_drops_that_plugin_only(
    site: FakeSite, source: str, message: str
) -> None:
    site.add("typo", "from odplug import hookimpl\n\n" + source)
    site.add("extra", importer_source("extra_format"))
    pm, registry = site.load()
    assert len(registry.errors) == 1
    assert registry.errors[0].startswith("plugin 'typo' from odplug-fake-typo ")
    assert message in registry.errors[0]
    assert "\n" not in registry.errors[0]
    assert pm.get_plugin("typo") is None
    assert set(registry.importers) == site.installed | {"extra_format"}


def test_two_third_party_plugins_with_one_component_name(site: FakeSite) -> None:
    site.add("alpha", importer_source("alpha_format", "shared_format"))
    site.add("beta", importer_source("beta_format", "shared_format"))
    _pm, registry = site.load()
    assert registry.errors == []
    owner = registry.owner("importers", "shared_format")
    loser = "beta" if owner == "alpha" else "alpha"
    assert registry.warnings == [
        f"importer 'shared_format' of plugin {loser!r} is not used: plugin {owner!r} "
        "registered that name first"
    ]
    assert {"alpha_format", "beta_format"} <= set(registry.importers)


def test_broken_plugin_warns_once_and_import_still_works(
    site: FakeSite, run_inv: Run, demo_project: Path, tmp_path: Path
) -> None:
    site.add("broken", "raise ImportError('needs libfoo')\n")
    out = tmp_path / "out"
    result = run_inv("data.import", "--source", str(demo_project), "--out", str(out),
                     env=site.env)
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == [
        "odplug: warning: plugin 'broken' from odplug-fake-broken (entry point "
        "odplug_fake_broken) failed to load: ImportError: needs libfoo"
    ]
    assert "Traceback" not in result.stderr
    assert list(out.glob("train.record-*"))

    listing = run_inv("plugins", env=site.env)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^broken 1\.0 \[.*\] \(BROKEN\)$", listing.stdout, re.MULTILINE)
    assert "    error: plugin 'broken'" in listing.stdout


@pytest.mark.parametrize("status", ["", "0", "3"])
def test_a_plugin_that_exits_at_import_is_named_and_the_others_go_on(
        site: FakeSite, status: str) -> None:
    site.add("quitter", f"import sys\nsys.exit({status})\n")
    site.add("extra", importer_source("extra_format"))
    _pm, registry = site.load()
    reason = f"SystemExit: {status}" if status else "SystemExit"
    assert registry.errors == [
        "plugin 'quitter' from odplug-fake-quitter (entry point odplug_fake_quitter) failed "
        f"to load: {reason}"
    ]
    assert set(registry.importers) == site.installed | {"extra_format"}


def test_a_plugin_exiting_at_import_does_not_decide_the_exit_status(
    site: FakeSite, run_inv: Run, demo_project: Path, tmp_path: Path
) -> None:
    site.add("quitter", "import sys\nsys.exit(0)\n")
    failed = run_inv("data.import", "--source", str(tmp_path / "missing"), "--out",
                     str(tmp_path / "nothing"), env=site.env)
    assert failed.returncode == 2, "a usage error (no such source), not the plugin's 0"
    assert "odplug: warning: plugin 'quitter'" in failed.stderr
    assert failed.stderr.strip().endswith(f"{tmp_path / 'missing'}: no such file or folder")
    done = run_inv("data.import", "--source", str(demo_project), "--out", str(tmp_path / "out"),
                   "--quiet", env=site.env)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "out").glob("train.record-*"))


# Meta-tests, as datasette keeps its hooks honest.


def test_hookspecs_are_found() -> None:
    assert len(HOOKS) >= 3
    assert all(getattr(getattr(hookspecs, hook), f"{hookspecs.NAME}_spec", None) is not None
               for hook in HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    doc = inspect.getdoc(spec) or ""
    assert doc.strip(), f"{hook} has no docstring"
    assert ":param register:" in doc, f"{hook} does not document `register`"
    for argument in inspect.signature(spec).parameters:
        assert f":param {argument}:" in doc, f"{hook} does not document {argument!r}"


def _test_function_sources() -> str:
    """The text of every test function under tests/, the meta-tests themselves left out."""
    sources = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                    and node.name not in META_TESTS):
                sources.append(ast.get_source_segment(text, node) or "")
    return "\n".join(sources)


def test_every_hook_has_a_test() -> None:
    tested = _test_function_sources()
    untested = [hook for hook in HOOKS if not re.search(rf"\b{hook}\b", tested)]
    assert untested == [], f"hooks without a test: {untested}"
