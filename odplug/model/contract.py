"""The trained-detector contract: what a SavedModel folder must hold for every exporter to take it.

docs/hooks.md (``odplug_register_exporters``) states the contract in words; `validate_detector`
is its one check. It loads the SavedModel once and compares the two signatures and the three
files beside it (``detector.json``, ``anchors.npy``, ``label_map.pbtxt``, read by
`odplug.model.detector_info`) with each other, so a folder a trainer got wrong fails before any
exporter converts anything, with one line naming the file and what is wrong. What it returns,
`TrainedDetector`, is what exporters receive: the loaded model with its description, so none of
them loads or checks it again. Imports TensorFlow: only export calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.model.detector_info import ANCHORS_NAME, LABEL_MAP_NAME, read_detector_info
from odplug.trained import TrainedDetector

SERVING = "serving_default"
RAW = "raw"
INPUT = "images"
SERVING_OUTPUTS: dict[str, tuple[tuple[int | None, ...], str]] = {
    "detection_boxes": ((None, None, 4), "[1, N, 4]"),
    "detection_classes": ((None, None), "[1, N]"),
    "detection_scores": ((None, None), "[1, N]"),
    "num_detections": ((None,), "[1]"),
}
"""Each serving output's shape (None: any size) and how the contract writes it; all float32."""
BOX_CODES = "box_codes"
CLASS_SCORES = "class_scores"
SEE = "the trained-detector contract is in docs/hooks.md"


def validate_detector(saved_model: Path) -> TrainedDetector:
    """Load `saved_model` and check it against the contract; raise one `OdplugError` line naming
    the file and what is missing or wrong, before any exporter starts."""
    if not saved_model.is_dir():
        raise OdplugError(f"{saved_model}: no such folder; give the saved_model folder of a "
                          "trained run")
    info = read_detector_info(saved_model)
    loaded = load_saved_model(saved_model)
    serving = signature_of(loaded, SERVING, saved_model)
    raw = signature_of(loaded, RAW, saved_model)

    _check(saved_model, SERVING, f"input {INPUT!r}", _input(serving, SERVING, saved_model),
           tf.uint8, (None, None, None, 3), "[1, H, W, 3]")
    served = _outputs(serving, SERVING, SERVING_OUTPUTS, saved_model)
    for name, (dims, shown) in SERVING_OUTPUTS.items():
        _check(saved_model, SERVING, f"output {name!r}", served[name], tf.float32, dims, shown)

    image = _input(raw, RAW, saved_model)
    _check(saved_model, RAW, f"input {INPUT!r}", image, tf.float32, (1, None, None, 3),
           "[1, S, S, 3]")
    height, width = image.shape[1], image.shape[2]
    if height is None or height != width:
        raise OdplugError(f"{saved_model}: signature {RAW!r} takes {INPUT!r} of "
                          f"{_dims(image.shape)}; it must be a fixed square [1, S, S, 3]")
    if height != info.input_size:
        raise OdplugError(f"{saved_model}: detector.json says input_size {info.input_size} but "
                          f"signature {RAW!r} takes {height} x {width}")
    outputs = _outputs(raw, RAW, {BOX_CODES: (), CLASS_SCORES: ()}, saved_model)
    anchors, classes = len(info.anchors), len(info.label_map)
    _check(saved_model, RAW, f"output {BOX_CODES!r}", outputs[BOX_CODES], tf.float32,
           (None, None, 4), "[1, A, 4]")
    _check(saved_model, RAW, f"output {CLASS_SCORES!r}", outputs[CLASS_SCORES], tf.float32,
           (None, None, None), "[1, A, C]")
    rows = outputs[BOX_CODES].shape[1]
    if rows != anchors:
        raise OdplugError(f"{saved_model / ANCHORS_NAME}: {anchors} anchors, but signature "
                          f"{RAW!r} gives {BOX_CODES!r} for {rows}; anchors.npy and the "
                          "SavedModel must come from the same model")
    scores = outputs[CLASS_SCORES].shape
    if scores[1] != anchors:
        raise OdplugError(f"{saved_model}: signature {RAW!r} gives {CLASS_SCORES!r} for "
                          f"{scores[1]} anchors and {BOX_CODES!r} for {anchors}")
    if scores[2] != classes:
        raise OdplugError(f"{saved_model / LABEL_MAP_NAME}: {classes} classes, but signature "
                          f"{RAW!r} gives {CLASS_SCORES!r} {scores[2]} columns, one per "
                          "label-map item")
    _check_scores(raw, info.input_size, saved_model)
    return TrainedDetector(path=saved_model, info=info, loaded=loaded, serving=serving, raw=raw)


def load_saved_model(path: Path) -> Any:
    """``tf.saved_model.load`` with one clear line for a damaged or incomplete folder: the one
    place odplug loads a SavedModel, for the contract check and for running one alike."""
    try:
        return tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many unrelated types for a damaged folder
        message = " ".join(str(error).split())[:300] or type(error).__name__
        raise OdplugError(f"{path}: cannot load the SavedModel ({message}); the folder is "
                          "damaged or incomplete: export the run again") from None


def signature_of(loaded: Any, name: str, path: Path) -> Any:
    """The loaded SavedModel's signature `name`, or one line listing the ones it has."""
    found = loaded.signatures.get(name)
    if found is None:
        raise OdplugError(f"{path}: the SavedModel has no {name!r} signature (it has "
                          f"{', '.join(sorted(loaded.signatures)) or 'none'}); exporters need "
                          f"{SERVING!r} and {RAW!r}: {SEE}")
    return found


def _input(function: Any, signature: str, path: Path) -> tf.TensorSpec:
    inputs = function.structured_input_signature[1]
    if list(inputs) != [INPUT]:
        raise OdplugError(f"{path}: signature {signature!r} takes "
                          f"{', '.join(map(repr, inputs)) or 'nothing'}; it must take one "
                          f"input {INPUT!r}: {SEE}")
    return inputs[INPUT]


def _outputs(function: Any, signature: str, names: dict[str, Any], path: Path) -> dict[str, Any]:
    outputs = function.structured_outputs
    missing = [name for name in names if name not in outputs]
    if missing:
        raise OdplugError(f"{path}: signature {signature!r} has no output "
                          f"{', '.join(map(repr, missing))} (it has "
                          f"{', '.join(map(repr, sorted(outputs)))}): {SEE}")
    return outputs


def _check(path: Path, signature: str, what: str, spec: Any, dtype: tf.DType,
           dims: Sequence[int | None], shown: str) -> None:
    """`spec` has `dtype` and `dims` (None: any size, known or not); `shown` is how the
    contract writes the shape in the error."""
    shape = spec.shape
    fits = shape.rank == len(dims) and all(
        want is None or got == want for got, want in zip(shape.as_list(), dims, strict=True))
    if spec.dtype != dtype or not fits:
        raise OdplugError(f"{path}: signature {signature!r} {what} is {spec.dtype.name} "
                          f"{_dims(shape)}; the contract needs {dtype.name} "
                          f"{shown}")


def _dims(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "of unknown rank"
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape.as_list()) + "]"


def _check_scores(raw: Any, size: int, path: Path) -> None:
    """One gray image through ``raw``: finite box codes and class scores in [0, 1], which
    catches logits where the contract wants sigmoid scores (every exporter thresholds them)."""
    outputs = raw(**{INPUT: tf.fill([1, size, size, 3], 128.0)})
    codes, scores = outputs[BOX_CODES].numpy(), outputs[CLASS_SCORES].numpy()
    if not (np.all(np.isfinite(codes)) and np.all(np.isfinite(scores))):
        raise OdplugError(f"{path}: signature {RAW!r} gives non-finite outputs on a gray image")
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise OdplugError(f"{path}: signature {RAW!r} gives {CLASS_SCORES!r} from "
                          f"{scores.min():.3g} to {scores.max():.3g}; they must be sigmoid "
                          "scores in [0, 1], not logits")
