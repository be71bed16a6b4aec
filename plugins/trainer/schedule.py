"""How long a run trains and at what learning rate: the schedule, the time budget, and the
step where mosaic stops (`mosaic_closes`).

The schedule's length is a variable, not a constant, because a run given ``train.minutes``
learns its step count from its own speed: `StepBudget` estimates it while training and the
schedule follows, so the cosine always ends where the run does. The variable is part of the
checkpoint, so a resumed run continues the very same schedule.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from odplug_builtins.trainer.config import AugmentConfig, TrainConfig

FLOOR = 0.01
"""The schedule starts the warm-up at, and decays to, this fraction of the peak rate."""


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 1% to `peak` over `warmup` steps, then cosine decay to 1% of it at
    step `total` (a variable). With a fixed total it equals Keras' ``CosineDecay`` with
    ``warmup_target=peak, alpha=0.01``, which the trainer used before time budgets."""

    def __init__(self, peak: float, warmup: int, total: tf.Variable) -> None:
        self.peak = peak
        self.warmup = warmup
        self.total = total
        self._traced: tuple[object, object, tf.Tensor] | None = None

    def __call__(self, step: tf.Tensor | int) -> tf.Tensor:
        """The rate at `step`, built once per traced graph and step: Keras' AdamW asks for it
        again for every variable it decays, and rebuilding the schedule each time was a large
        share of tracing the training step (docs/training.md, "How fast it trains on a CPU").
        The graph that holds the tensor is the step function's, which its ``tf.function``
        keeps for the run anyway. The value is the same, so the run is unchanged; eagerly the
        rate is computed at every call."""
        if tf.executing_eagerly():
            return self._rate(step)
        graph = tf.compat.v1.get_default_graph()
        if self._traced is None or self._traced[0] is not graph or self._traced[1] is not step:
            self._traced = (graph, step, self._rate(step))
        return self._traced[2]

    def _rate(self, step: tf.Tensor | int) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup)
        start = self.peak * FLOOR
        warming = start + (self.peak - start) * step / max(warmup, 1.0)
        span = tf.maximum(tf.cast(self.total, tf.float32) - warmup, 1.0)
        progress = tf.clip_by_value((step - warmup) / span, 0.0, 1.0)
        cosine = self.peak * (FLOOR + (1 - FLOOR) * 0.5 * (1 + tf.cos(math.pi * progress)))
        return tf.where(step < warmup, warming, cosine)

    def get_config(self) -> dict[str, float | int]:
        return {"peak": self.peak, "warmup": self.warmup}


class StepBudget:
    """The run's step count: `train.steps`, or as many steps as fit in `train.minutes`.

    With a budget the count is re-estimated every `EVERY` steps from the seconds per step so
    far (the first step, which traces the graph, is counted too, as it is real time the budget
    pays for) and the seconds per validation so far, one every `train.eval_every` steps and one
    at the end, and frozen once the run is 80% through, so the last part of the schedule never
    moves. Validations are counted apart because their share grows towards the end: spread
    over the steps as an average, the one at the last step went unforeseen and a raccoon run
    (320 px, 9 minutes) ended 37 s past its budget. A resumed run with a budget keeps the count
    of its checkpoint (the clock of the interrupted part is gone); one without a budget takes
    `train.steps`, which ``--resume --steps N`` may have raised.
    """

    EVERY = 10
    FREEZE_AT = 0.8

    def __init__(self, train: TrainConfig, total: tf.Variable, *, resuming: bool) -> None:
        self.seconds = train.minutes * 60
        self.eval_every = train.eval_every
        self.total = total
        self.frozen = self.seconds <= 0 or resuming
        if not (resuming and self.seconds > 0):
            total.assign(train.steps)

    @property
    def steps(self) -> int:
        return int(self.total.numpy())

    def update(self, step: int, elapsed: float, validations: int = 0,
               validating: float = 0.0) -> int:
        """The step count after `step` steps done in `elapsed` seconds of this session, of
        which `validating` went to the `validations` run so far."""
        if self.frozen or step % self.EVERY:
            return self.steps
        per_step = max(elapsed - validating, 1e-9) / step
        per_validation = validating / validations if validations else 0.0
        # steps * per_step + (steps / eval_every + 1) * per_validation = the budget
        fitting = (self.seconds - per_validation) / (per_step + per_validation / self.eval_every)
        estimate = max(step, int(fitting))
        self.total.assign(estimate)
        if step >= self.FREEZE_AT * estimate:
            self.frozen = True
        return estimate


def mosaic_closes(augment: AugmentConfig, total: int) -> int:
    """The step after which a run of `total` steps trains without mosaic and mixup
    (``augment.close_mosaic``); `total` when it never does."""
    if augment.close_mosaic <= 0 or (augment.mosaic <= 0 and augment.mixup <= 0):
        return total
    return total - round(augment.close_mosaic * total)
