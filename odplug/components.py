"""What plugins register: importers, dataset writers, trainers and exporters.

pluggy finds these objects; the core then calls them directly as plain typed objects. Each is a
small base class rather than a Protocol so that optional parts have working defaults and a
plugin only writes what its format needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from odplug.errors import OdplugError
from odplug.run import Resume, RunInfo

if TYPE_CHECKING:
    from odplug.dataset_report import Report
    from odplug.labels import LabelMap
    from odplug.samples import Sample
    from odplug.trained import TrainedDetector

Verify = Literal["header", "decode"]
Progress = Callable[[int], None]
"""Called with the number of images just finished; the caller draws the bar."""


class Component:
    """Shared by every kind: a unique name, a one-line summary, and a readiness check."""

    name: str = ""
    summary: str = ""
    requires: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise `OdplugError` naming what is missing (package, tool, image) before any work."""


class Importer(Component):
    """Reads one dataset format into samples, reporting every problem instead of raising.

    `read` yields samples lazily; it raises `OdplugError` only when nothing sensible can be
    read at all (no such folder, not this format), and otherwise calls ``report.skip_*`` for
    each image or object it cannot use and goes on.
    """

    def detect(self, source: Path) -> bool:
        """Whether `source` looks like this format; used when the user gives no ``--format``.

        Raise `OdplugError` for a near miss, a `source` that is this format but cannot be read
        as it (a data.yaml without class names): it is not claimed, and the error's line is
        what the user sees when no format claims `source`."""
        return False

    def label_map(self, source: Path) -> LabelMap | None:
        """The label map that ships with the dataset, if the format has one."""
        return None

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        raise NotImplementedError(f"importer {self.name!r} does not implement read()")


@dataclass
class WriteJob:
    """Everything a dataset writer needs: the samples by split, decided before writing starts."""

    splits: dict[str, list[Sample]]
    label_map: LabelMap
    out: Path
    """A fresh, empty staging folder beside the user's output folder, not that folder itself:
    write every file straight under its final name here. The core adds the label map and
    ``report.json`` and swaps the folder in whole only if `write` returns having written at
    least one image; on any failure it is deleted and the previous output stays as it was."""
    shards: int = 0
    workers: int = 0
    verify: Verify = "header"
    progress: Progress = field(default=lambda n: None)


class DatasetWriter(Component):
    """Writes samples to an output folder; returns the report of what it wrote and skipped."""

    def write(self, job: WriteJob) -> Report:
        raise NotImplementedError(f"writer {self.name!r} does not implement write()")


StepCallback = Callable[[int, int, "dict[str, float]"], None]
"""Called after each training step with (step, total steps, latest metrics).

The metrics are those of the step's last log (the same dict until the next one), at least
``loss``; the command line shows ``loss``, ``classification``, ``box``, ``learning_rate`` and
``images_per_second`` (the last only once measured over steps that did no tracing)."""


@dataclass(frozen=True)
class TrainingStatus:
    """What a trainer is doing while it has no steps to count, in a few words a person reads:
    ``reading the records``, ``building the model``, ``tracing the training step``, ``scoring
    the test split``, ``writing the SavedModel``; or a one-line outcome (``the run finished at
    step 1000 ...; nothing to train``)."""

    text: str
    during_steps: bool = False
    """A pause inside the steps (``validating``): shown on the progress bar until the next
    step, not as a line of its own."""


@dataclass(frozen=True)
class TrainingValidation:
    """One validation: the scores that choose the best checkpoint, and the best so far."""

    step: int
    total: int
    losses: dict[str, float]
    """The step's losses, at least ``loss`` (the same names as `StepCallback`'s metrics)."""
    map50: float
    """Val COCO mAP@.5, 0..1."""
    map: float
    """Val COCO mAP@[.5:.95], 0..1: the number the best checkpoint is chosen by."""
    best_step: int
    """The step of the best validation so far (this one included)."""
    best_map: float
    best_map50: float


TrainingEvent = TrainingStatus | TrainingValidation
EventCallback = Callable[[TrainingEvent], None]
"""A trainer's `Trainer.train` ``on_event``: what it does besides steps, as it happens."""


class Trainer(Component):
    """Trains a detector from a TFRecord folder (as data.import writes) into a run folder.

    The run folder is the trainer's own: configs, saved states and logs in whatever layout it
    likes. The core reads only its run description (`odplug.run.RunInfo`): `train` writes and
    returns it, `describe` reads it back, and whether an existing run is continued or replaced
    is the trainer's decision, asked for with `resume`.
    """

    def train(self, records: Path, run_dir: Path, *, config: Path | None = None,
              overrides: dict[str, object] | None = None, resume: Resume = "never",
              on_step: StepCallback | None = None, workers: int = 1,
              on_event: EventCallback | None = None) -> RunInfo:
        """Train on `records` into `run_dir` and return the complete run.

        `resume` (see `odplug.run.Resume`): ``never`` refuses a folder that holds a run,
        ``required`` continues one or refuses, ``auto`` continues one when the trainer can with
        these inputs and otherwise starts over in its place, ``overwrite`` replaces it.
        `workers` > 1 asks for that many worker processes on this machine, training together
        as a local cluster (``model.train --workers N``); a trainer that cannot raises
        `OdplugError`. `on_step` is called after every step; `on_event` (optional) with a
        `TrainingStatus` for each phase without steps (start-up, finishing: the console prints
        them, so the minute before the first step is not silent) and a `TrainingValidation`
        for each validation (one line each on the console). Callers pass `workers` only above
        1 and `on_event` only to a `train` that takes it (`train_with`), so trainers written
        before them keep working.
        """
        raise NotImplementedError(f"trainer {self.name!r} does not implement train()")

    def describe(self, run_dir: Path) -> RunInfo | None:
        """The run in `run_dir` as it stands (unfinished ones included), or None if none.

        The default reads the run description; a trainer overrides it to correct what the file
        cannot know (a run killed before it noted it can resume, saved states deleted since).
        """
        return RunInfo.read(run_dir) if RunInfo.exists(run_dir) else None

    def default_config(self) -> str:
        """The full default config as TOML text, every setting explained, for users to edit."""
        return ""


@dataclass
class ExportedModel:
    """One model an exporter wrote: one row of the verification table.

    It says which exporter wrote it and which variant it is, so nothing reads them back out of
    a name; `to_json` and `from_json` are its one stored form (the pipeline's state).
    """

    exporter: str
    """The registered name of the exporter that wrote it, e.g. ``tflite``."""
    variant: str
    """Which of that exporter's `Exporter.variants` it is, e.g. ``int8``."""
    path: Path
    """The model file (``.tflite``) or folder (a TF.js graph model)."""
    manifest: Path
    """JSON beside the model: input name, dtype, shape and preprocessing; every output's name,
    index, shape and dtype; labels."""
    size_bytes: int

    @property
    def name(self) -> str:
        """``<exporter>-<variant>``, e.g. ``tflite-int8``: what the table and the files show."""
        return f"{self.exporter}-{self.variant}"

    def to_json(self) -> dict[str, Any]:
        return {"exporter": self.exporter, "variant": self.variant, "path": str(self.path),
                "manifest": str(self.manifest), "size_bytes": self.size_bytes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportedModel:
        """The model `to_json` wrote; `ValueError` for anything else (an older odplug's form,
        which named a model without its variant), so a reader can treat it as stale."""
        try:
            model = cls(data["exporter"], data["variant"], Path(data["path"]),
                        Path(data["manifest"]), data["size_bytes"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"not an exported model ({error!r}): {data!r}") from None
        if not (isinstance(model.exporter, str) and isinstance(model.variant, str)
                and isinstance(model.size_bytes, int)):
            raise ValueError(f"not an exported model: {data!r}")
        return model


NO_INPUTS: Mapping[str, Mapping[str, ExportedModel]] = MappingProxyType({})
"""What an exporter that requires no other exporter receives as `Exporter.export`'s inputs."""


class Exporter(Component):
    """Converts a trained detector into one deployment format.

    What it converts meets the trained-detector contract (docs/hooks.md): the core checks the
    SavedModel folder once, before any exporter runs, and hands each the loaded result.
    `variants` are the choices of ``--quantize`` (for example float32, float16, dynamic, int8).
    """

    suffix: str = ""
    variants: tuple[str, ...] = ()
    default_variants: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    """Exporters this one builds on, each ``NAME`` or ``NAME:VARIANT`` (edgetpu requires
    ``tflite:int8``). They run first, write every variant named here even when the user did
    not ask for it, and `export` receives what they wrote as `inputs`."""

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        """Write one model per variant under `out`, each an `ExportedModel` with this
        exporter's `name` and its variant.

        `records` (a data.import folder) feeds calibration; `inputs` holds what each required
        exporter wrote, by exporter name and variant (``inputs["tflite"]["int8"]``)."""
        raise NotImplementedError(f"exporter {self.name!r} does not implement export()")

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        """A callable from one uint8 RGB image [H, W, 3] to `odplug.model.detector.Detections`,
        running the exported model in its own runtime, for the verification table."""
        raise NotImplementedError(f"exporter {self.name!r} cannot run its models")

    def note(self, exported: ExportedModel) -> str:
        """One line for the model's row of the verification table, "" for none: what its
        scores cannot show (the edgetpu exporter: how the Edge TPU compiler will map it)."""
        return ""

    def other_runtimes(self, exported: ExportedModel
                       ) -> dict[str, Callable[[], Callable[..., object]]]:
        """Runtimes besides `detector`'s that apps load `exported` in, by name, each a factory
        of a detector like `detector`'s (closed after use when it has ``close``): the
        verification adds a row ``<model> (<name>)`` for each, held to mAP@.5 against the
        model's own row. The default: none."""
        return {}

    def model_at(self, path: Path) -> ExportedModel | None:
        """The model at `path` if this exporter wrote it, else None: how ``model.predict``
        runs an exported file or folder given by path alone (read from the manifest beside
        it), with `detector`. The default claims nothing: such an exporter's models are
        predicted on through the verification only."""
        return None


def train_with(trainer: Trainer, records: Path, run_dir: Path, *, workers: int = 1,
               on_event: EventCallback | None = None, **arguments: Any) -> RunInfo:
    """``trainer.train(records, run_dir, **arguments)`` with the optional arguments added to
    the contract since trainers were first written: `workers` only above 1 (refused in one
    line by a trainer that does not take it), `on_event` only where ``train`` takes it."""
    optional: dict[str, Any] = {}
    if workers > 1:
        if not _takes(trainer.train, "workers"):
            raise OdplugError(f"the {trainer.name} trainer cannot train with several workers "
                              "(its train() takes no workers); leave out --workers")
        optional["workers"] = workers
    if on_event is not None and _takes(trainer.train, "on_event"):
        optional["on_event"] = on_event
    return trainer.train(records, run_dir, **arguments, **optional)


def _takes(method: Callable[..., object], name: str) -> bool:
    import inspect

    parameters = inspect.signature(method).parameters.values()
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def require_module(module: str, *, what: str, install: str) -> None:
    """Fail with one clear line when an optional package is missing; never install it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise OdplugError(f"{what} needs the Python package {module!r}: {install}")


def side_python(variable: str, venv: str, checkout: Path, setup: str) -> Path | None:
    """The interpreter of a tool that pins its own packages and so lives in a venv of its own
    (the TF.js converter, the TFLite metadata writer, Apache Beam): ``$<variable>`` when set
    (one line, with `setup`, when it names no file), else ``<venv>/bin/python`` in `checkout`
    (where setup.sh makes it) or in the current folder; None when there is none, for the
    caller to fall back or say what is missing. One lookup for every such tool."""
    configured = os.environ.get(variable)
    if configured:
        if not Path(configured).is_file():
            raise OdplugError(f"{variable}={configured}: no such Python; {setup}")
        return Path(configured)
    for folder in (checkout, Path.cwd()):
        candidate = folder / venv / "bin" / "python"
        if candidate.is_file():
            return candidate
    return None
