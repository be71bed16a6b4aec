"""``model.export``: a trained model into every format asked for, then the verification table.

`plan_export` orders the exporters, checks them all and resolves the model (a run folder or a
SavedModel folder) before any work; `export` writes each format; `verify_exports` runs every
exported model on the test split beside the SavedModel. ``model.export`` and the pipeline both
call these three, so an export is planned, checked, written and verified one way whichever
started it; the command line only prints what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from odplug.components import ExportedModel, Exporter
from odplug.data.labelmap import read_label_map
from odplug.errors import OdplugError
from odplug.exports import plan as exporting
from odplug.plugins import Registry
from odplug.run import resolve_model

if TYPE_CHECKING:  # running and scoring models imports TensorFlow: only verification does
    from odplug.exports.verify import Row

Written = list[tuple[Exporter, ExportedModel]]


@dataclass
class ExportJob:
    """What `export` will do, known before it starts, so it can be shown first."""

    exporters: list[Exporter]
    """Dependencies first (tflite before edgetpu), each once."""
    variants: dict[str, list[str]]
    out: Path
    records: Path | None
    """The data.import folder for int8 calibration and verification, if known."""
    saved_model: Path | None = None
    """The SavedModel to convert; None while it is not trained yet (the pipeline plans its
    export before training and gives it with `for_model` once it is)."""

    def for_model(self, saved_model: Path) -> ExportJob:
        return replace(self, saved_model=saved_model)


@dataclass
class Verification:
    rows: list[Row]
    table: Path
    """``verification.md``"""
    data: Path
    """``verification.json``"""


def plan_export(registry: Registry, *, to: Sequence[str], quantize: Sequence[str] = (),
                model: Path | None = None, out: Path | None = None,
                records: Path | None = None, verify: bool = True) -> ExportJob:
    """Check everything an export needs, in one order, and raise before any work is done.

    The order: the exporter names and what they require, the variants (the user's mistakes,
    `UsageError`), every exporter's `check()` (what is missing here), then `model`, a run
    folder or a SavedModel folder, whose run gives the default `records` and `out` (``export/``
    in the run folder, or beside the SavedModel), and last that verification has records.
    The pipeline plans before its model is trained: it leaves `model` out and gives `out` and
    `records` (`ExportJob.for_model` adds the SavedModel later).
    """
    exporters = exporting.plan(registry, to)
    variants = exporting.variants_for(exporters, quantize)
    exporting.check(exporters)
    saved_model = None
    if model is not None:
        saved_model, run = resolve_model(model)
        if records is None and run is not None:
            records = run.records
        if out is None:
            out = (run.run_dir if run else saved_model.parent) / "export"
    if verify and records is None:
        raise OdplugError(f"{model}: not a run folder, so no test split is known: give "
                          "--records or --no-verify")
    if out is None:
        raise ValueError("plan_export needs the model or the output folder")
    return ExportJob(exporters, variants, out, records, saved_model)


def export(job: ExportJob, on_done: Callable[[ExportedModel], None] = lambda model: None
           ) -> Written:
    """Run every exporter of `job` into ``<out>/<exporter>``; `on_done` hears of each model."""
    return exporting.export_all(job.exporters, _saved_model(job), job.out, job.variants,
                                job.records, on_done=on_done)


def verify_exports(job: ExportJob, written: Written, *, limit: int | None = None,
                   on_row: Callable[[Row], None] = lambda row: None) -> Verification:
    """Score the SavedModel and every exported model of `job` on the test split of its
    records; write ``verification.md`` and ``verification.json`` to its output folder."""
    if job.records is None:
        raise ValueError("verify_exports needs a job planned with its records")
    from odplug.exports.verify import verify, write_table
    from odplug.workflows.evaluate import split_files

    files = split_files(job.records, "test", "to verify on")
    rows = verify(_saved_model(job), written, files,
                  read_label_map(job.records / "label_map.pbtxt"), limit=limit, on_row=on_row)
    table, data = write_table(rows, job.out)
    return Verification(rows, table, data)


def _saved_model(job: ExportJob) -> Path:
    if job.saved_model is None:
        raise ValueError("the export job has no SavedModel yet: plan it with the model or "
                         "give it with ExportJob.for_model")
    return job.saved_model


def check_targets(rows: Sequence[Row], min_ratio: float | None = None) -> None:
    """Raise when an exported model keeps less of the SavedModel's mAP@.5 or mAP@[.5:.95]
    than `min_ratio`, or than its own target (99.5% float, 98% 8-bit) when `min_ratio` is
    None; the one-line error names every such model with its ratios and intervals."""
    from odplug.exports.verify import missed

    below = missed(rows, min_ratio)
    if below:
        raise OdplugError("below target: " + "; ".join(below))
