"""The training loop: one code path for a CPU, one GPU, several GPUs and several machines.

A custom loop (rather than ``model.fit``) because the run needs exact resumption (model,
optimizer slots, step and schedule in one ``tf.train.Checkpoint``), best-checkpoint selection
by COCO mAP@[.5:.95] on the validation split, and a distribution strategy chosen from the
machine: MirroredStrategy over all local GPUs, MultiWorkerMirroredStrategy when ``TF_CONFIG``
names a cluster, and the default strategy on a CPU. On a GPU the step uses mixed precision and
XLA where the config allows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from odplug.atomic import atomic_write_text
from odplug.data.labelmap import read_label_map, write_label_map
from odplug.data.shards import shard_files, training_inputs
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.coco import plot_precision_recall, write_metrics
from odplug.model.savedmodel import write_detector
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer import cluster, data, pretrained
from odplug_builtins.trainer.anchors import make_anchors
from odplug_builtins.trainer.config import Config, load_config
from odplug_builtins.trainer.ema import WeightAverage
from odplug_builtins.trainer.evaluation import evaluate_model, nms
from odplug_builtins.trainer.loss import DetectionLoss
from odplug_builtins.trainer.model import build_model
from odplug_builtins.trainer.runfolder import TRAINER, RunFolder, start
from odplug_builtins.trainer.schedule import StepBudget, WarmupCosine, mosaic_closes

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, dict[str, float]], None]


def choose_strategy() -> tf.distribute.Strategy:
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def train(records: Path, run_dir: Path, *, config_path: Path | None = None,
          overrides: dict[str, Any] | None = None, resume: Resume = "never",
          on_step: StepCallback = lambda step, total, metrics: None) -> RunInfo:
    """Train on ``records`` (a data.import folder) into ``run_dir``; returns the complete run.

    `resume` says what to do with a run already in `run_dir` (`runfolder.start` decides).
    ``run.json`` is written when training starts, again once the first checkpoint exists (the
    run can be resumed from then on) and last when the SavedModel is in place. Under a
    multi-worker cluster only the chief writes `run_dir` (`cluster`).
    """
    me = cluster.role()
    with cluster.own_folder(RunFolder(run_dir), me) as own:
        return _train(records, RunFolder(run_dir), own, me, config_path=config_path,
                      overrides=overrides or {}, resume=resume, on_step=on_step)


def _train(records: Path, shared: RunFolder, run: RunFolder, me: cluster.Role, *,
           config_path: Path | None, overrides: dict[str, Any], resume: Resume,
           on_step: StepCallback) -> RunInfo:
    """`train` as one worker: `run` is the folder it writes (`shared` for the chief)."""
    label_map, train_files = training_inputs(records)
    val_files = shard_files(records, "val") if me.chief else []
    if me.chief and not val_files:
        log.warning("%s has no val split: the best checkpoint cannot be chosen without looking "
                    "at the test split, so the last one is used (data.import --split ratio "
                    "makes a val split)", records)
    if me.chief:
        config, resuming = start(records, run, config_path, overrides, resume)
    else:
        config, resuming = cluster.follow(shared, config_path, overrides, resume), False
    write_label_map(label_map, run.label_map)
    info = RunInfo(run_dir=run.root, trainer=TRAINER, records=records.resolve(),
                   label_map=run.label_map, saved_model=run.saved_model, complete=False,
                   resumable=resuming, logs=run.logs).write()

    strategy = choose_strategy()
    resuming = cluster.chief_decides(strategy, me, resuming)
    cluster.check_batch(config.train.batch_size, strategy.num_replicas_in_sync)
    cluster.check_budget(config.train.minutes, me)
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if on_gpu and config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    anchors = make_anchors(config.model)
    keras.utils.set_random_seed(config.train.seed)  # weight initialisation; data has its own
    with strategy.scope():
        model = build_model(config.model, len(label_map),
                            None if resuming else pretrained.weights_file(config.model))
        cluster.synchronise_batchnorm(model, strategy.num_replicas_in_sync)
        total_steps = tf.Variable(config.train.steps, dtype=tf.int64, trainable=False,
                                  name="total_steps")
        schedule = learning_rate_schedule(config, total_steps)
        optimizer = build_optimizer(config, model, schedule,
                                    replicas=strategy.num_replicas_in_sync)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        average = WeightAverage(model, config.train.ema_decay) if config.train.ema_decay else None
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                         total_steps=total_steps,
                                         **({"ema": average.state} if average else {}))
    manager = tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=3)
    best = {"map50": -1.0, "map": -1.0, "step": 0}
    if resuming:
        latest = tf.train.latest_checkpoint(str(shared.checkpoints))
        if latest is None:
            raise OdplugError(f"{shared.checkpoints}: no checkpoint to resume from")
        checkpoint.restore(latest).assert_existing_objects_matched()
        if run.best.is_file():
            best = json.loads(run.best.read_text())
        log.info("resuming at step %d", int(step.numpy()))
    start_step = int(step.numpy())
    budget = StepBudget(config.train, total_steps, resuming=resuming)
    jit = on_gpu and config.train.xla
    loss_fn = DetectionLoss(anchors, len(label_map), config.train, config.model, xla=jit)
    curve = LearningCurve(run.metrics / CURVE_FILE, resuming=resuming)
    curve_files = {split: shard_files(records, split) for split in config.eval.curve_splits}

    read, own_files = cluster.my_files(train_files, me)

    def batches(start: int, closed: bool) -> Iterator[Any]:
        augment = replace(config.augment, mosaic=0.0, mixup=0.0) if closed else config.augment
        dataset = cluster.split_by_data(
            data.train_dataset(read, label_map, config.model, _reseeded(config, start), augment),
            own_files)
        return data.checked(strategy.experimental_distribute_dataset(dataset), read)

    closed = start_step >= mosaic_closes(config.augment, budget.steps)
    iterator = batches(start_step, closed)
    train_step = _make_train_step(model, optimizer, loss_fn, strategy, average, jit=jit,
                                  clip_norm=config.train.clip_norm)
    writer = tf.summary.create_file_writer(str(run.logs))
    batch = config.train.batch_size
    started = time.perf_counter()
    excluded = 0.0  # seconds spent on curve_splits, which the clock leaves out
    validations, validating = 0, 0.0  # what the budget needs to foresee the ones to come
    window_start, window_images = started, 0
    total = budget.steps
    metrics: dict[str, float] = {}
    current = start_step
    with op_determinism(config.train.deterministic):
        while current < total:
            if not closed and current >= mosaic_closes(config.augment, total):
                closed = True
                iterator = batches(current, closed)
                log.info("step %d: mosaic and mixup off for the last %d steps "
                         "(augment.close_mosaic)", current, total - current)
            current += 1
            images, targets = next(iterator)
            losses = train_step(images, targets)
            step.assign(current)
            window_images += batch
            total = budget.update(current, time.perf_counter() - started - excluded,
                                  validations, validating)
            if (current % config.train.log_every == 0 or current == total
                    or current == start_step + 1):
                elapsed = time.perf_counter() - window_start
                metrics = {k: float(v) for k, v in losses.items()}
                if not np.isfinite(metrics["loss"]):
                    raise OdplugError(f"the loss became {metrics['loss']} at step {current}; "
                                      "lower train.learning_rate or raise train.warmup_steps")
                metrics["images_per_second"] = window_images / max(elapsed, 1e-9)
                metrics["learning_rate"] = float(schedule(current))
                with writer.as_default(step=current):
                    for name, value in metrics.items():
                        tf.summary.scalar(f"train/{name}", value)
                window_start, window_images = time.perf_counter(), 0
            on_step(current, total, metrics)
            if current % config.train.checkpoint_every == 0 or current == total:
                manager.save(checkpoint_number=current)
                if not info.resumable:
                    info = replace(info, resumable=True).write()
            if val_files and (current % config.train.eval_every == 0 or current == total):
                validation_started = time.perf_counter()
                with _averaged(average):
                    result = evaluate_model(model, val_files, label_map, anchors, config)
                    point = {"val": _scores(result)}
                    extra_started = time.perf_counter()
                    for split, files in curve_files.items():
                        if files:
                            point[split] = _scores(evaluate_model(model, files, label_map,
                                                                  anchors, config))
                    extra = time.perf_counter() - extra_started
                    excluded += extra
                    if _better(result.map, result.map50, best):
                        best = {"map50": result.map50, "map": result.map, "step": current}
                        model.save_weights(str(run.best_weights))
                        atomic_write_text(run.best, json.dumps(best, indent=2) + "\n")
                with writer.as_default(step=current):
                    for split, scores in point.items():
                        for name, value in scores.items():
                            tf.summary.scalar(f"{split}/{name}", value)
                curve.add(step=current, seconds=time.perf_counter() - started - excluded,
                          images=current * batch, **point)
                metrics["val_map50"] = result.map50
                window_start = time.perf_counter()
                validations += 1
                validating += window_start - validation_started - extra
    writer.flush()
    if average is not None:
        average.apply()
    cluster.report(me, model)
    model.save_weights(str(run.last_weights))
    if run.best_weights.is_file():
        model.load_weights(str(run.best_weights))
    test_files = shard_files(records, "test") if me.chief else []
    if test_files:
        result = evaluate_model(model, test_files, label_map, anchors, config)
        write_metrics(result, run.metrics / "test.json")
        plot_precision_recall(result, run.metrics / "test-pr.png", title=f"{run.root.name}: test")
        info = replace(info, metrics={"test": {"map50": result.map50, "map": result.map}},
                       metrics_dir=run.metrics)
    write_detector(model, anchors, label_map, config.model.input_size, run.saved_model,
                   nms=nms(config.eval))
    info = replace(info, complete=True).write()
    cluster.all_done(strategy, me)
    return info


CURVE_FILE = "curve.json"


class LearningCurve:
    """``metrics/curve.json``: the scores of every validation against steps and seconds.

    One row per validation: ``step``, ``seconds`` of training so far (validation included,
    `EvalConfig.curve_splits` left out), ``images`` seen, and ``val`` (and each curve split)
    as ``{"map50", "map"}``. Rewritten whole at each row, so it is always valid JSON; a
    resumed run appends to its rows (its seconds start again from 0 at the resume).
    """

    def __init__(self, path: Path, *, resuming: bool) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resuming and path.is_file():
            self.rows = json.loads(path.read_text())["points"]

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"points": self.rows}, indent=1) + "\n")


def _better(map_: float, map50: float, best: dict[str, Any]) -> bool:
    """Whether a validation beats the best so far: by mAP@[.5:.95], then mAP@.5.

    Not by mAP@.5 alone: on the demo it saturates near 0.97 by mid-run, and choosing by it
    kept step 600 of a 1000-step run (test mAP@[.5:.95] 0.768) over the last (0.804).
    A best.json written before carries only "map50" for older runs' comparisons to go on.
    """
    return (map_, map50) > (best.get("map", -1.0), best["map50"])


def _scores(result: Any) -> dict[str, float]:
    return {"map50": float(result.map50), "map": float(result.map)}


@contextmanager
def _averaged(average: WeightAverage | None) -> Iterator[None]:
    if average is None:
        yield
    else:
        with average.swapped_in():
            yield


@contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """TensorFlow's deterministic op implementations inside the block, as it was after it.

    TensorFlow offers only a process-wide switch; the previous state is put back (through the
    private ``disable_op_determinism``, the public API having no off switch) so a library
    caller, or the next test, is not left with slower ops it did not ask for.
    """
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    if enabled and not before:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and not before:
            tf_config.disable_op_determinism()


def _reseeded(config: Config, start: int) -> Any:
    """The train config with the data seed moved on by `start`: the step a resumed run starts
    at, or the one where `augment.close_mosaic` rebuilds the input pipeline."""
    return replace(config.train, seed=config.train.seed + start)


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
    model = build_model(config.model, num_classes)
    optimizer = build_optimizer(config, model, learning_rate_schedule(config))
    jit = bool(tf.config.list_logical_devices("GPU")) and config.train.xla
    loss_fn = DetectionLoss(make_anchors(config.model), num_classes, config.train,
                            config.model, xla=jit)
    average = WeightAverage(model, config.train.ema_decay) if config.train.ema_decay else None
    train_step = _make_train_step(model, optimizer, loss_fn, tf.distribute.get_strategy(),
                                  average, jit=jit, clip_norm=config.train.clip_norm)
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


def load_run_model(run_dir: Path) -> tuple[keras.Model, Config, LabelMap, np.ndarray]:
    """The run's best (else last) Keras model with its config, label map and anchors."""
    run = RunFolder(run_dir)
    if not run.config.is_file():
        raise OdplugError(f"{run_dir}: not a training run (no {run.config.name})")
    config = load_config(run.config)
    label_map = read_label_map(run.label_map)
    model = build_model(config.model, len(label_map))
    for weights in (run.best_weights, run.last_weights):
        if weights.is_file():
            model.load_weights(str(weights))
            return model, config, label_map, make_anchors(config.model)
    raise OdplugError(f"{run_dir}: the run has no trained weights yet (it never finished; "
                      "continue it with --resume)")
