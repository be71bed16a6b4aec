"""Writing one variant: convert, check what the file holds, then the model, manifest, labels.

Every variant is checked before it is written, so a file that reaches `out` runs: the weights
are in the file (no variable ops, which a SavedModel with unfrozen weights produces and which
run to NaN), one inference gives finite outputs, and an int8 model's uint8 input takes pixels
as they are (scale 1, zero point 0). The checked model then gets its TFLite metadata, so it
loads in MediaPipe Tasks (`odplug_builtins.tflite.metadata`). The manifest is read back from the
interpreter and from the metadata written, so it says what the file really holds.

int8 is converted twice, with per-channel and with per-tensor weight scales, and each model is
scored on the records' validation split with the verification table's own evaluation (COCO
mAP, `odplug.model.detector.evaluate_detector`); `choose_weights` keeps one by the rule stated
there, and the manifest's ``quantization`` entry records the choice, the rule and both scores.
The test split is never used, so the table's numbers stay unbiased. Records without a
validation split get `DEFAULT_WEIGHTS`, converted once, and the manifest and one log line say
so. Calibration reads only the records it uses (`odplug.data.tfrecord.spread_sample`), once,
and both conversions calibrate on the same images.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.components import ExportedModel
from odplug.data.labelmap import read_label_map
from odplug.data.shards import shard_files
from odplug.data.tfrecord import spread_sample
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model import litert
from odplug.model.detector import evaluate_detector
from odplug.model.litert import POSTPROCESS_OP
from odplug.model.tfdata import representative_images
from odplug.trained import TrainedDetector
from odplug_builtins.tflite.convert import VARIABLE_OPS, Calibration, convert, safe_threads
from odplug_builtins.tflite.metadata import with_metadata

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 200
"""Records of the training split used for int8 calibration (all of them when the split is
smaller), spread evenly over it."""
LABELS_FILE = "labelmap.txt"
PER_CHANNEL, PER_TENSOR = "per-channel", "per-tensor"
DEFAULT_WEIGHTS = PER_TENSOR
"""Without a validation split to measure on: one scale per weight tensor, which scored as
per-channel on the demo model in a smaller file (docs/exports.md, "Measurements"), and which
accelerators built for per-tensor int8 run at full speed."""
PER_CHANNEL_MARGIN = 0.02
"""How much higher per-channel's validation mAP@[.5:.95] must be for per-channel to be kept:
on the demo runs, smaller validation differences did not carry over to the test split, so
below it a difference is the validation split's noise (docs/exports.md, "Measurements"). A
per-tensor model that really loses accuracy (depthwise convolutions whose channels differ in
range by orders of magnitude) loses far more than this."""
RULE = (f"{PER_CHANNEL} if its validation mAP@[.5:.95] is higher than {PER_TENSOR}'s by more "
        f"than {PER_CHANNEL_MARGIN}, else {PER_TENSOR}")


@dataclass(frozen=True)
class Int8Data:
    """What an int8 export takes from the records folder: the calibration images (the records
    already read, decoded on demand) and the validation split that decides the weight scales."""

    calibrate: Calibration
    calibration_images: int
    validation: list[Path]
    """The val.record-* shards; empty when the records have none."""
    label_map: LabelMap
    records: Path


def calibration(records: Path | None) -> Callable[[int], Int8Data]:
    """Check the records now, before any slow work; return what reads the calibration records
    (the training split, preprocessed as in training) once the input size is known."""
    if records is None:
        raise OdplugError("int8 needs calibration images: give --records, the data.import "
                          "folder the model was trained on")
    files = shard_files(records, "train")
    if not files:
        raise OdplugError(f"{records}: no train.record-* files; int8 calibration needs the "
                          "training split of a data.import folder")
    label_map = read_label_map(records / "label_map.pbtxt")

    def for_size(input_size: int) -> Int8Data:
        sample = spread_sample(files, CALIBRATION_IMAGES)
        return Int8Data(calibrate=lambda: representative_images(sample, input_size),
                        calibration_images=len(sample), validation=shard_files(records, "val"),
                        label_map=label_map, records=records)

    return for_size


def export_variant(trained: TrainedDetector, variant: str, out: Path, *, exporter: str,
                   int8: Int8Data | None = None) -> ExportedModel:
    """Convert, verify and write ``<exporter>-<variant>`` .tflite and .json, and labelmap.txt,
    under `out`; int8 is the better of its two weight quantizations (`choose_int8`)."""
    quantization = None
    if variant == "int8":
        if int8 is None:
            raise OdplugError("int8 needs calibration images: give the records folder")
        model, quantization = choose_int8(trained, int8)
    else:
        model = convert(trained, variant)
        verify(model, litert.ops(model), variant)
    name = f"{exporter}-{variant}"
    model, metadata = with_metadata(model, trained.labels, labels_file=LABELS_FILE, name=name)
    path = out / f"{name}.tflite"
    manifest = out / f"{name}.json"
    atomic_write_bytes(path, model)
    atomic_write_text(out / LABELS_FILE, "".join(f"{label}\n" for label in trained.labels))
    atomic_write_text(manifest, json.dumps(
        manifest_for(trained, model, name, variant, path, quantization=quantization,
                     metadata=metadata), indent=2) + "\n")
    return ExportedModel(exporter=exporter, variant=variant, path=path, manifest=manifest,
                         size_bytes=len(model))


def choose_int8(trained: TrainedDetector, data: Int8Data) -> tuple[bytes, dict[str, Any]]:
    """The int8 model with the better weight quantization, and the manifest's account of it.

    Each candidate is converted, checked (`verify`) and scored on the validation split; without
    one, only `DEFAULT_WEIGHTS` is converted.
    """
    entry: dict[str, Any] = {"calibration_images": data.calibration_images, "rule": RULE}
    if not data.validation:
        log.warning("%s: no val.record-* shards to choose the int8 weight quantization on; "
                    "using the default, %s", data.records, DEFAULT_WEIGHTS)
        model, measured = _candidate(trained, data, DEFAULT_WEIGHTS, score=False)
        return model, entry | {
            "weights": DEFAULT_WEIGHTS,
            "chosen_by": "default: the records have no validation split",
            "candidates": {DEFAULT_WEIGHTS: measured}}
    models, candidates = {}, {}
    for weights in (PER_CHANNEL, PER_TENSOR):
        models[weights], candidates[weights] = _candidate(trained, data, weights, score=True)
    chosen = choose_weights(candidates)
    log.info("int8 weights: %s (validation mAP@.5 / mAP@[.5:.95]: %s)", chosen, ", ".join(
        f"{w} {c['val_map50']:.3f} / {c['val_map']:.3f}" for w, c in candidates.items()))
    return models[chosen], entry | {
        "weights": chosen,
        "chosen_by": f"validation split ({candidates[chosen]['val_images']} images)",
        "candidates": candidates}


def choose_weights(candidates: Mapping[str, Mapping[str, Any]]) -> str:
    """`RULE`: per-tensor unless per-channel scores clearly higher on mAP@[.5:.95].

    mAP@[.5:.95] because quantization moves boxes a little before it loses them, which mAP@.5
    does not see. Per-tensor wins ties: its file is smaller (per-channel stores a scale and a
    zero point per output channel, which outweighs the int8 weights of a small model) and
    accelerators built for per-tensor int8 run it at full speed. The margin
    (`PER_CHANNEL_MARGIN`) keeps per-channel from being chosen for a difference that a
    validation split of tens of images cannot resolve.
    """
    gain = candidates[PER_CHANNEL]["val_map"] - candidates[PER_TENSOR]["val_map"]
    return PER_CHANNEL if gain > PER_CHANNEL_MARGIN else PER_TENSOR


def _candidate(trained: TrainedDetector, data: Int8Data, weights: str, *,
               score: bool) -> tuple[bytes, dict[str, Any]]:
    """One int8 conversion, checked, with its size, conversion time and, with `score`, its
    validation mAP."""
    started = time.perf_counter()
    model = convert(trained, "int8", data.calibrate, per_channel=weights == PER_CHANNEL)
    measured: dict[str, Any] = {"size_bytes": len(model),
                                "convert_s": round(time.perf_counter() - started, 1)}
    verify(model, litert.ops(model), "int8")
    if weight_scales(model) != weights:
        raise OdplugError(f"the converter wrote {weight_scales(model)} int8 weights where "
                          f"{weights} was asked: its private flag "
                          "_experimental_disable_per_channel no longer works in this TensorFlow")
    if score:
        result = validation_score(model, trained, data)
        measured |= {"val_map50": result[0], "val_map": result[1], "val_images": result[2]}
    return model, measured


def weight_scales(model: bytes) -> str:
    """`PER_CHANNEL` when any tensor of `model` has more than one scale, else `PER_TENSOR`:
    what the file holds, whatever the converter was asked."""
    details = litert.interpreter(model, delegates=False).get_tensor_details()
    several = any(len(d["quantization_parameters"]["scales"]) > 1 for d in details)
    return PER_CHANNEL if several else PER_TENSOR


def validation_score(model: bytes, trained: TrainedDetector,
                     data: Int8Data) -> tuple[float, float, int]:
    """(mAP@.5, mAP@[.5:.95], images) of `model` on the validation split, run in LiteRT and
    scored as the verification table scores every export."""
    with tempfile.TemporaryDirectory(prefix="odplug-int8-") as folder:
        path = Path(folder) / "candidate.tflite"
        path.write_bytes(model)
        result = evaluate_detector(litert.TFLiteDetector(path, trained.class_ids),
                                   data.validation, data.label_map)
    return result.map50, result.map, result.images


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
                 path: Path, *, quantization: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an app needs to run the file, read back from the interpreter; the TFLite
    metadata it carries (None: none, `odplug_builtins.tflite.metadata`); for int8, how its
    weight quantization was chosen (`choose_int8`)."""
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
        "metadata": dict(metadata) if metadata else None,
    } | ({"quantization": dict(quantization)} if quantization else {})

