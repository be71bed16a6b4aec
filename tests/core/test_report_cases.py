"""The HTML report as a reader and a validator look at it, on the synthetic inputs of
test_report.py: balanced tags and unique ids, a run without a val split (no made-up best row),
an export without verification (still a report); a gap still open is marked xfail(strict)."""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from odplug.exports.output import REPORT_FILE
from odplug.report.page import write_report
from odplug.run import RunInfo
from odplug.workflows import export as exporting
from odplug.workflows.export import ExportJob
from tests.core.test_report import parse, records, write_export, write_run

__all__ = ["records"]  # the module-scoped fixture, shared with test_report.py

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _Nesting(HTMLParser):
    """Every non-void element closed, in order; every id once."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [value or "" for name, value in attrs if name == "id"]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()


def test_the_page_nests_and_its_ids_are_unique(records: Path, tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", records)
    export = write_export(tmp_path / "run" / "export", records)
    page = write_report(tmp_path / "report.html", records=records, run=run, export=export,
                        title="nesting")
    checker = _Nesting()
    checker.feed(page.read_text(encoding="utf-8"))
    assert checker.problems == [] and checker.open == []
    assert len(checker.ids) == len(set(checker.ids))


def _no_val_run(folder: Path, records: Path, rows: int = 15) -> RunInfo:
    """A run of records without a val split: results.csv as the trainer writes it then
    (`train._record` with no scores): step, seconds, images, the loss means, learning_rate."""
    run = write_run(folder, records)
    assert run.results is not None
    with run.results.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "seconds", "images", "loss", "classification", "box",
                         "learning_rate"])
        for i in range(rows):
            rate = 0.003 * min(1.0, (i + 1) / 5) * (1 - i / rows)  # warm-up, then decay
            writer.writerow([(i + 1) * 10, i * 2.5, (i + 1) * 40, 1 / (i + 1), 0.5 / (i + 1),
                             0.5 / (i + 1), rate])
    return run


def test_a_run_without_val_split_has_no_made_up_best_row(records: Path, tmp_path: Path) -> None:
    run = _no_val_run(tmp_path / "run", records)
    text, _page = parse(write_report(tmp_path / "r.html", records=records, run=run, export=None,
                                     title="no val"))
    labels = re.findall(r"<tr><td>([a-z, ]*)</td>", text)
    assert "best" not in " ".join(labels), labels


def test_an_export_without_verification_still_has_its_report(
        records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(tmp_path / "run", records)
    monkeypatch.setattr(exporting.exporting, "export_all",
                        lambda *args, **kwargs: [])  # no converter: only the report is looked at
    job = ExportJob([], {}, tmp_path / "run" / "export", records, run.saved_model, verify=False,
                    run=run)
    result = exporting.export(job)
    assert result.report == job.out / REPORT_FILE and result.report.is_file()
