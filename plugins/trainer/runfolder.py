"""The ssd trainer's run folder: its layout, its description, and whether a run goes on.

The layout is this trainer's own business; the core sees only ``run.json`` (`RunInfo`). Whether
a run already in the folder is continued, refused or replaced is decided here, from the
trainer's own files, so the pipeline only says what it wants (`odplug.run.Resume`).
TensorFlow-free: the pipeline asks `describe` before it knows whether anything will train.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_write_text, recover_folder, remove_temporaries
from odplug.data.fingerprint import fingerprint
from odplug.errors import OdplugError
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer import pretrained
from odplug_builtins.trainer.config import Config, load_config, save_config

TRAINER = "ssd"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        """The resolved config: every setting, defaults included."""
        return self.root / "config.toml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def saved_model(self) -> Path:
        return self.root / "saved_model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def pictures(self) -> Path:
        """What the run draws as it trains (`odplug_builtins.trainer.pictures`)."""
        return self.root / "pictures"

    @property
    def results(self) -> Path:
        """``results.csv``: one row per validation (`odplug.pictures.training`)."""
        return self.root / "results.csv"

    @property
    def label_map(self) -> Path:
        return self.root / "label_map.pbtxt"

    @property
    def best(self) -> Path:
        """The best validation mAP@[.5:.95] (and its mAP@.5) so far and its step (best.weights.h5
        holds the weights)."""
        return self.root / "best.json"

    @property
    def best_weights(self) -> Path:
        return self.root / "best.weights.h5"

    @property
    def last_weights(self) -> Path:
        return self.root / "last.weights.h5"

    @property
    def inputs(self) -> Path:
        """What the run was started from: the records and their fingerprint (which
        ``resume="auto"`` compares), and the backbone's start (``{"from": "scratch"}``,
        ``{"from": "imagenet", "file", "url", "sha256"}`` or ``{"from": "file", "path",
        "sha256"}``)."""
        return self.root / "inputs.json"

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint to continue from exists (the CheckpointManager's index)."""
        return (self.checkpoints / "checkpoint").is_file()

    def last_step(self) -> int | None:
        """The step of the latest checkpoint, as the CheckpointManager's index names it
        (``ckpt-<step>``: the loop saves one at its last step); None without one."""
        try:
            index = (self.checkpoints / "checkpoint").read_text()
        except OSError:
            return None
        found = re.search(r'^model_checkpoint_path:\s*"[^"]*-(\d+)"', index, re.M)
        return int(found.group(1)) if found else None

    def holds_a_run(self) -> bool:
        """Whether the folder holds a run to protect: one with a checkpoint or trained
        weights, a finished one, another trainer's, or a ``run.json`` that cannot be read.

        What a start that failed before its first checkpoint left (the config, ``inputs.json``,
        a ``run.json`` neither resumable nor complete) is not: nothing in it can be continued
        or used, and a new start replaces it, so a failed download or a first step that ran out
        of memory is never a dead end between "already holds a run" and "nothing to resume".
        Nor are the files of a first checkpoint whose writing was killed before the
        CheckpointManager noted it (``checkpoints/checkpoint``): ``--resume`` cannot use them.
        """
        if self.has_checkpoint():
            return True
        if self.best_weights.is_file() or self.last_weights.is_file():
            return True
        if not RunInfo.exists(self.root):
            return False
        try:
            info = RunInfo.read(self.root)
        except OdplugError:
            return True
        return info.trainer != TRAINER or info.complete or info.resumable


def tidy(folder: RunFolder) -> None:
    """Finish what a killed run left half done: a SavedModel swap cut between its two renames
    is undone (`odplug.atomic.recover_folder`: the previous SavedModel is back, the new one
    deleted), and the hidden temporary files of writes it did not finish are deleted. Only
    while no training writes the folder."""
    if not folder.root.is_dir():
        return
    recover_folder(folder.saved_model)
    for place in (folder.root, folder.metrics, folder.pictures):
        if place.is_dir():
            remove_temporaries(place)


def describe(root: Path) -> RunInfo | None:
    """The run in `root` as it stands: ``run.json`` corrected by what is really on disk (a run
    killed before it noted its first checkpoint is resumable; one whose checkpoints or
    SavedModel were deleted since is not)."""
    if not RunInfo.exists(root):
        return None
    info = RunInfo.read(root)
    if info.trainer != TRAINER:
        return info
    folder = RunFolder(root)
    return replace(info, resumable=folder.has_checkpoint() and folder.config.is_file(),
                   complete=info.complete and (info.saved_model / "saved_model.pb").is_file())


def start(records: Path, folder: RunFolder, config_path: Path | None,
          overrides: dict[str, Any], resume: Resume) -> tuple[Config, bool]:
    """Decide how training begins in `folder`; returns the config and whether it resumes.

    ``never`` and ``required`` refuse what they cannot do; a failed start (`holds_a_run`) is
    replaced, not refused. ``required`` continues a finished run only to more steps than it
    ran (`finished` tells the caller when there are none). ``auto`` continues an unfinished run
    only when it was started on the same records (same fingerprint) with the same resolved
    config, so that going on gives the run that was asked for; anything else in the folder
    (a finished run, other inputs, another trainer's run, an unreadable ``run.json``) is
    deleted and a new run starts in its place, as ``overwrite`` always does. A new run makes
    sure the backbone's start is at hand (`pretrained.fetch`: a local file, or ImageNet weights
    in the Keras cache) before it touches the folder, so a bad config, a missing file or a
    failed download leaves the folder, and any run in it, as it was.
    """
    tidy(folder)
    if resume == "required":
        return _resumed(folder, config_path, overrides), True
    config = load_config(config_path, overrides)
    if resume == "auto" and _can_continue(records, folder, config):
        return config, True
    if resume == "never" and folder.holds_a_run():
        raise _held(folder)
    backbone = pretrained.fetch(config.model)
    if backbone.get("run") == str(folder.root.resolve()):
        raise OdplugError(f"model.weights = {config.model.weights!r}: the run being replaced; "
                          "start from it into another folder (--new-run, or another --run)")
    if RunInfo.exists(folder.root) or folder.holds_a_run():
        shutil.rmtree(folder.root)
    folder.root.mkdir(parents=True, exist_ok=True)
    save_config(config, folder.config)
    inputs = {**_inputs(records), "backbone": backbone}
    atomic_write_text(folder.inputs, json.dumps(inputs, indent=2) + "\n")
    return config, False


def check_request(root: Path, config_path: Path | None, overrides: dict[str, Any],
                  resume: Resume) -> None:
    """The refusals of `start` that need no TensorFlow, made before the trainer loads it: a
    folder that holds a run when none may be there, nothing to resume when ``--resume`` asks.
    They would come the same from `start`, after the 5-10 s TensorFlow takes to load."""
    folder = RunFolder(root)
    if resume == "required":
        _resumed(folder, config_path, overrides)
    elif resume == "never" and folder.holds_a_run():
        raise _held(folder)


def _held(folder: RunFolder) -> OdplugError:
    return OdplugError(f"{folder.root} already holds a run: continue it with --resume, replace "
                       "it with --overwrite, or start a new one beside it with --new-run")


def finished(root: Path, overrides: dict[str, Any], resume: Resume) -> str | None:
    """The one line saying why ``resume="required"`` has nothing to train in `root`, or None.

    A finished run is continued only to more steps than it ran: its config with `overrides`
    must ask for more (``--resume --steps N``) and have no time budget, which would keep the
    step count of its checkpoint (`schedule.StepBudget`). Anything else leaves it as it is:
    re-scoring the test split would change nothing.
    """
    if resume != "required":
        return None
    info = describe(root)
    if info is None or info.trainer != TRAINER or not info.complete or not info.resumable:
        return None
    folder = RunFolder(root)
    last = folder.last_step()
    config = load_config(folder.config, overrides)
    if last is None or (config.train.minutes <= 0 and config.train.steps > last):
        return None
    test = info.metrics.get("test")
    scores = (f" (test mAP@.5 {test['map50']:.3f}, mAP@[.5:.95] {test['map']:.3f})"
              if test else "")
    budget = (", with --set train.minutes=0 (its time budget fixed its step count)"
              if config.train.minutes > 0 else "")
    return (f"{root}: the run finished at step {last}{scores}; nothing to train "
            f"(--resume --steps N, N above {last}, trains it further{budget})")


def _resumed(folder: RunFolder, config_path: Path | None, overrides: dict[str, Any]) -> Config:
    """The config of the run `folder` holds, for ``required``; refused when there is none."""
    info = describe(folder.root)
    if info is None or not info.resumable:
        raise OdplugError(f"{folder.root}: nothing to resume (no run with a checkpoint); "
                          "start a run without --resume")
    if info.trainer != TRAINER:
        raise OdplugError(f"{folder.root}: a run of the {info.trainer!r} trainer; the "
                          f"{TRAINER} trainer cannot continue it")
    if config_path is not None:
        raise OdplugError("--resume continues with the run's own config.toml; "
                          "leave out --config")
    return load_config(folder.config, overrides)


def _can_continue(records: Path, folder: RunFolder, config: Config) -> bool:
    try:
        info = describe(folder.root)
        if info is None or info.trainer != TRAINER or info.complete or not info.resumable:
            return False
        started = json.loads(folder.inputs.read_text())
        same_inputs = all(started.get(key) == value for key, value in _inputs(records).items())
        return same_inputs and load_config(folder.config).to_dict() == config.to_dict()
    except (OdplugError, OSError, json.JSONDecodeError):
        return False


def _inputs(records: Path) -> dict[str, str]:
    return {"records": str(records.resolve()), "fingerprint": fingerprint(records)}
