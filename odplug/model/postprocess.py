"""From raw outputs to detections: decode the box codes, then non-maximum suppression.

One function serves a trainer's validation, the SavedModel's serving signature
(`odplug.model.savedmodel.write_detector`) and the comparison with exported models, so every
number odplug reports comes from one decoder, whichever trainer made the model.

Two NMS semantics, chosen by `Nms.per_class` and recorded in ``detector.json``, and every
runtime applies the one recorded (so an export's "vs SavedModel" measures conversion alone):

- per class ("regular"): each class is suppressed on its own, so one box may be kept for two
  classes; `tf.image.combined_non_max_suppression` here, ``use_regular_nms`` in TFLite's
  ``TFLite_Detection_PostProcess``, `select` with class-offset boxes in TF.js;
- class-agnostic ("fast"): each box keeps only its best class and score, then one suppression
  over all boxes, so of two overlapping boxes of different classes only the better one stays;
  TFLite's fast NMS with ``max_classes_per_detection`` 1, `select` in TF.js and here.

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
    """Non-maximum suppression settings, as ``detector.json`` records them."""

    score_threshold: float = 0.05
    """Detections scoring lower are dropped before NMS."""
    iou_threshold: float = 0.5
    """Of two boxes of one class overlapping more than this, the lower-scoring one goes."""
    max_detections: int = 100
    """Detections kept per image (and per class)."""
    per_class: bool = True
    """Suppress each class on its own (True) or all boxes at once on their best class (False);
    the module docstring says what each means in every runtime."""


def detect(box_codes: tf.Tensor, class_logits: tf.Tensor, anchors: tf.Tensor, nms: Nms,
           scale_factors: Sequence[float] = boxcoder.SCALE_FACTORS, *,
           class_ids: Sequence[int]) -> dict[str, tf.Tensor]:
    """Raw outputs [B, A, 4] / [B, A, C] -> TF OD API style detections.

    `box_codes` are encoded against `anchors` [A, 4] by `odplug.model.boxcoder`; column k of
    `class_logits` is the logit (sigmoid, no background column) of label id ``class_ids[k]``:
    pass ``label_map.ids`` (column i is the i-th label-map item in ascending id order, see
    `odplug.labels`), so ids with gaps come out as themselves.
    Returns ``detection_boxes`` [B, N, 4] (normalised ymin, xmin, ymax, xmax, clipped),
    ``detection_classes`` [B, N] (label-map ids, float32 as the API exports them),
    ``detection_scores`` [B, N] and ``num_detections`` [B], N = ``nms.max_detections``.
    """
    columns = class_logits.shape[-1]
    if columns is not None and columns != len(class_ids):
        raise OdplugError(f"{columns} class columns but {len(class_ids)} class ids "
                          f"{list(class_ids)}; give one id per column (label_map.ids)")
    boxes = decode_boxes(box_codes, anchors, scale_factors)
    return suppress(boxes, tf.sigmoid(tf.cast(class_logits, tf.float32)), nms,
                    class_ids=class_ids)


def decode_boxes(box_codes: tf.Tensor, anchors: tf.Tensor,
                 scale_factors: Sequence[float] = boxcoder.SCALE_FACTORS) -> tf.Tensor:
    """Box codes [..., A, 4] -> normalised (ymin, xmin, ymax, xmax), clipped to the image.

    Clipped before suppression: boxes reaching far past the image (an untrained model's) made
    TF.js and TensorFlow keep different boxes of near-equal overlap. TFLite's op suppresses
    the boxes unclipped; that differs only for two boxes both past the border.
    """
    return tf.clip_by_value(boxcoder.decode(tf.cast(box_codes, tf.float32),
                                            tf.cast(anchors, tf.float32), scale_factors), 0.0, 1.0)


def suppress(boxes: tf.Tensor, scores: tf.Tensor, nms: Nms, *,
             class_ids: Sequence[int]) -> dict[str, tf.Tensor]:
    """Decoded boxes [B, A, 4] (`decode_boxes`) and class scores [B, A, C] -> `detect`'s
    detections."""
    ids = tf.constant(class_ids, tf.float32)
    if nms.per_class:
        nmsed = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], scores,
            max_output_size_per_class=nms.max_detections,
            max_total_size=nms.max_detections,
            iou_threshold=nms.iou_threshold,
            score_threshold=nms.score_threshold,
            clip_boxes=False,
        )
        return {
            "detection_boxes": nmsed.nmsed_boxes,
            "detection_classes": tf.gather(ids, tf.cast(nmsed.nmsed_classes, tf.int32)),
            "detection_scores": nmsed.nmsed_scores,
            "num_detections": tf.cast(nmsed.valid_detections, tf.float32),
        }
    kept_boxes, columns, kept_scores, count = tf.map_fn(
        lambda image: select(image[0], image[1], nms), (boxes, scores),
        fn_output_signature=(tf.float32, tf.int32, tf.float32, tf.int32))
    return {
        "detection_boxes": kept_boxes,
        "detection_classes": tf.gather(ids, columns),
        "detection_scores": kept_scores,
        "num_detections": tf.cast(count, tf.float32),
    }


def select(boxes: tf.Tensor, scores: tf.Tensor,
           nms: Nms) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """NMS on one image: boxes [A, 4] (`decode_boxes`) and scores [A, C] -> kept boxes [N, 4],
    class columns [N] (int32), scores [N], best first and padded with zeros to N =
    ``nms.max_detections``, and how many are real (int32 scalar).

    Built only of ops TF.js converts and runs right (``non_max_suppression_with_scores``;
    neither the combined nor the padded NMS), so the TF.js export uses it as it is. Per class,
    every (box, class) pair is a candidate and each class's boxes are moved 2 away from the
    previous class's (boxes lie within 0..1), so boxes of different classes never overlap and
    one suppression over all pairs is each class's own suppression: the same detections as
    `tf.image.combined_non_max_suppression` with N per class and N in total.
    """
    count = nms.max_detections
    classes = tf.shape(scores)[-1]
    if nms.per_class:
        candidates = tf.reshape(tf.tile(boxes[:, None, :], [1, classes, 1]), [-1, 4])
        columns = tf.tile(tf.range(classes, dtype=tf.int32), [tf.shape(boxes)[0]])
        offsets = 2.0 * tf.cast(columns, tf.float32)[:, None]
        keep, kept_scores = tf.image.non_max_suppression_with_scores(
            candidates + offsets, tf.reshape(scores, [-1]), max_output_size=count,
            iou_threshold=nms.iou_threshold, score_threshold=nms.score_threshold)
    else:
        candidates = boxes
        columns = tf.argmax(scores, axis=-1, output_type=tf.int32)
        keep, kept_scores = tf.image.non_max_suppression_with_scores(
            boxes, tf.reduce_max(scores, axis=-1), max_output_size=count,
            iou_threshold=nms.iou_threshold, score_threshold=nms.score_threshold)
    found = tf.shape(keep)[0]
    padding = count - found
    # Reshape, not ensure_shape: TF.js cannot run EnsureShape; both give static shapes.
    return (tf.reshape(tf.pad(tf.gather(candidates, keep), [[0, padding], [0, 0]]), [count, 4]),
            tf.reshape(tf.pad(tf.gather(columns, keep), [[0, padding]]), [count]),
            tf.reshape(tf.pad(kept_scores, [[0, padding]]), [count]),
            found)
