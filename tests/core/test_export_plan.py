"""Export orchestration with fake exporters: dependencies first and each once, a ``requires``
cycle refused by name, required variants added, what a required exporter wrote handed to the one
that builds on it, and nothing converted when a variant or the SavedModel is wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from odplug.components import NO_INPUTS, ExportedModel, Exporter
from odplug.errors import OdplugError, UsageError
from odplug.exports.plan import check_variants, export_all, plan, requirements, variants_for
from odplug.plugins import Registry
from odplug.suggest import did_you_mean
from odplug.trained import TrainedDetector
from tests.support.detectors import write_detector


class Recording(Exporter):
    """Writes one empty file per variant and records each call, with what it was handed."""

    def __init__(self, name: str, requires: tuple[str, ...] = (),
                 variants: tuple[str, ...] = ("float32", "int8"),
                 default_variants: tuple[str, ...] = ("float32",)) -> None:
        self.name, self.requires = name, requires
        self.variants, self.default_variants = variants, default_variants
        self.calls: list[dict] = []

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        self.calls.append({"trained": trained, "variants": list(variants), "inputs": inputs})
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for variant in variants:
            path = out / f"{self.name}-{variant}.bin"
            path.write_bytes(b"model")
            written.append(ExportedModel(self.name, variant, path, path, 5))
        return written


def registry_of(*exporters: Exporter) -> Registry:
    registry = Registry()
    for exporter in exporters:
        registry.components["exporters"][exporter.name] = exporter
    return registry


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_detector(tmp_path_factory.mktemp("contract") / "saved_model")


def test_dependencies_come_first_and_once() -> None:
    registry = registry_of(Recording("base"), Recording("mid", ("base",)),
                           Recording("top", ("mid", "base:int8")))
    assert [e.name for e in plan(registry, ["top", "base", "mid"])] == ["base", "mid", "top"]


@pytest.mark.parametrize(("exporters", "cycle"), [
    ([Recording("a", ("b",)), Recording("b", ("a:int8",))], "a -> b -> a"),
    ([Recording("a", ("a",))], "a -> a"),
    ([Recording("x", ("a",)), Recording("a", ("b",)), Recording("b", ("c",)),
      Recording("c", ("a",))], "a -> b -> c -> a"),
])
def test_a_requires_cycle_is_one_error_naming_it(exporters: list[Exporter], cycle: str) -> None:
    with pytest.raises(OdplugError) as error:
        plan(registry_of(*exporters), [exporters[0].name])
    assert str(error.value) == (f"exporters require each other in a cycle: {cycle}; no order "
                                "runs them")


def test_a_missing_or_impossible_requirement_is_named() -> None:
    with pytest.raises(OdplugError, match="exporter 'top' requires 'gone', which no plugin"):
        plan(registry_of(Recording("top", ("gone",))), ["top"])
    registry = registry_of(Recording("base"), Recording("top", ("base:int9",)))
    with pytest.raises(OdplugError, match="'top' requires variant 'int9' of 'base', which has "
                                          "float32, int8"):
        plan(registry, ["top"])


def test_requirements_read_names_and_variants() -> None:
    assert requirements(Recording("e", ("tflite:int8", "tflite:float16", "tfjs"))) == {
        "tflite": ["int8", "float16"], "tfjs": []}


def test_a_required_variant_is_written_even_when_not_asked() -> None:
    exporters = plan(registry_of(Recording("base"), Recording("top", ("base:int8",),
                                                              variants=("int8",),
                                                              default_variants=("int8",))),
                     ["top"])
    assert variants_for(exporters, []) == {"base": ["float32", "int8"], "top": ["int8"]}
    assert variants_for(exporters, ["float32"]) == {"base": ["float32", "int8"], "top": ["int8"]}
    assert variants_for(exporters, ["int8", "int8"]) == {"base": ["int8"], "top": ["int8"]}
    with pytest.raises(OdplugError, match=r"--quantize 'flaot32' is not a variant of base, top\. "
                                          r"Did you mean 'float32'\? Available: float32, int8\."):
        variants_for(exporters, ["flaot32"])


def test_an_unknown_variant_suggests_the_right_one(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OdplugError, match=r"^tflite has no variant 'float61'\. Did you mean "
                                          r"'float16'\? Available: float32, float16, dynamic"):
        check_variants(registry.exporters["tflite"], ["float61"])
    with pytest.raises(OdplugError, match="no variant asked of tflite"):
        check_variants(registry.exporters["tflite"], [])


def test_did_you_mean() -> None:
    assert did_you_mean("tfjz", ["tfjs", "tflite"]) == " Did you mean 'tfjs'?"
    assert did_you_mean("onnx", ["tfjs", "tflite"]) == ""


def test_did_you_mean_ignores_case() -> None:
    assert did_you_mean("TFLite", ["tfjs", "tflite", "edgetpu"]) == " Did you mean 'tflite'?"
    assert did_you_mean("EdgeTPU", ["tfjs", "tflite", "edgetpu"]) == " Did you mean 'edgetpu'?"
    assert did_you_mean("raccoon", ["Raccoon", "Dog"]) == " Did you mean 'Raccoon'?"


def test_what_a_required_exporter_wrote_is_handed_on(saved_model: Path, tmp_path: Path) -> None:
    base, top = Recording("base"), Recording("top", ("base:int8",), variants=("int8",))
    exporters = plan(registry_of(base, top), ["top"])
    done: list[str] = []
    written = export_all(exporters, saved_model, tmp_path, {"base": ["float32", "int8"],
                                                            "top": ["int8"]},
                         None, on_done=lambda model: done.append(model.name))
    assert done == [m.name for _, m in written] == ["base-float32", "base-int8", "top-int8"]
    (base_call,), (top_call,) = base.calls, top.calls
    assert base_call["inputs"] == {}
    assert set(top_call["inputs"]) == {"base"}
    handed = top_call["inputs"]["base"]
    assert set(handed) == {"float32", "int8"}
    assert handed["int8"].path == tmp_path / "base" / "base-int8.bin"
    assert top_call["trained"] is base_call["trained"]  # validated and loaded once
    assert isinstance(top_call["trained"], TrainedDetector)


def test_nothing_is_converted_when_the_saved_model_breaks_the_contract(tmp_path: Path) -> None:
    broken = write_detector(tmp_path / "saved_model", signatures=("serving_default",))
    exporter = Recording("only")
    with pytest.raises(OdplugError, match="no 'raw' signature"):
        export_all([exporter], broken, tmp_path / "out", {"only": ["float32"]}, None)
    assert exporter.calls == [] and not (tmp_path / "out").exists()


def test_nothing_is_converted_when_a_variant_or_the_order_is_wrong(saved_model: Path,
                                                                   tmp_path: Path) -> None:
    base, top = Recording("base"), Recording("top", ("base:int8",), variants=("int8",))
    with pytest.raises(OdplugError, match="'top' requires 'base' to write int8, which is not "
                                          "asked of it"):
        export_all([base, top], saved_model, tmp_path, {"base": ["float32"], "top": ["int8"]},
                   None)
    with pytest.raises(OdplugError, match="'top' requires 'base', which must run before it"):
        export_all([top, base], saved_model, tmp_path, {"base": ["int8"], "top": ["int8"]}, None)
    with pytest.raises(OdplugError, match="base has no variant 'int4'"):
        export_all([base], saved_model, tmp_path, {"base": ["int4"]}, None)
    assert base.calls == top.calls == []


def test_an_exporter_that_misnames_its_models_is_refused(saved_model: Path,
                                                         tmp_path: Path) -> None:
    class Misnamed(Recording):
        def export(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return [replace(m, exporter="model") for m in super().export(*args, **kwargs)]

    class Unasked(Recording):
        def export(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return [replace(m, variant="int8") for m in super().export(*args, **kwargs)]

    with pytest.raises(OdplugError, match="exporter 'odd' wrote model-float32 where "
                                          "odd-float32 "):
        export_all([Misnamed("odd")], saved_model, tmp_path, {"odd": ["float32"]}, None)
    with pytest.raises(OdplugError, match="exporter 'odd' wrote odd-int8 where odd-float32 "):
        export_all([Unasked("odd")], saved_model, tmp_path, {"odd": ["float32"]}, None)


def test_an_exported_model_is_named_by_its_exporter_and_variant(tmp_path: Path) -> None:
    model = ExportedModel("tflite", "int8", tmp_path / "m.tflite", tmp_path / "m.json", 7)
    assert model.name == "tflite-int8"
    assert ExportedModel.from_json(json.loads(json.dumps(model.to_json()))) == model


@pytest.mark.parametrize("stored", [
    {"exporter": "tflite", "name": "tflite-int8", "path": "m", "manifest": "j",
     "size_bytes": 7},  # the form before models carried their variant
    {"exporter": "tflite", "variant": "int8", "path": "m", "manifest": "j", "size_bytes": "7"},
    {"exporter": "tflite", "variant": 8, "path": "m", "manifest": "j", "size_bytes": 7},
    ["tflite", "int8"],
])
def test_anything_else_is_not_read_as_an_exported_model(stored: object) -> None:
    with pytest.raises(ValueError, match="not an exported model"):
        ExportedModel.from_json(stored)  # type: ignore[arg-type]


def test_plan_export_checks_in_one_order_before_any_work(tmp_path: Path) -> None:
    """Names, then variants (the user's mistakes), then each exporter's check, then the
    model; the pipeline's plan (no model yet: out and records given) goes the same way."""
    from odplug.workflows.export import plan_export

    class Unready(Recording):
        def check(self) -> None:
            raise OdplugError("needs a package")

    unready, ready = registry_of(Unready("base")), registry_of(Recording("base"))
    nowhere = tmp_path / "nowhere"
    with pytest.raises(UsageError, match="unknown exporter 'bse'"):
        plan_export(unready, to=["bse"], model=nowhere)
    with pytest.raises(UsageError, match="--quantize 'int9' is not a variant of base"):
        plan_export(unready, to=["base"], quantize=["int9"], model=nowhere)
    with pytest.raises(OdplugError, match="cannot export: base: needs a package"):
        plan_export(unready, to=["base"], model=nowhere)
    with pytest.raises(UsageError, match="nowhere: not a run folder"):
        plan_export(ready, to=["base"], model=nowhere)
    with pytest.raises(OdplugError, match="no test split is known"):
        plan_export(ready, to=["base"], out=tmp_path / "out")
    job = plan_export(ready, to=["base"], out=tmp_path / "out", records=tmp_path / "records")
    assert (job.saved_model, job.variants) == (None, {"base": ["float32"]})
    assert job.for_model(tmp_path / "saved_model").saved_model == tmp_path / "saved_model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written"
