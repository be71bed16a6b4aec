"""From raw outputs to detections: decode the box codes, then per-class non-maximum suppression.

The same function serves validation during training, the SavedModel's serving signature and
the comparison with exported models, so every number odplug reports comes from one decoder.
"""

from __future__ import annotations

import tensorflow as tf

from odplug.model import boxcoder
from odplug_builtins.trainer.config import EvalConfig


def detect(box_codes: tf.Tensor, class_logits: tf.Tensor, anchors: tf.Tensor,
           config: EvalConfig) -> dict[str, tf.Tensor]:
    """Raw outputs [B, A, 4] / [B, A, C] -> TF OD API style detections.

    Returns ``detection_boxes`` [B, N, 4] (normalised ymin, xmin, ymax, xmax, clipped),
    ``detection_classes`` [B, N] (label-map ids from 1, float32 as the API exports them),
    ``detection_scores`` [B, N] and ``num_detections`` [B], N = ``config.max_detections``.
    """
    boxes = boxcoder.decode(tf.cast(box_codes, tf.float32), tf.cast(anchors, tf.float32))
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    scores = tf.sigmoid(tf.cast(class_logits, tf.float32))
    nmsed = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores,
        max_output_size_per_class=config.max_detections,
        max_total_size=config.max_detections,
        iou_threshold=config.iou_threshold,
        score_threshold=config.score_threshold,
        clip_boxes=False,
    )
    return {
        "detection_boxes": nmsed.nmsed_boxes,
        "detection_classes": nmsed.nmsed_classes + 1.0,
        "detection_scores": nmsed.nmsed_scores,
        "num_detections": tf.cast(nmsed.valid_detections, tf.float32),
    }
