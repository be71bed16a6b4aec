"""What trains the model: the optimizer, its schedule, the weight average and the compiled step.

One builder (`build_learner`) serves the training loop (`train`) and `step_throughput`, so the
step bench.train times is the step a run takes. The step is one optimizer update on a global
batch however many replicas share it (`cluster` holds what they need to agree on), compiled
with XLA on a GPU where ``train.xla`` allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from odplug_builtins.trainer import cluster
from odplug_builtins.trainer.anchors import make_anchors
from odplug_builtins.trainer.config import Config
from odplug_builtins.trainer.ema import WeightAverage
from odplug_builtins.trainer.loss import DetectionLoss
from odplug_builtins.trainer.model import build_model, start_from_run
from odplug_builtins.trainer.pretrained import RunStart
from odplug_builtins.trainer.schedule import WarmupCosine

log = logging.getLogger(__name__)


@dataclass
class Learner:
    """The model and what trains it, as `build_learner` makes them."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: keras.optimizers.schedules.LearningRateSchedule
    total_steps: tf.Variable
    """The step the learning rate schedule ends at (a time budget moves it:
    `schedule.StepBudget`)."""
    average: WeightAverage | None
    anchors: np.ndarray
    train_step: Callable[..., dict[str, tf.Tensor]]
    """One optimizer step on a global batch (`_make_train_step`)."""


def build_learner(config: Config, num_classes: int, strategy: tf.distribute.Strategy, *,
                  weights: Path | None = None, start: RunStart | None = None,
                  names: list[str] | None = None) -> Learner:
    """The model (its backbone from `weights`, or the whole detector from the run `start`,
    whose classes are compared with `names`), optimizer, weight average and compiled step,
    their variables made in `strategy`'s scope; on a GPU the step is XLA-compiled where
    ``train.xla`` allows."""
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(config.model, num_classes, weights)
        if start is not None:  # before the weight average copies the weights
            said = start_from_run(model, config.model, start, names)
            if said:
                log.warning("%s", said)
        cluster.synchronise_batchnorm(model, replicas)
        total_steps = tf.Variable(config.train.steps, dtype=tf.int64, trainable=False,
                                  name="total_steps")
        schedule = learning_rate_schedule(config, total_steps)
        optimizer = build_optimizer(config, model, schedule, replicas=replicas)
        average = WeightAverage(model, config.train.ema_decay) if config.train.ema_decay else None
    jit = bool(tf.config.list_logical_devices("GPU")) and config.train.xla
    anchors = make_anchors(config.model)
    loss_fn = DetectionLoss(anchors, num_classes, config.train, config.model, xla=jit)
    train_step = _make_train_step(model, optimizer, loss_fn, strategy, average, jit=jit,
                                  clip_norm=config.train.clip_norm)
    return Learner(model, optimizer, schedule, total_steps, average, anchors, train_step)


def learning_rate_schedule(config: Config, total_steps: tf.Variable | None = None
                           ) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to the configured rate, then cosine decay to 1% of it at `total_steps`
    (default: ``train.steps``)."""
    if total_steps is None:
        total_steps = tf.Variable(config.train.steps, dtype=tf.int64, trainable=False)
    return WarmupCosine(config.train.learning_rate, config.train.warmup_steps, total_steps)


def build_optimizer(config: Config, model: keras.Model,
                    schedule: keras.optimizers.schedules.LearningRateSchedule, *,
                    replicas: int = 1) -> keras.optimizers.Optimizer:
    """AdamW on `schedule`, loss-scaled under mixed precision, built for `model` so that a
    checkpoint can restore its slots. Over several replicas the train step clips the
    gradients itself (`cluster.clipped_global_gradients`)."""
    optimizer: keras.optimizers.Optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.train.weight_decay,
        global_clipnorm=config.train.clip_norm if replicas == 1 else None)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def step_throughput(config: Config, num_classes: int, batch: tuple[Any, Any],
                    steps: int) -> float:
    """Images/s of the training step alone, as `train` compiles it, on one batch held in memory.

    This is the rate the input pipeline has to outrun; bench.train compares the two.
    """
    train_step = build_learner(config, num_classes, tf.distribute.get_strategy()).train_step
    images, targets = batch
    for _ in range(3):  # trace and warm up
        train_step(images, targets)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(images, targets)
    return steps * config.train.batch_size / (time.perf_counter() - started)


def _make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                     loss_fn: DetectionLoss, strategy: tf.distribute.Strategy,
                     average: WeightAverage | None, *, jit: bool, clip_norm: float
                     ) -> Callable[..., dict[str, tf.Tensor]]:
    """One optimizer step on a global batch, however many replicas share it; the losses it
    returns are the global batch's (`cluster.share_of_global_batch`). With `average`, the
    weight average moves after the update."""
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    replicas = strategy.num_replicas_in_sync

    def replica_step(images: tf.Tensor, targets: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            losses = cluster.share_of_global_batch(loss_fn(targets, outputs))
            loss = losses["loss"]
            if scaled:
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        if replicas > 1:
            limit = clip_norm * optimizer.dynamic_scale if scaled else clip_norm
            grads = cluster.clipped_global_gradients(grads, limit, replicas)
        optimizer.apply(grads, model.trainable_variables)
        if average is not None:
            average.update(optimizer.iterations)
        return losses

    @tf.function(jit_compile=jit)
    def compiled(images: tf.Tensor, targets: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return replica_step(images, targets)

    @tf.function
    def distributed(images: Any, targets: Any) -> dict[str, tf.Tensor]:
        per_replica = strategy.run(compiled, args=(images, targets))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    def step(images: Any, targets: Any) -> dict[str, tf.Tensor]:
        if replicas == 1 and not isinstance(images, tf.distribute.DistributedValues):
            return compiled(images, targets)
        return distributed(images, targets)

    return step
