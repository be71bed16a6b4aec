"""Reading the records back with tf.data, the way the TF Object Detection API decoder does.

This is the reader of record: tests parse every record written by odplug through it, and the
trainer's input pipeline builds on it. It follows the decoder's defaults so records written by
other tools parse too: missing ``source_id`` or ``sha256`` read as empty, ``image/format``
may be ``jpg``, object lists may be empty or absent, and class ids come from
``image/object/class/label`` or, when only text is present, from the label map.
Importing this module imports TensorFlow (seconds): only the tasks that need it do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from odplug.labels import LabelMap

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/key/sha256": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=1),
    "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=1),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    "image/object/truncated": tf.io.VarLenFeature(tf.int64),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
}


def _dense(sparse: tf.sparse.SparseTensor) -> tf.Tensor:
    return tf.sparse.to_dense(sparse)


def _flags(sparse: tf.sparse.SparseTensor, count: tf.Tensor) -> tf.Tensor:
    """One 0/1 flag per box; all 0 when the list is absent or does not match the boxes."""
    flags = tf.cast(tf.not_equal(_dense(sparse), 0), tf.int64)
    return tf.cond(tf.size(flags) == count, lambda: flags, lambda: tf.zeros([count], tf.int64))


def make_decoder(label_map: LabelMap | None = None):  # type: ignore[no-untyped-def]
    """A function from a serialized Example to a dict of tensors.

    Keys: ``image`` (uint8 [H, W, 3]), ``boxes`` (float32 [N, 4] as ymin, xmin, ymax, xmax,
    normalised), ``classes`` (int64 [N], label-map ids), ``source_id``, ``filename``,
    ``height``, ``width``, ``crowd`` (the records' ``is_crowd``) and ``difficult``, which
    is what evaluation and training ignore: the records' ``difficult`` or ``is_crowd``, since
    pycocotools treats a crowd region as it does a difficult object (neither required nor a
    false positive when detected).
    """
    table = None
    if label_map is not None:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(label_map.names), tf.constant([i.id for i in label_map.items], tf.int64)
            ),
            default_value=-1,
        )

    def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(serialized, FEATURES)
        image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
        boxes = tf.stack(
            [_dense(parsed[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")],
            axis=-1,
        )
        labels = _dense(parsed["image/object/class/label"])
        if table is not None:
            texts = _dense(parsed["image/object/class/text"])
            labels = tf.cond(
                tf.size(texts) > 0, lambda: table.lookup(texts), lambda: labels
            )
        count = tf.shape(boxes)[0]
        difficult = _flags(parsed["image/object/difficult"], count)
        crowd = _flags(parsed["image/object/is_crowd"], count)
        return {
            "image": image,
            "boxes": boxes,
            "classes": labels,
            "difficult": tf.maximum(difficult, crowd),
            "crowd": crowd,
            "source_id": parsed["image/source_id"],
            "filename": parsed["image/filename"],
            "format": parsed["image/format"],
            "sha256": parsed["image/key/sha256"],
            "height": parsed["image/height"],
            "width": parsed["image/width"],
        }

    return decode


def record_dataset(files: Sequence[Path], label_map: LabelMap | None = None) -> tf.data.Dataset:
    """Decoded examples from the given TFRecord files, in file order (no shuffling)."""
    dataset = tf.data.TFRecordDataset([str(f) for f in files])
    return dataset.map(make_decoder(label_map), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def representative_images(records: Sequence[bytes], input_size: int) -> Iterator[np.ndarray]:
    """One float32 [1, S, S, 3] image in 0..255 per serialized record, preprocessed exactly as
    training does.

    For int8 calibration: decode, then a bilinear `tf.image.resize` to S x S (the trainer's
    resize without its augmentation), so the quantization ranges match what the model saw. The
    records are given, not read here (`odplug.data.tfrecord.spread_sample` picks them), so a
    calibration run twice decodes the same few images and reads no others.
    """
    decode = make_decoder()
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(records), tf.string)).map(
        lambda serialized: tf.image.resize(decode(serialized)["image"], [input_size, input_size],
                                           method="bilinear")[tf.newaxis],
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    yield from dataset.as_numpy_iterator()
