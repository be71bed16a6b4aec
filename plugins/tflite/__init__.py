"""Built-in exporter ``tflite``: TensorFlow Lite files that end in TFLite's own detection op.

Variants: ``float32``; ``float16`` (half-size weights); ``dynamic`` (int8 weights, float
activations); ``int8`` (everything int8, uint8 pixels in, calibrated on the training records
with the training preprocessing). Each ``<out>/tflite-<variant>.tflite`` comes with a manifest
``tflite-<variant>.json`` and ``labelmap.txt``. TensorFlow and LiteRT are imported only when a
model is exported or run, so listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from odplug import hookimpl
from odplug.components import ExportedModel, Exporter, require_module
from odplug.errors import OdplugError

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
INSTALL = "install dockerfiles/requirements/tf.txt (pip install -r dockerfiles/requirements/tf.txt)"


class TFLiteExporter(Exporter):
    name = "tflite"
    summary = "TensorFlow Lite with TFLite_Detection_PostProcess: float32, float16, dynamic, int8"
    suffix = ".tflite"
    variants = ("float32", "float16", "dynamic", "int8")
    default_variants = ("float32", "int8")

    def check(self) -> None:
        require_module("tensorflow", what=f"the {self.name} exporter", install=INSTALL)
        require_module("ai_edge_litert", what=f"the {self.name} exporter", install=INSTALL)

    def export(self, saved_model: Path, out: Path, *, variants: Sequence[str],
               records: Path | None = None) -> list[ExportedModel]:
        check_variants(self, variants)
        from odplug_builtins.tflite.export import calibration, export_variant
        from odplug_builtins.tflite.source import load_source

        calibrate = calibration(records) if "int8" in variants else None
        source = load_source(saved_model)
        return [export_variant(source, variant, out, name=f"{self.name}-{variant}",
                               calibrate=calibrate(source.input_size) if calibrate else None)
                for variant in variants]

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        return tflite_detector(exported)


def check_variants(exporter: Exporter, variants: Sequence[str]) -> None:
    import difflib

    for variant in variants:
        if variant not in exporter.variants:
            hint = difflib.get_close_matches(variant, exporter.variants, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise OdplugError(f"{exporter.name} has no variant {variant!r}.{did_you_mean} "
                              f"Available: {', '.join(exporter.variants)}.")
    if not variants:
        raise OdplugError(f"no variant asked for; {exporter.name} has "
                          f"{', '.join(exporter.variants)}")


def tflite_detector(exported: ExportedModel) -> Callable[..., object]:
    """The exported file in LiteRT's interpreter, as an `odplug.model.detector` detector."""
    from odplug_builtins.tflite.export import read_manifest
    from odplug_builtins.tflite.runtime import TFLiteDetector

    return TFLiteDetector(exported.path, read_manifest(exported)["label_ids"])


@hookimpl(trylast=True)
def odplug_register_exporters(register):  # type: ignore[no-untyped-def]
    register(TFLiteExporter())
