"""A trained Keras detector written as the SavedModel every exporter and ``model.*`` task reads.

What a trainer supplies is a Keras model; this module turns it into the file format, so a
third-party trainer writes a conforming SavedModel with one call to `write_detector`.

The model (a ``keras.Model`` or layer that ``keras.export.ExportArchive`` can track) takes
float32 images ``[B, S, S, 3]``, RGB, values 0..255 (S = `input_size`; any normalisation happens
inside the model) and returns a dict of two float tensors:

- ``box_codes`` ``[B, A, 4]``: (ty, tx, th, tw) of each anchor, encoded against `anchors` by
  `odplug.model.boxcoder` (the TF OD API's Faster R-CNN coder, `scale_factors` 10, 10, 5, 5);
- ``class_logits`` ``[B, A, C]``: one logit per class, scored with a sigmoid (no background
  column); C is the number of label-map items and column i is the i-th item in ascending id
  order (``label_map.ids[i]``; `odplug.labels` states the rule), so ids may have gaps
  (1, 3, 7 gives columns 0, 1, 2).

`anchors` is float32 ``[A, 4]`` (ycenter, xcenter, height, width), normalised to the image, in
the order of the model's output rows.

The SavedModel then has two signatures:

- ``serving_default``: uint8 ``[1, H, W, 3]`` of any size, resized to S inside, returning
  ``detection_boxes`` (normalised ymin, xmin, ymax, xmax), ``detection_classes`` (label-map
  ids: each detection's column turned into its id), ``detection_scores`` and
  ``num_detections``, like the TF Object Detection API's exported models, decoded and NMSed by
  `odplug.model.postprocess.detect`;
- ``raw``: float32 ``[1, S, S, 3]`` (0..255, already resized), returning ``box_codes`` and
  ``class_scores`` (sigmoid of the logits, columns as above) before decoding and NMS: the
  graph the TFLite and Edge TPU exporters quantize to int8 and finish with their runtime's own
  post-processing op.

Beside them, `odplug.model.detector_info.write_detector_info` writes ``detector.json`` (input size,
classes, box coder, NMS settings), ``anchors.npy`` and ``label_map.pbtxt``. Exported through
``keras.export.ExportArchive``, which freezes Keras 3 variables into the SavedModel properly
(a plain tf.Module around a Keras 3 model converts to a TFLite file without its weights).
Imports TensorFlow.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.boxcoder import SCALE_FACTORS
from odplug.model.detector_info import write_detector_info
from odplug.model.postprocess import Nms, detect
from odplug.trained import DetectorInfo


def write_detector(model: keras.Model, anchors: np.ndarray, label_map: LabelMap,
                   input_size: int, out: Path, *, nms: Nms | None = None,
                   scale_factors: Sequence[float] = SCALE_FACTORS) -> Path:
    """Write `model` as a detector SavedModel folder at `out`; returns `out`.

    The folder is written beside `out` and renamed into place only when complete, so a crash
    leaves the previous SavedModel (or none), never half of one. A model whose outputs do not
    match `anchors` and `label_map` is refused with one line naming the mismatch. `nms`
    defaults to `Nms()`: scores from 0.05, IoU 0.5, 100 detections, per-class NMS.
    """
    nms = nms or Nms()
    factors = tuple(float(f) for f in scale_factors)
    if len(factors) != 4:
        raise OdplugError(f"scale_factors {tuple(scale_factors)}: give 4 numbers (y, x, h, w)")
    anchors = np.asarray(anchors, np.float32)
    check_detector(model, anchors, label_map, input_size)
    anchors_t = tf.constant(anchors, tf.float32)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        resized = tf.image.resize(tf.cast(images, tf.float32), (input_size, input_size))
        outputs = model(resized, training=False)
        return detect(outputs["box_codes"], outputs["class_logits"], anchors_t, nms, factors,
                      class_ids=label_map.ids)

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = model(images, training=False)
        return {"box_codes": outputs["box_codes"],
                "class_scores": tf.sigmoid(outputs["class_logits"])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint("raw", raw, input_signature=[
        tf.TensorSpec([1, input_size, input_size, 3], tf.float32, name="images")])
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    archive.write_out(str(staging), verbose=False)
    write_detector_info(DetectorInfo(
        input_size=input_size, scale_factors=factors,  # type: ignore[arg-type]
        iou_threshold=nms.iou_threshold, score_threshold=nms.score_threshold,
        max_detections=nms.max_detections, per_class_nms=nms.per_class, anchors=anchors,
        label_map=label_map,
    ), staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def check_detector(model: keras.Model, anchors: np.ndarray, label_map: LabelMap,
                   input_size: int) -> None:
    """Run `model` on one blank image and check its outputs against the contract above."""
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise OdplugError(f"anchors have shape {list(anchors.shape)}, expected [A, 4] "
                          "(ycenter, xcenter, height, width)")
    if input_size < 1:
        raise OdplugError(f"input_size {input_size}: must be a positive number of pixels")
    outputs = model(tf.zeros([1, input_size, input_size, 3], tf.float32), training=False)
    if not isinstance(outputs, dict) or not {"box_codes", "class_logits"} <= set(outputs):
        found = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise OdplugError(f"the model returns {found}; a detector returns a dict with "
                          "'box_codes' [B, A, 4] and 'class_logits' [B, A, C]")
    classes = len(label_map)
    expected = {"box_codes": [1, len(anchors), 4], "class_logits": [1, len(anchors), classes]}
    for name, shape in expected.items():
        got = list(outputs[name].shape)
        if got != shape:
            raise OdplugError(f"the model's {name!r} has shape {got} for one image, expected "
                              f"{shape} ({len(anchors)} anchors, {classes} classes)")
