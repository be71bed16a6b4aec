"""An exponential moving average of the model's weights, for evaluation, selection and export.

Written here rather than taken from Keras' ``optimizer(use_ema=True)`` because that average
has a fixed momentum from the first step: at 0.999 a 1000-step run from scratch would still
hold e^-1 = 37% of its random initial weights. This one ramps its decay up as
``min(decay, (1 + t) / (10 + t))`` (TensorFlow's ``ExponentialMovingAverage(num_updates=t)``
rule), and it averages every float weight, BatchNorm's moving statistics included, so the
averaged model's statistics belong to averaged weights (as YOLOv5/Ultralytics do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras
import tensorflow as tf


class WeightAverage:
    """Shadow copies of `model`'s float weights, updated after each optimizer step.

    Create it under the distribution strategy's scope: the shadows are then mirrored like the
    weights, and every replica computes the same update (``ONLY_FIRST_REPLICA``). `state` holds
    the shadows alone, for the run's ``tf.train.Checkpoint``.
    """

    def __init__(self, model: keras.Model, decay: float) -> None:
        self.decay = decay
        self.weights = [w for w in model.weights if w.dtype in ("float32", "float64")]
        self.shadows = [
            tf.Variable(w.value, trainable=False, name=f"ema_{i}",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for i, w in enumerate(self.weights)]
        self.state = tf.Module(name="weight_average")
        self.state.shadows = self.shadows

    def update(self, step: tf.Tensor) -> None:
        """Move the averages towards the weights; `step` counts the updates so far (from 1)."""
        t = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for shadow, weight in zip(self.shadows, self.weights, strict=True):
            shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(weight.value, shadow.dtype))

    def apply(self) -> None:
        """Put the averages into the model for good (the end of training)."""
        for shadow, weight in zip(self.shadows, self.weights, strict=True):
            weight.assign(shadow)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averages inside the block and its own weights again after it."""
        own = [w.numpy() for w in self.weights]
        self.apply()
        try:
            yield
        finally:
            for weight, value in zip(self.weights, own, strict=True):
                weight.assign(value)
