"""The box coder shared by the trainer and every exporter.

Boxes are encoded as the TF Object Detection API's Faster R-CNN coder does, relative to anchors
given as (ycenter, xcenter, height, width), with scale factors (10, 10, 5, 5) by default —
exactly what TFLite's ``TFLite_Detection_PostProcess`` op decodes. One implementation, so the
loss the model learns and the decoding each runtime does cannot drift apart. Box geometry
(areas, IoU) is `odplug.model.boxops`.
Imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)


def to_corners(anchors: tf.Tensor) -> tf.Tensor:
    """(yc, xc, h, w) -> (ymin, xmin, ymax, xmax)."""
    yc, xc, h, w = tf.unstack(anchors, axis=-1)
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


def encode(boxes: tf.Tensor, anchors: tf.Tensor,
           scale_factors: Sequence[float] = SCALE_FACTORS) -> tf.Tensor:
    """Corner boxes [..., A, 4] relative to `anchors` [A, 4] -> (ty, tx, th, tw) targets."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    h = tf.maximum(ymax - ymin, 1e-6)
    w = tf.maximum(xmax - xmin, 1e-6)
    sy, sx, sh, sw = scale_factors
    return tf.stack([
        ((ymin + ymax) / 2 - ya) / ha * sy,
        ((xmin + xmax) / 2 - xa) / wa * sx,
        tf.math.log(h / ha) * sh,
        tf.math.log(w / wa) * sw,
    ], axis=-1)


def decode(codes: tf.Tensor, anchors: tf.Tensor,
           scale_factors: Sequence[float] = SCALE_FACTORS) -> tf.Tensor:
    """The inverse of `encode`: (ty, tx, th, tw) [..., A, 4] -> corner boxes, unclipped."""
    ty, tx, th, tw = tf.unstack(codes, axis=-1)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    sy, sx, sh, sw = scale_factors
    yc = ty / sy * ha + ya
    xc = tx / sx * wa + xa
    h = tf.exp(th / sh) * ha
    w = tf.exp(tw / sw) * wa
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
