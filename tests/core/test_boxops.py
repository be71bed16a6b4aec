"""The core's box geometry: areas and IoU of corner boxes, pairwise and row by row, against a
plain NumPy reference, and a degenerate box (padding, an inverted prediction) scoring 0 in value
and gradient, never NaN."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from odplug.model import boxops

BOXES = np.array([[0.0, 0.0, 0.5, 0.5],   # area 0.25
                  [0.25, 0.25, 0.75, 0.75],  # overlaps the first by a quarter of itself
                  [0.6, 0.6, 1.0, 1.0],   # meets the second only
                  [0.0, 0.0, 0.5, 0.5]], np.float32)
DEGENERATE = np.array([[0.0, 0.0, 0.0, 0.0],   # a padding row
                       [0.3, 0.3, 0.3, 0.8],   # zero height
                       [0.5, 0.5, 0.2, 0.9]], np.float32)  # inverted


def reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    height = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    width = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = height * width
    area = [max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0) for box in (a, b)]
    return inter / max(area[0] + area[1] - inter, boxops.EPS)


def test_area_counts_a_negative_side_as_zero_over_any_leading_axes() -> None:
    areas = boxops.area(tf.constant(np.stack([BOXES[:3], DEGENERATE])))
    np.testing.assert_allclose(areas.numpy(), [[0.25, 0.25, 0.16], [0.0, 0.0, 0.0]], rtol=1e-6)


def test_pairwise_iou_matches_the_reference_for_every_pair() -> None:
    boxes = np.concatenate([BOXES, DEGENERATE])
    got = boxops.iou(tf.constant(boxes), tf.constant(BOXES)).numpy()
    assert got.shape == (len(boxes), len(BOXES))
    want = [[reference_iou(a, b) for b in BOXES] for a in boxes]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got[0, 0] == 1.0 and got[0, 3] == 1.0 and got[0, 2] == 0.0
    np.testing.assert_allclose(got[0, 1], 0.0625 / (0.25 + 0.25 - 0.0625), rtol=1e-6)


def test_pairwise_iou_broadcasts_one_set_of_boxes_over_a_batch_of_the_other() -> None:
    """The assignment's use: anchors [A, 4] against each image's objects [B, M, 4]."""
    objects = np.stack([BOXES[:2], BOXES[2:]])  # [2, 2, 4]
    got = boxops.iou(tf.constant(BOXES), tf.constant(objects)).numpy()
    assert got.shape == (2, len(BOXES), 2)
    for image in range(2):
        np.testing.assert_allclose(got[image], boxops.iou(BOXES, objects[image]).numpy())


def test_paired_iou_is_the_diagonal_of_the_pairwise_one_and_returns_the_union() -> None:
    first, second = BOXES, np.roll(BOXES, 1, axis=0)
    iou, union = boxops.paired_iou_and_union(tf.constant(first), tf.constant(second))
    np.testing.assert_array_equal(boxops.paired_iou(first, second).numpy(), iou.numpy())
    np.testing.assert_allclose(iou.numpy(), np.diag(boxops.iou(first, second).numpy()))
    inter = iou.numpy() * union.numpy()
    np.testing.assert_allclose(union.numpy(), boxops.area(first).numpy()
                               + boxops.area(second).numpy() - inter, rtol=1e-6)


def test_a_degenerate_box_has_iou_zero_and_finite_gradients() -> None:
    """The losses compare every anchor's decoded box with its object, padding rows included."""
    predicted = tf.Variable(np.concatenate([DEGENERATE, BOXES[:1]]))
    target = tf.constant(np.concatenate([DEGENERATE[::-1], np.zeros((1, 4), np.float32)]))
    with tf.GradientTape() as tape:
        iou, union = boxops.paired_iou_and_union(predicted, target)
        total = tf.reduce_sum(iou) + tf.reduce_sum(union)
    gradient = tape.gradient(total, predicted)
    np.testing.assert_array_equal(iou.numpy(), np.zeros(4, np.float32))
    assert np.all(np.isfinite(gradient.numpy()))
    pairwise = boxops.iou(DEGENERATE, DEGENERATE).numpy()
    np.testing.assert_array_equal(pairwise, np.zeros((3, 3), np.float32))
