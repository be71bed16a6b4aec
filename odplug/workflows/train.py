"""``model.train``: a registered trainer on a records folder, into a run folder.

The trainer does the work; this is what every caller of it decides the same way, so the
command line and the Python API cannot drift apart: which trainer, that it has what it needs
(`check`) before anything is written, what to do with a run already in the folder (one of
continue, replace, or train beside it in a numbered folder), and which optional arguments the
trainer takes (`odplug.components.train_with`).
"""

from __future__ import annotations

from pathlib import Path

from odplug.components import EventCallback, StepCallback, TrainingStatus, train_with
from odplug.errors import UsageError
from odplug.plugins import TRAINERS, Registry
from odplug.run import Resume, RunInfo, numbered_run_dir


def existing_run_mode(*, resume: bool = False, overwrite: bool = False) -> Resume:
    """The trainer's `Resume` for the flags a user gave: ``--resume`` continues the run in the
    folder, ``--overwrite`` replaces it, neither refuses a folder that holds one (so a finished
    run is never replaced by accident)."""
    if resume and overwrite:
        raise UsageError("resume and overwrite each say what to do with the run already in the "
                         "folder: give one of them")
    return "required" if resume else "overwrite" if overwrite else "never"


def train_model(registry: Registry, records: Path, run_dir: Path, *, trainer: str,
                config: Path | None = None, overrides: dict[str, object] | None = None,
                resume: bool = False, overwrite: bool = False, new_run: bool = False,
                workers: int = 1, on_step: StepCallback | None = None,
                on_event: EventCallback | None = None) -> RunInfo:
    """Train `records` into `run_dir` with the trainer registered as `trainer`.

    `resume` continues the run in `run_dir` (refused when the trainer cannot), `overwrite`
    replaces it, `new_run` trains into the first free ``<run_dir>-2``, ``-3``, ... when
    `run_dir` is taken (said through `on_event`); with none of them a folder that already holds
    a run is refused. Returns the run description the trainer wrote.
    """
    mode = existing_run_mode(resume=resume, overwrite=overwrite)
    if new_run and mode != "never":
        raise UsageError("new run trains into a free folder: it goes with neither resume nor "
                         "overwrite")
    chosen = registry.get(TRAINERS, trainer)
    chosen.check()
    if new_run and (free := numbered_run_dir(run_dir)) != run_dir:
        if on_event is not None:
            on_event(TrainingStatus(f"{run_dir} is taken: training into {free}"))
        run_dir = free
    return train_with(chosen, records, run_dir, config=config, overrides=overrides or {},
                      resume=mode, on_step=on_step, on_event=on_event, workers=workers)
