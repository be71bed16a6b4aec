"""Detections judged against the ground truth at one threshold: the verdicts every picture,
the confusion matrix and the report's "most errors first" order are drawn from."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odplug.pictures.matching import (
    DEFAULT_THRESHOLD,
    Boxes,
    best_f1_threshold,
    confusion_matrix,
    iou_matrix,
    judge,
)

CAT, DOG = 1, 2
LEFT = [0.1, 0.1, 0.5, 0.5]
RIGHT = [0.6, 0.6, 0.9, 0.9]
CORNER = [0.0, 0.0, 0.05, 0.05]


def test_iou_of_same_disjoint_and_degenerate_boxes() -> None:
    overlaps = iou_matrix(np.array([LEFT, [0.2, 0.2, 0.2, 0.4]]), np.array([LEFT, RIGHT]))
    assert overlaps == pytest.approx(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_verdicts_of_hit_wrong_class_unmatched_and_difficult() -> None:
    truth = Boxes.of([LEFT, RIGHT, CORNER], [CAT, DOG, CAT], difficult=[0, 0, 1])
    found = Boxes.of([LEFT, RIGHT, [0.2, 0.7, 0.3, 0.8], CORNER], [CAT, CAT, DOG, CAT],
                     [0.9, 0.8, 0.3, 0.7])
    judged = judge(truth, found, 0.25)
    assert judged.detections.scores.tolist() == [0.9, 0.8, 0.7, 0.3]  # highest first
    assert judged.hit.tolist() == [True, False, False, False]
    assert judged.on_difficult.tolist() == [False, False, True, False]
    assert judged.matched.tolist() == [0, -1, -1, -1]
    assert judged.found.tolist() == [True, False, False]
    # the cat on the dog and the lone dog are false positives; the dog is missed; the
    # detection on the difficult box and the difficult box itself count for nothing
    assert (judged.true_positives, judged.false_positives, judged.missed) == (1, 2, 1)
    assert judged.errors == 3


def test_a_threshold_leaves_lower_detections_out() -> None:
    truth = Boxes.of([LEFT], [CAT])
    judged = judge(truth, Boxes.of([LEFT], [CAT], [0.4]), 0.5)
    assert len(judged.detections) == 0 and judged.missed == 1


def test_the_higher_score_takes_a_box_and_a_duplicate_is_a_false_positive() -> None:
    truth = Boxes.of([LEFT], [CAT])
    judged = judge(truth, Boxes.of([LEFT, [0.1, 0.1, 0.5, 0.52]], [CAT, CAT], [0.6, 0.9]), 0.0)
    assert judged.detections.scores.tolist() == [0.9, 0.6]
    assert judged.hit.tolist() == [True, False]


def test_nothing_to_judge() -> None:
    judged = judge(Boxes.of([], []), Boxes.of([], [], []), 0.5)
    assert judged.errors == 0 and judged.hit.shape == (0,)


def test_best_f1_threshold_drops_the_low_scoring_false_positives() -> None:
    truth = Boxes.of([LEFT, RIGHT], [CAT, CAT])
    found = Boxes.of([LEFT, RIGHT, CORNER, [0.3, 0.6, 0.4, 0.7]], [CAT, CAT, CAT, CAT],
                     [0.9, 0.7, 0.4, 0.2])
    assert best_f1_threshold([(truth, found)]) == pytest.approx(0.7)


def test_best_f1_threshold_keeps_a_low_scoring_hit() -> None:
    truth = Boxes.of([LEFT, RIGHT], [CAT, CAT])
    found = Boxes.of([LEFT, RIGHT], [CAT, CAT], [0.9, 0.1])
    assert best_f1_threshold([(truth, found)]) == pytest.approx(0.1)


@pytest.mark.parametrize("pairs", [
    [], [(Boxes.of([], []), Boxes.of([LEFT], [CAT], [0.9]))],
    [(Boxes.of([LEFT], [CAT]), Boxes.of([], [], []))],
])
def test_best_f1_threshold_without_truth_or_detections_is_the_default(pairs: list) -> None:
    assert best_f1_threshold(pairs) == DEFAULT_THRESHOLD


def test_confusion_matrix_counts_wrong_classes_and_background() -> None:
    truth = Boxes.of([LEFT, RIGHT, CORNER], [CAT, DOG, CAT], difficult=[0, 0, 1])
    found = Boxes.of([LEFT, RIGHT, [0.2, 0.7, 0.3, 0.8], CORNER], [CAT, CAT, DOG, CAT],
                     [0.9, 0.8, 0.3, 0.7])
    counts = confusion_matrix([(truth, found), (Boxes.of([LEFT], [DOG]), Boxes.of([], [], []))],
                              [CAT, DOG], 0.25)
    # rows predicted (cat, dog, background), columns true (cat, dog, background)
    assert counts.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]


def test_confusion_matrix_names_an_unknown_class() -> None:
    with pytest.raises(ValueError, match="class id 7"):
        confusion_matrix([(Boxes.of([LEFT], [7]), Boxes.of([], [], []))], [CAT], 0.5)


boxes = st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 0.5), st.floats(0.01, 0.5),
                           st.floats(0.01, 0.5)), max_size=6).map(
    lambda rows: np.array([[y, x, y + h, x + w] for y, x, h, w in rows]).reshape(-1, 4))


@settings(max_examples=60, deadline=None)
@given(truth=boxes, found=boxes, threshold=st.floats(0, 1), data=st.data())
def test_every_box_and_detection_is_counted_once(truth: np.ndarray, found: np.ndarray,
                                                 threshold: float, data: st.DataObject) -> None:
    """Whatever the boxes: hits + false positives = kept detections, hits + missed = boxes,
    and the confusion matrix holds every kept detection and every box nothing found."""
    classes = st.lists(st.sampled_from([CAT, DOG]), min_size=len(truth), max_size=len(truth))
    scores = st.lists(st.floats(0, 1), min_size=len(found), max_size=len(found))
    gt = Boxes.of(truth, data.draw(classes))
    dets = Boxes.of(found, data.draw(st.lists(st.sampled_from([CAT, DOG]), min_size=len(found),
                                              max_size=len(found))), data.draw(scores))
    judged = judge(gt, dets, threshold)
    assert judged.true_positives + judged.false_positives == len(judged.detections)
    assert judged.true_positives + judged.missed == len(gt)
    counts = confusion_matrix([(gt, dets)], [CAT, DOG], threshold)
    assert counts[:, :2].sum() == len(gt)
    assert counts[:2].sum() == len(judged.detections)
