"""COCO evaluation on hand-built cases whose AP can be worked out on paper.

Every image is 100x100 pixels so a normalised 0.01 is one pixel. COCO's AP is the mean of
precision sampled at 101 recall points (0, 0.01, ..., 1) and then over the ten IoU thresholds
0.5, 0.55, ..., 0.95, with a detection matching when IoU >= threshold.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from odplug.errors import OdplugError
from odplug.model.coco import (
    CocoResult,
    ImageDetections,
    ImageTruth,
    evaluate,
    plot_precision_recall,
    write_metrics,
)

NAMES = {1: "cat", 2: "dog"}
BOX_A = [0.10, 0.10, 0.60, 0.60]  # 50x50 pixels
BOX_B = [0.20, 0.65, 0.50, 0.95]  # 30x30 pixels, apart from BOX_A


def truth(image_id: str, boxes: list, classes: list, difficult: list | None = None):
    return ImageTruth(image_id, 100, 100, np.array(boxes, float).reshape(-1, 4),
                      np.array(classes, int), None if difficult is None else np.array(difficult))


def found(image_id: str, boxes: list, classes: list, scores: list) -> ImageDetections:
    return ImageDetections(image_id, np.array(boxes, float).reshape(-1, 4),
                           np.array(classes, int), np.array(scores, float))


def test_perfect_predictions_score_one():
    truths = [truth("a", [BOX_A, BOX_B], [1, 2]), truth("b", [BOX_B], [1])]
    dets = [found(t.image_id, t.boxes.tolist(), t.classes.tolist(), [1.0] * len(t.classes))
            for t in truths]
    result = evaluate(truths, dets, NAMES)
    assert result.map == pytest.approx(1.0)
    assert result.map50 == pytest.approx(1.0)
    assert result.map75 == pytest.approx(1.0)
    assert result.per_class == {"cat": {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0),
                                        "instances": 2},
                                "dog": {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0),
                                        "instances": 1}}
    assert (result.images, result.detections, len(result.stats)) == (2, 3, 12)


def test_shifted_box_passes_only_the_thresholds_its_iou_reaches():
    # Shifted 12 pixels right: overlap 38x50, union 62x50, IoU 38/62 = 0.613, which clears
    # 0.5, 0.55 and 0.6 (3 of 10 thresholds) and is safely away from 0.6 and 0.65.
    shifted = [0.10, 0.22, 0.60, 0.72]
    result = evaluate([truth("a", [BOX_A], [1])], [found("a", [shifted], [1], [0.9])], NAMES)
    assert result.map50 == pytest.approx(1.0)
    assert result.map75 == pytest.approx(0.0)
    assert result.map == pytest.approx(0.3)
    assert result.per_class["cat"] == {"ap": pytest.approx(0.3), "ap50": pytest.approx(1.0),
                                       "instances": 1}


def test_missed_object_halves_recall():
    # One of two objects found: precision 1 up to recall 0.5, nothing beyond, so 51 of the
    # 101 recall points (0.00 to 0.50) score 1.
    result = evaluate([truth("a", [BOX_A, BOX_B], [1, 1])], [found("a", [BOX_A], [1], [0.9])],
                      NAMES)
    assert result.map50 == pytest.approx(51 / 101)
    assert result.map == pytest.approx(51 / 101)
    recall, precision = result.pr_curves["cat"]
    assert len(recall) == len(precision) == 101
    assert precision[50] == pytest.approx(1.0) and precision[51] == 0.0


def test_false_positive_costs_only_when_ranked_above_the_hits():
    gt = [truth("a", [BOX_A], [1])]
    below = evaluate(gt, [found("a", [BOX_A, BOX_B], [1, 1], [0.9, 0.3])], NAMES)
    assert below.map50 == pytest.approx(1.0)
    # Ranked first, the false positive makes precision 1/2 at every recall up to 1.
    above = evaluate(gt, [found("a", [BOX_A, BOX_B], [1, 1], [0.3, 0.9])], NAMES)
    assert above.map50 == pytest.approx(0.5)


def test_wrong_class_scores_zero():
    result = evaluate([truth("a", [BOX_A], [1])], [found("a", [BOX_A], [2], [0.9])], NAMES)
    assert result.map == result.map50 == 0.0
    assert result.per_class["cat"]["ap50"] == 0.0
    assert "dog" not in result.per_class  # no dog ground truth: AP undefined, left out


def test_no_detections_scores_zero():
    truths = [truth("a", [BOX_A], [1]), truth("b", [], [])]
    for dets in ([], [found("a", [], [], [])]):
        result = evaluate(truths, dets, NAMES)
        assert (result.map, result.map50, result.map75, result.detections) == (0, 0, 0, 0)
        assert result.per_class == {"cat": {"ap": 0.0, "ap50": 0.0, "instances": 1}}


def test_multi_class_per_class_ap():
    truths = [truth("a", [BOX_A, BOX_B], [1, 2]), truth("b", [BOX_A, BOX_B], [2, 2])]
    dets = [found("a", [BOX_A, BOX_B], [1, 2], [0.9, 0.8]), found("b", [BOX_A], [2], [0.7])]
    result = evaluate(truths, dets, NAMES)
    assert result.per_class["cat"]["ap"] == pytest.approx(1.0)
    assert result.per_class["dog"]["ap"] == pytest.approx(67 / 101)  # 2 of 3 found: r <= .66
    assert result.per_class["dog"]["instances"] == 3
    assert result.map == pytest.approx((1.0 + 67 / 101) / 2)


def test_difficult_objects_are_neither_required_nor_penalised():
    gt = [truth("a", [BOX_A, BOX_B], [1, 1], difficult=[0, 1])]
    missed = evaluate(gt, [found("a", [BOX_A], [1], [0.9])], NAMES)
    hit = evaluate(gt, [found("a", [BOX_A, BOX_B], [1, 1], [0.5, 0.9])], NAMES)
    for result in (missed, hit):
        assert result.per_class["cat"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0),
                                           "instances": 1}


@pytest.mark.parametrize(("truths", "dets", "message"), [
    ([truth("a", [BOX_A], [1])], [found("zzz", [BOX_A], [1], [0.9])], "'zzz', which has no"),
    ([truth("a", [BOX_A], [7])], [], r"class ids \[7\] are not in the label map"),
    ([truth("a", [BOX_A], [1])], [found("a", [BOX_A], [3], [0.9])], r"class ids \[3\]"),
    ([truth("a", [BOX_A], [1]), truth("a", [], [])], [], "'a' appears twice"),
    ([truth("a", [BOX_A], [1])], [found("a", [BOX_A], [1], [0.9, 0.8])], "scores has shape"),
    ([], [], "at least one ground-truth image"),
])
def test_bad_input_is_a_clear_error(truths, dets, message):
    with pytest.raises(OdplugError, match=message):
        evaluate(truths, dets, NAMES)


@pytest.fixture
def result() -> CocoResult:
    truths = [truth("a", [BOX_A, BOX_B], [1, 2]), truth("b", [BOX_A], [2])]
    dets = [found("a", [BOX_A, BOX_B, BOX_A], [1, 2, 2], [0.9, 0.8, 0.95]),
            found("b", [[0.10, 0.22, 0.60, 0.72]], [2], [0.6])]
    return evaluate(truths, dets, NAMES)


def test_metrics_json_round_trips(tmp_path, result):
    path = tmp_path / "eval" / "metrics.json"
    write_metrics(result, path)
    loaded = json.loads(path.read_text())
    assert loaded["map"] == pytest.approx(result.map)
    assert loaded["per_class"] == result.per_class
    assert loaded["stats"] == result.stats
    assert loaded["pr_curves"]["dog"][1] == result.pr_curves["dog"][1]
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind


def test_precision_recall_plot_is_a_png(tmp_path, result):
    path = tmp_path / "pr.png"
    plot_precision_recall(result, path, title="test split")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 500)


def test_import_stays_light():
    code = ("import sys, odplug.model.coco; "
            "print(sorted({'tensorflow', 'pycocotools', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
