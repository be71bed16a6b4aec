"""odplug from Python: the command line's main tasks as functions that return what they made.

A notebook or a script calls ``odplug.import_dataset``, ``odplug.train``, ``odplug.evaluate``,
``odplug.export`` and ``odplug.predict`` (and ``odplug.demo_dataset``) with the keyword
arguments the command line's flags have, under the same names and defaults, and gets the
library's own result objects back instead of printed lines. They run the same library calls
as the tasks (`odplug.workflows`, `odplug.data.convert`), with the same argument checks
(`odplug.arguments`), so the two cannot drift apart.

What differs from the command line, and why:

- errors are raised, not turned into an exit status: `UsageError` for a wrong argument (exit 2
  on the command line), `OdplugError` for what the work finds (exit 1); a file-system problem
  stays the `OSError` Python code expects, with the path named;
- nothing is printed but warnings, so a notebook cell shows the result, not a log;
  ``progress=True`` shows the command line's progress display;
- TensorFlow's own console output is hidden as on the command line (`quiet_console`), since a
  notebook shows every C++ log line of the kernel's stderr; ``ODPLUG_VERBOSE=1`` shows it.

Every function imports what it needs when called: ``import odplug`` stays fast and
TensorFlow-free, and a wrong argument is refused before TensorFlow is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odplug import arguments as args
from odplug.arguments import PathArg
from odplug.errors import UsageError
from odplug.plugins import BUILTIN_DEFAULTS
from odplug.run import RunInfo
from odplug.storage.urls import is_url

if TYPE_CHECKING:
    from odplug.components import EventCallback, ExportedModel, StepCallback
    from odplug.data.convert import ImportResult
    from odplug.exports.verify import Row
    from odplug.plugins import Registry
    from odplug.workflows.evaluate import Evaluation
    from odplug.workflows.export import Verification
    from odplug.workflows.predict import Predictions

DEFAULT_EXPORTS = ",".join(BUILTIN_DEFAULTS.exporters)
Model = PathArg | RunInfo
"""A trained model: a run folder, a SavedModel folder, or the `RunInfo` `train` returned."""


def _console() -> Registry:
    """The command line's quiet console, set up before anything imports TensorFlow, and the
    plugin registry with a warning line per broken plugin, as the command line shows them."""
    from odplug.cli.console import load_registry_warning, quiet_console

    quiet_console()
    return load_registry_warning()


def _note(text: str) -> None:
    """Downloads and uploads of bucket URLs, said on standard error as the command line says
    them: a notebook sees where its minutes go."""
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _bar(description: str, progress: bool, fields: tuple[str, ...] = ()) -> Iterator[Any]:
    """The command line's progress display when `progress` asks for it, else a silent one."""
    from odplug.cli.console import progress_bar

    with progress_bar(description, enabled=progress, fields=fields) as bar:
        yield bar


def _model(model: Model) -> Path | str:
    """A run's folder, a local path, or a bucket URL kept as text (`odplug.storage`)."""
    return model.run_dir if isinstance(model, RunInfo) else args.place(model)


@args.file_urls_as_paths
def demo_dataset(out: PathArg = "demo/supervisely", *, images: int = 600, size: int = 256,
                 seed: int = 0, progress: bool = False) -> Path:
    """Write the synthetic demo project (shapes on textures, 3 classes) and return its folder:
    a dataset to try every other function on without downloading anything."""
    from odplug.data.demo import write_demo_project

    count = args.whole_number("images", images, 0, 1_000_000)
    side = args.whole_number("size", size, 32, 4096)
    seed = args.whole_number("seed", seed, 0, 2**63 - 1)
    folder = args.out_folder("out", out) or Path("demo/supervisely")
    with args.writing_to(folder), _bar("drawing", progress) as bar:
        bar.start(count)
        return write_demo_project(folder, images=count, size=side, seed=seed,
                                  progress=bar.advance)


@args.file_urls_as_paths
def import_dataset(
    source: PathArg, out: PathArg | None = None, *, format: str | None = None,
    to: str = BUILTIN_DEFAULTS.writer, split: str = "auto",
    ratios: str | Sequence[float] = "0.8,0.1,0.1", seed: int = 0,
    classes: str | Sequence[str] | None = None, rename: str | Mapping[str, str] | None = None,
    label_map: PathArg | None = None, shards: int = 0, workers: int = 0,
    verify: str = "header", pictures: bool = True, engine: str = "local",
    beam_option: str | Sequence[str] | Mapping[str, object] | None = None,
    progress: bool = False,
) -> ImportResult:
    """Import a labelled dataset into TFRecords (or tf_csv, COCO, YOLO): ``data.import``.

    `out` defaults to ``output/<source name>-<to>`` and is replaced whole or not at all.
    `ratios`, `classes` and `rename` take the command line's text (``"0.8,0.1,0.1"``,
    ``"car,person"``, ``"car=vehicle"``) or a sequence or mapping. The result's `report` lists
    every image and box skipped and why (`odplug.dataset_report.render_summary` prints it as
    the command line does). `pictures` draws the dataset into `out` (``dataset.png``, and its
    numbers in ``dataset.json``); ``pictures=False`` saves that second or so. ``engine="beam"``
    writes the TFRecords with an Apache Beam pipeline, `beam_option` its options as the command
    line's ``KEY=VALUE`` text, a list of such, or a mapping (``{"runner": "FlinkRunner"}``).
    """
    from odplug.data.beam import ENGINES, beam_flags
    from odplug.data.convert import ImportOptions, parse_rename
    from odplug.data.convert import import_dataset as run_import
    from odplug.data.splits import parse_ratios

    if not source:
        raise UsageError("give the dataset as source")
    options = ImportOptions(
        format=format, to=to,
        split=args.choice("split", split, ("auto", "source", "ratio")),  # type: ignore[arg-type]
        ratios=parse_ratios(ratios if isinstance(ratios, str)
                            else ",".join(str(r) for r in ratios)),
        seed=args.whole_number("seed", seed, 0, 2**63 - 1), classes=args.names(classes),
        rename=parse_rename(rename or "") if isinstance(rename, str | None) else dict(rename),
        label_map=args.in_file("label_map", label_map),
        shards=args.whole_number("shards", shards, 0, 100_000, " (0: auto)"),
        workers=args.whole_number("workers", workers, 0, 1024, " (0: one per core)"),
        verify=args.choice("verify", verify, ("header", "decode")),  # type: ignore[arg-type]
        pictures=bool(pictures), engine=args.choice("engine", engine, ENGINES),
        beam_options=beam_flags(beam_option),
    )
    source_path = args.place(source)
    out_path = args.out_place("out", out) or args.default_import_out(source_path, to)
    registry = _console()
    with args.writing_to(Path(out_path)), _bar("importing", progress) as bar:
        return run_import(source_path, out_path, options, registry, on_total=bar.start,
                          progress=bar.advance, note=_note)


@args.file_urls_as_paths
def train(records: PathArg, *, run: PathArg | None = None, config: PathArg | None = None,
          steps: int | None = None, set: str | Sequence[str] | Mapping[str, object] | None = None,
          resume: bool = False, overwrite: bool = False, new_run: bool = False,
          trainer: str = BUILTIN_DEFAULTS.trainer, workers: int = 1, progress: bool = False,
          on_step: StepCallback | None = None, on_event: EventCallback | None = None
          ) -> RunInfo:
    """Train a detector on a TFRecord folder: ``model.train``; returns the run's description.

    `run` defaults to ``runs/<records folder name>``. `set` overrides config settings, as the
    command line's text (``"train.batch_size=8,model.fpn=true"``, or a list of such) or a
    mapping (``{"model.input_size": 128}``); `steps`, when given, sets ``train.steps``. A run
    already in `run` is continued with `resume`, replaced with `overwrite`, or left alone with
    `new_run` (training goes to ``<run>-2``, ...); with none of them it is refused.
    ``progress=True`` draws the command line's training display on a terminal; `on_step` hears
    ``(step, total, metrics)`` after every step and `on_event` the phases and validations
    (`odplug.components.TrainingEvent`): a notebook's own display.
    """
    import time

    from odplug.cli.overrides import parse_overrides
    from odplug.cli.training_console import TrainingConsole
    from odplug.data.shards import training_inputs
    from odplug.workflows.train import existing_run_mode, train_model

    if not records:
        raise UsageError("give the TFRecord folder as records")
    settings = dict(set) if isinstance(set, Mapping) else parse_overrides(set or [])
    overrides = args.with_steps("steps", settings, steps)
    chosen_workers = args.whole_number("workers", workers, 1, 16)
    config_path = args.in_file("config", config)
    if not is_url(str(records)):  # a bucket's records are checked once downloaded
        training_inputs(args.in_folder("records", records))
    existing_run_mode(resume=resume, overwrite=overwrite)
    run_dir = args.out_place("run", run) or args.default_run_dir(str(records))
    registry = _console()
    with args.writing_to(Path(run_dir)), _bar("training", progress, ("status",)) as bar:
        console = TrainingConsole(bar, time.perf_counter()) if progress else None
        return train_model(registry, _model(records), run_dir, trainer=trainer,
                           note=_note,
                           config=config_path, overrides=overrides, resume=resume,
                           overwrite=overwrite, new_run=new_run, workers=chosen_workers,
                           on_step=_both(console.on_step if console else None, on_step),
                           on_event=_both(console.on_event if console else None, on_event))


def _both(first: Callable[..., None] | None, second: Callable[..., None] | None
          ) -> Callable[..., None] | None:
    """One callback calling each of two that are given, or the one given, or None."""
    if first is None or second is None:
        return first or second

    def both(*event: Any) -> None:
        first(*event)
        second(*event)

    return both


@args.file_urls_as_paths
def evaluate(model: Model, *, records: PathArg | None = None, split: str = "test",
             out: PathArg | None = None) -> Evaluation:
    """COCO metrics of a trained model on one split: ``model.evaluate``.

    `records` defaults to the ones the run trained on, `out` (where ``<split>.json`` and the
    precision-recall plot go) to the run's metrics folder. The result's `result` has ``map``,
    ``map50``, ``map75`` and ``per_class``.
    """
    from odplug.workflows.evaluate import evaluate_model

    _console()
    return evaluate_model(_model(model), records=args.place(records) if records else None,
                          split=split, out=args.out_folder("out", out), note=_note)


@dataclass
class ExportResult:
    """What `export` wrote and, unless ``verify=False``, how every model scored."""

    out: Path
    """The export folder, one sub-folder per format."""
    models: list[ExportedModel]
    verification: Verification | None = None
    """The verification table's rows and where ``verification.md`` and ``.json`` are."""
    report: Path | None = None
    """``report.html``, the page that shows the run and every export side by side (without
    verification: the run, and a line saying the exports were not verified)."""

    @property
    def rows(self) -> list[Row]:
        """One `odplug.exports.verify.Row` per model, the SavedModel's first; none unverified."""
        return self.verification.rows if self.verification else []


@args.file_urls_as_paths
def export(model: Model, *, to: str | Sequence[str] = DEFAULT_EXPORTS,
           quantize: str | Sequence[str] = "", out: PathArg | None = None,
           records: PathArg | None = None, verify: bool = True, limit: int = 0,
           min_ratio: str | float = "") -> ExportResult:
    """Export a trained model to TFLite / Edge TPU / TF.js and verify each: ``model.export``.

    `to` and `quantize` take ``"tflite,tfjs"`` text or a list. Every exporter is checked before
    any work starts. With `min_ratio` (``"targets"`` or a fraction) a model that keeps less
    of the SavedModel's mAP raises `OdplugError` after the table is written, as the command
    line exits 1.
    """
    from odplug.workflows.export import check_targets, plan_export
    from odplug.workflows.export import export as write_all

    if not model:
        raise UsageError("give the run folder as model")
    count = args.whole_number("limit", limit, 0, 10**9, " (0: all)")
    enforce, floor = args.min_ratio("min_ratio", min_ratio)
    if enforce and not verify:
        raise UsageError(f"min_ratio={min_ratio!r} needs the verification: leave "
                              "verify on")
    job = plan_export(_console(), to=args.names(to), quantize=args.names(quantize),
                      model=_model(model), out=args.out_place("out", out),
                      records=_model(records) if records else None, verify=verify,
                      note=_note)
    exported = write_all(job, limit=count or None, note=_note)
    result = ExportResult(job.out, exported.models, exported.verification,
                          exported.report)
    if enforce:
        check_targets(result.rows, floor)
    return result


@args.file_urls_as_paths
def predict(model: Model, source: PathArg, *, out: PathArg = "predictions",
            threshold: float = 0.3) -> Predictions:
    """Detect objects in images and videos: ``model.predict``.

    `model` is a run, a SavedModel folder, an exported ``.tflite`` file or TF.js folder;
    `source` an image or video file, a folder (with its sub-folders) or a glob. Writes each
    drawn in its own format and ``detections.json`` (COCO results) with ``images.json`` into
    `out` (replaced whole), and returns the same detections, per image or video frame.
    """
    from odplug.data.media import is_glob

    if not model or not source:
        raise UsageError("give the model and the source images")
    if not is_glob(str(source)) and not is_url(str(source)):
        args.in_path("source", source)
    lowest = args.fraction("threshold", threshold, 0.0, 1.0)
    model_path = args.in_place("model", str(_model(model)))
    out_path = args.out_place("out", out) or Path("predictions")
    registry = _console()
    from odplug.workflows.predict import predict as run_predict

    return run_predict(model_path, str(source), out_path, lowest, registry, note=_note)

