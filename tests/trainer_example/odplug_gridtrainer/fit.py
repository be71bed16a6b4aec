"""The grid trainer's TensorFlow side: data in memory, a small Keras model, a plain loop.

Imported only when training starts, so ``odplug plugins`` stays fast with this plugin installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from odplug.components import StepCallback
from odplug.data.labelmap import write_label_map
from odplug.data.shards import shard_files, training_inputs
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model import boxcoder, boxops
from odplug.model.detector import SavedModelDetector, evaluate_detector
from odplug.model.savedmodel import write_detector
from odplug.model.tfdata import record_dataset
from odplug.run import RunInfo

STRIDE = 8
ANCHOR_SIZES = (0.25, 0.5)
POSITIVE_IOU = 0.5


def fit(records: Path, run_dir: Path, settings: dict[str, Any], trainer: str,
        on_step: StepCallback) -> RunInfo:
    label_map, train_files = training_inputs(records)
    size = settings["model.input_size"]
    anchors = make_anchors(size)
    images, box_targets, class_targets = _load(train_files, label_map, anchors, size)

    keras.utils.set_random_seed(settings["train.seed"])
    model = build_model(size, len(label_map))
    optimizer = keras.optimizers.Adam(settings["train.learning_rate"])
    step_fn = _train_step(model, optimizer)
    rng = np.random.default_rng(settings["train.seed"])
    total, batch = settings["train.steps"], settings["train.batch_size"]
    run_dir.mkdir(parents=True, exist_ok=True)
    for step in range(1, total + 1):
        pick = rng.integers(0, len(images), batch)
        loss = step_fn(tf.constant(images[pick]), tf.constant(box_targets[pick]),
                       tf.constant(class_targets[pick]))
        value = float(loss)
        if not np.isfinite(value):
            raise OdplugError(f"grid trainer: the loss became {value} at step {step}; lower "
                              "train.learning_rate")
        on_step(step, total, {"loss": value})

    write_label_map(label_map, run_dir / "label_map.pbtxt")
    saved_model = write_detector(model, anchors, label_map, size, run_dir / "saved_model")
    metrics: dict[str, dict[str, float]] = {}
    test_files = shard_files(records, "test")
    if test_files:
        result = evaluate_detector(SavedModelDetector(saved_model), test_files, label_map)
        metrics["test"] = {"map50": result.map50, "map": result.map}
    return RunInfo(run_dir=run_dir, trainer=trainer, records=records.resolve(),
                   label_map=run_dir / "label_map.pbtxt", saved_model=saved_model,
                   complete=True, resumable=False, metrics=metrics).write()


def make_anchors(size: int) -> np.ndarray:
    """[A, 4] (ycenter, xcenter, height, width), in the row order of the model's outputs."""
    grid = size // STRIDE
    return np.array([((y + 0.5) / grid, (x + 0.5) / grid, side, side)
                     for y in range(grid) for x in range(grid) for side in ANCHOR_SIZES],
                    np.float32)


def build_model(size: int, num_classes: int) -> keras.Model:
    """float32 [B, S, S, 3] in 0..255 -> box codes [B, A, 4] and class logits [B, A, C]."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    per_cell = len(ANCHOR_SIZES)
    boxes = keras.layers.Reshape((-1, 4))(keras.layers.Conv2D(per_cell * 4, 1)(x))
    logits = keras.layers.Conv2D(per_cell * num_classes, 1,
                                 bias_initializer=keras.initializers.Constant(-4.0))(x)
    logits = keras.layers.Reshape((-1, num_classes))(logits)
    return keras.Model(inputs, {"box_codes": boxes, "class_logits": logits})


def _load(files: list[Path], label_map: LabelMap, anchors: np.ndarray,
          size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every training image resized to S, with its per-anchor targets (the demo is small).

    A box's class target is the column `LabelMap.column_of` gives its label id, the column
    `write_detector` maps back to that id, so any positive ids train (1, 3, 7 included)."""
    corners = boxcoder.to_corners(tf.constant(anchors)).numpy()
    images, box_targets, class_targets = [], [], []
    for item in record_dataset(files, label_map).as_numpy_iterator():
        images.append(tf.image.resize(item["image"], (size, size)).numpy())
        boxes = item["boxes"].astype(np.float32)
        codes = np.zeros((len(anchors), 4), np.float32)
        classes = np.zeros((len(anchors), len(label_map)), np.float32)
        if len(boxes):
            overlap = boxops.iou(tf.constant(corners), tf.constant(boxes)).numpy()
            best = overlap.argmax(axis=1)
            positive = overlap.max(axis=1) >= POSITIVE_IOU
            positive[overlap.argmax(axis=0)] = True  # every object gets its closest anchor
            codes = boxcoder.encode(tf.constant(boxes[best]), tf.constant(anchors)).numpy()
            columns = np.array([label_map.column_of(int(id_)) for id_ in item["classes"]], int)
            classes[positive, columns[best[positive]]] = 1.0
            codes[~positive] = 0.0
        box_targets.append(codes)
        class_targets.append(classes)
    if not images:
        raise OdplugError("grid trainer: the train split has no records")
    return np.stack(images), np.stack(box_targets), np.stack(class_targets)


def _train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer):  # type: ignore[no-untyped-def]
    @tf.function
    def step(images: tf.Tensor, box_targets: tf.Tensor, class_targets: tf.Tensor) -> tf.Tensor:
        positive = tf.reduce_max(class_targets, axis=-1)
        count = tf.maximum(tf.reduce_sum(positive), 1.0)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            logits = outputs["class_logits"]
            probability = tf.sigmoid(logits)
            cross = tf.nn.sigmoid_cross_entropy_with_logits(labels=class_targets, logits=logits)
            p_t = class_targets * probability + (1 - class_targets) * (1 - probability)
            alpha = class_targets * 0.25 + (1 - class_targets) * 0.75
            focal = tf.reduce_sum(alpha * (1 - p_t) ** 2 * cross) / count
            huber = keras.losses.Huber(reduction=None)(box_targets, outputs["box_codes"])
            box = tf.reduce_sum(huber * positive) / count
            loss = focal + box
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step
