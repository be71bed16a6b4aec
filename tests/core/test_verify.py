"""The verification table's targets and intervals, and ``--min-ratio`` turning a missed target
into a failing command (rows stand in for exported models, so no model runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from odplug.cli import tasks
from odplug.exports.verify import (
    EIGHT_BIT_TARGET,
    FLOAT_TARGET,
    Row,
    missed,
    table_cells,
    target_for,
    write_table,
)
from odplug.workflows import export as export_workflow


def _rows(int8_map50: float = 0.97) -> list[Row]:
    reference = Row("saved_model", "s", 7.8, 0.900, 0.600, 1.0, 17.0, 300)
    floating = Row("tflite-float32", "f", 2.7, 0.899, 0.599, 0.899 / 0.9, 2.3, 300,
                   map_vs_reference=0.599 / 0.6, map50_low=0.996, map50_high=1.001,
                   map_low=0.994, map_high=1.002, target=target_for("float32"),
                   exporter="tflite", variant="float32")
    eight_bit = Row("tflite-int8", "i", 0.8, 0.9 * int8_map50, 0.597, int8_map50, 2.7, 300,
                    note="calibrated | 100 images", map_vs_reference=0.995,
                    map50_low=int8_map50 - 0.01, map50_high=int8_map50 + 0.005,
                    map_low=0.99, map_high=1.0, target=target_for("int8"),
                    exporter="tflite", variant="int8")
    return [reference, floating, eight_bit]


def test_targets_follow_the_variant() -> None:
    assert [target_for(v) for v in ("float32", "float16", "dynamic", "int8", "uint8")] == [
        FLOAT_TARGET, FLOAT_TARGET, FLOAT_TARGET, EIGHT_BIT_TARGET, EIGHT_BIT_TARGET]
    assert (FLOAT_TARGET, EIGHT_BIT_TARGET) == (0.995, 0.98)


def test_the_table_shows_ratios_with_intervals_and_targets(tmp_path: Path) -> None:
    markdown, data = write_table(_rows(), tmp_path)
    lines = markdown.read_text().splitlines()
    assert lines[0] == ("| model | size (MB) | mAP@.5 | mAP@[.5:.95] | mAP@.5 vs SavedModel "
                        "(95% CI) | mAP@[.5:.95] vs SavedModel (95% CI) | target | latency (ms) "
                        "| notes |")
    assert lines[2] == ("| saved_model | 7.80 | 0.900 | 0.600 | 100.0% | 100.0% | reference | "
                        "17.0 |  |")
    assert lines[3] == ("| tflite-float32 | 2.70 | 0.899 | 0.599 | 99.9% (99.6%-100.1%) | "
                        "99.8% (99.4%-100.2%) | met (>= 99.5%) | 2.3 |  |")
    assert lines[4] == ("| tflite-int8 | 0.80 | 0.873 | 0.597 | 97.0% (96.0%-97.5%) | "
                        "99.5% (99.0%-100.0%) | NOT met (>= 98.0%) | 2.7 | "
                        "calibrated \\| 100 images |")
    assert "paired bootstrap over the 300 test images (1000 draws)" in markdown.read_text()
    assert lines[-1] == ("- tflite-int8: 97.1% of tflite-float32's mAP@.5 (target >= 99%: "
                         "NOT met), 0.30x the size (<= 0.35x: met)")
    saved = json.loads(data.read_text())
    assert [r["met"] for r in saved] == [True, True, False]
    assert saved[2]["map50_low"] == pytest.approx(0.96)
    assert saved[2]["target"] == 0.98 and saved[0]["target"] is None
    assert saved[1]["map_vs_reference"] == pytest.approx(0.599 / 0.6)
    assert [(r["exporter"], r["variant"]) for r in saved] == [
        (None, None), ("tflite", "float32"), ("tflite", "int8")]
    assert [Row.from_json(r) for r in saved] == _rows()


def test_a_row_reads_back_from_older_files_and_refuses_anything_else() -> None:
    older = {key: value for key, value in _rows()[2].to_json().items()
             if key not in ("map_low", "map_high", "target", "exporter", "variant")}
    row = Row.from_json(older)
    assert (row.name, row.map_low, row.target, row.variant) == ("tflite-int8", 1.0, None, None)
    for stored in ({"name": "tflite-int8"}, ["tflite-int8"], "row"):
        with pytest.raises(ValueError, match="not a verification row"):
            Row.from_json(stored)  # type: ignore[arg-type]


def test_a_missed_target_is_named_with_its_numbers() -> None:
    assert missed(_rows(int8_map50=0.985)) == []
    [line] = missed(_rows())
    assert line == ("tflite-int8: mAP@.5 97.0% (96.0%-97.5%), mAP@[.5:.95] 99.5% (99.0%-100.0%) "
                    "of the SavedModel's on 300 test images, target >= 98.0%")
    assert [line.split(":")[0] for line in missed(_rows(int8_map50=0.985), 0.999)] == [
        "tflite-float32", "tflite-int8"]
    assert missed(_rows(), 0.9) == []


def test_a_model_without_a_ratio_misses_any_target() -> None:
    rows = _rows()
    rows[1].map50_vs_reference = float("nan")
    assert [line.split(":")[0] for line in missed(rows, 0.0)] == ["tflite-float32"]


class _Job:
    def __init__(self, tmp_path: Path) -> None:
        self.exporters, self.variants = [], {}
        self.saved_model, self.out, self.records = tmp_path, tmp_path, tmp_path
        self.publish_to = None  # a local output (`ExportJob.publish_to`: no bucket URL)


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``model.export`` with planning, exporting and verification replaced: it prints and
    judges the rows `_rows` gives (tflite-int8 at 97% of the SavedModel's mAP@.5)."""
    def export(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = _rows()
        table, data = write_table(rows, tmp_path)
        return export_workflow.Exported([], export_workflow.Verification(rows, table, data))

    monkeypatch.setattr(export_workflow, "plan_export", lambda *a, **k: _Job(tmp_path))
    monkeypatch.setattr(export_workflow, "export", export)
    monkeypatch.setattr(tasks, "load_registry_warning", lambda: None)

    def run(**options):  # type: ignore[no-untyped-def]
        return tasks.model_export(Context(), model=str(tmp_path), **options)

    return run


def test_min_ratio_fails_the_export_naming_the_model(exported, capsys) -> None:  # type: ignore[no-untyped-def]
    exported()  # default: report only
    assert "NOT met (>= 98.0%)" in capsys.readouterr().out
    with pytest.raises(Exit) as failed:
        exported(min_ratio="targets")
    assert failed.value.code == 1
    assert str(failed.value.message).startswith("odplug: error: below target: tflite-int8: "
                                                "mAP@.5 97.0% (96.0%-97.5%)")
    assert "\n" not in failed.value.message
    with pytest.raises(Exit) as failed:
        exported(min_ratio="0.9995")
    assert "tflite-float32:" in failed.value.message and "target >= 100.0%" in failed.value.message
    exported(min_ratio="0.95")


@pytest.mark.parametrize("value", ["x", "1.5", "-0.1", "nan", "target"])
def test_min_ratio_takes_targets_or_a_fraction(exported, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exit) as refused:
        exported(min_ratio=value)
    assert refused.value.code == 2
    assert refused.value.message == (f"odplug: error: --min-ratio {value!r}: give 'targets' or "
                                     "a number from 0 to 1")


def test_min_ratio_needs_the_verification(exported) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exit, match="needs the verification"):
        exported(min_ratio="targets", verify=False)


def test_pipeline_min_ratio_judges_the_rows_it_printed(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from odplug.workflows import pipeline as pipeline_workflow

    table, _data = write_table(_rows(), tmp_path)
    result = pipeline_workflow.PipelineResult(
        out=tmp_path, records=tmp_path, run=SimpleNamespace(run_dir=tmp_path, saved_model=tmp_path),
        exported=[], table=table, rows=_rows(), reused=[], report=tmp_path / "report.html")
    monkeypatch.setattr(pipeline_workflow, "run_pipeline", lambda *a, **k: result)
    monkeypatch.setattr(tasks, "load_registry_warning", lambda: None)
    tasks.pipeline(Context(), out=str(tmp_path / "out"))
    assert "NOT met (>= 98.0%)" in capsys.readouterr().out
    tasks.pipeline(Context(), out=str(tmp_path / "out"), min_ratio="0.97")
    with pytest.raises(Exit) as failed:
        tasks.pipeline(Context(), out=str(tmp_path / "out"), min_ratio="targets")
    assert failed.value.code == 1 and "below target: tflite-int8: mAP@.5 97.0%" in str(
        failed.value.message)


def test_a_terminal_gets_the_table_drawn_and_a_pipe_the_markdown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same cells both ways: drawn with rich in a terminal (here 200 columns wide), as the
    file holds them in a log or a pipe (what the e2e tests and CI read)."""
    from odplug.cli.verification_table import show_verification

    monkeypatch.setenv("COLUMNS", "200")
    rows = _rows()
    markdown, _data = write_table(rows, tmp_path)
    show_verification(rows, markdown, interactive=False)
    assert capsys.readouterr().out == markdown.read_text()
    show_verification(rows, markdown, interactive=True)
    drawn = capsys.readouterr().out
    assert "|---|" not in drawn and "│" in drawn
    lines = drawn.splitlines()
    for cells in table_cells(rows):
        [line] = [line for line in lines if f" {cells[0]} " in line]
        assert all(cell in line for cell in cells), (cells, line)
    assert "Intervals: paired bootstrap over the 300 test images" in drawn
    assert "- tflite-int8: " in drawn  # the int8 checks under the table, as in the file


def _in_mediapipe(own: Row, map50: float, map_: float) -> Row:
    """`own`'s model run in MediaPipe Tasks, as verify_models adds it."""
    from dataclasses import replace

    return replace(own, name=f"{own.name} (MediaPipe Tasks)", map50=map50, map=map_,
                   map50_vs_reference=map50 / 0.9, map_vs_reference=map_ / 0.6,
                   target=FLOAT_TARGET, runtime="MediaPipe Tasks", held_to=own.name,
                   held_ratio=map50 / own.map50)


def test_another_runtime_is_held_to_mAP50_against_its_own_model(tmp_path: Path) -> None:
    """MediaPipe's whole-pixel boxes cost mAP@[.5:.95] (here 95% of the SavedModel's, under
    every target): its row is held to mAP@.5 against the same file in LiteRT only."""
    rows = _rows(int8_map50=0.99)
    kept = _in_mediapipe(rows[2], rows[2].map50 * 0.999, 0.57)
    lost = _in_mediapipe(rows[1], rows[1].map50 * 0.98, 0.59)
    assert kept.met and not lost.met
    cells = table_cells([kept, lost])
    assert cells[0][6] == "met (mAP@.5 99.9% of tflite-int8's, >= 99.5%)"
    assert cells[1][6] == "NOT met (mAP@.5 98.0% of tflite-float32's, >= 99.5%)"
    assert missed([*rows, kept, lost]) == [
        "tflite-float32 (MediaPipe Tasks): mAP@.5 98.0% of tflite-float32's on 300 test "
        "images, target >= 99.5%"]
    markdown, data = write_table([*rows, kept], tmp_path)
    assert markdown.read_text().count("of tflite-float32's mAP@.5") == 1, \
        "the int8 check compares the LiteRT rows, not the MediaPipe one"
    again = [Row.from_json(row) for row in json.loads(data.read_text())]
    assert again[-1] == kept and again[-1].met
