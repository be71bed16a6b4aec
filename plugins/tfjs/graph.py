"""The TF.js-ready SavedModel: the run's ``raw`` signature with decoding and NMS that TF.js runs.

Built in odplug's own TensorFlow from the trained detector the core checked and loaded (its
``raw`` signature, ``detector.json`` and ``anchors.npy``), so it needs nothing from the trainer
plugin. NMS is the one ``detector.json`` records (per class or class-agnostic), built by the
core's `odplug.model.postprocess.select` from ``non_max_suppression_with_scores``, the one NMS
op TF.js both converts and gets right (it is asynchronous there: run with ``executeAsync``).
The input is the uint8 image already resized to the model's square size; outputs are padded to
``max_detections`` like the TF Object Detection API's.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from odplug.model.postprocess import Nms, decode_boxes, select
from odplug.trained import TrainedDetector

INPUT_NAME = "images"
OUTPUTS = {
    "detection_boxes": "normalised (ymin, xmin, ymax, xmax), clipped to [0, 1]",
    "detection_classes": "label-map ids, as float32 like the TF Object Detection API",
    "detection_scores": "the class score of each box, best first",
    "num_detections": "how many of the max_detections rows are real; the rest are zeros",
}


def build_tfjs_saved_model(trained: TrainedDetector, out: Path) -> dict[str, str]:
    """Write the TF.js-ready SavedModel to `out`; returns each output's tensor name in it.

    The converter keeps a signature's output names only when their shapes and dtypes differ
    (here classes and scores do not), so the names are recorded now, while they are certain:
    the flat outputs follow the sorted keys, and each is the graph tensor the converter keeps.
    """
    info, raw = trained.info, trained.raw
    size = info.input_size
    nms = Nms(score_threshold=info.score_threshold, iou_threshold=info.iou_threshold,
              max_detections=info.max_detections, per_class=info.per_class_nms)
    anchors = tf.constant(info.anchors)
    class_ids = tf.constant(trained.class_ids, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name=INPUT_NAME)])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = raw(images=tf.cast(images, tf.float32))
        boxes, columns, scores, found = select(
            decode_boxes(outputs["box_codes"][0], anchors, info.scale_factors),
            outputs["class_scores"][0], nms)
        return {
            "detection_boxes": boxes[None],
            "detection_classes": tf.gather(class_ids, columns)[None],
            "detection_scores": scores[None],
            "num_detections": tf.reshape(tf.cast(found, tf.float32), [1]),
        }

    module = tf.Module()
    module.source = trained.loaded
    module.serve = serve
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    keys = sorted(signature.structured_outputs)
    return {key: tensor.name for key, tensor in zip(keys, signature.outputs, strict=True)}
