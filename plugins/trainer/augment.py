"""The trainer's augmentation: how a decoded image and its boxes become an S x S training sample.

Every sample is stretched to S x S (`resize`, which evaluation uses too, without the rest);
a training sample is first cropped, then flipped and colour-jittered (`augment_example`), or
tiled with three other images into a mosaic (`augment_mosaic`) and blended with a fifth
(`mix_up`); boxes follow the pixels through every step (`crop_boxes`, `flip_boxes`). The
input pipeline (`data`) decides which samples are mosaics and finds their partners.

Every random choice is a stateless op seeded from the ``seed`` a function is given (the
pipeline's ``(train.seed, index of the element in the stream)``), so the same seed gives the
same sample however many threads tf.data uses, and no hidden random state is involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import tensorflow as tf

from odplug.model import boxops
from odplug_builtins.trainer.config import AugmentConfig

Tile = tuple[tf.Tensor, tf.Tensor, tf.Tensor]
"""An image, its boxes [N, 4] and their classes [N]."""
MOSAIC_FILL = 114.0
"""The grey of a mosaic where no image is (YOLO's), near the middle of 0..255."""


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
