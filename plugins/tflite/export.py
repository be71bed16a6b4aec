"""Writing one variant: convert, check what the file holds, then the model, manifest, labels.

Every variant is checked before it is written, so a file that reaches `out` runs: the weights
are in the file (no variable ops, which a SavedModel with unfrozen weights produces and which
run to NaN), one inference gives finite outputs, and an int8 model's uint8 input takes pixels
as they are (scale 1, zero point 0). The manifest is read back from the interpreter, so it
says what the file really holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.components import ExportedModel
from odplug.errors import OdplugError
from odplug.model import litert
from odplug.model.contract import TrainedDetector
from odplug.model.litert import POSTPROCESS_OP
from odplug.model.tfdata import representative_images
from odplug_builtins.tflite.convert import VARIABLE_OPS, Calibration, convert, safe_threads

CALIBRATION_IMAGES = 200
"""Records of the training split used for int8 calibration (fewer when the split is smaller)."""
LABELS_FILE = "labelmap.txt"


def calibration(records: Path | None) -> Callable[[int], Calibration]:
    """Check the records now, before any slow work; return what makes the calibration images
    (the training split preprocessed as in training) once the input size is known."""
    if records is None:
        raise OdplugError("int8 needs calibration images: give --records, the data.import "
                          "folder the model was trained on")
    files = sorted(records.glob("train.record-*"))
    if not files:
        raise OdplugError(f"{records}: no train.record-* files; int8 calibration needs the "
                          "training split of a data.import folder")

    def for_size(input_size: int) -> Calibration:
        names = [str(f) for f in files]
        count = min(CALIBRATION_IMAGES, sum(1 for _ in tf.data.TFRecordDataset(names)))
        return lambda: representative_images(files, input_size, count)

    return for_size


def export_variant(trained: TrainedDetector, variant: str, out: Path, *, name: str,
                   calibrate: Calibration | None = None) -> ExportedModel:
    """Convert, verify and write `name`.tflite, `name`.json and labelmap.txt under `out`."""
    model = convert(trained, variant, calibrate)
    verify(model, litert.ops(model), variant)
    path = out / f"{name}.tflite"
    manifest = out / f"{name}.json"
    atomic_write_bytes(path, model)
    atomic_write_text(out / LABELS_FILE, "".join(f"{label}\n" for label in trained.labels))
    atomic_write_text(manifest, json.dumps(
        manifest_for(trained, model, name, variant, path), indent=2) + "\n")
    return ExportedModel(name=name, path=path, manifest=manifest, size_bytes=len(model))


def verify(model: bytes, found: list[litert.Op], variant: str) -> None:
    variables = sorted({op.name for op in found} & VARIABLE_OPS)
    if variables:
        raise OdplugError(f"the {variant} model reads its weights from variables "
                          f"({', '.join(variables)}) instead of holding them; the SavedModel's "
                          "weights are not frozen: export the run again with odplug's trainer")
    postprocess = [op for op in found if op.name == POSTPROCESS_OP]
    if len(postprocess) != 1:
        raise OdplugError(f"the {variant} model does not end in one {POSTPROCESS_OP} op")
    interpreter = litert.interpreter(model, preserve_all_tensors=True)
    (inp,) = interpreter.get_input_details()
    if variant == "int8":
        scale, zero_point = inp["quantization"]
        if np.dtype(inp["dtype"]) != np.uint8 or abs(scale - 1.0) > 1e-6 or zero_point != 0:
            raise OdplugError(f"the int8 model's input is {np.dtype(inp['dtype']).name} with "
                              f"scale {scale} and zero point {zero_point}, not uint8 pixels "
                              "0..255 (scale 1, zero point 0)")
    gray = np.full(inp["shape"], 128, np.dtype(inp["dtype"]))
    interpreter.set_tensor(inp["index"], gray)
    interpreter.invoke()
    boxes, classes, scores, count = (interpreter.get_tensor(d["index"])
                                     for d in interpreter.get_output_details())
    n = int(count.reshape(-1)[0]) if np.all(np.isfinite(count)) else -1
    rows = (boxes[0, :n], classes[0, :n], scores[0, :n]) if 0 <= n <= boxes.shape[1] else ()
    raw = [interpreter.get_tensor(i) for i in postprocess[0].inputs[:2]]  # codes, scores
    if not rows or not all(np.all(np.isfinite(part)) for part in [*rows, *raw]):
        raise OdplugError(f"the {variant} model gives non-finite or impossible detections on a "
                          "gray image; the conversion is broken")


def manifest_for(trained: TrainedDetector, model: bytes, name: str, variant: str,
                 path: Path) -> dict[str, Any]:
    """What an app needs to run the file, read back from the interpreter."""
    described = litert.describe(model)
    size = trained.input_size
    info = trained.info
    meaning = {
        "detection_boxes": "ymin, xmin, ymax, xmax normalised to the input; not clipped: clip "
                           "to [0, 1]",
        "detection_classes": "0-based class index: labels[i], label-map id label_ids[i]",
        "detection_scores": "sigmoid score of the class",
        "num_detections": "how many rows of the other outputs are detections (the rest are "
                          "undefined)",
    }
    return {
        "format": "tflite",
        "name": name,
        "variant": variant,
        "model": path.name,
        "size_bytes": len(model),
        "source": str(trained.path),
        "input": described["input"] | {
            "layout": "NHWC, RGB",
            "preprocessing": f"stretch the whole image to {size} x {size} (bilinear, "
                             "tf.image.resize, aspect ratio not kept); pixel values 0..255",
            "mean": 0.0,
            "std": 1.0,
        },
        "outputs": [output | {"meaning": meaning.get(output["name"], "")}
                    for output in described["outputs"]],
        "postprocess": {
            "op": POSTPROCESS_OP,
            "use_regular_nms": info.per_class_nms,
            "num_threads": safe_threads(trained),
            "max_detections": info.max_detections,
            "score_threshold": info.score_threshold,
            "iou_threshold": info.iou_threshold,
            "scale_factors": list(info.scale_factors),
            "num_classes": trained.num_classes,
        },
        "labels": trained.labels,
        "label_ids": trained.class_ids,
        "labels_file": LABELS_FILE,
    }

