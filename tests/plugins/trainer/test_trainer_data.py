"""The trainer's input pipeline: shapes, determinism, boxes that follow every augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.data.example import encode_example
from odplug.data.images import ImageData
from odplug.data.shards import shard_files
from odplug.data.tfrecord import spread_sample, write_record
from odplug.labels import LabelMap
from odplug.model.tfdata import representative_images
from odplug.samples import Box
from odplug_builtins.trainer import data
from odplug_builtins.trainer.augment import augment_example, crop_boxes, flip_boxes
from odplug_builtins.trainer.config import AugmentConfig, ModelConfig, TrainConfig
from tests.plugins.trainer.common import LABELS, NO_COLOUR, png
from tests.support.records import run_import

# (source_id, width, height, boxes as (label, xmin, ymin, xmax, ymax, difficult)), per file
HAND_MADE = [
    [("a", 64, 48, [("red", 8, 4, 40, 30, False)]),
     ("b", 80, 100, []),
     ("c", 50, 50, [("green", i * 10, 0, i * 10 + 8, 8, i == 1) for i in range(5)])],
    [("d", 64, 64, [("green", 0, 0, 64, 64, True)]),
     ("e", 40, 30, [("red", 1, 2, 20, 25, False), ("green", 20, 5, 39, 29, False)])],
]

@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two shard files of lossless images with solid boxes on black, as listed in HAND_MADE."""
    folder = tmp_path_factory.mktemp("hand-made")
    files = []
    for index, records in enumerate(HAND_MADE):
        path = folder / f"train.record-{index:05d}-of-{len(HAND_MADE):05d}"
        with path.open("wb") as handle:
            for source_id, width, height, rows in records:
                boxes = [Box(*row) for row in rows]
                image = ImageData(png(width, height, boxes), "png", width, height)
                write_record(handle, *encode_example(image, filename=f"{source_id}.png",
                                                     source_id=source_id, boxes=boxes,
                                                     label_map=LABELS))
        files.append(path)
    return files


@pytest.fixture(scope="module")
def demo_records(demo_project: Path, registry, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    result = run_import(demo_project, tmp_path_factory.mktemp("demo-records"), registry)
    return shard_files(result.out, "train"), result.label_map


def _take(dataset: tf.data.Dataset, count: int) -> list:
    return list(dataset.take(count).as_numpy_iterator())


def test_training_batches_have_the_promised_shapes_types_and_ranges(demo_records) -> None:  # type: ignore[no-untyped-def]
    files, label_map = demo_records
    dataset = data.train_dataset(files, label_map, ModelConfig(input_size=96),
                                 TrainConfig(batch_size=4), AugmentConfig(), max_boxes=10)
    for images, targets in _take(dataset, 6):
        assert images.shape == (4, 96, 96, 3) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 255 and images.max() > 1
        boxes, classes = targets["boxes"], targets["classes"]
        assert boxes.shape == (4, 10, 4) and boxes.dtype == np.float32
        assert classes.shape == (4, 10) and classes.dtype == np.int32
        assert set(np.unique(classes)) <= {-1, 0, 1, 2}
        padding = classes == -1
        assert (boxes[padding] == 0).all()
        real = boxes[~padding]
        assert (real >= 0).all() and (real <= 1).all()
        assert (real[:, 2] > real[:, 0]).all() and (real[:, 3] > real[:, 1]).all()


@pytest.mark.slow
def test_the_same_seed_gives_the_same_batches_and_another_seed_others(demo_records) -> None:  # type: ignore[no-untyped-def]
    files, label_map = demo_records

    def batches(seed: int) -> list:
        return _take(data.train_dataset(files, label_map, ModelConfig(input_size=96),
                                        TrainConfig(batch_size=4, seed=seed, shuffle_buffer=50),
                                        AugmentConfig(), max_boxes=10), 8)

    first, again, other = batches(3), batches(3), batches(4)
    for (images, targets), (images2, targets2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(targets["boxes"], targets2["boxes"])
        np.testing.assert_array_equal(targets["classes"], targets2["classes"])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_the_box_still_encloses_the_rectangle_after_any_augmentation() -> None:
    """One solid rectangle on black: after crop, resize and flip its box is its pixels' box."""
    size = 64
    augment = AugmentConfig(scale_min=0.4, scale_max=1.0, crop_probability=0.8,
                            min_box_visible=0.0, **NO_COLOUR)
    rng = np.random.default_rng(0)
    moved = dropped = 0
    for index in range(60):
        height, width = rng.integers(40, 120, size=2)
        top, left = rng.integers(0, height - 6), rng.integers(0, width - 6)
        bottom, right = rng.integers(top + 6, height + 1), rng.integers(left + 6, width + 1)
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[top:bottom, left:right] = (40, 220, 90)
        box = np.array([[top / height, left / width, bottom / height, right / width]], np.float32)
        image, boxes, classes = augment_example(
            tf.constant(pixels), tf.constant(box), tf.constant([2], tf.int64),
            tf.constant([7, index], tf.int64), size, augment)
        image = image.numpy()
        assert image.shape == (size, size, 3)
        ys, xs = np.nonzero(image.max(axis=2) > 110)
        if boxes.shape[0] == 0:
            assert ys.size == 0, f"sample {index}: the box was dropped but the rectangle shows"
            dropped += 1
            continue
        assert classes.numpy().tolist() == [2]  # the box's class goes with it, as given
        extent = (boxes.numpy()[0, 2:] - boxes.numpy()[0, :2]) * size
        if ys.size == 0:  # a sliver the crop left may be too thin to survive the resize
            assert extent.min() < 2, f"sample {index}: the rectangle vanished"
            continue
        found = np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
        np.testing.assert_allclose(boxes.numpy()[0] * size, found, atol=2,
                                   err_msg=f"sample {index}")
        moved += not np.allclose(boxes.numpy(), box, atol=1e-3)
    assert moved > 20 and dropped > 0


def test_flip_mirrors_boxes() -> None:
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.3], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(flip_boxes(boxes).numpy(),
                               [[0.1, 0.7, 0.5, 0.8], [0.0, 0.0, 1.0, 1.0]], atol=1e-6)
    augment = AugmentConfig(flip=True, crop_probability=0.0, **NO_COLOUR)
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[5:10, 0:8] = 255
    flips = 0
    for index in range(10):
        image, out, _ = augment_example(
            tf.constant(pixels), tf.constant([[0.25, 0.0, 0.5, 0.2]]), tf.constant([1], tf.int64),
            tf.constant([0, index], tf.int64), 32, augment)
        flipped = image.numpy()[:, -1].max() > 0
        expected = [0.25, 0.8, 0.5, 1.0] if flipped else [0.25, 0.0, 0.5, 0.2]
        np.testing.assert_allclose(out.numpy()[0], expected, atol=1e-6)
        flips += flipped
    assert 0 < flips < 10


def test_crop_renormalises_boxes_and_drops_those_it_cuts_away() -> None:
    boxes = tf.constant([
        [0.1, 0.1, 0.3, 0.3],   # inside the top-left quarter
        [0.6, 0.6, 0.9, 0.9],   # outside it
        [0.4, 0.1, 0.6, 0.3],   # half inside
        [0.2, 0.2, 0.2, 0.4],   # no area
    ])
    window, size = tf.constant([0, 0, 50, 50]), tf.constant([100, 100])
    kept, mask = crop_boxes(boxes, window, size, 0.3)
    assert mask.numpy().tolist() == [True, False, True, False]
    np.testing.assert_allclose(kept.numpy(), [[0.2, 0.2, 0.6, 0.6], [0.8, 0.2, 1.0, 0.6]],
                               atol=1e-6)
    _, strict = crop_boxes(boxes, window, size, 0.6)
    assert strict.numpy().tolist() == [True, False, False, False]


def test_eval_keeps_file_order_original_sizes_and_the_last_partial_batch(
        hand_made: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        batches = _take(data.eval_dataset(hand_made, LABELS, 32, 2, max_boxes=3), 10)
    assert [len(b["source_id"]) for b in batches] == [2, 2, 1]
    joined = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    assert [s.decode() for s in joined["source_id"]] == ["a", "b", "c", "d", "e"]
    assert joined["height"].tolist() == [48, 100, 50, 64, 30]
    assert joined["width"].tolist() == [64, 80, 50, 64, 40]
    assert joined["images"].shape == (5, 32, 32, 3) and joined["images"].dtype == np.float32
    assert joined["height"].dtype == joined["difficult"].dtype == np.int32
    assert joined["classes"].tolist() == [[0, -1, -1], [-1, -1, -1], [1, 1, 1], [1, -1, -1],
                                          [0, 1, -1]]
    assert joined["difficult"].tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0],
                                            [0, 0, 0]]
    np.testing.assert_allclose(joined["boxes"][0], [[4 / 48, 8 / 64, 30 / 48, 40 / 64],
                                                    [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(joined["boxes"][2][:, 1], [0.0, 0.2, 0.4], atol=1e-6)
    warnings = [r for r in caplog.records if "has 5 boxes; only the first 3" in r.getMessage()]
    assert len(warnings) == 1


def test_images_without_boxes_and_with_too_many_train(hand_made: list[Path]) -> None:
    train = TrainConfig(batch_size=5, shuffle_buffer=5)
    augment = AugmentConfig(crop_probability=0.0, mosaic=0.0)
    dataset = data.train_dataset(hand_made, LABELS, ModelConfig(input_size=96), train, augment,
                                 max_boxes=3)
    for _images, targets in _take(dataset, 3):
        counts = sorted((targets["classes"] >= 0).sum(axis=1).tolist())
        assert counts == [0, 1, 1, 2, 3]


def test_representative_images_follow_the_eval_preprocessing(hand_made: list[Path]) -> None:
    images = list(representative_images(spread_sample(hand_made, 7), 32))
    assert len(images) == 5  # every record once: a, b, c of the first file, d, e of the second
    assert all(i.shape == (1, 32, 32, 3) and i.dtype == np.float32 for i in images)
    assert all(0 <= i.min() and i.max() <= 255 for i in images)
    again = list(representative_images(spread_sample(hand_made, 7), 32))
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    evaluated = np.concatenate([b["images"] for b in
                                data.eval_dataset(hand_made, LABELS, 32, 8).as_numpy_iterator()])
    np.testing.assert_array_equal(np.concatenate(images), evaluated)
    spread = list(representative_images(spread_sample(hand_made, 2), 32))  # records 0 and 5 // 2
    np.testing.assert_array_equal(np.concatenate(spread), evaluated[[0, 2]])


def test_a_class_outside_the_label_map_fails_naming_the_record(hand_made: list[Path]) -> None:
    only_red = LabelMap.from_names(["red"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="not all in the label map"):
        _take(data.eval_dataset(hand_made[1:], only_red, 32, 2), 5)


def test_throughput_is_measured_in_images_per_second(hand_made: list[Path]) -> None:
    dataset = data.train_dataset(hand_made, LABELS, ModelConfig(input_size=96),
                                 TrainConfig(batch_size=2), AugmentConfig())
    assert data.measure_throughput(dataset, 3) > 0
