"""``model.export``: a trained model into every format asked for, then the verification table.

`plan_export` resolves the model (a run folder or a SavedModel folder), orders the exporters
and checks them all before any work; `export` writes each format; `verify_exports` runs every
exported model on the test split beside the SavedModel. The command line and the pipeline both
call these and only print what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from odplug.components import ExportedModel, Exporter
from odplug.data.labelmap import read_label_map
from odplug.errors import OdplugError
from odplug.export import plan as exporting
from odplug.export.verify import Row, missed, verify, write_table
from odplug.plugins import Registry
from odplug.run import resolve_model
from odplug.workflows.evaluate import split_files

Written = list[tuple[Exporter, ExportedModel]]


@dataclass
class ExportJob:
    """What `export` will do, known before it starts, so it can be shown first."""

    exporters: list[Exporter]
    """Dependencies first (tflite before edgetpu), each once."""
    variants: dict[str, list[str]]
    saved_model: Path
    out: Path
    records: Path | None
    """The data.import folder for int8 calibration and verification, if known."""


@dataclass
class Verification:
    rows: list[Row]
    table: Path
    """``verification.md``"""
    data: Path
    """``verification.json``"""


def plan_export(registry: Registry, model: Path, *, to: Sequence[str],
                quantize: Sequence[str] = (), out: Path | None = None,
                records: Path | None = None, verify: bool = True) -> ExportJob:
    """Resolve and check everything an export needs; raises before any work is done."""
    exporters = exporting.plan(registry, to)
    variants = exporting.variants_for(exporters, quantize)
    exporting.check(exporters)
    saved_model, run = resolve_model(model)
    if records is None and run is not None:
        records = run.records
    if verify and records is None:
        raise OdplugError(f"{model}: not a run folder, so no test split is known: give "
                          "--records or --no-verify")
    if out is None:
        out = (run.run_dir if run else saved_model.parent) / "export"
    return ExportJob(exporters, variants, saved_model, out, records)


def export(job: ExportJob, on_done: Callable[[ExportedModel], None] = lambda model: None
           ) -> Written:
    """Run every exporter of `job` into ``<out>/<exporter>``; `on_done` hears of each model."""
    return exporting.export_all(job.exporters, job.saved_model, job.out, job.variants,
                                job.records, on_done=on_done)


def verify_exports(saved_model: Path, written: Written, records: Path, out: Path, *,
                   limit: int | None = None, on_row: Callable[[Row], None] = lambda row: None
                   ) -> Verification:
    """Score the SavedModel and every exported model on the test split of `records`; write
    ``verification.md`` and ``verification.json`` to `out`."""
    files = split_files(records, "test", "to verify on")
    rows = verify(saved_model, written, files, read_label_map(records / "label_map.pbtxt"),
                  limit=limit, on_row=on_row)
    table, data = write_table(rows, out)
    return Verification(rows, table, data)


def check_targets(rows: Sequence[Row], min_ratio: float | None = None) -> None:
    """Raise when an exported model keeps less of the SavedModel's mAP@.5 or mAP@[.5:.95]
    than `min_ratio`, or than its own target (99.5% float, 98% 8-bit) when `min_ratio` is
    None; the one-line error names every such model with its ratios and intervals."""
    below = missed(rows, min_ratio)
    if below:
        raise OdplugError("below target: " + "; ".join(below))
