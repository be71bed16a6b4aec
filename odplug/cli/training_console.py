"""What a training shows on the console: its phases, its steps and its validations.

A trainer reports through two callbacks (`odplug.components.Trainer.train`): ``on_step`` after
every step, ``on_event`` for each phase without steps (`TrainingStatus`: reading the records,
building the model, tracing the first step, scoring the test split, writing the SavedModel)
and each validation (`TrainingValidation`). `TrainingConsole` turns them into lines a person
reads, in fixed columns, each stamped with the seconds since the command started:

    [     3 s] building the model
    [    41 s] step  100/1000  loss  1.234  class  0.801  box  0.433  lr 2.98e-03  img/s   61.2
    [    52 s] step  200/1000  loss  0.912  class  0.590  box  0.322  val mAP@.5 0.412
              mAP@[.5:.95] 0.187  best 0.187 (step 200, new)        (one line on the console)

On an interactive terminal the steps move a rich progress bar (its status: the loss, images/s
and the best validation) and every other line is printed above it, where it stays; in logs and
CI there is no bar, and one step line in `lines` of the run is printed besides. Images/s is
shown once the trainer has measured it (a window of steps without the first, which traces);
until then its column holds ``-``, so the columns never move. TensorFlow-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from odplug.cli.console import Bar
from odplug.components import TrainingEvent, TrainingStatus, TrainingValidation

LOSSES = (("loss", "loss"), ("classification", "class"), ("box", "box"))
"""Metric names a trainer reports and what the console calls them, in column order."""
RATE = ("learning_rate", "lr")
SPEED = ("images_per_second", "img/s")


class TrainingConsole:
    """A training's `on_step` and `on_event`, drawn on `bar` (`odplug.cli.console.Bar`).

    The columns are chosen at the first step from the metrics the trainer reports (``loss``
    always; the others when present) and then kept, whatever later steps report.
    """

    def __init__(self, bar: Bar, started: float, *, lines: int = 20,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.bar = bar
        self.started = started
        self.lines = lines
        self.clock = clock
        self.losses: tuple[tuple[str, str], ...] = ()
        self.rate = False
        self.best = ""
        self.metrics: dict[str, float] = {}
        self.printed: tuple[int, dict[str, float]] = (0, {})
        """The step and metrics of the last plain step line."""

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        if self.bar.total is None:
            self.bar.start(total, completed=step - 1)
        elif total != self.bar.total:
            self.bar.set_total(total)
        if not self.losses:
            self.losses = tuple(c for c in LOSSES if c[0] in metrics) or (LOSSES[0],)
            self.rate = RATE[0] in metrics
        self.metrics = metrics
        self.bar.advance(1, status=self._status(metrics))
        if not self.bar.interactive and self._line_due(step, total, metrics):
            self.printed = (step, dict(metrics))
            columns = [self._losses(metrics)]
            if self.rate:
                columns.append(_column(RATE[1], metrics.get(RATE[0]), "8.2e"))
            columns.append(_column(SPEED[1], metrics.get(SPEED[0]), "6.1f"))
            self._print(f"{_step(step, total)}  {'  '.join(columns)}")

    def _line_due(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        """A plain step line every `lines`-th of the run, and only with news: a trainer logs
        its losses every few steps (``train.log_every``) and passes the same ones in between,
        so a line with nothing new would repeat the last one. The last step always has one."""
        last_step, last_metrics = self.printed
        if step == total:
            return True
        return step - last_step >= max(1, total // self.lines) and metrics != last_metrics

    def on_event(self, event: TrainingEvent) -> None:
        if isinstance(event, TrainingValidation):
            self._validation(event)
        elif isinstance(event, TrainingStatus) and event.during_steps:
            self.bar.advance(0, status=f"{event.text}...")
        elif isinstance(event, TrainingStatus):
            self._print(event.text)

    def _validation(self, event: TrainingValidation) -> None:
        new = ", new" if event.best_step == event.step else ""
        self.best = f"best mAP@[.5:.95] {event.best_map:.3f} (step {event.best_step})"
        self._print(f"{_step(event.step, event.total)}  {self._losses(event.losses)}  "
                    f"val mAP@.5 {event.map50:.3f}  mAP@[.5:.95] {event.map:.3f}  "
                    f"best {event.best_map:.3f} (step {event.best_step}{new})")
        self.bar.advance(0, status=self._status(self.metrics))

    def _status(self, metrics: dict[str, float]) -> str:
        """The bar's status: the loss, images/s once measured and the best validation."""
        parts = [_column("loss", metrics.get("loss"), ".3f", pad=False)]
        if SPEED[0] in metrics:
            parts.append(_column(SPEED[1], metrics[SPEED[0]], ".1f", pad=False))
        return "  ".join(parts + ([self.best] if self.best else []))

    def _losses(self, values: dict[str, float]) -> str:
        return "  ".join(_column(shown, values.get(name), "6.3f") for name, shown in self.losses)

    def _print(self, text: str) -> None:
        self.bar.print(f"[{self.clock() - self.started:6.0f} s] {text}")


def _step(step: int, total: int) -> str:
    return f"step {step:>{len(str(total))}}/{total}"


def _column(name: str, value: float | None, spec: str, *, pad: bool = True) -> str:
    """``name value``, the value right-aligned in the width `spec` gives; ``-`` for none."""
    if value is None:
        width = len(format(0.0, spec)) if pad else 1
        return f"{name} {'-':>{width}}"
    return f"{name} {value:{spec}}"
