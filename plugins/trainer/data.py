"""The trainer's tf.data input pipeline: TFRecords in, fixed-size batches of images and boxes out.

Records are parsed by `odplug.model.tfdata.make_decoder`, the reader of record, so records written
by other tools train too. Every image is stretched to S x S like the TF Object Detection API's
``fixed_shape_resizer``; boxes are normalised, so the stretch leaves them unchanged. Images stay
float32 in 0..255: the model normalises them itself, so export and int8 calibration see exactly
what training saw (`odplug.model.tfdata.representative_images`, used for int8 calibration, is this
module's preprocessing minus augmentation; a test holds the two together).

Deterministic means: the same files (in the same order), the same configs and the same
TensorFlow build give the same batches, element for element, however many threads tf.data
uses. Shuffling is seeded with ``train.seed`` and every random choice of the augmentation is a
stateless op seeded from ``(train.seed, index of the element in the stream)``, so no hidden
random state is involved. A different seed gives a different order and different augmentation.

Mosaic and mixup (``augment.mosaic``, ``augment.mixup``, off by default) keep that promise:
their partners come from a window of the same seeded stream (`_pools`) and are picked, like
every other choice, by stateless draws from the sample's seed. With both off, the pipeline is
exactly the one without them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import tensorflow as tf

from odplug.data.protos import Example as ExampleProto
from odplug.data.tfrecord import iter_records, summarize
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model import boxops
from odplug.model.tfdata import make_decoder
from odplug_builtins.trainer.config import AugmentConfig, ModelConfig, TrainConfig

log = logging.getLogger(__name__)

Example = dict[str, tf.Tensor]
Tile = tuple[tf.Tensor, tf.Tensor, tf.Tensor]
"""An image, its boxes [N, 4] and their classes [N]."""
Sample = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]
"""An augmented image, its boxes, their classes and the source_id that names the sample."""
T = TypeVar("T")

POOL = 16
"""Decoded examples a sample's mosaic and mixup partners are drawn from (`_pools`)."""
GROUP = 4
"""Samples served by each pool: a record is in ``POOL / GROUP`` pools, decoded once."""
MOSAIC_FILL = 114.0
"""The grey of a mosaic where no image is (YOLO's), near the middle of 0..255."""


def train_dataset(files: Sequence[Path], label_map: LabelMap, model: ModelConfig,
                  train: TrainConfig, augment: AugmentConfig, *,
                  max_boxes: int = 100) -> tf.data.Dataset:
    """Endless shuffled, augmented batches of ``(images, {"boxes", "classes"})``.

    ``images`` float32 [B, S, S, 3] in 0..255; ``boxes`` float32 [B, max_boxes, 4] normalised
    (ymin, xmin, ymax, xmax), zero-padded; ``classes`` int32 [B, max_boxes], the class column
    of each box (``label_map.column_of(id)``), -1 for padding. The last partial batch of the
    stream is never produced (drop_remainder).
    """
    decode = _checked_decoder(label_map)
    columns = _class_columns(label_map)
    pad = _padder(max_boxes)
    size = model.input_size

    def prepare(index: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, Example]:
        example = decode(serialized)
        seed = tf.stack([tf.constant(train.seed, tf.int64), index])
        image, boxes, classes = augment_example(example["image"], example["boxes"],
                                                columns(example["classes"]), seed, size, augment)
        boxes, classes, _ = pad(boxes, classes, tf.zeros_like(classes), example["source_id"])
        return image, {"boxes": boxes, "classes": classes}

    def prepare_mixed(index: tf.Tensor, own: tf.Tensor,
                      pool: Example) -> tuple[tf.Tensor, Example]:
        seed = tf.stack([tf.constant(train.seed, tf.int64), index])
        image, boxes, classes, source_id = mixed_sample(pool, own, seed, size, augment)
        boxes, classes, _ = pad(boxes, classes, tf.zeros_like(classes), source_id)
        return image, {"boxes": boxes, "classes": classes}

    def read(serialized: tf.Tensor) -> Example:
        example = decode(serialized)
        return {"image": example["image"], "boxes": example["boxes"],
                "classes": columns(example["classes"]), "source_id": example["source_id"],
                "shape": tf.shape(example["image"])[:2], "count": tf.shape(example["boxes"])[0]}

    records = _interleaved(files)
    stream = records.shuffle(max(1, train.shuffle_buffer), seed=train.seed,
                             reshuffle_each_iteration=True).repeat()
    if augment.mosaic > 0 or augment.mixup > 0:
        decoded = stream.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = (_pools(decoded).enumerate()
                   .map(lambda index, item: prepare_mixed(index, *item),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    else:
        dataset = (stream.enumerate()
                   .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    return dataset.batch(train.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _pools(decoded: tf.data.Dataset) -> tf.data.Dataset:
    """Pools of `POOL` consecutive decoded examples, padded to one shape, `GROUP` apart: the
    samples of a pool's last `GROUP` examples draw their mosaic and mixup partners from it.

    Mosaic and mixup need other images besides a sample's own. Decoding them anew for every
    sample (four decodes for a mosaic) made the pipeline about three times slower at mosaic 1,
    CPU time the training step loses on a small machine. Overlapping windows instead decode
    every record once, and a record still ends up in mosaics with images of several batches
    around it (the first ``POOL - GROUP`` examples of the endless stream serve only as
    partners). Each sample stays an element of its own for the parallel map: making a pool's
    `GROUP` samples in one call measured slower (4.7-5.0 against 3.5-3.9 CPU ms per image at
    mosaic 1 on the demo).
    """
    def padded(window: dict[str, tf.data.Dataset]) -> tf.data.Dataset:
        return tf.data.Dataset.zip(window).padded_batch(POOL)

    def samples(pool: Example) -> tf.data.Dataset:
        return tf.data.Dataset.range(POOL - GROUP, POOL, output_type=tf.int32).map(
            lambda own: (own, pool))

    return (decoded.window(POOL, shift=GROUP, drop_remainder=True)
            .flat_map(padded)
            .flat_map(samples))


def mixed_sample(pool: Example, own: int | tf.Tensor, seed: tf.Tensor, size: int,
                 augment: AugmentConfig) -> Sample:
    """One augmented sample of example `own` of `pool` (`_pools`), and the source_id that
    names it (in the warning about too many boxes).

    It is a mosaic of its own and three other images of the pool with probability
    ``augment.mosaic``, and is then mixed up with a fourth with probability ``augment.mixup``:
    both decided by draws of their own (seed folded with 1), the partners by a third (seed
    folded with 3), so a sample that is neither is exactly what `augment_example` makes of its
    record with the same seed.
    """
    def example(position: int | tf.Tensor) -> Tile:
        shape, count = pool["shape"][position], pool["count"][position]
        return (pool["image"][position, :shape[0], :shape[1]], pool["boxes"][position, :count],
                pool["classes"][position, :count])

    fold = tf.random.experimental.stateless_fold_in
    draws = tf.random.stateless_uniform([2], fold(seed, 1))
    scores = tf.random.stateless_uniform([POOL], fold(seed, 3))
    others = tf.argsort(tf.where(tf.range(POOL) == own, 2.0, scores))[:4]  # never `own`

    def plain() -> Tile:
        return augment_example(*example(own), seed, size, augment)

    def tiled() -> Tile:
        tiles = [example(own)] + [example(others[i]) for i in range(3)]
        return augment_mosaic(tiles, seed, size, augment)

    sample = tf.cond(draws[0] < augment.mosaic, tiled, plain) if augment.mosaic > 0 else plain()
    if augment.mixup > 0:
        sample = tf.cond(
            draws[1] < augment.mixup,
            lambda: mix_up(sample, augment_example(*example(others[3]), fold(seed, 2), size,
                                                   augment)),
            lambda: sample)
    several = (draws[0] < augment.mosaic) | (draws[1] < augment.mixup)
    source_id = pool["source_id"][own]
    name = tf.where(several, tf.strings.join([source_id, " (in a mosaic or mixup)"]), source_id)
    image, boxes, classes = sample
    return tf.ensure_shape(image, [size, size, 3]), boxes, classes, name


def eval_dataset(files: Sequence[Path], label_map: LabelMap, input_size: int, batch_size: int,
                 *, max_boxes: int = 100) -> tf.data.Dataset:
    """One pass over the files in order, unaugmented; the last partial batch is kept.

    Dicts of ``images``, ``boxes``, ``classes`` (as in `train_dataset`), ``source_id``
    (tf.string [B]), ``height`` and ``width`` (int32 [B], the size of the decoded original
    image) and ``difficult`` (int32 [B, max_boxes], 0 for padding). Ground truth is kept as
    recorded, zero-area boxes included, so evaluation scores against the dataset itself.
    """
    decode = _checked_decoder(label_map)
    columns = _class_columns(label_map)
    pad = _padder(max_boxes)

    def prepare(serialized: tf.Tensor) -> Example:
        example = decode(serialized)
        shape = tf.shape(example["image"])
        boxes, classes, difficult = pad(example["boxes"], columns(example["classes"]),
                                        tf.cast(example["difficult"], tf.int32),
                                        example["source_id"])
        return {
            "images": resize(example["image"], input_size),
            "boxes": boxes,
            "classes": classes,
            "source_id": example["source_id"],
            "height": shape[0],
            "width": shape[1],
            "difficult": difficult,
        }

    dataset = tf.data.TFRecordDataset(_names(files))
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def checked(batches: Iterable[T], files: Sequence[Path]) -> Iterator[T]:
    """`batches` (of `train_dataset` or `eval_dataset` over `files`), failing as an `OdplugError`
    that names the file and the record TensorFlow could not read.

    tf.data fails inside its own threads, with a message that names neither the file nor the
    record ("Unknown image file format", "Invalid JPEG data"), and the shuffled, parallel
    pipeline cannot tell which element it was working on. So the fast path is left exactly as it
    is, and only once it has failed are the files read again, one record at a time, to find the
    first record at fault (`_diagnose`).
    """
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise OdplugError(_diagnose(files, error)) from None
        yield batch


def _diagnose(files: Sequence[Path], error: tf.errors.OpError) -> str:
    """The first record of `files` that TensorFlow cannot read, and why, in one line.

    Damaged framing and records that are no tf.train.Example raise their own error naming the
    file; an image is checked from its header (empty, unknown format, wrong size) and then
    decoded in full the way the pipeline does. When every record reads, the failure was
    something else (a class id outside the label map, a file removed meanwhile) and
    TensorFlow's own message is kept, on one line.
    """
    said = _one_line(error.message)
    for path in files:
        for index, record in enumerate(iter_records(path)):
            origin = f"{path} record {index}"
            problem = summarize(record, origin=origin).image_problem or _decode_problem(record)
            if problem:
                return f"{origin}: {problem}; the trainer cannot read it (TensorFlow: {said})"
    return f"reading {', '.join(str(f) for f in files)}: {said}"


def _decode_problem(record: bytes) -> str | None:
    """Why TensorFlow cannot decode this record's image as the pipeline does; None if it can."""
    example = ExampleProto()
    example.ParseFromString(record)
    encoded = example.features.feature["image/encoded"].bytes_list.value
    try:
        tf.io.decode_image(encoded[0] if encoded else b"", channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        return f"TensorFlow cannot decode image/encoded: {_one_line(error.message)}"
    return None


def _one_line(message: str) -> str:
    """A TensorFlow error message without its graph locations (``{{...}}``, ``[[...]]``)."""
    return " ".join(re.sub(r"\{\{.*?\}\}|\[\[.*?\]\]", " ", message, flags=re.DOTALL).split())


def measure_throughput(dataset: tf.data.Dataset, batches: int) -> float:
    """Images per second over `batches` batches, after one warm-up batch (graph building)."""
    iterator = iter(dataset)
    next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        first = batch["images"] if isinstance(batch, dict) else batch[0]
        images += int(first.shape[0])
    return images / (time.perf_counter() - start)


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Any image to float32 [size, size, 3] in 0..255: bilinear stretch, no aspect kept."""
    return tf.image.resize(image, [size, size], method="bilinear")


def augment_example(image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor, seed: tf.Tensor,
                    size: int, augment: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Crop, resize, flip and colour-jitter one decoded image, its boxes following.

    `image` uint8 [H, W, 3], `boxes` normalised [N, 4], `classes` [N] (the pipeline gives class
    columns); `seed` int64 [2] decides every random choice. Returns the float32
    [size, size, 3] image in 0..255 and the boxes and classes that survived the crop (boxes of
    zero area never survive, crop or not).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    window = _random_window(tf.shape(image), seeds[0], augment)
    height, width = window[2] - window[0], window[3] - window[1]
    image = resize(tf.slice(image, [window[0], window[1], 0], [height, width, -1]), size)
    boxes, keep = crop_boxes(boxes, window[:4], window[4:], augment.min_box_visible)
    classes = tf.boolean_mask(classes, keep)
    return _flip_and_colour((image, boxes, classes), seeds[1:], size, augment)


def augment_mosaic(tiles: Sequence[Tile], seed: tf.Tensor, size: int,
                   augment: AugmentConfig) -> Tile:
    """`mosaic` of four decoded images, then flipped and colour-jittered as a whole.

    `seed` is split as `augment_example` splits it (the mosaic's layout takes the crop's
    share), so a sample gets the same flip and colour draws whether it is a mosaic or not.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    return _flip_and_colour(mosaic(tiles, seeds[0], size, augment), seeds[1:], size, augment)


def _flip_and_colour(sample: Tile, seeds: tf.Tensor, size: int, augment: AugmentConfig) -> Tile:
    """The random horizontal flip (seeds[0]) and the colour jitter (seeds[1:]) of a sample that
    is already S x S."""
    image, boxes, classes = sample
    if augment.flip:
        flipped = tf.random.stateless_uniform([], seeds[0]) < 0.5
        image = tf.cond(flipped, lambda: tf.reverse(image, axis=[1]), lambda: image)
        boxes = tf.cond(flipped, lambda: flip_boxes(boxes), lambda: boxes)
    image = tf.ensure_shape(_jitter_colour(image, seeds[1:], augment), [size, size, 3])
    return image, boxes, classes


def mosaic(tiles: Sequence[Tile], seed: tf.Tensor, size: int, augment: AugmentConfig) -> Tile:
    """Four decoded images around a random centre as one float32 [size, size, 3] image in
    0..255, with the boxes and classes that stay visible.

    YOLO's mosaic, on the stretched images this pipeline trains on: each image stretched to a
    square of side E = S x scale (scale uniform in [``mosaic_scale_min``, 1]), the four put
    on a 2S x 2S canvas so that their inner corners meet at a random centre in [0.5S, 1.5S]
    (the first image top-left of it, then top-right, bottom-left, bottom-right), and the
    canvas window that maps to S x S at that scale (the centre S x S at scale 1, the whole
    canvas at 0.5) is the sample; where no image is, it is `MOSAIC_FILL` grey.

    The canvas is never drawn: the part of each image that the window shows is cut from the
    decoded image and resized once, straight into its place (`_mosaic_span`). The picture is
    the same (up to windows rounded to whole pixels), but a CPU resizes S x S output pixels in
    total instead of resampling a canvas four times that size, and interpolates once instead
    of twice. And boxes follow the pixels
    exactly: each image's boxes go through `crop_boxes` with the very pixel window that was
    cut, so they are clipped and dropped by the crop's own ``min_box_visible`` rule, and then
    scaled into the image's place.
    """
    draws = tf.random.stateless_uniform([3], seed)
    scale = augment.mosaic_scale_min + (1.0 - augment.mosaic_scale_min) * draws[2]
    extent = tf.cast(tf.round(size * scale), tf.int32)
    # the canvas centre c in [0.5S, 1.5S] lands at S / 2 + scale (c - S) in the output
    centre = tf.cast(tf.round(size / 2 + size * scale * (draws[:2] - 0.5)), tf.int32)
    centre = tf.clip_by_value(centre, 1, size - 1)  # every quadrant at least one pixel
    rows: list[tf.Tensor] = []
    all_boxes: list[tf.Tensor] = []
    all_classes: list[tf.Tensor] = []
    for top in (True, False):
        row = []
        for left in (True, False):
            image, boxes, classes = tiles[len(all_boxes)]
            shape = tf.shape(image)[:2]
            y = _mosaic_span(centre[0], extent, size, shape[0], before=top)
            x = _mosaic_span(centre[1], extent, size, shape[1], before=left)
            part = tf.slice(image, [y.source, x.source, 0], [y.source_length, x.source_length, -1])
            row.append(tf.pad(tf.image.resize(part, [y.length, x.length], method="bilinear"),
                              [[y.pad_before, y.pad_after], [x.pad_before, x.pad_after], [0, 0]],
                              constant_values=MOSAIC_FILL))
            window = tf.stack([y.source, x.source, y.source + y.source_length,
                               x.source + x.source_length])
            kept, keep = crop_boxes(boxes, window, shape, augment.min_box_visible)
            start = tf.cast(tf.stack([y.start, x.start] * 2), tf.float32)
            length = tf.cast(tf.stack([y.length, x.length] * 2), tf.float32)
            all_boxes.append((kept * length + start) / size)
            all_classes.append(tf.boolean_mask(classes, keep))
        rows.append(tf.concat(row, axis=1))
    image = tf.ensure_shape(tf.concat(rows, axis=0), [size, size, 3])
    return image, tf.concat(all_boxes, axis=0), tf.concat(all_classes, axis=0)


class _Span(NamedTuple):
    """Where one mosaic image lies along one axis, in pixels: shown at output
    [start, start + length), padded within its quadrant by pad_before and pad_after, cut from
    source [source, source + source_length) of the decoded image."""

    start: tf.Tensor
    length: tf.Tensor
    pad_before: tf.Tensor
    pad_after: tf.Tensor
    source: tf.Tensor
    source_length: tf.Tensor


def _mosaic_span(centre: tf.Tensor, extent: tf.Tensor, size: int, pixels: tf.Tensor, *,
                 before: bool) -> _Span:
    """One axis of one mosaic image of side `extent` whose inner edge is at `centre`: before
    it (top or left, quadrant [0, centre)) or after it (quadrant [centre, size)).

    The output shows the image's end nearest the centre, as much of it as fits in the
    quadrant; its source window is that same fraction of the image's `pixels`, rounded to
    whole pixels (at least one).
    """
    room = centre if before else size - centre
    length = tf.minimum(room, extent)
    source_length = tf.clip_by_value(
        tf.cast(tf.round(tf.cast(length * pixels, tf.float32) / tf.cast(extent, tf.float32)),
                tf.int32), 1, pixels)
    if before:
        return _Span(centre - length, length, room - length, tf.constant(0),
                     pixels - source_length, source_length)
    return _Span(centre, length, tf.constant(0), room - length, tf.constant(0), source_length)


def mix_up(first: Tile, second: Tile) -> Tile:
    """Two augmented samples blended half and half, with the boxes and classes of both.

    YOLOv5 draws the weight from Beta(32, 32), which stays within 0.5 +- 0.1: a fixed half is
    as good, simpler, and leaves every box of either image equally (half) visible.
    """
    return ((first[0] + second[0]) * 0.5, tf.concat([first[1], second[1]], axis=0),
            tf.concat([first[2], second[2]], axis=0))


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor, image_size: tf.Tensor,
               min_visible: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes re-normalised to a crop window, and which of them to keep.

    `window` is (top, left, bottom, right) in pixels of an image of `image_size` (height,
    width). Boxes are clipped to the window; a box is kept when its clipped area is positive and
    at least `min_visible` of its own area. Returns the kept boxes and the boolean mask over
    the input boxes (to select their classes).
    """
    size = tf.cast(tf.concat([image_size, image_size], 0), tf.float32)
    corners = tf.cast(window, tf.float32) / size
    origin, extent = corners[:2], corners[2:] - corners[:2]
    moved = (boxes - tf.concat([origin, origin], 0)) / tf.concat([extent, extent], 0)
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    visible = boxops.area(clipped) * extent[0] * extent[1]
    whole = boxops.area(boxes)
    keep = (visible > 0) & (whole > 0) & (visible >= min_visible * whole)
    return tf.boolean_mask(clipped, keep), keep


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Boxes of the horizontally mirrored image."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def _random_window(shape: tf.Tensor, seed: tf.Tensor, augment: AugmentConfig) -> tf.Tensor:
    """(top, left, bottom, right, height, width) in pixels: the whole image or a random crop."""
    full = shape[:2]
    if augment.crop_probability <= 0:
        return tf.concat([[0, 0], full, full], 0)
    draws = tf.random.stateless_uniform([5], seed)
    scales = augment.scale_min + (augment.scale_max - augment.scale_min) * draws[1:3]
    extent = tf.clip_by_value(tf.cast(tf.round(scales * tf.cast(full, tf.float32)), tf.int32),
                              1, full)
    offset = tf.cast(draws[3:5] * tf.cast(full - extent + 1, tf.float32), tf.int32)
    offset = tf.minimum(offset, full - extent)
    cropped = draws[0] < augment.crop_probability
    top_left = tf.where(cropped, offset, [0, 0])
    bottom_right = tf.where(cropped, offset + extent, full)
    return tf.concat([top_left, bottom_right, full], 0)


def _jitter_colour(image: tf.Tensor, seeds: tf.Tensor, augment: AugmentConfig) -> tf.Tensor:
    """Brightness, contrast, saturation and hue in that order, each off at strength 0."""
    steps: list[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = []
    if augment.brightness > 0:
        steps.append(lambda x, s: tf.image.stateless_random_brightness(x, augment.brightness, s))
    if augment.contrast > 0:
        steps.append(lambda x, s: tf.image.stateless_random_contrast(
            x, 1 - augment.contrast, 1 + augment.contrast, s))
    if augment.saturation > 0:
        steps.append(lambda x, s: tf.image.stateless_random_saturation(
            x, max(0.0, 1 - augment.saturation), 1 + augment.saturation, s))
    if augment.hue > 0:
        steps.append(lambda x, s: tf.image.stateless_random_hue(x, min(augment.hue, 0.5), s))
    if not steps:
        return image
    image = image / 255.0
    for step, seed in zip(steps, tf.unstack(seeds[:len(steps)]), strict=True):
        # the colour-space conversions of saturation and hue assume values in 0..1
        image = tf.clip_by_value(step(image, seed), 0.0, 1.0)
    return image * 255.0


def _class_columns(label_map: LabelMap) -> Callable[[tf.Tensor], tf.Tensor]:
    """Label ids [N] -> int32 class columns [N] by `LabelMap.column_of`'s rule (ids in ascending
    order), as a lookup table, so ids with gaps get columns 0..C-1; -1 for an unknown id, which
    `_checked_decoder` has already refused."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(label_map.ids, tf.int64),
        tf.constant([label_map.column_of(id_) for id_ in label_map.ids], tf.int32)),
        default_value=-1)
    return lambda label_ids: table.lookup(tf.cast(label_ids, tf.int64))


def _checked_decoder(label_map: LabelMap) -> Callable[[tf.Tensor], Example]:
    """The reader of record, failing on class ids outside the label map (naming the record)."""
    decode = make_decoder(label_map)
    ids = tf.constant([item.id for item in label_map.items], tf.int64)

    def checked(serialized: tf.Tensor) -> Example:
        example = decode(serialized)
        known = tf.reduce_all(tf.reduce_any(example["classes"][:, None] == ids[None, :], axis=1))
        with tf.control_dependencies([tf.debugging.Assert(known, [
            "record", example["source_id"], "has class ids", example["classes"],
            "not all in the label map", ids,
            "(import the data again with this label map, or train with the data's own)",
        ], summarize=20)]):
            example["classes"] = tf.identity(example["classes"])
        return example

    return checked


def _padder(max_boxes: int) -> Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Pads boxes, classes and difficult flags to `max_boxes` rows (0, -1, 0).

    An image with more boxes keeps its first `max_boxes`, with one warning per pipeline.
    """
    warned = False

    def warn(count: np.int32, source_id: bytes) -> np.int32:
        nonlocal warned
        if not warned:
            warned = True
            log.warning("record %r has %d boxes; only the first %d are used (raise max_boxes "
                        "to keep them all; further images are truncated without a warning)",
                        source_id.decode(errors="replace"), count, max_boxes)
        return np.int32(max_boxes)

    def pad(boxes: tf.Tensor, classes: tf.Tensor, difficult: tf.Tensor,
            source_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        count = tf.shape(boxes)[0]
        kept = tf.cond(count > max_boxes,
                       lambda: tf.numpy_function(warn, [count, source_id], tf.int32),
                       lambda: count)
        kept = tf.reshape(kept, [])
        padding = [[0, max_boxes - kept]]
        boxes = tf.pad(boxes[:kept], padding + [[0, 0]])
        classes = tf.pad(classes[:kept], padding, constant_values=-1)
        difficult = tf.pad(difficult[:kept], padding)
        return (tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(classes, [max_boxes]),
                tf.ensure_shape(difficult, [max_boxes]))

    return pad


def _names(files: Sequence[Path]) -> list[str]:
    if not files:
        raise OdplugError("no TFRecord files given: import a dataset first (inv data.import) "
                          "and point the trainer at its folder")
    return [str(f) for f in files]


def _interleaved(files: Sequence[Path]) -> tf.data.Dataset:
    """The records of all files, one from each file in turn, always in the same order."""
    names = _names(files)
    return tf.data.Dataset.from_tensor_slices(names).interleave(
        tf.data.TFRecordDataset, cycle_length=len(names), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
