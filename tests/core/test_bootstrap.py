"""The paired bootstrap: its AP is pycocotools' own, and its intervals behave as intervals.

Synthetic scenes are random boxes with noisy detections: jittered copies of the truth (some
far enough to miss the tighter IoU thresholds), missed objects, false positives, crowd regions
and many score ties, so every branch of COCO's accumulation is taken.
"""

from __future__ import annotations

import numpy as np
import pytest

from odplug.model.bootstrap import average_precision, draws, ratio_interval
from odplug.model.coco import CocoResult, ImageDetections, ImageTruth, evaluate

NAMES = {1: "cat", 2: "dog", 3: "bird"}


def _scene(rng: np.random.Generator, images: int, *, miss: float = 0.15,
           jitter: float = 0.015, prefix: str = "img") -> tuple[list, list]:
    truths, found = [], []
    for index in range(images):
        count = int(rng.integers(0, 5))
        corner = rng.uniform(0, 0.6, (count, 2))
        size = rng.uniform(0.1, 0.4, (count, 2))
        boxes = np.concatenate([corner, corner + size], axis=1)
        classes = rng.integers(1, 4, count)
        difficult = rng.random(count) < 0.1
        image_id = f"{prefix}{index}"
        truths.append(ImageTruth(image_id, 200, 160, boxes, classes, difficult))
        kept = rng.random(count) >= miss
        hits = np.clip(boxes[kept] + rng.normal(0, jitter, (int(kept.sum()), 4)), 0, 1)
        extra = int(rng.integers(0, 3))
        corner = rng.uniform(0, 0.7, (extra, 2))
        spurious = np.concatenate([corner, corner + 0.2], axis=1)
        dets = np.concatenate([hits, spurious]).reshape(-1, 4)
        labels = np.concatenate([classes[kept], rng.integers(1, 4, extra)]).astype(int)
        scores = np.round(rng.uniform(0.05, 1, len(dets)), 1)  # rounded: ties across images
        found.append(ImageDetections(image_id, dets, labels, scores))
    return truths, found


def _result(truths: list, found: list) -> CocoResult:
    return evaluate(truths, found, NAMES)


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_equals_pycocotools_on_all_images(seed: int) -> None:
    truths, found = _scene(np.random.default_rng(seed), 40)
    result = _result(truths, found)
    assert result.matches is not None
    mean, at50 = average_precision(result.matches, np.ones((1, 40)))[0]
    assert mean == pytest.approx(result.map, abs=1e-6)
    assert at50 == pytest.approx(result.map50, abs=1e-6)
    assert result.map > 0.2  # a case with something to get right


def test_more_than_a_hundred_detections_per_image_count_as_coco_counts_them() -> None:
    """COCO keeps each image's 100 best detections; low-score extras change nothing else."""
    rng = np.random.default_rng(3)
    truths, found = _scene(rng, 25)
    crowded = []
    for f in found:
        corner = rng.uniform(0, 0.8, (130, 2))
        junk = np.concatenate([corner, corner + 0.1], axis=1)
        crowded.append(ImageDetections(f.image_id, np.concatenate([f.boxes, junk]),
                                       np.concatenate([f.classes, rng.integers(1, 4, 130)]),
                                       np.concatenate([f.scores, rng.uniform(0, 0.5, 130)])))
    result = _result(truths, crowded)
    assert result.matches is not None
    assert average_precision(result.matches, np.ones((1, 25)))[0] == pytest.approx(
        [result.map, result.map50], abs=1e-6)


def test_a_draw_equals_pycocotools_on_the_images_it_holds() -> None:
    """A draw that holds each of its images once scores what COCO gives those images alone;
    an image drawn twice scores what COCO gives two copies of it."""
    truths, found = _scene(np.random.default_rng(7), 30)
    matches = _result(truths, found).matches
    assert matches is not None
    chosen = [0, 3, 4, 9, 10, 17, 22, 29]
    weights = np.zeros((1, 30))
    weights[0, chosen] = 1
    subset = _result([truths[i] for i in chosen], [found[i] for i in chosen])
    assert average_precision(matches, weights)[0] == pytest.approx([subset.map, subset.map50],
                                                                   abs=1e-6)
    twice = _result(truths[:5] + [_renamed(t) for t in truths[:5]],
                    found[:5] + [_renamed(f) for f in found[:5]])
    weights = np.zeros((1, 30))
    weights[0, :5] = 2
    got = average_precision(matches, weights)[0]
    assert got == pytest.approx([twice.map, twice.map50], abs=0.02)  # ties ordered apart


def _renamed(item):  # type: ignore[no-untyped-def]
    copy = type(item)(**vars(item))
    copy.image_id = "copy-" + item.image_id
    return copy


def test_identical_models_give_ratio_one_with_a_zero_width_interval() -> None:
    truths, found = _scene(np.random.default_rng(1), 50)
    matches = _result(truths, found).matches
    assert matches is not None
    interval = ratio_interval(matches, matches, draws(50, resamples=200, seed=3))
    assert (interval.map50, interval.map50_low, interval.map50_high) == (1.0, 1.0, 1.0)
    assert (interval.map, interval.map_low, interval.map_high) == (1.0, 1.0, 1.0)


def _paired(images: int, seed: int):  # type: ignore[no-untyped-def]
    """A reference and a worse model on the same images: the worse one misses more."""
    rng = np.random.default_rng(seed)
    truths, found = _scene(rng, images, miss=0.05)
    worse = [ImageDetections(f.image_id, f.boxes[keep], f.classes[keep], f.scores[keep])
             for f in found for keep in [rng.random(len(f.scores)) >= 0.1]]
    return _result(truths, found), _result(truths, worse)


@pytest.mark.slow
def test_intervals_shrink_with_more_images_and_hold_the_true_ratio() -> None:
    """The 'true' ratio is the one on a large population; intervals from small samples of it
    contain it, and an interval from four times the images is about half as wide."""
    population_ref, population_model = _paired(2000, seed=11)
    truth = population_model.map50 / population_ref.map50
    assert truth < 0.97  # the worse model is measurably worse
    widths = {}
    for images in (100, 400):
        ref, model = _paired(images, seed=images)
        assert ref.matches is not None and model.matches is not None
        interval = ratio_interval(model.matches, ref.matches, draws(images, seed=5))
        assert interval.map50_low <= interval.map50 <= interval.map50_high
        assert interval.map50_low <= truth <= interval.map50_high
        assert interval.map_low <= interval.map <= interval.map_high
        widths[images] = interval.map50_high - interval.map50_low
    assert 0.3 < widths[400] / widths[100] < 0.75


def test_draws_are_seeded_and_keep_the_image_count() -> None:
    first, second = draws(25, resamples=50, seed=9), draws(25, resamples=50, seed=9)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, draws(25, resamples=50, seed=10))
    assert (first.sum(axis=1) == 25).all()


def test_models_scored_on_different_images_are_refused() -> None:
    a = _result(*_scene(np.random.default_rng(2), 10)).matches
    b = _result(*_scene(np.random.default_rng(2), 12)).matches
    assert a is not None and b is not None
    with pytest.raises(ValueError, match="same images"):
        ratio_interval(a, b, draws(12))


def test_a_reference_that_finds_nothing_leaves_the_ratio_undefined(
        recwarn: pytest.WarningsRecorder) -> None:
    truths, found = _scene(np.random.default_rng(4), 20)
    nothing = [ImageDetections(f.image_id, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0))
               for f in found]
    model, reference = _result(truths, found).matches, _result(truths, nothing).matches
    assert model is not None and reference is not None
    interval = ratio_interval(model, reference, draws(20, resamples=50))
    assert np.isinf(interval.map50) and not np.isfinite(interval.map50_low)
    empty = ratio_interval(reference, reference, draws(20, resamples=50))
    assert all(np.isnan([empty.map50, empty.map50_low, empty.map_high]))
    assert not [w for w in recwarn if "invalid value" in str(w.message)]
