"""From raw outputs to detections: decode the box codes, then per-class non-maximum suppression.

One function serves a trainer's validation, the SavedModel's serving signature
(`odplug.model.savedmodel.write_detector`) and the comparison with exported models, so every
number odplug reports comes from one decoder, whichever trainer made the model.
Imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from odplug.errors import OdplugError
from odplug.model import boxcoder


@dataclass(frozen=True)
class Nms:
    """Non-maximum suppression settings, per class, as ``detector.json`` records them."""

    score_threshold: float = 0.05
    """Detections scoring lower are dropped before NMS."""
    iou_threshold: float = 0.5
    """Of two boxes of one class overlapping more than this, the lower-scoring one goes."""
    max_detections: int = 100
    """Detections kept per image (and per class)."""


def detect(box_codes: tf.Tensor, class_logits: tf.Tensor, anchors: tf.Tensor, nms: Nms,
           scale_factors: Sequence[float] = boxcoder.SCALE_FACTORS, *,
           class_ids: Sequence[int]) -> dict[str, tf.Tensor]:
    """Raw outputs [B, A, 4] / [B, A, C] -> TF OD API style detections.

    `box_codes` are encoded against `anchors` [A, 4] by `odplug.model.boxcoder`; column k of
    `class_logits` is the logit (sigmoid, no background column) of label id ``class_ids[k]``:
    pass ``label_map.ids`` (column i is the i-th label-map item in ascending id order, see
    `odplug.data.labelmap`), so ids with gaps come out as themselves.
    Returns ``detection_boxes`` [B, N, 4] (normalised ymin, xmin, ymax, xmax, clipped),
    ``detection_classes`` [B, N] (label-map ids, float32 as the API exports them),
    ``detection_scores`` [B, N] and ``num_detections`` [B], N = ``nms.max_detections``.
    """
    columns = class_logits.shape[-1]
    if columns is not None and columns != len(class_ids):
        raise OdplugError(f"{columns} class columns but {len(class_ids)} class ids "
                          f"{list(class_ids)}; give one id per column (label_map.ids)")
    boxes = boxcoder.decode(tf.cast(box_codes, tf.float32), tf.cast(anchors, tf.float32),
                            scale_factors)
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    scores = tf.sigmoid(tf.cast(class_logits, tf.float32))
    nmsed = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores,
        max_output_size_per_class=nms.max_detections,
        max_total_size=nms.max_detections,
        iou_threshold=nms.iou_threshold,
        score_threshold=nms.score_threshold,
        clip_boxes=False,
    )
    ids = tf.constant(class_ids, tf.float32)
    return {
        "detection_boxes": nmsed.nmsed_boxes,
        "detection_classes": tf.gather(ids, tf.cast(nmsed.nmsed_classes, tf.int32)),
        "detection_scores": nmsed.nmsed_scores,
        "num_detections": tf.cast(nmsed.valid_detections, tf.float32),
    }
