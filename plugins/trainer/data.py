"""The trainer's tf.data input pipeline: TFRecords in, fixed-size batches of images and boxes out.

Records are parsed by `odplug.model.tfdata.make_decoder`, the reader of record, so records written
by other tools train too. Every image is stretched to S x S like the TF Object Detection API's
``fixed_shape_resizer``; boxes are normalised, so the stretch leaves them unchanged. Images stay
float32 in 0..255: the model normalises them itself, so export and int8 calibration see exactly
what training saw (`odplug.model.tfdata.representative_images`, used for int8 calibration, is this
module's preprocessing minus augmentation; a test holds the two together).

Deterministic means: the same files (in the same order), the same configs and the same
TensorFlow build give the same batches, element for element, however many threads tf.data
uses. Shuffling is seeded with ``train.seed`` and every random choice of the augmentation
(`augment`) is a stateless op seeded from ``(train.seed, index of the element in the stream)``,
so no hidden random state is involved. A different seed gives a different order and different
augmentation.

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
from typing import TypeVar

import numpy as np
import tensorflow as tf

from odplug.data.protos import Example as ExampleProto
from odplug.data.tfrecord import iter_records, summarize
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.tfdata import make_decoder
from odplug_builtins.trainer.augment import Tile, augment_example, augment_mosaic, mix_up, resize
from odplug_builtins.trainer.config import AugmentConfig, ModelConfig, TrainConfig

log = logging.getLogger(__name__)

Example = dict[str, tf.Tensor]
Sample = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]
"""An augmented image, its boxes, their classes and the source_id that names the sample."""
T = TypeVar("T")

POOL = 16
"""Decoded examples a sample's mosaic and mixup partners are drawn from (`_pools`)."""
GROUP = 4
"""Samples served by each pool: a record is in ``POOL / GROUP`` pools, decoded once."""


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


def eval_images(files: Sequence[Path], label_map: LabelMap, input_size: int,
                indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The images `eval_dataset` gives at these positions of its pass over `files` (float32
    [S, S, 3] in 0..255), by position: what the pictures of a split are drawn on.

    Only the chosen records are decoded (they are picked by position before decoding), so
    a few images out of a large split cost a read of the files, not a second evaluation."""
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return {}
    chosen = tf.constant(wanted, tf.int64)
    decode = make_decoder(label_map)
    dataset = (tf.data.TFRecordDataset(_names(files)).enumerate()
               .filter(lambda index, _: tf.reduce_any(tf.equal(chosen, index)))
               .map(lambda index, serialized: (index, resize(decode(serialized)["image"],
                                                             input_size)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    return {int(index): image.numpy() for index, image in checked(dataset, files)}


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
