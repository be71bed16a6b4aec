"""Settings and pictures the trainer's tests share: a model small enough to train in seconds,
and lossless images of solid boxes whose colour says their class."""

from __future__ import annotations

import io

import keras
import numpy as np
from PIL import Image

from odplug.labels import LabelMap
from odplug.samples import Box

TINY = {
    "model.input_size": 96, "model.levels": [4, 5], "model.head_channels": 32,
    "train.batch_size": 4, "train.warmup_steps": 2, "train.learning_rate": 3e-3,
    "train.log_every": 1, "train.checkpoint_every": 5, "train.eval_every": 10,
    "train.shuffle_buffer": 50, "eval.batch_size": 8,
}

LABELS = LabelMap.from_names(["red", "green"])
NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def png(width: int, height: int, boxes: list[Box]) -> bytes:
    pixels = np.zeros((height, width, 3), np.uint8)
    for box in boxes:
        colour = (255, 0, 0) if box.label == "red" else (0, 255, 0)
        pixels[int(box.ymin):int(box.ymax), int(box.xmin):int(box.xmax)] = colour
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


Weights = dict[str, list[np.ndarray]]


def random_backbone(alpha: float, size: int) -> tuple[keras.Model, Weights]:
    """MobileNetV2 (include_top=False) with every variable, BatchNorm statistics included,
    set to seeded random values no initialiser would produce."""
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                           include_top=False, weights=None)
    rng = np.random.default_rng(7)
    for variable in model.weights:
        values = rng.uniform(0.5, 1.5, variable.shape) if "variance" in variable.path else \
            rng.normal(0.0, 0.1, variable.shape)
        variable.assign(values.astype("float32"))
    return model, {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
