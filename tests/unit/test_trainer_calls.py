"""How the core calls a trainer: arguments added to the contract later reach only the trainers
that take them, and ``--new-run`` finds the first free numbered folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from odplug.components import Trainer, TrainingStatus, train_with
from odplug.errors import OdplugError
from odplug.run import RunInfo, numbered_run_dir


class Recording(Trainer):
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def _record(self, run_dir: Path, **arguments: Any) -> RunInfo:
        self.calls.append(arguments)
        return RunInfo(run_dir, self.name, run_dir, run_dir, run_dir)


class Old(Recording):
    """A trainer written before `workers` and `on_event`."""

    def train(self, records: Path, run_dir: Path, *, config: Path | None = None,  # type: ignore[override]
              overrides: dict[str, object] | None = None, resume: str = "never",
              on_step: Any = None) -> RunInfo:
        return self._record(run_dir, resume=resume)


class New(Recording):
    def train(self, records: Path, run_dir: Path, **arguments: Any) -> RunInfo:  # type: ignore[override]
        return self._record(run_dir, **arguments)


def test_on_event_reaches_only_a_trainer_that_takes_it(tmp_path: Path) -> None:
    old, new = Old(), New()
    events: list = []
    for trainer in (old, new):
        train_with(trainer, tmp_path, tmp_path / "run", resume="never", on_event=events.append)
    assert old.calls == [{"resume": "never"}]
    assert new.calls == [{"resume": "never", "on_event": events.append}]
    new.calls[0]["on_event"](TrainingStatus("building the model"))
    assert events == [TrainingStatus("building the model")]


def test_workers_reach_a_trainer_only_above_one_and_one_that_cannot_says_so(
        tmp_path: Path) -> None:
    new = New()
    train_with(new, tmp_path, tmp_path / "run", workers=1)
    train_with(new, tmp_path, tmp_path / "run", workers=3)
    assert new.calls == [{}, {"workers": 3}]
    with pytest.raises(OdplugError, match="the recording trainer cannot train with several "
                                          "workers"):
        train_with(Old(), tmp_path, tmp_path / "run", workers=2)


def test_a_new_run_takes_the_first_free_numbered_folder(tmp_path: Path) -> None:
    demo = tmp_path / "runs" / "demo"
    assert numbered_run_dir(demo) == demo, "no such folder"
    demo.mkdir(parents=True)
    assert numbered_run_dir(demo) == demo, "an empty folder is free"
    (demo / "run.json").write_text("{}")
    (tmp_path / "runs" / "demo-2").mkdir()
    (tmp_path / "runs" / "demo-2" / "x").write_text("")
    (tmp_path / "runs" / "demo-3").write_text("a file")
    assert numbered_run_dir(demo) == tmp_path / "runs" / "demo-4"
