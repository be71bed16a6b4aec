"""What a trained run is, as the core sees it: the ``run.json`` a trainer writes in its run folder.

A trainer's run folder holds whatever that trainer needs (configs, checkpoints, logs); the core
reads none of it. It reads ``run.json`` only, through `RunInfo`, which every trainer writes
with `RunInfo.write` and returns from `odplug.components.Trainer.train`. That one file tells
``model.evaluate``, ``model.predict``, ``model.export`` and ``pipeline`` where the SavedModel,
the label map and the training records are, what the run scored, and whether the trainer can
continue it. TensorFlow-free, below every tier, like `odplug.components`.

``run.json``, schema 1::

    {
      "schema": 1,
      "trainer": "ssd",                   # the registered trainer name that wrote the run
      "records": "/data/records",         # the data.import folder it trained on
      "label_map": "label_map.pbtxt",     # the classes, as label_map.pbtxt
      "saved_model": "saved_model",       # the SavedModel folder (the exporters' contract)
      "complete": true,                   # the SavedModel is written and final
      "resumable": true,                  # train(resume="required") can continue the run
      "metrics": {"test": {"map50": 0.41, "map": 0.22}},   # per split; {} if none
      "metrics_dir": "metrics",           # full metrics files (JSON, plots), or null
      "logs": "logs",                     # TensorBoard logs, or null
      "results": "results.csv",           # optional: one row per validation, or null
      "pictures": {"curves": "pictures/curves.png"},       # optional: name -> image file
      "summary": {"seconds": 512.0, "steps": 1000, "images_per_second": 31.2,
                  "changed": {"train.steps": 1000}}        # optional: how training went
    }

Paths inside the run folder are written relative to it (the folder can be moved), others
absolute. ``metrics`` maps a split name to headline numbers: ``map50`` is COCO mAP@.5 and
``map`` mAP@[.5:.95], both 0..1; a trainer may add more numbers. Keys this version does not
know are ignored, so a later odplug can add optional keys without a new schema number; a
change that an older reader would misread raises ``schema``.

The optional keys are what the HTML report (`odplug.report`) shows of the training: a trainer
that writes none still gets a report, without those parts. ``results`` is a CSV with a header
row and one row per validation, ``step`` first, then whatever columns the trainer has (the
built-in one: ``seconds``, each loss term, ``learning_rate``, ``val_map50``, ``val_map``).
``pictures`` names images by what they show; the report places those it knows (`PICTURES`)
and lists the rest after them. ``summary`` holds ``seconds`` (of training), ``steps``,
``images_per_second`` and ``changed``, the settings that differ from the trainer's defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from odplug.atomic import atomic_write_text
from odplug.errors import OdplugError, UsageError

RUN_FILE = "run.json"
SCHEMA = 1
Resume = Literal["never", "required", "auto", "overwrite"]
"""How `Trainer.train` treats a run already in its run folder:

``never``: start a new run; refuse if the folder already holds one (``model.train``). What a
start that failed before its first checkpoint left is not a run: a new start replaces it.
``required``: continue the run there; refuse if the trainer cannot (``model.train --resume``).
A finished run is left as it is, with one line saying so, unless more steps are asked for.
``auto``: continue it if the trainer can with these inputs, else start over in its place
(``pipeline``: an interrupted run goes on, a finished or outdated one is replaced).
``overwrite``: start a new run, replacing whatever run is in the folder
(``model.train --overwrite``); the trainer checks what can fail without work first (its
config, its starting weights), so a mistake there leaves the old run as it was.
"""
RESUME_MODES: tuple[Resume, ...] = ("never", "required", "auto", "overwrite")

PICTURES = {
    "curves": "losses and validation mAP against steps and seconds",
    "batch": "one training batch as the model sees it, after augmentation",
    "val_predictions": "validation images: detections judged against the labels",
    "confusion": "confusion matrix of the test split",
    "pr": "precision-recall per class on the test split",
    "test_predictions": "test images: detections judged against the labels",
}
"""The ``pictures`` names the report knows, with what each shows."""

_REQUIRED = ("trainer", "records", "label_map", "saved_model", "complete", "resumable")


@dataclass(frozen=True)
class RunInfo:
    """One trained (or training) run, as written in its folder's ``run.json``."""

    run_dir: Path
    """The run folder; ``run.json`` lives here (not written into the file itself)."""
    trainer: str
    """Name of the registered trainer that owns the run."""
    records: Path
    """The data.import folder the run trained on: its test split is the default evaluation."""
    label_map: Path
    """``label_map.pbtxt`` of the classes the model predicts."""
    saved_model: Path
    """The SavedModel folder; final once `complete` is true."""
    complete: bool = False
    """Whether training finished and the SavedModel is written."""
    resumable: bool = False
    """Whether the trainer can continue this run (``resume="required"``)."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """Headline numbers per split, e.g. ``{"test": {"map50": 0.41, "map": 0.22}}``."""
    metrics_dir: Path | None = None
    """Folder with the full metrics files (per-class JSON, plots), if the trainer wrote any."""
    logs: Path | None = None
    """TensorBoard log folder, if the trainer writes one."""
    results: Path | None = None
    """``results.csv``: one row per validation (module docstring), if the trainer writes one."""
    pictures: dict[str, Path] = field(default_factory=dict)
    """Images of the run by name (`PICTURES` lists the names the report places)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """How training went: ``seconds``, ``steps``, ``images_per_second``, ``changed``."""
    url: str | None = None
    """The bucket URL odplug published the run to, for a run trained into one (``--run
    s3://...``; with ``--new-run``, the free URL chosen); then `run_dir` is its local working
    copy. Set by odplug, not by trainers, and not in ``run.json``: a folder does not know
    which bucket it is copied to."""

    @property
    def path(self) -> Path:
        """The ``run.json`` file itself."""
        return self.run_dir / RUN_FILE

    def write(self) -> RunInfo:
        """Write ``run.json`` atomically (a reader never sees half a file); returns self."""
        document: dict[str, Any] = {
            "schema": SCHEMA,
            "trainer": self.trainer,
            "records": self._portable(self.records),
            "label_map": self._portable(self.label_map),
            "saved_model": self._portable(self.saved_model),
            "complete": self.complete,
            "resumable": self.resumable,
            "metrics": self.metrics,
            "metrics_dir": self._portable(self.metrics_dir),
            "logs": self._portable(self.logs),
            "results": self._portable(self.results),
            "pictures": {name: self._portable(file) for name, file in self.pictures.items()},
            "summary": self.summary,
        }
        atomic_write_text(self.path, json.dumps(document, indent=2) + "\n")
        return self

    @classmethod
    def exists(cls, run_dir: Path) -> bool:
        return (run_dir / RUN_FILE).is_file()

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        """The run in `run_dir`; an `OdplugError` in one line if ``run.json`` is missing,
        not JSON, of an unknown schema, or lacks a key or has one of the wrong type."""
        path = run_dir / RUN_FILE
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OdplugError(f"{run_dir}: not a run folder (no {RUN_FILE}); train one with "
                              "model.train") from None
        except (OSError, UnicodeDecodeError) as error:
            raise OdplugError(f"{path}: cannot read: {error}") from None
        except json.JSONDecodeError as error:
            raise OdplugError(f"{path}: not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise OdplugError(f"{path}: expected a JSON object, found {type(document).__name__}")
        schema = document.get("schema")
        if schema is None:
            raise OdplugError(f"{path}: no \"schema\" key: not a run description this odplug "
                              "can read (written by an older version? train the run again)")
        if schema != SCHEMA:
            raise OdplugError(f"{path}: schema {schema!r} is not one this odplug reads "
                              f"({SCHEMA}); upgrade odplug or train the run again")
        missing = [key for key in _REQUIRED if key not in document]
        if missing:
            raise OdplugError(f"{path}: missing {', '.join(missing)}")
        return cls(
            run_dir=run_dir,
            trainer=_text(document, "trainer", path),
            records=_path(run_dir, document, "records", path),
            label_map=_path(run_dir, document, "label_map", path),
            saved_model=_path(run_dir, document, "saved_model", path),
            complete=_flag(document, "complete", path),
            resumable=_flag(document, "resumable", path),
            metrics=_metrics(document.get("metrics"), path),
            metrics_dir=_optional_path(run_dir, document, "metrics_dir", path),
            logs=_optional_path(run_dir, document, "logs", path),
            results=_optional_path(run_dir, document, "results", path),
            pictures=_pictures(run_dir, document.get("pictures"), path),
            summary=_summary(document.get("summary"), path),
        )

    def finished_saved_model(self) -> Path:
        """The SavedModel of a complete run; a clear error while the run is unfinished."""
        if not self.complete:
            how = ("continue it with model.train --resume" if self.resumable
                   else "train it again")
            raise OdplugError(f"{self.run_dir}: the run is not complete (no final SavedModel "
                              f"yet): {how}")
        return self.saved_model

    def _portable(self, path: Path | None) -> str | None:
        if path is None:
            return None
        absolute = path.absolute()
        try:
            return str(absolute.relative_to(self.run_dir.absolute()))
        except ValueError:
            return str(absolute)


def numbered_run_dir(run_dir: Path) -> Path:
    """`run_dir` if it is free, else the first free ``<run_dir>-2``, ``-3``, ... beside it
    (``model.train --new-run``). Free: no such path, or an empty folder."""
    number = 1
    candidate = run_dir
    while candidate.exists() and not (candidate.is_dir() and not any(candidate.iterdir())):
        number += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{number}")
    return candidate


def resolve_model(model: Path) -> tuple[Path, RunInfo | None]:
    """What ``--model`` names: a run folder (with ``run.json``) or a bare SavedModel folder.

    Returns the SavedModel folder and the run, or None for a bare SavedModel (which says
    nothing about the records it came from).
    """
    if RunInfo.exists(model):
        run = RunInfo.read(model)
        return run.finished_saved_model(), run
    if (model / "saved_model.pb").is_file():
        return model, None
    wrong = OdplugError if model.exists() else UsageError  # a path that is not there: usage
    raise wrong(f"{model}: not a run folder (no {RUN_FILE}) and not a SavedModel folder "
                "(no saved_model.pb); train one with model.train")


def _text(document: dict[str, Any], key: str, path: Path) -> str:
    value = document[key]
    if not isinstance(value, str) or not value:
        raise OdplugError(f"{path}: {key!r} should be a non-empty string, not {value!r}")
    return value


def _flag(document: dict[str, Any], key: str, path: Path) -> bool:
    value = document[key]
    if not isinstance(value, bool):
        raise OdplugError(f"{path}: {key!r} should be true or false, not {value!r}")
    return value


def _path(run_dir: Path, document: dict[str, Any], key: str, path: Path) -> Path:
    value = Path(_text(document, key, path))
    return value if value.is_absolute() else run_dir / value


def _optional_path(run_dir: Path, document: dict[str, Any], key: str, path: Path
                   ) -> Path | None:
    return None if document.get(key) is None else _path(run_dir, document, key, path)


def _metrics(value: Any, path: Path) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OdplugError(f"{path}: 'metrics' should map a split to its numbers, not {value!r}")
    metrics: dict[str, dict[str, float]] = {}
    for split, numbers in value.items():
        if not isinstance(numbers, dict) or not all(
                isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers.values()):
            raise OdplugError(f"{path}: metrics of {split!r} should be named numbers, "
                              f"not {numbers!r}")
        metrics[split] = {name: float(n) for name, n in numbers.items()}
    return metrics


def _pictures(run_dir: Path, value: Any, path: Path) -> dict[str, Path]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise OdplugError(f"{path}: 'pictures' should map a name to an image file, "
                          f"not {value!r}")
    return {str(name): _path(run_dir, value, name, path) for name in value}


def _summary(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OdplugError(f"{path}: 'summary' should be an object, not {value!r}")
    return value
