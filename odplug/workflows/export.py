"""``model.export``: a trained model into every format asked for, then the verification table.

`plan_export` orders the exporters, checks them all and resolves the model (a run folder or a
SavedModel folder) before any work; `export` writes each format and, unless the job was
planned without it, runs every exported model on the test split beside the SavedModel and
writes the verification table. ``model.export``, ``odplug.export`` and the pipeline all call
these two, so an export is planned, checked, written and verified one way whichever started
it; the command line only prints what they return.

An export changes its output folder whole or not at all. Everything is written into a hidden
staging folder beside it (same file system), which replaces the folder only once every model,
and the verification when asked, is written: the previous folder is renamed aside, the new
one renamed in, the old one deleted (`odplug.atomic.replace_folder`, under a lock that
refuses a second export into the same folder). A failed, interrupted or killed export leaves
the previous one byte-identical; what a killed one left beside it is deleted, or put back if
it died between the two renames, when the next export into that folder starts
(`odplug.atomic.recover_folder`). An export without verification leaves no older table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from odplug.atomic import folder_lock, recover_folder, replace_folder
from odplug.components import ExportedModel, Exporter
from odplug.data.labelmap import read_label_map
from odplug.errors import OdplugError
from odplug.exports import plan as exporting
from odplug.exports.output import check_output, moved, unchanged_line
from odplug.plugins import EXPORTERS, Registry
from odplug.run import RunInfo, resolve_model
from odplug.storage import is_url
from odplug.workflows.buckets import (
    any_url,
    input_path,
    local_output,
    publish_output,
    records_of,
)

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
    verify: bool = True
    """Whether `export` verifies every model and writes the table with them."""
    formats: frozenset[str] = field(default_factory=frozenset)
    """Every registered exporter's name: the sub-folders of an export folder that `export`
    may replace (`odplug.exports.output.check_output`)."""
    run: RunInfo | None = None
    """The run the SavedModel came from, when the model was a run folder: the report shows
    its training and evaluation."""
    publish_to: str | None = None
    """The bucket URL the output goes to (`odplug.workflows.buckets`): `out` is then its
    local copy, published to it whole once the export is written."""
    records_url: str | None = None
    """The records' URL when they are in a bucket, kept in the published manifest."""

    def for_model(self, saved_model: Path, run: RunInfo | None = None) -> ExportJob:
        return replace(self, saved_model=saved_model, run=run)


@dataclass
class Verification:
    rows: list[Row]
    table: Path
    """``verification.md``"""
    data: Path
    """``verification.json``"""


@dataclass
class Exported:
    """What `export` wrote, at the paths it has in the output folder."""

    written: Written
    """Each model with the exporter that wrote it, in `ExportJob.exporters`' order."""
    verification: Verification | None = None
    """None when the job was planned with ``verify=False``."""
    report: Path | None = None
    """``report.html`` in the output folder (`odplug.report`): without verification it shows
    the dataset, the training and the evaluation, and says the exports were not verified."""

    @property
    def models(self) -> list[ExportedModel]:
        return [model for _exporter, model in self.written]


def plan_export(registry: Registry, *, to: Sequence[str], quantize: Sequence[str] = (),
                model: Path | str | None = None, out: Path | str | None = None,
                records: Path | str | None = None, verify: bool = True,
                note: Callable[[str], None] = lambda text: None) -> ExportJob:
    """Check everything an export needs, in one order, and raise before any work is done.

    The order: the exporter names and what they require, the variants (the user's mistakes,
    `UsageError`), every exporter's `check()` (what is missing here), then `model`, a run
    folder or a SavedModel folder, whose run gives the default `records` and `out` (``export/``
    in the run folder, or beside the SavedModel), that verification has records, and last that
    the output is a folder an export may replace whole (`check_output`). The pipeline plans
    before its model is trained: it leaves `model` out and gives `out` and `records`
    (`ExportJob.for_model` adds the SavedModel later).

    `model`, `out` and `records` may be bucket URLs (`odplug.workflows.buckets`): the model
    and records are read from their cached copies (a run's records URL, kept in its manifest,
    is its default), the default output of a run in a bucket is ``<run URL>/export``, and an
    output URL gets the export published to it once written.
    """
    exporters = exporting.plan(registry, to)
    variants = exporting.variants_for(exporters, quantize)
    exporting.check(exporters)
    if any_url(model, out, records):
        return _plan_with_urls(registry, exporters, variants, model, out, records, verify, note)
    return _plan_here(registry, exporters, variants, Path(model) if model else None,
                      Path(out) if out else None, Path(records) if records else None, verify)


def _plan_with_urls(registry: Registry, exporters: list[Exporter],
                    variants: dict[str, list[str]], model: Path | str | None,
                    out: Path | str | None, records: Path | str | None, verify: bool,
                    note: Callable[[str], None]) -> ExportJob:
    """`plan_export` where the model, the output or the records are bucket URLs. An output
    URL is checked (`local_output`) before anything is downloaded."""
    model_url = str(model) if model is not None and is_url(str(model)) else None
    if model_url and out is None:
        out = f"{model_url.rstrip('/')}/export"
    local_out, publish_to = local_output(out) if out is not None else (None, None)
    if model_url:
        if records is None:
            records = records_of(model_url)
        model = input_path(model_url, "run folder or SavedModel folder", note)
    records_url = str(records) if records is not None and is_url(str(records)) else None
    if records is not None:
        records = input_path(records, "records folder (data.import's output)", note)
    job = _plan_here(registry, exporters, variants, Path(model) if model else None,
                     local_out, Path(records) if records else None, verify)
    return replace(job, publish_to=publish_to, records_url=records_url)


def _plan_here(registry: Registry, exporters: list[Exporter], variants: dict[str, list[str]],
               model: Path | None, out: Path | None, records: Path | None,
               verify: bool) -> ExportJob:
    saved_model, run = None, None
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
    formats = frozenset(registry.table(EXPORTERS))
    check_output(out, formats)
    return ExportJob(exporters, variants, out, records, saved_model, verify, formats, run)


def export(job: ExportJob, *, limit: int | None = None,
           on_done: Callable[[ExportedModel], None] = lambda model: None,
           on_verifying: Callable[[], None] = lambda: None,
           on_row: Callable[[Row], None] = lambda row: None,
           note: Callable[[str], None] = lambda text: None) -> Exported:
    """Write every exporter of `job` into ``<out>/<exporter>`` and, when `job.verify`, score
    the SavedModel and every exported model on the test split of its records (at most `limit`
    images) into ``verification.md`` and ``.json``; all of it replaces `job.out` whole once
    written (module docstring), or raises and leaves `job.out` as it was.

    `on_done` hears of each model, `on_verifying` of the verification starting and `on_row`
    of each row, all with the paths they have once the export is in place. A file-system
    error (a full disk) is an `OdplugError` of one line naming the output. A job with
    `ExportJob.publish_to` publishes the output to that URL last (`note` hears the upload);
    the paths returned are those of its local copy.
    """
    result = _export_here(job, limit=limit, on_done=on_done, on_verifying=on_verifying,
                          on_row=on_row)
    if job.publish_to is not None:
        publish_output(job.out, job.publish_to, "model.export", note, records=job.records_url)
    return result


def _export_here(job: ExportJob, *, limit: int | None,
                 on_done: Callable[[ExportedModel], None], on_verifying: Callable[[], None],
                 on_row: Callable[[Row], None]) -> Exported:
    saved_model = _saved_model(job)
    if job.verify and job.records is None:
        raise ValueError("export needs a job planned with its records to verify")
    target = job.out.resolve()
    staged: list[Path] = []
    try:
        with folder_lock(target, "export"):
            recover_folder(target)
            check_output(job.out, job.formats)
            with replace_folder(target) as staging:
                staged.append(staging)

                def model_done(model: ExportedModel) -> None:
                    on_done(_moved_model(model, staging, job.out))

                written = exporting.export_all(job.exporters, saved_model, staging,
                                               job.variants, job.records, on_done=model_done)
                result = Exported([(exporter, _moved_model(model, staging, job.out))
                                   for exporter, model in written])
                if job.verify:
                    on_verifying()
                    result.verification = _verify(replace(job, out=staging), written, job.out,
                                                  limit=limit, on_row=on_row)
                result.report = _report(job, staging)
    except OSError as error:
        raise OdplugError(unchanged_line(job.out, error, staged[0] if staged else None)
                          ) from None
    return result


def _moved_model(model: ExportedModel, staging: Path, out: Path) -> ExportedModel:
    return replace(model, path=moved(model.path, staging, out),
                   manifest=moved(model.manifest, staging, out))


def _verify(job: ExportJob, written: Written, out: Path, *, limit: int | None,
            on_row: Callable[[Row], None]) -> Verification:
    """Score the SavedModel and every model of `written` on the test split of `job`'s
    records; write the table into `job.out` (the staging folder), each row giving the path
    its model has once `job.out` has become `out`."""
    assert job.records is not None  # `export` checked
    from odplug.exports.verify import verify_models, write_detections, write_table
    from odplug.workflows.evaluate import split_files

    def row_done(row: Row) -> None:
        row.path = str(moved(Path(row.path), job.out, out))
        on_row(row)

    files = split_files(job.records, "test", "to verify on")
    verified = verify_models(_saved_model(job), written, files,
                             read_label_map(job.records / "label_map.pbtxt"), limit=limit,
                             on_row=row_done)
    write_detections(verified.detections, job.out)
    write_table(verified.rows, job.out)
    return Verification(verified.rows, out / "verification.md", out / "verification.json")


def _report(job: ExportJob, staging: Path) -> Path:
    """``report.html`` written into `staging` (it reads the verification there), naming
    `job.out`, where it will be; returns the path it will have."""
    from odplug.exports.output import REPORT_FILE
    from odplug.report.page import write_report

    model = job.run.run_dir if job.run else _saved_model(job)
    write_report(staging / REPORT_FILE, records=job.records, run=job.run, export=staging,
                 shown_export=job.out, title=f"odplug export: {model.name}")
    return job.out / REPORT_FILE


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
