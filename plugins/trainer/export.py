"""The trained run as a SavedModel, with the two signatures the rest of odplug relies on.

``serving_default`` takes a uint8 image batch [1, H, W, 3] of any size and returns
``detection_boxes`` (normalised ymin, xmin, ymax, xmax), ``detection_classes`` (label-map ids),
``detection_scores`` and ``num_detections``, like the TF Object Detection API's exported models.
``raw`` takes float32 [1, S, S, 3] (0..255, already resized) and returns the box codes and class
scores before decoding and NMS: the graph the TFLite and Edge TPU exporters quantize to int8
and finish with their runtime's own post-processing op.

Exported through ``keras.export.ExportArchive``, which freezes the Keras 3 variables into the
SavedModel properly (a plain tf.Module around a Keras 3 model converts to a TFLite file without
its weights). ``detector.json`` beside it records what exporters need: input size, classes,
anchors and the box coder's scale factors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from odplug.data.labelmap import LabelMap
from odplug.model.boxcoder import SCALE_FACTORS
from odplug.model.detector_info import DetectorInfo
from odplug_builtins.trainer.config import Config
from odplug_builtins.trainer.postprocess import detect


def export_saved_model(model: keras.Model, anchors: np.ndarray, config: Config,
                       label_map: LabelMap, out: Path) -> Path:
    size = config.model.input_size
    anchors_t = tf.constant(anchors, tf.float32)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        resized = tf.image.resize(tf.cast(images, tf.float32), (size, size))
        outputs = model(resized, training=False)
        return detect(outputs["box_codes"], outputs["class_logits"], anchors_t, config.eval)

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = model(images, training=False)
        return {"box_codes": outputs["box_codes"],
                "class_scores": tf.sigmoid(outputs["class_logits"])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint("raw", raw, input_signature=[
        tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    archive.write_out(str(staging), verbose=False)
    DetectorInfo(
        input_size=size, scale_factors=SCALE_FACTORS, iou_threshold=config.eval.iou_threshold,
        score_threshold=config.eval.score_threshold, max_detections=config.eval.max_detections,
        per_class_nms=True, anchors=anchors, label_map=label_map,
    ).write(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out
