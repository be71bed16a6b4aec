"""BatchNormalization that trains with TensorFlow's fused kernel: the trainer's speed on a CPU.

Keras 3's BatchNormalization computes a training batch's statistics and the normalisation
from separate ops (Mean, SquaredDifference, Sub, Mul, their gradients and Tile for the
broadcasts), and no TensorFlow rewrite fuses them back. Profiled on the default detector on a
CPU, those ops took about half the time of the forward and backward pass; TensorFlow's fused
kernel (``FusedBatchNormV3`` and its gradient, oneDNN's on x86) computes the same outputs and
gradients up to round-off in much less (the measurements: docs/training.md, "How fast it
trains on a CPU").

The fused path is taken only where it computes what Keras' layer computes: training mode,
float32 NHWC input over the channel axis, no mask, no renormalisation and no cross-replica
synchronisation (`cluster.synchronise_batchnorm`); everything else, inference included (so
exports see the very graph they always saw), is Keras' own code. The variables, their names
and the moving-average update are Keras' (biased variance, as Keras keeps it), and the class
is called `BatchNormalization` too: a Keras 3 weights file addresses each layer by its class's
snake-case name and a counter, so under any other name a run's weights, a MobileNetV2 file a
user brings and every run folder written before this layer existed would no longer load.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers


class BatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with the fused training kernel (module docstring)."""

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = self.moving_mean.shape
        scale = self.gamma if self.scale else tf.ones(channels)
        offset = self.beta if self.center else tf.zeros(channels)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=tf.zeros([0]), variance=tf.zeros([0]),
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        # the kernel returns the unbiased (n - 1) variance; Keras' moving variance is biased
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    def _fusable(self, inputs: Any, training: bool | None, mask: Any) -> bool:
        return bool(training and self.trainable and mask is None and not self.renorm
                    and not self.synchronized and len(inputs.shape) == 4
                    and self.axis in (3, -1) and inputs.dtype == tf.float32)


def with_fused_batchnorm(model: keras.Model, momentum: float) -> keras.Model:
    """A copy of functional `model` (same layer names, fresh weights) whose BatchNormalization
    layers are this module's `BatchNormalization` with `momentum`; Keras' applications build theirs
    with the plain layer and offer no way to choose another."""

    def clone(layer: keras.Layer) -> keras.Layer:
        config = layer.get_config()
        if type(layer) is layers.BatchNormalization:
            return BatchNormalization.from_config({**config, "momentum": momentum})
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)
