"""Anchors and the box coder: the contract between the network, the loss and every exporter.

Anchors are (ycenter, xcenter, height, width), normalised to [0, 1], ordered row by row, cell
by cell, anchor by anchor within a cell, level after level: the order the heads' outputs are
reshaped in. Boxes are encoded as the Faster R-CNN coder of the TF Object Detection API does,
with scale factors (10, 10, 5, 5), which is exactly what TFLite's
``TFLite_Detection_PostProcess`` op decodes, so exported models need no decoding layer.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from plugins.trainer.config import ModelConfig

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)


def anchors_per_cell(model: ModelConfig) -> int:
    return len(model.anchor_scales) * len(model.aspect_ratios)


def grid_size(input_size: int, level: int) -> int:
    return math.ceil(input_size / 2**level)


def make_anchors(model: ModelConfig) -> np.ndarray:
    """float32 [A, 4] as (ycenter, xcenter, height, width), normalised."""
    rows: list[tuple[float, float, float, float]] = []
    for level in model.levels:
        cells = grid_size(model.input_size, level)
        base = model.anchor_size * 2**level / model.input_size
        shapes = [
            (base * scale / math.sqrt(ratio), base * scale * math.sqrt(ratio))
            for scale in model.anchor_scales
            for ratio in model.aspect_ratios
        ]
        centres = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        for y in centres:
            for x in centres:
                rows.extend((y, x, h, w) for h, w in shapes)
    return np.asarray(rows, dtype=np.float32)


def to_corners(anchors: tf.Tensor) -> tf.Tensor:
    """(yc, xc, h, w) -> (ymin, xmin, ymax, xmax)."""
    yc, xc, h, w = tf.unstack(anchors, axis=-1)
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


def encode(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Corner boxes [..., A, 4] relative to `anchors` [A, 4] -> (ty, tx, th, tw) targets."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    h = tf.maximum(ymax - ymin, 1e-6)
    w = tf.maximum(xmax - xmin, 1e-6)
    sy, sx, sh, sw = SCALE_FACTORS
    return tf.stack([
        ((ymin + ymax) / 2 - ya) / ha * sy,
        ((xmin + xmax) / 2 - xa) / wa * sx,
        tf.math.log(h / ha) * sh,
        tf.math.log(w / wa) * sw,
    ], axis=-1)


def decode(codes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """The inverse of `encode`: (ty, tx, th, tw) [..., A, 4] -> corner boxes, unclipped."""
    ty, tx, th, tw = tf.unstack(codes, axis=-1)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    sy, sx, sh, sw = SCALE_FACTORS
    yc = ty / sy * ha + ya
    xc = tx / sx * wa + xa
    h = tf.exp(th / sh) * ha
    w = tf.exp(tw / sw) * wa
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


def iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU of corner boxes: [..., N, 4] x [..., M, 4] -> [..., N, M]."""
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    top = tf.maximum(a[..., 0], b[..., 0])
    left = tf.maximum(a[..., 1], b[..., 1])
    bottom = tf.minimum(a[..., 2], b[..., 2])
    right = tf.minimum(a[..., 3], b[..., 3])
    inter = tf.maximum(bottom - top, 0.0) * tf.maximum(right - left, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / tf.maximum(area_a + area_b - inter, 1e-9)
