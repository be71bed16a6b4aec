"""The training console fed events as a trainer sends them: start-up and finishing phases as
lines, step lines in fixed columns, images/s only once measured, one line per validation with
the best so far; on a terminal the steps move the bar and the lines go above it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from odplug.cli.console import Bar
from odplug.cli.training_console import TrainingConsole
from odplug.components import TrainingStatus, TrainingValidation

STEP = {"loss": 1.5, "classification": 1.0, "box": 0.5, "positives": 12.0,
        "learning_rate": 3e-3}


class FakeProgress:
    """What `Bar` asks of rich's Progress, recorded."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.printed: list[str] = []
        self.console = self

    def add_task(self, description: str, **fields: Any) -> int:
        self.tasks.append({"description": description, **fields})
        return 0

    def update(self, task: int, **fields: Any) -> None:
        self.updates.append(fields)

    def print(self, line: str, **style: Any) -> None:
        assert style == {"markup": False, "highlight": False}, "mAP@[.5:.95] is not markup"
        self.printed.append(line)


def _seconds() -> Any:
    ticks = iter(range(100, 10_000))
    return lambda: float(next(ticks))


def _plain(capsys: pytest.CaptureFixture[str], lines: int = 20) -> TrainingConsole:
    return TrainingConsole(Bar(None, "training", interactive=False), 0.0, lines=lines,
                           clock=_seconds())


def _a_run(console: TrainingConsole) -> None:
    """What the ssd trainer sends for a 20-step run validated at 10 and 20."""
    for phase in ("reading the records", "building the model", "reading the first batch",
                  "tracing the training step"):
        console.on_event(TrainingStatus(phase))
    best = (0, -1.0, -1.0)
    for step in range(1, 21):
        metrics = dict(STEP, loss=2.0 - step / 20)
        if step > 1:
            metrics["images_per_second"] = 61.25
        console.on_step(step, 20, metrics)
        if step % 10 == 0:
            console.on_event(TrainingStatus("validating", during_steps=True))
            score = 0.25 if step == 10 else 0.2
            best = max(best, (step, score, score * 2), key=lambda b: b[1])
            console.on_event(TrainingValidation(
                step=step, total=20, losses=metrics, map50=score * 2, map=score,
                best_step=best[0], best_map=best[1], best_map50=best[2]))
    console.on_event(TrainingStatus("scoring the test split"))
    console.on_event(TrainingStatus("writing the SavedModel"))


def test_plain_lines_name_every_phase_step_and_validation(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    _a_run(_plain(capsys, lines=4))
    out = capsys.readouterr().out.splitlines()
    assert all(re.match(r"^\[ +\d+ s\] ", line) for line in out), out
    texts = [line.split("] ", 1)[1] for line in out]
    assert texts[:4] == ["reading the records", "building the model", "reading the first batch",
                         "tracing the training step"]
    assert texts[-2:] == ["scoring the test split", "writing the SavedModel"]
    steps = [t for t in texts if t.startswith("step") and "val" not in t]
    assert [t.split()[1] for t in steps] == ["5/20", "10/20", "15/20", "20/20"]
    assert steps[0] == ("step  5/20  loss  1.750  class  1.000  box  0.500  lr 3.00e-03  "
                        "img/s   61.2")
    validations = [t for t in texts if "val mAP" in t]
    assert validations == [
        "step 10/20  loss  1.500  class  1.000  box  0.500  val mAP@.5 0.500  "
        "mAP@[.5:.95] 0.250  best 0.250 (step 10, new)",
        "step 20/20  loss  1.000  class  1.000  box  0.500  val mAP@.5 0.400  "
        "mAP@[.5:.95] 0.200  best 0.250 (step 10)"]
    assert "validating" not in texts, "a pause inside the steps is the bar's, not a line"


def test_columns_stay_put_until_images_per_second_is_measured(
        capsys: pytest.CaptureFixture[str]) -> None:
    console = _plain(capsys, lines=100)
    console.on_step(1, 3, dict(STEP))
    console.on_step(2, 3, dict(STEP, images_per_second=1234.5))
    console.on_step(3, 3, {"loss": 0.5, "images_per_second": 7.0})
    first, second, third = [line.split("] ", 1)[1] for line in
                            capsys.readouterr().out.splitlines()]
    assert first.endswith("img/s      -") and second.endswith("img/s 1234.5")
    assert len(first) == len(second) == len(third)
    assert third == "step 3/3  loss  0.500  class      -  box      -  lr        -  img/s    7.0"


def test_a_step_line_comes_with_news_not_with_every_step(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """A trainer that logs every 10 steps passes the same losses in between: a line every 2
    steps (40 steps, 20 lines) would print each of them 5 times."""
    console = _plain(capsys, lines=20)
    logged: dict[str, float] = {}
    for step in range(1, 41):
        if step % 10 == 0 or step == 1:
            logged = dict(STEP, loss=2.0 - step / 40)
        console.on_step(step, 40, logged)
    steps = [line.split("] ", 1)[1].split()[1] for line in capsys.readouterr().out.splitlines()]
    assert steps == ["2/40", "10/40", "20/40", "30/40", "40/40"]


def test_a_trainer_that_reports_only_its_loss_gets_two_columns(
        capsys: pytest.CaptureFixture[str]) -> None:
    console = _plain(capsys, lines=1)
    console.on_step(1, 1, {"loss": 0.25})
    assert capsys.readouterr().out.split("] ", 1)[1] == "step 1/1  loss  0.250  img/s      -\n"


def test_on_a_terminal_steps_move_the_bar_and_lines_go_above_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    progress = FakeProgress()
    console = TrainingConsole(Bar(progress, "training", interactive=True), 0.0,
                              clock=_seconds())
    _a_run(console)
    assert capsys.readouterr().out == "", "everything goes through the bar's console"
    assert progress.tasks == [{"description": "training", "total": 20, "completed": 0,
                               "status": ""}]
    texts = [line.split("] ", 1)[1] for line in progress.printed]
    assert len(texts) == 4 + 2 + 2, "phases and validations, no step lines"
    statuses = [u["status"] for u in progress.updates]
    assert statuses[0] == "loss 1.950", "images/s is not shown before it is measured"
    assert statuses[1] == "loss 1.900  img/s 61.2"
    assert "validating..." in statuses
    assert statuses[-1] == "loss 1.000  img/s 61.2  best mAP@[.5:.95] 0.250 (step 10)"


def test_a_resumed_run_starts_the_bar_at_its_step_and_follows_a_new_total() -> None:
    progress = FakeProgress()
    console = TrainingConsole(Bar(progress, "training", interactive=True), 0.0)
    console.on_step(31, 40, {"loss": 1.0})
    console.on_step(32, 38, {"loss": 1.0})
    assert progress.tasks[0]["completed"] == 30 and progress.tasks[0]["total"] == 40
    assert {"total": 38} in progress.updates
