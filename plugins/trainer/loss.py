"""The training loss: which anchors learn which object (assignment), and what they learn.

Every choice keeps the deployable SSD family: the network still predicts one box code per
anchor (decoded by `odplug.model.boxcoder`, as TFLite's detection post-processing does) and one
sigmoid score per class; only the training signal changes.

- Assignment (``train.assigner``): ``"iou"``, the SSD rule (IoU >= ``train.match_iou``, every
  object's best anchor forced, an ignore band below), or ``"atss"``, adaptive training sample
  selection (Zhang et al. 2020), which sets each object's IoU threshold from the statistics of
  its nearest anchors.
- Box loss (``train.box_loss``): Huber on the box codes, or GIoU / CIoU on the boxes decoded
  from them, per positive anchor.
- Classification: sigmoid focal loss, or with ``train.quality_focal`` the quality focal loss of
  GFL (Li et al. 2020), whose target for a positive anchor's class is the IoU its decoded box
  reaches, so the score ranks boxes by how well they fit.

Both losses are summed over anchors and divided by the number of positive anchors (at least
one), per replica, as the SSD loss has always been; GFL divides its quality focal loss the same
way. Left out of GFL and ATSS as published: weighting each positive's box loss by its predicted
score (GFL) or centre-ness (ATSS), and GFL's distribution box regression, which would leave the
box codes TFLite decodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from odplug.model import boxcoder, boxops
from odplug_builtins.trainer import anchors as anchor_lib
from odplug_builtins.trainer.config import ModelConfig, TrainConfig

NEGATIVE_IOU = 0.4
"""Under the IoU assigner, anchors below this IoU with every object are negatives; those between
it and ``train.match_iou`` are ignored."""
MAX_SIZE_CODE = math.log(1000 / 16)
"""The largest |log(box side / anchor side)| a decoded box takes in the IoU losses (mmdetection's
``wh_ratio_clip`` of 16/1000): the exponential of a wild early code cannot overflow to inf."""
_EPS = 1e-9


class Assignment(NamedTuple):
    """Which object each anchor learns, [B, A] each."""

    matched: tf.Tensor
    """int64 index of the object (padding row included) whose box and class the anchor takes."""
    positive: tf.Tensor
    """bool: the anchor predicts `matched`."""
    counted: tf.Tensor
    """bool: the anchor's classification loss counts (positives and negatives, not ignored)."""


class DetectionLoss:
    """Assignment plus classification and box losses, per positive anchor (module docstring).

    `anchors` are `anchors.make_anchors(model)`: `model` tells the loss where each pyramid level's
    rows are, which ATSS needs. Objects come padded to a fixed count (class -1); unless `xla`
    (which would compile the step anew for every count), the loss first drops the padding
    columns the whole batch shares: no value changes, and assignment, which works on
    [B, A, objects] tensors, costs a fraction (the data pipeline pads to 100 objects; the ATSS
    loss of a default-config batch of 1-4 objects an image took 149 ms padded, 13 ms trimmed).
    """

    def __init__(self, anchors: np.ndarray | tf.Tensor, num_classes: int, train: TrainConfig,
                 model: ModelConfig, *, xla: bool = False) -> None:
        self.anchors = tf.constant(anchors, tf.float32)
        self.corners = boxcoder.to_corners(self.anchors)
        self.level_sizes = anchor_lib.level_sizes(model)
        if sum(self.level_sizes) != self.anchors.shape[0]:
            raise ValueError(f"{self.anchors.shape[0]} anchors, but the model config makes "
                             f"{sum(self.level_sizes)}: pass make_anchors(model)")
        self.num_classes = num_classes
        self.train = train
        self.xla = xla
        self.focal = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=train.focal_alpha, gamma=train.focal_gamma,
            from_logits=True, reduction=None)
        self.huber = keras.losses.Huber(delta=1.0, reduction=None)

    def assign(self, gt_boxes: tf.Tensor, gt_classes: tf.Tensor) -> Assignment:
        """The configured assignment of a batch of padded objects (class -1 = padding)."""
        valid = gt_classes >= 0  # [B, M]
        overlaps = boxops.iou(self.corners, gt_boxes)  # [B, A, M]
        overlaps = tf.where(valid[:, None, :], overlaps, -1.0)
        if self.train.assigner == "atss":
            return atss_assign(overlaps, valid, self.anchors, gt_boxes, self.level_sizes,
                               self.train.atss_topk)
        return iou_assign(overlaps, valid, self.train.match_iou)

    def __call__(self, targets: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor]
                 ) -> dict[str, tf.Tensor]:
        gt_boxes = tf.cast(targets["boxes"], tf.float32)
        gt_classes = tf.cast(targets["classes"], tf.int32)
        if not self.xla:
            gt_boxes, gt_classes = _without_padding(gt_boxes, gt_classes)
        matched, positive, counted = self.assign(gt_boxes, gt_classes)
        matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
        matched_classes = tf.gather(gt_classes, matched, batch_dims=1)
        pos = tf.cast(positive, tf.float32)
        class_targets = tf.one_hot(matched_classes, self.num_classes) * pos[..., None]
        num_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
        logits = tf.cast(outputs["class_logits"], tf.float32)
        codes = tf.cast(outputs["box_codes"], tf.float32)

        decoded = decode_for_loss(codes, self.anchors)  # unused (and pruned) by huber alone
        if self.train.box_loss == "huber":
            box_targets = boxcoder.encode(matched_boxes, self.anchors)
            per_anchor = tf.reduce_sum(self.huber(box_targets[..., None], codes[..., None]), -1)
        else:
            per_anchor = iou_loss(decoded, matched_boxes, self.train.box_loss)
        box = tf.reduce_sum(per_anchor * pos) / num_pos * self.train.box_loss_weight

        if self.train.quality_focal:
            # the target follows the predicted box, but no gradient flows back into it
            quality = boxops.paired_iou(tf.stop_gradient(decoded), matched_boxes)  # [B, A]
            per_class = quality_focal_loss(logits, class_targets * quality[..., None],
                                           self.train.focal_gamma)
        else:
            per_class = self.focal(class_targets[..., None], logits[..., None])  # [B, A, C]
        classification = tf.reduce_sum(
            tf.reduce_sum(per_class, axis=-1) * tf.cast(counted, tf.float32)) / num_pos
        return {"loss": classification + box, "classification": classification, "box": box,
                "positives": tf.reduce_sum(pos)}


def _without_padding(boxes: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The object columns up to the last real object of any image (at least one column)."""
    column = tf.range(1, tf.shape(classes)[1] + 1)
    kept = tf.maximum(tf.reduce_max(tf.where(classes >= 0, column[None, :], 0)), 1)
    return boxes[:, :kept], classes[:, :kept]


def iou_assign(overlaps: tf.Tensor, valid: tf.Tensor, match_iou: float) -> Assignment:
    """The SSD rule: an anchor is positive for the object it overlaps most when IoU >=
    `match_iou`, and every object's best anchor is positive whatever the IoU (small objects are
    never orphaned); anchors below `NEGATIVE_IOU` are negatives; in between they are ignored.

    `overlaps` [B, A, M] with -1 for padding objects, `valid` [B, M].
    """
    count = tf.shape(overlaps)[1]
    best_anchor = tf.one_hot(tf.argmax(overlaps, axis=1), count, axis=-1)  # [B, M, A]
    best_anchor *= tf.cast(valid, tf.float32)[..., None]
    forced = tf.reduce_max(best_anchor, axis=1) > 0  # [B, A]
    matched = tf.where(forced, tf.argmax(best_anchor, axis=1), tf.argmax(overlaps, axis=2))
    best_iou = tf.reduce_max(overlaps, axis=2)
    positive = forced | (best_iou >= match_iou)
    negative = ~positive & (best_iou < NEGATIVE_IOU)
    return Assignment(matched, positive, positive | negative)


def atss_assign(overlaps: tf.Tensor, valid: tf.Tensor, anchors: tf.Tensor, gt_boxes: tf.Tensor,
                level_sizes: Sequence[int], topk: int) -> Assignment:
    """Adaptive training sample selection (Zhang et al. 2020, Algorithm 1).

    For each object, the `topk` anchors nearest its centre on each level (by centre distance,
    ties to the earlier anchor; all of a level's anchors when it has fewer) are its candidates;
    its threshold is the mean plus the standard deviation (n - 1 denominator, as the authors'
    code) of their IoUs; the candidates at or above it whose centre lies strictly inside the box
    are positive. An anchor claimed by several objects goes to the one it overlaps most.
    Everything else is negative: no ignore band.

    One addition, kept from the SSD rule: an object left without a positive (a box smaller than
    the anchor spacing holds no anchor centre) gets the anchor it overlaps most, when it
    overlaps any (unless another object overlaps that anchor more), so no object is orphaned.

    `overlaps` [B, A, M] with -1 for padding objects, `valid` [B, M] false for them; `anchors`
    [A, 4] (yc, xc, h, w) in `anchors.make_anchors` order, level after level, `level_sizes`
    rows each.
    """
    by_object = tf.transpose(overlaps, [0, 2, 1])  # [B, M, A]
    gt_centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [B, M, 2]
    distance = tf.reduce_sum(
        tf.square(gt_centres[:, :, None, :] - anchors[None, None, :, :2]), axis=-1)  # [B, M, A]
    candidates, start = [], 0
    for size in level_sizes:
        _, nearest = tf.math.top_k(-distance[:, :, start:start + size], k=min(topk, size))
        candidates.append(nearest + start)
        start += size
    candidate = tf.concat(candidates, axis=-1)  # [B, M, K] anchor indices, distinct per object
    candidate_iou = tf.gather(by_object, candidate, batch_dims=2)  # [B, M, K]
    k = tf.cast(tf.shape(candidate)[-1], tf.float32)
    mean = tf.reduce_mean(candidate_iou, axis=-1, keepdims=True)
    std = tf.sqrt(tf.reduce_sum(tf.square(candidate_iou - mean), -1, keepdims=True)
                  / tf.maximum(k - 1, 1.0))
    ymin, xmin, ymax, xmax = tf.unstack(gt_boxes[:, :, None, :], axis=-1)  # [B, M, 1] each
    centre = tf.gather(anchors[:, :2], candidate)  # [B, M, K, 2]
    inside = ((centre[..., 0] > ymin) & (centre[..., 0] < ymax)
              & (centre[..., 1] > xmin) & (centre[..., 1] < xmax))
    chosen = (candidate_iou >= mean + std) & inside & valid[..., None]  # [B, M, K]

    # back from candidate slots to anchors: a dense scatter (static shapes, so XLA compiles it)
    shape = tf.shape(candidate)
    image = tf.broadcast_to(tf.range(shape[0])[:, None, None], shape)
    row = tf.broadcast_to(tf.range(shape[1])[None, :, None], shape)
    claimed = tf.scatter_nd(tf.stack([image, row, candidate], axis=-1),
                            tf.cast(chosen, tf.float32), tf.shape(by_object)) > 0  # [B, M, A]
    count = tf.shape(by_object)[2]
    orphan = valid & ~tf.reduce_any(claimed, axis=2) & (tf.reduce_max(by_object, axis=2) > 0)
    claimed |= (tf.one_hot(tf.argmax(by_object, axis=2), count) > 0) & orphan[..., None]
    positive = tf.reduce_any(claimed, axis=1)  # [B, A]
    matched = tf.argmax(tf.where(claimed, by_object, -2.0), axis=1)  # [B, A]
    return Assignment(matched, positive, tf.ones_like(positive))


def decode_for_loss(codes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """`boxcoder.decode` with the size codes clipped to +-`MAX_SIZE_CODE`, so an early wild
    code decodes to a large but finite box (and zero gradient beyond the clip)."""
    limit = MAX_SIZE_CODE * boxcoder.SCALE_FACTORS[2]
    centre, size = codes[..., :2], codes[..., 2:]
    return boxcoder.decode(tf.concat([centre, tf.clip_by_value(size, -limit, limit)], -1),
                           anchors)


def iou_loss(predicted: tf.Tensor, target: tf.Tensor, kind: str) -> tf.Tensor:
    """1 - GIoU (Rezatofighi et al. 2019) or 1 - CIoU (Zheng et al. 2020) of paired corner boxes.

    GIoU: 0 for identical boxes, 1 + (empty part of the enclosing box) > 1 for disjoint ones,
    at most 2. CIoU adds to 1 - IoU the squared centre distance over the squared diagonal of
    the enclosing box and an aspect-ratio term alpha * v, alpha held constant in the gradient
    as the authors do; 0 for identical boxes, at most 1 + 1 + 1 = 3. Every denominator is
    guarded, so zero-area boxes (padding rows) give finite values and gradients.
    """
    iou, union = boxops.paired_iou_and_union(predicted, target)
    top_left = tf.minimum(predicted[..., :2], target[..., :2])
    bottom_right = tf.maximum(predicted[..., 2:], target[..., 2:])
    enclosing = bottom_right - top_left  # [..., 2] (height, width)
    if kind == "giou":
        hull = enclosing[..., 0] * enclosing[..., 1]
        return 1.0 - iou + (hull - union) / tf.maximum(hull, _EPS)
    diagonal = tf.reduce_sum(tf.square(enclosing), axis=-1)
    centres = (predicted[..., :2] + predicted[..., 2:] - target[..., :2] - target[..., 2:]) / 2
    distance = tf.reduce_sum(tf.square(centres), axis=-1)
    v = 4 / math.pi**2 * tf.square(_aspect(target) - _aspect(predicted))
    alpha = tf.stop_gradient(v / tf.maximum(1.0 - iou + v, _EPS))
    return 1.0 - iou + distance / tf.maximum(diagonal, _EPS) + alpha * v


def _aspect(boxes: tf.Tensor) -> tf.Tensor:
    """atan(width / height), guarded for zero sides."""
    height = tf.maximum(boxes[..., 2] - boxes[..., 0], _EPS)
    width = tf.maximum(boxes[..., 3] - boxes[..., 1], _EPS)
    return tf.atan(width / height)


def quality_focal_loss(logits: tf.Tensor, targets: tf.Tensor, gamma: float) -> tf.Tensor:
    """GFL's quality focal loss, elementwise: BCE(sigmoid(logits), y) * |y - sigmoid|^gamma.

    `targets` y in [0, 1]: the IoU of the positive anchor's box on its class, 0 elsewhere, so
    negatives get the focal loss with target 0. No alpha class balancing (GFL has none):
    `train.focal_alpha` applies to the plain focal loss only.
    """
    probability = tf.sigmoid(logits)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    # the floor keeps the gradient of the power finite where y == sigmoid and gamma < 1
    return bce * tf.pow(tf.maximum(tf.abs(targets - probability), 1e-12), gamma)
