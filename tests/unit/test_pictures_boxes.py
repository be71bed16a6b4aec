"""Boxes drawn on images: the three verdict styles, the comparison of two models, tiles."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from odplug.pictures.boxes import STYLES, draw_compared, draw_detections, draw_judged, tile
from odplug.pictures.matching import Boxes, judge

LEFT = [0.1, 0.1, 0.5, 0.5]
RIGHT = [0.6, 0.6, 0.9, 0.9]
NAMES = {1: "cat", 2: "<dog>"}


def _grey() -> Image.Image:
    return Image.new("RGB", (200, 160), (128, 128, 128))


def _pixels_of(image: Image.Image, colour: tuple[int, int, int]) -> int:
    pixels = np.asarray(image).astype(int)
    return int((np.abs(pixels - colour).max(axis=-1) <= 2).sum())


def test_each_verdict_is_drawn_in_its_own_colour() -> None:
    truth = Boxes.of([LEFT, RIGHT], [1, 2])
    found = Boxes.of([LEFT, [0.6, 0.1, 0.9, 0.3]], [1, 1], [0.9, 0.8])
    drawn = draw_judged(_grey(), judge(truth, found, 0.5), NAMES)
    for verdict in ("hit", "false", "missed"):
        assert _pixels_of(drawn, STYLES[verdict].colour) > 50, verdict
    assert drawn.size == (200, 160) and drawn.mode == "RGB"


def test_a_missed_box_is_dashed() -> None:
    drawn = draw_judged(_grey(), judge(Boxes.of([RIGHT], [2]), Boxes.of([], [], []), 0.5), NAMES)
    column = np.asarray(drawn)[int(0.6 * 160) + 12:int(0.9 * 160) - 12, int(0.6 * 200)]
    colour = np.array(STYLES["missed"].colour)
    on = (np.abs(column.astype(int) - colour).max(axis=-1) <= 2)
    assert on.any() and not on.all()  # dashes and gaps down its left side


def test_nothing_found_in_an_image_without_boxes_draws_nothing() -> None:
    image = _grey()
    drawn = draw_judged(image, judge(Boxes.of([], []), Boxes.of([], [], []), 0.5), NAMES)
    assert np.array_equal(np.asarray(drawn), np.asarray(image))


def test_draw_detections_labels_an_unknown_class() -> None:
    drawn = draw_detections(_grey(), np.array([LEFT]), np.array([9]), np.array([0.5]), {})
    assert not np.array_equal(np.asarray(drawn), np.asarray(_grey()))


def test_compared_counts_what_each_model_has_alone() -> None:
    reference = Boxes.of([LEFT, RIGHT], [1, 1], [0.9, 0.6])
    model = Boxes.of([LEFT, [0.6, 0.1, 0.9, 0.3]], [1, 2], [0.9, 0.7])
    compared = draw_compared(_grey(), reference, model, 0.5, NAMES)
    assert (compared.extra, compared.lost) == (1, 1)
    assert _pixels_of(compared.image, STYLES["same"].colour) > 50
    assert _pixels_of(compared.image, STYLES["extra"].colour) > 50
    same = draw_compared(_grey(), reference, reference, 0.5, NAMES)
    assert (same.extra, same.lost) == (0, 0)


def test_tile_lays_images_out_in_rows_with_captions() -> None:
    sheet = tile([_grey()] * 5, columns=2, captions=["a", "b"], size=100)
    assert sheet.width == 2 * 104 + 4 and sheet.height > 3 * 104
    with pytest.raises(ValueError, match="at least one"):
        tile([], columns=3)


def test_labelled_boxes_are_named_without_a_score() -> None:
    boxes, classes = np.array([LEFT]), np.array([1])
    named = draw_detections(_grey(), boxes, classes, None, NAMES)
    scored = draw_detections(_grey(), boxes, classes, np.array([0.5]), NAMES)
    assert not np.array_equal(np.asarray(named), np.asarray(scored))  # the label is shorter
