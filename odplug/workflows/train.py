"""``model.train``: a registered trainer on a records folder, into a run folder.

The trainer does the work; this is what every caller of it decides the same way: which
trainer, that it has what it needs (`check`) before anything is written, how ``resume`` maps
to `odplug.run.Resume`, and that ``workers`` is passed only above 1 (trainers written before
it keep working). The Python API calls it; the command line's ``model.train`` does the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odplug.components import StepCallback
from odplug.plugins import TRAINERS, Registry
from odplug.run import RunInfo


def train_model(registry: Registry, records: Path, run_dir: Path, *, trainer: str,
                config: Path | None = None, overrides: dict[str, object] | None = None,
                resume: bool = False, workers: int = 1,
                on_step: StepCallback | None = None) -> RunInfo:
    """Train `records` into `run_dir` with the trainer registered as `trainer`.

    `resume` continues the run in `run_dir` (refused when the trainer cannot); without it a
    folder that already holds a run is refused, so a finished run is never overwritten by
    accident. Returns the run description the trainer wrote.
    """
    chosen = registry.get(TRAINERS, trainer)
    chosen.check()
    optional: dict[str, Any] = {"workers": workers} if workers > 1 else {}
    return chosen.train(records, run_dir, config=config, overrides=overrides or {},
                        resume="required" if resume else "never", on_step=on_step, **optional)
