"""``model.train``: a registered trainer on a records folder, into a run folder.

The trainer does the work; this is what every caller of it decides the same way, so the
command line and the Python API cannot drift apart: which trainer, that it has what it needs
(`check`) before anything is written, what to do with a run already in the folder (one of
continue, replace, or train beside it in a numbered folder), and which optional arguments the
trainer takes (`odplug.components.train_with`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from odplug.components import (
    EventCallback,
    StepCallback,
    Trainer,
    TrainingEvent,
    TrainingStatus,
    TrainingValidation,
    train_with,
)
from odplug.errors import OdplugError, UsageError
from odplug.plugins import TRAINERS, Registry
from odplug.run import Resume, RunInfo, numbered_run_dir
from odplug.storage import is_url
from odplug.storage.urls import named_by_url
from odplug.workflows.buckets import (
    free_run_url,
    input_path,
    run_folder,
    upload_run,
)


def existing_run_mode(*, resume: bool = False, overwrite: bool = False) -> Resume:
    """The trainer's `Resume` for the flags a user gave: ``--resume`` continues the run in the
    folder, ``--overwrite`` replaces it, neither refuses a folder that holds one (so a finished
    run is never replaced by accident)."""
    if resume and overwrite:
        raise UsageError("resume and overwrite each say what to do with the run already in the "
                         "folder: give one of them")
    return "required" if resume else "overwrite" if overwrite else "never"


def train_model(registry: Registry, records: Path | str, run_dir: Path | str, *, trainer: str,
                config: Path | None = None, overrides: dict[str, object] | None = None,
                resume: bool = False, overwrite: bool = False, new_run: bool = False,
                workers: int = 1, on_step: StepCallback | None = None,
                on_event: EventCallback | None = None,
                note: Callable[[str], None] = lambda text: None) -> RunInfo:
    """Train `records` into `run_dir` with the trainer registered as `trainer`.

    `resume` continues the run in `run_dir` (refused when the trainer cannot), `overwrite`
    replaces it, `new_run` trains into the first free ``<run_dir>-2``, ``-3``, ... when
    `run_dir` is taken (said through `on_event`); with none of them a folder that already holds
    a run is refused. Returns the run description the trainer wrote.

    Either may be a bucket URL (`odplug.workflows.buckets`): records are read from their copy
    in the cache, the run is trained in its local copy and published back to its URL (the
    returned run describes the local copy); `note` hears the downloads and uploads.
    """
    mode = existing_run_mode(resume=resume, overwrite=overwrite)
    if new_run and mode != "never":
        raise UsageError("new run trains into a free folder: it goes with neither resume nor "
                         "overwrite")
    chosen = registry.get(TRAINERS, trainer)
    chosen.check()
    if new_run:
        run_dir = _free_run(run_dir, on_event)
    local_records = input_path(records, "records folder (data.import's output)", note)
    if is_url(str(records)):
        from odplug.data.shards import training_inputs

        training_inputs(local_records)  # refused before the run is touched
    if not is_url(str(run_dir)):
        return train_with(chosen, local_records, Path(run_dir), config=config,
                          overrides=overrides or {}, resume=mode, on_step=on_step,
                          on_event=on_event, workers=workers)
    return _train_into_bucket(chosen, local_records, str(run_dir), config=config,
                              overrides=overrides, mode=mode, workers=workers, on_step=on_step,
                              on_event=on_event, note=note,
                              records_url=str(records) if is_url(str(records)) else None)


def _free_run(run_dir: Path | str, on_event: EventCallback | None) -> Path | str:
    """`run_dir`, or when it holds a run the first free ``<run_dir>-2``, ``-3``, ... (a
    folder or a bucket URL), said through `on_event`."""
    free: Path | str = (free_run_url(str(run_dir)) if is_url(str(run_dir))
                        else numbered_run_dir(Path(run_dir)))
    if str(free) != str(run_dir) and on_event is not None:
        on_event(TrainingStatus(f"{run_dir} is taken: training into {free}"))
    return free


def _train_into_bucket(chosen: Trainer, records: Path, url: str, *, config: Path | None,
                       overrides: dict[str, object] | None, mode: Resume, workers: int,
                       on_step: StepCallback | None, on_event: EventCallback | None,
                       note: Callable[[str], None], records_url: str | None) -> RunInfo:
    """`train_model` into a run at a bucket URL, trained in its working copy
    (`odplug.workflows.buckets.run_folder`); `records_url` is kept in its manifest."""
    with run_folder(url, note, records=records_url) as local:
        def uploading(event: TrainingEvent) -> None:
            if on_event is not None:
                on_event(event)
            if isinstance(event, TrainingValidation):
                upload_run(local, url, note, records=records_url)

        # With one worker the event comes from the training loop itself, paused while the run
        # is uploaded: the bucket gets the run as a kill at that moment would leave it, which
        # the trainer resumes from. Workers of a local cluster go on while their parent hears
        # of a validation, so their run is uploaded when training ends or stops only.
        try:
            trained = train_with(chosen, records, local, config=config,
                                 overrides=overrides or {}, resume=mode, on_step=on_step,
                                 on_event=uploading if workers == 1 else on_event,
                                 workers=workers)
            return dataclasses.replace(trained, url=url)
        except OdplugError as error:  # "<run> already holds a run", said of the run's URL
            error.args = (named_by_url(str(error), local, url),)  # its type (exit 2 or 1) kept
            raise
