"""Box geometry on corner boxes (ymin, xmin, ymax, xmax): areas and intersection over union.

Written once for every trainer: the built-in one needs it to decide which boxes a crop keeps,
which anchors match which objects (pairwise IoU) and how far a predicted box is from its
object (paired IoU and union, the GIoU and CIoU losses); a third-party trainer needs the same.
Box coding, the other half of what a detector does with boxes, is `odplug.model.boxcoder`.

Sides shorter than zero count as zero and every IoU divides by at least `EPS`, so a degenerate
box (zero or negative area: a padding row, an early wild prediction) has area 0 and IoU 0,
never NaN, in values and gradients alike.
Imports TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-9
"""The least denominator of an IoU."""


def area(boxes: tf.Tensor) -> tf.Tensor:
    """Areas of corner boxes: [..., 4] -> [...], 0 for a box with a negative side."""
    return (tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
            * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0))


def iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU of corner boxes: [..., N, 4] x [..., M, 4] -> [..., N, M]."""
    return paired_iou(boxes_a[..., :, None, :], boxes_b[..., None, :, :])


def paired_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """IoU of corner boxes row by row: [..., 4] x [..., 4] -> [...] (broadcasting), for
    comparing each box with its own partner only (`iou` compares every box with every one)."""
    return paired_iou_and_union(boxes_a, boxes_b)[0]


def paired_iou_and_union(boxes_a: tf.Tensor, boxes_b: tf.Tensor
                         ) -> tuple[tf.Tensor, tf.Tensor]:
    """`paired_iou` and the area of the union it divides by, which GIoU needs as well."""
    a, b = boxes_a, boxes_b
    inter = (tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
             * tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]),
                          0.0))
    union = area(a) + area(b) - inter
    return inter / tf.maximum(union, EPS), union
