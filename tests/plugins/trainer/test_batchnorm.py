"""The fused BatchNormalization (plugins/trainer/batchnorm.py): Keras' layer, computed faster.

What is checked: in training mode it gives Keras' outputs, gradients and moving statistics
(and runs TensorFlow's fused kernel, which is the point of it); everywhere else it is Keras'
code; its weights files and Keras' are interchangeable; the detector uses it throughout.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from odplug_builtins.trainer import batchnorm
from odplug_builtins.trainer.config import ModelConfig
from odplug_builtins.trainer.model import build_model


def _plain_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    images = keras.Input((10, 10, 5))
    x = keras.layers.Conv2D(6, 3, padding="same")(images)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization(momentum=0.9, center=False, scale=False)(x)
    return keras.Model(images, x)


def _pair() -> tuple[keras.Model, keras.Model]:
    plain = _plain_model()
    fused = batchnorm.with_fused_batchnorm(plain, 0.9)
    fused.set_weights(plain.get_weights())
    return plain, fused


def _ops(model: keras.Model, x: tf.Tensor, training: bool) -> set[str]:
    step = tf.function(lambda: model(x, training=training))
    return {op.type for op in step.get_concrete_function().graph.get_operations()}


def _gradients(model: keras.Model, x: tf.Tensor, target: tf.Tensor
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(y * target)
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def test_training_matches_keras_layer_and_runs_the_fused_kernel() -> None:
    plain, fused = _pair()
    assert [type(layer) for layer in fused.layers if "batch" in layer.name] == \
        [batchnorm.BatchNormalization] * 2
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (4, 10, 10, 5)), tf.float32)
    target = tf.constant(rng.normal(size=(4, 10, 10, 6)), tf.float32)
    want_y, want_grads = _gradients(plain, x, target)
    got_y, got_grads = _gradients(fused, x, target)
    np.testing.assert_allclose(got_y, want_y, atol=1e-5)
    names = [v.path for v in plain.trainable_variables]
    for name, got, want in zip(names, got_grads, want_grads, strict=True):
        if name.endswith("bias"):  # a bias before BatchNorm: zero up to round-off either way
            np.testing.assert_allclose(got, want, atol=1e-3, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
    for got, want in zip(fused.non_trainable_weights, plain.non_trainable_weights, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=got.path)
    assert "FusedBatchNormV3" in _ops(fused, x, training=True)
    assert "FusedBatchNormV3" not in _ops(plain, x, training=True)


def test_inference_and_synchronised_statistics_are_keras_own_code() -> None:
    plain, fused = _pair()
    x = tf.random.stateless_normal((2, 10, 10, 5), seed=(1, 2))
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  plain(x, training=False).numpy())
    assert "FusedBatchNormV3" not in _ops(fused, x, training=False)
    for layer in fused.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True  # what several replicas set (cluster.synchronise_batchnorm)
    assert "FusedBatchNormV3" not in _ops(fused, x, training=True)


def test_weights_files_are_interchangeable_with_keras_layer(tmp_path: Path) -> None:
    plain, fused = _pair()
    for variable in plain.weights:
        variable.assign(tf.random.stateless_uniform(variable.shape, seed=(4, 5)) + 0.5)
    plain.save_weights(tmp_path / "plain.weights.h5")
    fused.load_weights(tmp_path / "plain.weights.h5")
    for got, want in zip(fused.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    fused.save_weights(tmp_path / "fused.weights.h5")
    again = _plain_model()
    again.load_weights(tmp_path / "fused.weights.h5")
    for got, want in zip(again.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_every_batchnorm_of_the_detector_is_the_fused_one() -> None:
    model = build_model(ModelConfig(input_size=128, levels=[3, 4, 5, 6], fpn=True), 2)
    found = [layer for layer in _walk(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(found) > 50
    assert {type(layer) for layer in found} == {batchnorm.BatchNormalization}
    assert {layer.momentum for layer in found} == {ModelConfig().batchnorm_momentum}


def _walk(model: keras.Model) -> list[keras.Layer]:
    return [inner for layer in model.layers
            for inner in (_walk(layer) if isinstance(layer, keras.Model) else [layer])]
