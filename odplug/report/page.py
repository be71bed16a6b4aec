"""`write_report`: the one HTML page of a pipeline or an export, written whole.

Both writers call it with what they have: ``pipeline`` with its records, run and export
folder (``<out>/report.html``), ``model.export`` with the job's (``report.html`` in the
export folder). Jinja2 with autoescape on renders the sections (`odplug.report.blocks`), so a
class named ``<b>&`` is text on the page, never markup. Every picture is inside the page as a
data: URI, the page has no script and links nothing, so it opens offline wherever it is
copied. What is missing is a sentence in its section.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from odplug.atomic import atomic_write_text
from odplug.exports.table import (
    COLUMNS,
    NUMERIC,
    Row,
    intervals_note,
    quantization_checks,
    table_cells,
)
from odplug.report.blocks import Block, Note, Section, Table
from odplug.report.compare import Kept, side_by_side, worst_first
from odplug.report.sections import (
    dataset_section,
    evaluation_numbers,
    read_json,
    training_section,
)
from odplug.run import RunInfo

TEMPLATE = "report.html.j2"


def write_report(path: Path, *, records: Path | None, run: RunInfo | None,
                 export: Path | None, title: str, shown_export: Path | None = None) -> Path:
    """The report of `records` (the data.import folder), `run` and the export folder `export`
    (any may be None: its part of the page says so), written whole to `path`; returns it.
    `shown_export` is the export folder's name on the page when `export` is the staging
    folder that will become it."""
    started = time.perf_counter()
    kept = Kept.read(export, records) if export is not None else None
    evaluation = Section("evaluation", "Evaluation", evaluation_numbers(run))
    evaluation.blocks += worst_first(kept) if isinstance(kept, Kept) else [
        Note(kept or "No export folder: the test images with the most errors are drawn from "
             "an export's verification.")]
    sections = [dataset_section(records), training_section(run), evaluation,
                exports_section(export, kept)]
    environment = jinja2.Environment(loader=jinja2.PackageLoader("odplug.report", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.get_template(TEMPLATE).render(
        title=title, sections=sections,
        sources=_sources(records, run, shown_export or export),
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=f"{time.perf_counter() - started:.1f}")
    atomic_write_text(path, page)
    return path


def _sources(records: Path | None, run: RunInfo | None, export: Path | None
             ) -> list[tuple[str, str]]:
    return [(what, str(where) if where is not None else "none")
            for what, where in (("records", records), ("run", run.run_dir if run else None),
                                ("export", export))]


def exports_section(export: Path | None, kept: Kept | str | None) -> Section:
    """The verification table as the terminal and verification.md show it, then the models
    side by side on the kept test images."""
    section = Section("exports", "Exports")
    if export is None:
        section.blocks.append(Note("No export folder was given."))
        return section
    document, why = read_json(export / "verification.json")
    try:
        rows = [Row.from_json(row) for row in document] if isinstance(document, list) else None
    except ValueError as error:
        rows, why = None, f"{export / 'verification.json'}: {error}."
    if not rows:
        section.blocks.append(Note(f"Not verified: {why or 'the table is empty.'} An export "
                                   "without --no-verify writes the table and its pictures."))
        return section
    section.blocks += verification_blocks(rows)
    section.blocks += side_by_side(kept) if isinstance(kept, Kept) else [Note(str(kept))]
    return section


def verification_blocks(rows: Sequence[Row]) -> list[Block]:
    blocks: list[Block] = [Table(
        "Every model on the test split beside the SavedModel it came from", COLUMNS,
        [list(cells) for cells in table_cells(rows)], NUMERIC,
        [not row.met for row in rows]), Note(intervals_note(rows))]
    blocks += [Note(check) for check in quantization_checks(rows)]
    return blocks
