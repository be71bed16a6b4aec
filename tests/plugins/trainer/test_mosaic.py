"""Mosaic and mixup in the trainer's input pipeline: boxes that follow the pixels, the crop's
``min_box_visible`` rule, determinism, and a pipeline left as it was when both are off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.data.example import encode_example
from odplug.data.images import ImageData
from odplug.data.tfrecord import write_record
from odplug.samples import Box
from odplug_builtins.trainer import data
from odplug_builtins.trainer.augment import MOSAIC_FILL, augment_example, mix_up, mosaic
from odplug_builtins.trainer.config import AugmentConfig, ModelConfig, TrainConfig
from tests.plugins.trainer.common import LABELS, NO_COLOUR, png

SIZE = 64
CHANNEL = {0: 0, 1: 1}  # class column -> the RGB channel of its colour (red, green: `_png`)

Picture = tuple[int, int, list[Box]]  # width, height, solid rectangles on black


def _write(folder: Path, pictures: list[Picture]) -> list[Path]:
    """The pictures as two interleaved shard files of lossless records."""
    files = [folder / f"train.record-{i:05d}-of-00002" for i in range(2)]
    handles = [path.open("wb") for path in files]
    for index, (width, height, boxes) in enumerate(pictures):
        image = ImageData(png(width, height, boxes), "png", width, height)
        write_record(handles[index % 2], *encode_example(
            image, filename=f"{index}.png", source_id=str(index), boxes=boxes, label_map=LABELS))
    for handle in handles:
        handle.close()
    return files


def _rectangles(rng: np.random.Generator, width: int, height: int, count: int) -> list[Box]:
    """Up to `count` rectangles at least 6 px a side, apart from each other by 2 px or more."""
    boxes: list[Box] = []
    for _ in range(50 * count):
        if len(boxes) == count:
            break
        w, h = rng.integers(6, width // 2 + 1), rng.integers(6, height // 2 + 1)
        x, y = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
        if all(x + w + 2 <= b.xmin or b.xmax + 2 <= x or y + h + 2 <= b.ymin or b.ymax + 2 <= y
               for b in boxes):
            boxes.append(Box(str(rng.choice(["red", "green"])), x, y, x + w, y + h, False))
    return boxes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 images of many sizes and aspects with one to three solid rectangles each."""
    rng = np.random.default_rng(5)
    pictures = []
    for _ in range(24):
        width, height = (int(v) for v in rng.integers(40, 140, size=2))
        pictures.append((width, height, _rectangles(rng, width, height, int(rng.integers(1, 4)))))
    return _write(tmp_path_factory.mktemp("shapes"), pictures)


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 images of exactly SIZE x SIZE pixels with one 16 x 16 square each."""
    rng = np.random.default_rng(6)
    pictures = []
    for index in range(24):
        x, y = (int(v) for v in rng.integers(0, SIZE - 16, size=2))
        pictures.append((SIZE, SIZE, [Box(["red", "green"][index % 2], x, y, x + 16, y + 16,
                                          False)]))
    return _write(tmp_path_factory.mktemp("squares"), pictures)


def _samples(files: list[Path], augment: AugmentConfig, *, seed: int = 0, batches: int = 3,
             max_boxes: int = 20) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, boxes, classes) of every sample in the first batches, padding removed."""
    dataset = data.train_dataset(files, LABELS, ModelConfig(input_size=SIZE),
                                 TrainConfig(batch_size=8, seed=seed, shuffle_buffer=50),
                                 augment, max_boxes=max_boxes)
    samples = []
    for images, targets in dataset.take(batches).as_numpy_iterator():
        for image, boxes, classes in zip(images, targets["boxes"], targets["classes"],
                                         strict=True):
            samples.append((image, boxes[classes >= 0], classes[classes >= 0]))
    return samples


def _pixel_centres_within(box: np.ndarray, margin: float) -> np.ndarray:
    """[SIZE, SIZE] mask of the pixels whose centres lie inside `box` (normalised) grown by
    `margin` pixels on every side (shrunk, for a negative margin)."""
    centres = np.arange(SIZE) + 0.5
    ymin, xmin, ymax, xmax = box * SIZE
    rows = (centres >= ymin - margin) & (centres <= ymax + margin)
    columns = (centres >= xmin - margin) & (centres <= xmax + margin)
    return rows[:, None] & columns[None, :]


def _check_boxes_match_the_colours(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                                   *, inside: float, where: str) -> None:
    """Every box is filled with its class's colour (at least `inside` of 255, one pixel in
    from its edges, where interpolation blends), and every pixel that shows a colour at half
    that strength is within a pixel of a box of its class."""
    assert (boxes >= 0).all() and (boxes <= 1).all(), f"{where}: a box leaves the image"
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all(), where
    for box, column in zip(boxes, classes, strict=True):
        interior = _pixel_centres_within(box, -1.0)
        if interior.any():
            assert image[..., CHANNEL[column]][interior].min() >= inside, \
                f"{where}: box {box} of class {column} is not filled with its colour"
    for column, channel in CHANNEL.items():
        other = image[..., 1 - channel]
        coloured = (image[..., channel] >= inside / 2) & (other < inside / 4)
        covered = np.zeros_like(coloured)
        for box in boxes[classes == column]:
            covered |= _pixel_centres_within(box, 1.0)
        assert not (coloured & ~covered).any(), \
            f"{where}: class {column}'s colour shows outside its boxes"


def test_every_mosaic_box_is_its_rectangle(shapes: list[Path]) -> None:
    augment = AugmentConfig(mosaic=1.0, min_box_visible=0.0, **NO_COLOUR)
    samples = _samples(shapes, augment)
    for index, (image, boxes, classes) in enumerate(samples):
        _check_boxes_match_the_colours(image, boxes, classes, inside=200, where=f"sample {index}")
    counts = [len(boxes) for _, boxes, _ in samples]
    assert max(counts) > 3  # more boxes than any one image has: these are mosaics
    grey = [(image == MOSAIC_FILL).all(axis=2).any() for image, _, _ in samples]
    assert any(grey) and not all(grey)  # zoomed out past the images sometimes, not always


def test_mosaic_drops_boxes_cut_below_min_box_visible() -> None:
    """At scale 1 every tile of a SIZE x SIZE image is an exact crop, so a box's area in the
    output is the part of its 16 x 16 square that shows."""
    rng = np.random.default_rng(7)
    tiles = []
    for column in (0, 1, 0, 1):
        top, left = (int(v) for v in rng.integers(0, SIZE - 16, size=2))
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        pixels[top:top + 16, left:left + 16, CHANNEL[column]] = 255
        box = np.array([[top, left, top + 16, left + 16]], np.float32) / SIZE
        tiles.append((tf.constant(pixels), tf.constant(box), tf.constant([column])))

    def compiled(min_visible: float):  # type: ignore[no-untyped-def]
        augment = AugmentConfig(mosaic_scale_min=1.0, min_box_visible=min_visible)
        return tf.function(lambda seed: mosaic(tiles, seed, SIZE, augment))

    runs = {min_visible: compiled(min_visible)  # 0.45 x 256: no w x h of whole pixels near it
            for min_visible in (0.0, 0.45)}

    def areas(seed: int, min_visible: float) -> np.ndarray:
        image, boxes, classes = runs[min_visible](tf.constant([seed, 0], tf.int64))
        boxes = boxes.numpy()
        if min_visible == 0:
            _check_boxes_match_the_colours(image.numpy(), boxes, classes.numpy(), inside=255,
                                           where=f"seed {seed}")
        return np.sort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * SIZE * SIZE)

    cut = dropped = 0
    for seed in range(40):
        everything, kept = areas(seed, 0.0), areas(seed, 0.45)
        np.testing.assert_allclose(kept, everything[everything >= 0.45 * 256], atol=1e-3,
                                   err_msg=f"seed {seed}")
        cut += int((everything < 256 - 1e-3).sum())
        dropped += len(everything) - len(kept)
    assert cut > 20 and dropped > 5


def test_mixup_keeps_the_boxes_of_both_images(squares: list[Path]) -> None:
    augment = AugmentConfig(mosaic=0.0, mixup=1.0, crop_probability=0.0, **NO_COLOUR)
    for index, (image, boxes, classes) in enumerate(_samples(squares, augment)):
        assert len(boxes) == 2, f"sample {index}: one square each, two images blended"
        assert image.max() <= 255 / 2 + 1e-3 or _overlap(boxes)
        _check_boxes_match_the_colours(image, boxes, classes, inside=127, where=f"sample {index}")


def _overlap(boxes: np.ndarray) -> bool:
    first, second = boxes
    return bool(min(first[2], second[2]) > max(first[0], second[0])
                and min(first[3], second[3]) > max(first[1], second[1]))


def test_mix_up_averages_the_images_and_joins_the_boxes() -> None:
    one = (tf.fill([2, 2, 3], 200.0), tf.constant([[0.0, 0.0, 0.5, 0.5]]), tf.constant([1]))
    two = (tf.fill([2, 2, 3], 100.0), tf.constant([[0.5, 0.5, 1.0, 1.0]]), tf.constant([0]))
    image, boxes, classes = mix_up(one, two)
    np.testing.assert_array_equal(image.numpy(), np.full([2, 2, 3], 150.0))
    np.testing.assert_array_equal(boxes.numpy(), [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    assert classes.numpy().tolist() == [1, 0]


def _plain_reference(files: list[Path], model: ModelConfig, train: TrainConfig,
                     augment: AugmentConfig, max_boxes: int) -> tf.data.Dataset:
    """`data.train_dataset` as it was before mosaic and mixup, from the module's parts."""
    decode, columns = data._checked_decoder(LABELS), data._class_columns(LABELS)
    pad = data._padder(max_boxes)

    def prepare(index: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, dict]:
        example = decode(serialized)
        seed = tf.stack([tf.constant(train.seed, tf.int64), index])
        image, boxes, classes = augment_example(
            example["image"], example["boxes"], columns(example["classes"]), seed,
            model.input_size, augment)
        boxes, classes, _ = pad(boxes, classes, tf.zeros_like(classes), example["source_id"])
        return image, {"boxes": boxes, "classes": classes}

    return (data._interleaved(files)
            .shuffle(train.shuffle_buffer, seed=train.seed, reshuffle_each_iteration=True)
            .repeat().enumerate()
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(train.batch_size, drop_remainder=True))


def test_mosaic_and_mixup_off_leave_the_batches_as_they_were(shapes: list[Path]) -> None:
    model, train = ModelConfig(input_size=SIZE), TrainConfig(batch_size=8)
    augment = AugmentConfig(mosaic=0.0, mixup=0.0)
    new = data.train_dataset(shapes, LABELS, model, train, augment, max_boxes=10)
    old = _plain_reference(shapes, model, train, augment, 10)
    for (images, targets), (images2, targets2) in zip(new.take(4).as_numpy_iterator(),
                                                      old.take(4).as_numpy_iterator(),
                                                      strict=True):
        assert images.tobytes() == images2.tobytes()
        assert targets["boxes"].tobytes() == targets2["boxes"].tobytes()
        assert targets["classes"].tobytes() == targets2["classes"].tobytes()


@pytest.mark.slow
def test_the_same_seed_gives_the_same_mixed_batches_on_any_threads(shapes: list[Path]) -> None:
    augment = AugmentConfig(mosaic=0.5, mixup=0.5)

    def batches(seed: int, threads: int | None = None) -> list:
        dataset = data.train_dataset(shapes, LABELS, ModelConfig(input_size=SIZE),
                                     TrainConfig(batch_size=8, seed=seed, shuffle_buffer=50),
                                     augment)
        if threads:
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.threading.max_intra_op_parallelism = 1
            dataset = dataset.with_options(options)
        return list(dataset.take(3).as_numpy_iterator())

    first, one_thread, other = batches(3), batches(3, threads=1), batches(4)
    for (images, targets), (images2, targets2) in zip(first, one_thread, strict=True):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(targets["boxes"], targets2["boxes"])
        np.testing.assert_array_equal(targets["classes"], targets2["classes"])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
