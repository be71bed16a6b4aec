"""Built-in exporter ``tflite``: TensorFlow Lite files that end in TFLite's own detection op.

Variants: ``float32``; ``float16`` (half-size weights); ``dynamic`` (int8 weights, float
activations); ``int8`` (everything int8, uint8 pixels in, calibrated on the training records
with the training preprocessing; per-channel or per-tensor weight scales, whichever scores
better on the validation split, recorded in the manifest's ``quantization``). Each
``<out>/tflite-<variant>.tflite`` carries TFLite metadata (input normalisation, the four
outputs, the label file packed inside), so it loads unchanged in MediaPipe Tasks'
``ObjectDetector`` (`odplug_builtins.tflite.metadata`; `mediapipe_tasks` runs it there), and
comes with a manifest ``tflite-<variant>.json`` and ``labelmap.txt``. TensorFlow and LiteRT
are imported only when a model is exported or run, so listing plugins stays fast. Running and
inspecting the files is `odplug.model.litert`, which the edgetpu exporter shares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from odplug import hookimpl
from odplug.components import NO_INPUTS, ExportedModel, Exporter

if TYPE_CHECKING:
    from odplug.trained import TrainedDetector


class TFLiteExporter(Exporter):
    name = "tflite"
    summary = "TensorFlow Lite with TFLite_Detection_PostProcess: float32, float16, dynamic, int8"
    suffix = ".tflite"
    variants = ("float32", "float16", "dynamic", "int8")
    default_variants = ("float32", "int8")

    def check(self) -> None:
        from odplug.model import litert
        from odplug_builtins.tflite import metadata

        litert.require_installed(f"the {self.name} exporter")
        metadata.check()

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        from odplug_builtins.tflite.export import calibration, export_variant

        int8 = calibration(records)(trained.input_size) if "int8" in variants else None
        return [export_variant(trained, variant, out, exporter=self.name, int8=int8)
                for variant in variants]

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        from odplug.model import litert

        return litert.detector(exported)

    def other_runtimes(self, exported: ExportedModel
                       ) -> dict[str, Callable[[], Callable[..., object]]]:
        """Runtimes besides LiteRT that run `exported` as apps do, by the name a verification row
        adds to the model's (``tflite-int8 (MediaPipe Tasks)``), each a factory of a detector:
        MediaPipe Tasks' ObjectDetector, for a file that carries metadata. Its row is held to
        mAP@.5 against the LiteRT row: MediaPipe's boxes are whole pixels."""
        from odplug.model import litert
        from odplug_builtins.tflite.mediapipe_tasks import RUNTIME, MediaPipeDetector

        if not litert.read_manifest(exported).get("metadata"):
            return {}
        return {RUNTIME: lambda: MediaPipeDetector(exported)}

    def model_at(self, path: Path) -> ExportedModel | None:
        """A ``.tflite`` with this exporter's manifest beside it (``tflite-int8.json``)."""
        from odplug.model import litert

        return litert.model_at(path, self.name, edgetpu=False)

    def note(self, exported: ExportedModel) -> str:
        """The LiteRT thread counts the model needs, when its NMS cannot run on every one."""
        from odplug.model import litert

        threads = litert.read_manifest(exported).get("postprocess", {}).get("num_threads", "any")
        return "" if threads == "any" else f"run LiteRT on {threads}"


@hookimpl(trylast=True)
def odplug_register_exporters(register):  # type: ignore[no-untyped-def]
    register(TFLiteExporter())
