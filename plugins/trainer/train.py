"""The training loop: one code path for a CPU, one GPU, several GPUs and several machines.

A custom loop (rather than ``model.fit``) because the run needs exact resumption (model,
optimizer slots, step and schedule in one ``tf.train.Checkpoint``), best-checkpoint selection
by COCO mAP@[.5:.95] on the validation split, and a distribution strategy chosen from the
machine: MirroredStrategy over all local GPUs, MultiWorkerMirroredStrategy when ``TF_CONFIG``
names a cluster, and the default strategy on a CPU. On a GPU the step uses mixed precision and
XLA where the config allows.

A run goes in parts that hand one state (`_Run`) along: `_build` starts or resumes the run
folder and builds the strategy, the model and what trains it (`learner.build_learner`) and the
checkpoint; `_fit` is the loop, each step logged, checkpointed and validated (`_validate`) at
its intervals; `_finish` scores the test split and writes the SavedModel.

A run changes whole or not at all: the weights files are written beside their names and
renamed (`odplug.atomic.atomic_path`), the SavedModel is filled in a staging folder and swapped
in (`odplug.atomic.replace_folder`; `runfolder.tidy` undoes a swap a kill cut in two), and the
CheckpointManager notes a checkpoint only once it is whole. So a training killed at any point
leaves the previous files, a run ``--resume`` continues, and a ``run.json`` that is not
complete (an export refuses the run until ``--resume`` finishes it). A loss that is no longer
finite stops the run before its step is checkpointed (`_finite`); a write that fails is one
line naming the path (`_writing`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from odplug.atomic import atomic_path, atomic_write_text, replace_folder
from odplug.components import EventCallback, StepCallback, TrainingStatus, TrainingValidation
from odplug.data.labelmap import read_label_map, write_label_map
from odplug.data.shards import shard_files, training_inputs
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.coco import plot_precision_recall, write_metrics
from odplug.model.savedmodel import write_detector
from odplug.pictures.training import read_results
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer import cluster, data, pretrained
from odplug_builtins.trainer.anchors import make_anchors
from odplug_builtins.trainer.config import Config, changed_settings, load_config
from odplug_builtins.trainer.ema import WeightAverage
from odplug_builtins.trainer.evaluation import (
    Evaluation,
    Predict,
    evaluate_model,
    nms,
    predictor,
)
from odplug_builtins.trainer.learner import Learner, build_learner
from odplug_builtins.trainer.model import build_model
from odplug_builtins.trainer.pictures import RunPictures
from odplug_builtins.trainer.runfolder import TRAINER, RunFolder, finished, start
from odplug_builtins.trainer.schedule import StepBudget, mosaic_closes

log = logging.getLogger(__name__)


def choose_strategy() -> tf.distribute.Strategy:
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def train(records: Path, run_dir: Path, *, config_path: Path | None = None,
          overrides: dict[str, Any] | None = None, resume: Resume = "never",
          on_step: StepCallback = lambda step, total, metrics: None,
          on_event: EventCallback = lambda event: None) -> RunInfo:
    """Train on ``records`` (a data.import folder) into ``run_dir``; returns the complete run.

    `resume` says what to do with a run already in `run_dir` (`runfolder.start` decides; a
    finished run that ``required`` cannot take further is returned as it is, after one
    `TrainingStatus` saying so, `runfolder.finished`). ``run.json`` is written when training
    starts, again once the first checkpoint exists (the run can be resumed from then on) and
    last when the SavedModel is in place. Under a multi-worker cluster only the chief writes
    `run_dir` (`cluster`). `on_event` hears each phase without steps and each validation.
    """
    done = finished(run_dir, overrides or {}, resume)
    if done is not None:
        on_event(TrainingStatus(done))
        return RunInfo.read(run_dir)
    me = cluster.role()
    with cluster.own_folder(RunFolder(run_dir), me) as own:
        return _train(records, RunFolder(run_dir), own, me, config_path=config_path,
                      overrides=overrides or {}, resume=resume, on_step=on_step,
                      on_event=on_event)


def _train(records: Path, shared: RunFolder, run: RunFolder, me: cluster.Role, *,
           config_path: Path | None, overrides: dict[str, Any], resume: Resume,
           on_step: StepCallback, on_event: EventCallback) -> RunInfo:
    """`train` as one worker: `run` is the folder it writes (`shared` for the chief)."""
    state = _build(records, shared, run, me, config_path=config_path, overrides=overrides,
                   resume=resume, on_event=on_event)
    return _finish(state, _fit(state, on_step))


@dataclass
class _Run:
    """One worker's run as `_build` makes it and the loop, validation and finish share it."""

    config: Config
    records: Path
    shared: RunFolder
    """The run folder all workers read (`train`'s `run_dir`)."""
    run: RunFolder
    """The folder this worker writes: `shared` for the chief, a scratch folder for the others."""
    me: cluster.Role
    label_map: LabelMap
    info: RunInfo
    resuming: bool
    strategy: tf.distribute.Strategy
    learner: Learner
    step: tf.Variable
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    best: dict[str, Any]
    """best.json: the validation that chose the best weights so far (`_better`)."""
    curve: LearningCurve
    writer: tf.summary.SummaryWriter
    """TensorBoard's, into the run's logs."""
    train_files: list[Path]
    """The train files this worker reads (`cluster.my_files`)."""
    own_files: bool
    val_files: list[Path]
    """Empty for every worker but the chief, which alone validates."""
    curve_files: dict[str, list[Path]]
    predict: Predict
    """The model's forward pass for every evaluation of the run, traced once."""
    tell: EventCallback
    """`train`'s `on_event`: the phases without steps and the validations."""
    pictures: RunPictures
    results: list[dict[str, float]]
    """``results.csv``'s rows: those of the run before a resume, then one per validation."""
    seconds_before: float
    """The training seconds of the run before this process resumed it (its last row's)."""


def _build(records: Path, shared: RunFolder, run: RunFolder, me: cluster.Role, *,
           config_path: Path | None, overrides: dict[str, Any], resume: Resume,
           on_event: EventCallback) -> _Run:
    """The run folder started or resumed (`_open`) and everything the loop needs: the
    strategy, the learner, the checkpoint restored when resuming, the logs."""
    on_event(TrainingStatus("reading the records"))
    label_map, train_files = training_inputs(records)
    val_files = _val_files(records, me)
    config, resuming, info = _open(records, shared, run, me, label_map, config_path=config_path,
                                   overrides=overrides, resume=resume)
    strategy = choose_strategy()
    resuming = cluster.chief_decides(strategy, me, resuming)
    cluster.check_batch(config.train.batch_size, strategy.num_replicas_in_sync)
    cluster.check_budget(config.train.minutes, me)
    if tf.config.list_logical_devices("GPU") and config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.train.seed)  # weight initialisation; data has its own
    on_event(TrainingStatus("building the model"))
    learner = build_learner(config, len(label_map), strategy,
                            weights=None if resuming else pretrained.weights_file(config.model),
                            start=None if resuming else pretrained.run_start(config.model),
                            names=label_map.names)
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        average = learner.average
        checkpoint = tf.train.Checkpoint(model=learner.model, optimizer=learner.optimizer,
                                         step=step, total_steps=learner.total_steps,
                                         **({"ema": average.state} if average else {}))
    best = {"map50": -1.0, "map": -1.0, "step": 0}
    if resuming:
        _restore(checkpoint, shared)
        on_event(TrainingStatus(f"resuming at step {int(step.numpy())}"))
        if run.best.is_file():
            best = json.loads(run.best.read_text())
    read, own_files = cluster.my_files(train_files, me)
    results = _earlier_results(run, int(step.numpy())) if resuming else []
    return _Run(config=config, records=records, shared=shared, run=run, me=me,
                label_map=label_map, info=info, resuming=resuming, strategy=strategy,
                learner=learner, step=step, checkpoint=checkpoint,
                manager=tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=3),
                best=best, curve=LearningCurve(run.metrics / CURVE_FILE, resuming=resuming),
                writer=tf.summary.create_file_writer(str(run.logs)),
                train_files=read, own_files=own_files, val_files=val_files,
                curve_files={split: shard_files(records, split)
                             for split in config.eval.curve_splits},
                predict=predictor(learner.model, config.model.input_size), tell=on_event,
                pictures=RunPictures(run, label_map, config.model.input_size, draws=me.chief),
                results=results,
                seconds_before=float(np.nan_to_num(results[-1]["seconds"])) if results else 0.0)


def _earlier_results(run: RunFolder, step: int) -> list[dict[str, float]]:
    """The rows a run resumed at `step` keeps: those up to it (a validation after the
    checkpoint it resumes from is done again); none, with a warning, from a ``results.csv``
    that cannot be read (someone edited it): a table of the past is no reason to refuse going
    on."""
    if not run.results.is_file():
        return []
    try:
        return [row for row in read_results(run.results) if row["step"] <= step]
    except OdplugError as error:
        log.warning("%s; the resumed run starts a new table", error)
        return []


def _val_files(records: Path, me: cluster.Role) -> list[Path]:
    """The val split, for the chief, which alone validates; none for every other worker."""
    files = shard_files(records, "val") if me.chief else []
    if me.chief and not files:
        log.warning("%s has no val split: the best checkpoint cannot be chosen without looking "
                    "at the test split, so the last one is used (data.import --split ratio "
                    "makes a val split)", records)
    return files


def _open(records: Path, shared: RunFolder, run: RunFolder, me: cluster.Role,
          label_map: LabelMap, *, config_path: Path | None, overrides: dict[str, Any],
          resume: Resume) -> tuple[Config, bool, RunInfo]:
    """The config and whether the run resumes, as the chief decides them (`runfolder.start`)
    and the other workers follow (`cluster.follow`); the label map and the first ``run.json``
    in the folder this worker writes."""
    if me.chief:
        config, resuming = start(records, run, config_path, overrides, resume)
    else:
        config, resuming = cluster.follow(shared, config_path, overrides, resume), False
    write_label_map(label_map, run.label_map)
    info = RunInfo(run_dir=run.root, trainer=TRAINER, records=records.resolve(),
                   label_map=run.label_map, saved_model=run.saved_model, complete=False,
                   resumable=resuming, logs=run.logs).write()
    return config, resuming, info


def _restore(checkpoint: tf.train.Checkpoint, shared: RunFolder) -> None:
    """The latest checkpoint of the run, which every worker reads from the shared folder."""
    latest = tf.train.latest_checkpoint(str(shared.checkpoints))
    if latest is None:
        raise OdplugError(f"{shared.checkpoints}: no checkpoint to resume from")
    checkpoint.restore(latest).assert_existing_objects_matched()


@dataclass
class _Clock:
    """The loop's time: its seconds of training (`EvalConfig.curve_splits` left out), what the
    validations took (the budget foresees the ones to come from it), and the window since the
    last log that images/s is measured over."""

    started: float = field(default_factory=time.perf_counter)
    excluded: float = 0.0
    validations: int = 0
    validating: float = 0.0
    window_start: float = field(init=False)
    window_images: int = 0
    window_measures: bool = False
    """Whether the window holds only steps that ran, not the first one, which traces."""
    rates: list[float] = field(default_factory=list)
    """Every images/s logged (the summary's number is their median)."""
    trained: float = 0.0
    """`seconds` when the last step was done."""

    def __post_init__(self) -> None:
        self.window_start = self.started

    def seconds(self) -> float:
        return time.perf_counter() - self.started - self.excluded


class _Means:
    """The mean of each loss term over the steps since it was last taken: what a row of
    ``results.csv`` says of the losses (one step's loss is too noisy to compare by)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def take(self) -> dict[str, float]:
        means = {name: total / max(self.steps, 1) for name, total in self.sums.items()}
        self.sums, self.steps = {}, 0
        return means


class _Batches:
    """The loop's global batches from step `start` on, from this worker's files.

    ``augment.close_mosaic`` trains the last steps without mosaic and mixup: the pipeline is
    rebuilt, reseeded (`_reseeded`), at the step where they end, and never turned back on,
    even when a time budget later moves the end.
    """

    def __init__(self, state: _Run, start: int, total: int) -> None:
        self.state = state
        self.closed = start >= mosaic_closes(state.config.augment, total)
        self.iterator = self._pipeline(start)

    def next(self, current: int, total: int) -> Any:
        """The batch of step ``current + 1`` of `total`."""
        if not self.closed and current >= mosaic_closes(self.state.config.augment, total):
            self.closed = True
            self.iterator = self._pipeline(current)
            self.state.tell(TrainingStatus(f"step {current}: mosaic and mixup off for the "
                                           f"last {total - current} steps "
                                           "(augment.close_mosaic)"))
        return next(self.iterator)

    def augmentation(self) -> str:
        """What the batches go through, in words, for the picture of one of them."""
        augment = self.state.config.augment
        mixed = ("mosaic and mixup off (augment.close_mosaic)" if self.closed
                 else f"mosaic p={augment.mosaic:g}, mixup p={augment.mixup:g}")
        return (f"crop p={augment.crop_probability:g}, flip {'on' if augment.flip else 'off'}, "
                f"colour jitter, {mixed}")

    def _pipeline(self, start: int) -> Iterator[Any]:
        state, config = self.state, self.state.config
        augment = (replace(config.augment, mosaic=0.0, mixup=0.0) if self.closed
                   else config.augment)
        dataset = cluster.split_by_data(
            data.train_dataset(state.train_files, state.label_map, config.model,
                               _reseeded(config, start), augment),
            state.own_files)
        return data.checked(state.strategy.experimental_distribute_dataset(dataset),
                            state.train_files)


def _fit(state: _Run, on_step: StepCallback) -> _Clock:
    """Train from the checkpoint's step to the last the budget allows: each step logged,
    checkpointed and validated at its intervals, and always at the last; the first batch
    drawn (`RunPictures.batch`). Returns the loop's clock, for the run's summary."""
    train = state.config.train
    start = int(state.step.numpy())
    budget = StepBudget(train, state.learner.total_steps, resuming=state.resuming)
    current, total = start, budget.steps
    batches = _Batches(state, start, total)
    clock = _Clock()
    means = _Means()
    metrics: dict[str, float] = {}
    with op_determinism(train.deterministic):
        while current < total:
            if current == start:
                state.tell(TrainingStatus("reading the first batch"))
            images, targets = batches.next(current, total)
            if current == start:
                state.pictures.batch(state.strategy, images, targets, current + 1,
                                     batches.augmentation())
                state.tell(TrainingStatus("tracing the training step"))
            current += 1
            losses = _finite(state, current, state.learner.train_step(images, targets))
            means.add(losses)
            state.step.assign(current)
            clock.window_images += train.batch_size
            total = budget.update(current, clock.seconds(), clock.validations,
                                  clock.validating)
            if current % train.log_every == 0 or current == total or current == start + 1:
                metrics = _log(state, clock, current, losses)
            on_step(current, total, metrics)
            if current % train.checkpoint_every == 0 or current == total:
                _checkpoint(state, current)
            if current % train.eval_every == 0 or current == total:
                if state.val_files:
                    _validate(state, clock, current, total, losses, means.take())
                else:
                    _record(state, clock, current, means.take(), {})
    clock.trained = clock.seconds()
    return clock


def _finite(state: _Run, current: int, losses: dict[str, tf.Tensor]) -> dict[str, float]:
    """The step's losses, read on the host; a term that is no longer finite stops the run
    before the step can be checkpointed, naming the step, the term and the learning rate.

    Read at every step, not only at log steps: a loss gone NaN between two logs would
    otherwise reach the next checkpoint, and every later step, as NaN weights."""
    values = {k: float(v) for k, v in losses.items()}
    if np.isfinite(values["loss"]):
        return values
    terms = [k for k in ("classification", "box") if not np.isfinite(values[k])]
    what = (" and ".join(terms) + (" losses" if len(terms) > 1 else " loss")) if terms \
        else "loss"
    saved = state.run.last_step()
    kept = (f"the run keeps its checkpoint of step {saved}: continue it with model.train "
            "--resume --set train.learning_rate=<lower>" if saved is not None
            else "no checkpoint was saved yet: start again with a lower train.learning_rate")
    raise OdplugError(
        f"step {current}: the {what} became {values['loss']} at learning rate "
        f"{float(state.learner.schedule(current)):.3g}; training stopped and {kept} (or raise "
        "train.warmup_steps)")


def _checkpoint(state: _Run, current: int) -> None:
    """Save the step's checkpoint; the first one makes the run resumable (``run.json``).

    A write that fails (a full disk) stops the run with one line naming the folder; the
    CheckpointManager notes a checkpoint only once it is whole, so the previous one stays the
    one ``--resume`` continues from."""
    saved = state.run.last_step()
    kept = (f"the run keeps its checkpoint of step {saved}; free space, then continue it "
            "with model.train --resume" if saved is not None
            else "no checkpoint was saved yet; free space, then start again")
    with _writing(state.run.checkpoints, f"the checkpoint of step {current}", kept):
        state.manager.save(checkpoint_number=current)
        if not state.info.resumable:
            state.info = replace(state.info, resumable=True).write()


@contextmanager
def _writing(path: Path, what: str, kept: str) -> Iterator[None]:
    """A write of the run that fails (a full disk, a file system gone read-only) as one line:
    the path, what was written, what the run keeps."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        raise OdplugError(f"{path}: cannot write {what}: {_reason(error)}; {kept}") from None


def _reason(error: OSError | tf.errors.OpError) -> str:
    """The system's words for a failed write (``No space left on device``), without the
    temporary file's name and the op that TensorFlow's message wraps them in."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = re.sub(r"\s*\[Op:\w+\]$", "", error.message.strip())
    return text.rpartition("; ")[2] or text


def _save_weights(model: keras.Model, path: Path) -> None:
    """`model`'s weights as `path`, whole or not at all: written beside it and renamed, so a
    kill or a full disk leaves the previous file's bytes."""
    with _writing(path, "the weights", "the previous file is as it was"), \
            atomic_path(path) as partial:
        model.save_weights(str(partial))


def _log(state: _Run, clock: _Clock, current: int, losses: dict[str, float]
         ) -> dict[str, float]:
    """The step's losses, images/s since the last log (left out when the window holds the
    first step, whose tracing would make it meaningless) and the learning rate, also written
    to TensorBoard."""
    elapsed = time.perf_counter() - clock.window_start
    metrics = dict(losses)
    if clock.window_measures:
        metrics["images_per_second"] = clock.window_images / max(elapsed, 1e-9)
        clock.rates.append(metrics["images_per_second"])
    metrics["learning_rate"] = float(state.learner.schedule(current))
    _summaries(state.writer, current, {"train": metrics})
    clock.window_start, clock.window_images = time.perf_counter(), 0
    clock.window_measures = True
    return metrics


def _validate(state: _Run, clock: _Clock, current: int, total: int,
              losses: dict[str, float], means: dict[str, float]) -> None:
    """Score the val split, and the `EvalConfig.curve_splits` outside the clock, with the
    weights as they would be exported (the average, when kept); keep them if they are the best
    so far; add the point to the learning curve, TensorBoard and ``results.csv`` (`_record`,
    with the `means` of the losses since the last one), draw the val images
    (`RunPictures.validation`), and tell `on_event`."""
    state.tell(TrainingStatus("validating", during_steps=True))
    began = time.perf_counter()
    model = state.learner.model
    with _averaged(state.learner.average):
        evaluation = _evaluate(state, state.val_files)
        result = evaluation.result
        point = {"val": _scores(result)}
        extra_began = time.perf_counter()
        for split, files in state.curve_files.items():
            if files:
                point[split] = _scores(_evaluate(state, files).result)
        extra = time.perf_counter() - extra_began
        clock.excluded += extra
        if _better(result.map, result.map50, state.best):
            state.best = {"map50": result.map50, "map": result.map, "step": current}
            _save_weights(model, state.run.best_weights)
            atomic_write_text(state.run.best, json.dumps(state.best, indent=2) + "\n")
    _summaries(state.writer, current, point)
    state.curve.add(step=current, seconds=clock.seconds(),
                    images=current * state.config.train.batch_size, **point)
    _record(state, clock, current, means, point)
    state.pictures.validation(evaluation, state.val_files, current, state.writer)
    clock.window_start, clock.window_images = time.perf_counter(), 0
    clock.validations += 1
    clock.validating += clock.window_start - began - extra
    best = state.best
    state.tell(TrainingValidation(
        step=current, total=total, losses=dict(losses),
        map50=float(result.map50), map=float(result.map), best_step=int(best["step"]),
        best_map=float(best.get("map", -1.0)), best_map50=float(best["map50"])))


def _record(state: _Run, clock: _Clock, current: int, means: dict[str, float],
            point: dict[str, dict[str, float]]) -> None:
    """A row of ``results.csv`` (`odplug.pictures.training`) and the curves redrawn from all.

    ``seconds`` are training seconds as ``metrics/curve.json`` counts them (validation
    included, `EvalConfig.curve_splits` left out), but go on from the last row of the run
    before a resume rather than from 0, so the curves against seconds never run backwards;
    each loss column is the MEAN of that term over the steps since the previous row, not the
    last step's value; ``learning_rate`` is the schedule's at `current`; then
    ``<split>_map50`` and ``<split>_map`` for val and each curve split."""
    if not state.me.chief:
        return
    state.results.append({
        "step": current, "seconds": state.seconds_before + clock.seconds(),
        "images": current * state.config.train.batch_size, **means,
        "learning_rate": float(state.learner.schedule(current)),
        **{f"{split}_{name}": value for split, scores in point.items()
           for name, value in scores.items()}})
    state.pictures.results(state.results)


def _finish(state: _Run, clock: _Clock) -> RunInfo:
    """After the last step: the last weights (averaged, if kept) saved, the best ones scored on
    the test split (and drawn: `RunPictures.test`) and written as the SavedModel, ``run.json``
    complete with the run's results, pictures and summary (`_summary`); every worker then
    waits for the others (`cluster.all_done`)."""
    run, model, learner = state.run, state.learner.model, state.learner
    state.writer.flush()
    if learner.average is not None:
        learner.average.apply()
    cluster.report(state.me, model)
    _save_weights(model, run.last_weights)
    if run.best_weights.is_file():
        model.load_weights(str(run.best_weights))
    test_files = shard_files(state.records, "test") if state.me.chief else []
    info = state.info
    if test_files:
        state.tell(TrainingStatus("scoring the test split"))
        evaluation = _evaluate(state, test_files)
        result = evaluation.result
        write_metrics(result, run.metrics / "test.json")
        plot_precision_recall(result, run.metrics / "test-pr.png", title=f"{run.root.name}: test")
        state.pictures.test(evaluation, test_files)
        info = replace(info, metrics={"test": {"map50": result.map50, "map": result.map}},
                       metrics_dir=run.metrics)
    info = replace(info, results=run.results if run.results.is_file() else None,
                   pictures=state.pictures.written(), summary=_summary(state, clock))
    state.tell(TrainingStatus("writing the SavedModel"))
    with _writing(run.saved_model, "the SavedModel", "the run is not complete; free space, "
                  "then finish it with model.train --resume"), \
            replace_folder(run.saved_model) as staging:
        write_detector(model, learner.anchors, state.label_map, state.config.model.input_size,
                       staging, nms=nms(state.config.eval))
    info = replace(info, complete=True).write()
    cluster.all_done(state.strategy, state.me)
    return info


def _summary(state: _Run, clock: _Clock) -> dict[str, Any]:
    """``run.json``'s summary: training seconds (on from before a resume, as in
    ``results.csv``), steps, the median of the logged images/s (None when none was
    measured: a run of a step or two), the settings that differ from the defaults, and the
    seconds this process spent drawing, by picture."""
    seconds = state.seconds_before + clock.trained
    if state.pictures.seconds:
        log.info("drawing took %.2f s (%s)", sum(state.pictures.seconds.values()),
                 ", ".join(f"{k} {v:.2f}" for k, v in state.pictures.seconds.items()))
    return {"seconds": round(seconds, 3), "steps": int(state.step.numpy()),
            "images_per_second": float(np.median(clock.rates)) if clock.rates else None,
            "changed": changed_settings(state.config),
            "drawing_seconds": {k: round(v, 3) for k, v in state.pictures.seconds.items()}}


def _evaluate(state: _Run, files: list[Path]) -> Evaluation:
    return evaluate_model(state.learner.model, files, state.label_map, state.learner.anchors,
                          state.config, state.predict)


def _summaries(writer: tf.summary.SummaryWriter, step: int,
               groups: dict[str, dict[str, float]]) -> None:
    """TensorBoard scalars ``group/name`` at `step`."""
    with writer.as_default(step=step):
        for group, values in groups.items():
            for name, value in values.items():
                tf.summary.scalar(f"{group}/{name}", value)


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
