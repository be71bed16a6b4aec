"""The HTML report built from synthetic inputs: a records folder of the demo dataset, a run
folder whose run.json names pictures, results.csv and test metrics, and an export folder with
a verification table and kept detections. No model runs and no TensorFlow is imported."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from odplug.data.shards import shard_files
from odplug.data.tfrecord import read_record, record_offsets, summarize
from odplug.exports.output import DETECTIONS_FILE
from odplug.exports.table import Row, target_for, write_table
from odplug.report.page import write_report
from odplug.run import RunInfo
from tests.support.records import run_import

ODD = "<b>&cat"
"""A class name that is markup if not escaped."""


def picture(path: Path, colour: str, size: tuple[int, int] = (200, 120)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, registry) -> Path:  # type: ignore[no-untyped-def]
    """The demo dataset imported (24 images), with a dataset.json naming an odd class."""
    from odplug.data.demo import write_demo_project

    base = tmp_path_factory.mktemp("report-records")
    project = write_demo_project(base / "demo", images=24, size=96)
    run_import(project, base / "records", registry)
    folder = base / "records"
    (folder / "dataset.json").write_text(json.dumps({
        "splits": {"train": {"images": 16, "boxes": 30, "empty_images": 1,
                             "classes": {ODD: 12, "dog": 18}},
                   "test": {"images": 4, "boxes": 7, "empty_images": 0,
                            "classes": {ODD: 3, "dog": 4}}},
        "skipped": {"images": {"missing-image": 2}, "boxes": {"box-outside-image": 1},
                    "splits": {"train": {"images": {}, "boxes": {"box-outside-image": 1}}}},
        "picture": "dataset.png"}))
    picture(folder / "dataset.png", "navy")
    return folder


def write_run(folder: Path, records: Path, *, results_rows: int = 15) -> RunInfo:
    pictures = {name: picture(folder / "pictures" / f"{name}.png", colour)
                for name, colour in (("curves", "white"), ("batch", "green"),
                                     ("val_predictions", "olive"), ("confusion", "gray"),
                                     ("pr", "silver"), ("extra_view", "teal"))}
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "seconds", "loss", "val_map50", "val_map"])
        for i in range(results_rows):
            writer.writerow([i * 10, i * 2.5, 1 / (i + 1), 0.9 if i == 7 else i / 100, 0.1])
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    (folder / "metrics" / "test.json").write_text(json.dumps({
        "map": 0.31, "map50": 0.62, "images": 4,
        "per_class": {ODD: {"ap": 0.3, "ap50": 0.6, "instances": 3},
                      "dog": {"ap": 0.32, "ap50": 0.64, "instances": 4}}}))
    return RunInfo(folder, "ssd", records, records / "label_map.pbtxt", folder / "saved_model",
                   complete=True, metrics_dir=folder / "metrics", results=folder / "results.csv",
                   pictures=pictures, summary={"seconds": 512.0, "steps": 1000,
                                               "images_per_second": 31.2,
                                               "changed": {"train.steps": 1000,
                                                           "model.note": ODD}}).write()


def rows() -> list[Row]:
    return [Row("saved_model", "s", 7.8, 0.6, 0.3, 1.0, 17.0, 4),
            Row("tflite-float32", "f", 2.7, 0.6, 0.3, 1.0, 2.3, 4, target=target_for("float32"),
                exporter="tflite", variant="float32"),
            Row("tflite-int8", "i", 0.8, 0.5, 0.25, 0.83, 2.7, 4, note="Edge TPU: 12 ops",
                map_vs_reference=0.83, target=target_for("int8"), exporter="tflite",
                variant="int8")]


def write_export(folder: Path, records: Path) -> Path:
    """verification.json and verification-detections.json for the first three test images:
    float32 finds what the SavedModel finds, int8 adds a box on the first image."""
    folder.mkdir(parents=True, exist_ok=True)
    write_table(rows(), folder)
    [shard] = shard_files(records, "test")
    images = []
    for offset in record_offsets(shard)[:3]:
        summary = summarize(read_record(shard, offset))
        images.append({"id": summary.source_id or summary.filename,
                       "record": {"file": str(shard), "offset": offset},
                       "width": summary.width, "height": summary.height, "errors": 1,
                       "false_positives": 0, "missed": 1,
                       "truth": {"boxes": [[0.1, 0.1, 0.5, 0.5]], "classes": [1],
                                 "difficult": [False]}})
    same = {"boxes": [[0.1, 0.1, 0.5, 0.5]], "classes": [1], "scores": [0.9]}
    extra = {"boxes": [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], "classes": [1, 2],
             "scores": [0.9, 0.7]}
    (folder / DETECTIONS_FILE).write_text(json.dumps({
        "schema": 1, "threshold": 0.42, "threshold_reason": "the best F1", "iou": 0.5,
        "floor": 0.05, "judged_images": 4, "classes": {"1": ODD, "2": "dog"}, "images": images,
        "models": [{"name": "saved_model", "detections": [same] * 3},
                   {"name": "tflite-float32", "detections": [same] * 3},
                   {"name": "tflite-int8", "detections": [extra, same, same]}]}))
    return folder


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.ids: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if values.get("class"):
            self.classes.append(str(values["class"]))


def parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def decoded(uri: str) -> Image.Image:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:80]
    image = Image.open(io.BytesIO(base64.b64decode(match[2])))
    image.load()
    assert image.format.lower() == match[1]
    return image


@pytest.fixture
def report(records: Path, tmp_path: Path) -> Path:
    run = write_run(tmp_path / "run", records)
    export = write_export(tmp_path / "run" / "export", records)
    return write_report(tmp_path / "report.html", records=records, run=run, export=export,
                        title=f"report of {ODD}")


def test_every_section_is_there_and_every_image_is_inside_the_page(report: Path) -> None:
    text, page = parse(report)
    assert text.rstrip().endswith("</html>")
    assert [p.name for p in report.parent.iterdir() if p.name.startswith(".odplug")] == []
    assert {"dataset", "training", "evaluation", "exports"} <= set(page.ids)
    # dataset picture, curves, batch, val predictions, extra, pr, confusion, 3 worst images,
    # 3 rows of 3 models
    assert len(page.images) == 1 + 4 + 2 + 3 + 9
    sizes = [decoded(uri).size for uri in page.images]
    assert all(width > 0 and height > 0 for width, height in sizes)
    assert all(max(size) <= 320 for size in sizes[-12:]), "thumbnails of the records' images"
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "Edge TPU: 12 ops" in text and "threshold 0.42" in text
    assert re.search(r"<td>boxes</td><td>box-outside-image</td><td class=\"num\">1</td>"
                     r"<td>train: 1</td>", text)
    assert "512 s" not in text and "8 min 32 s" in text


def test_class_names_are_text_not_markup(report: Path) -> None:
    text, _page = parse(report)
    assert ODD not in text
    assert "&lt;b&gt;&amp;cat" in text


def test_the_results_table_shows_first_best_and_last(report: Path) -> None:
    text, _page = parse(report)
    assert "15 rows, first, best and last shown" in text
    labels = re.findall(r"<tr><td>(first|best|last)</td>", text)
    assert labels == ["first", "best", "last"]


def test_a_missed_target_and_a_difference_are_marked(report: Path) -> None:
    text, page = parse(report)
    assert page.classes.count("missed") == 1  # the int8 row only
    assert re.search(r'<tr class="missed"><td>tflite-int8</td>', text)
    differing = [c for c in page.classes if c == "cell differs"]
    assert len(differing) == 1, "the int8 cell with a box more; the worst-first have no error"
    assert text.count("0 false positive(s), 0 missed</div>") == 3
    assert "1 difference(s): 1 only here, 0 only in the SavedModel" in text


def test_missing_inputs_are_sentences(records: Path, tmp_path: Path) -> None:
    empty = write_report(tmp_path / "empty.html", records=None, run=None, export=None,
                         title="nothing")
    text, page = parse(empty)
    assert page.images == []
    assert "No records folder was given" in text and "bare SavedModel" in text
    assert "No export folder was given" in text

    bare_records = tmp_path / "old-records"
    shutil.copytree(records, bare_records, ignore=shutil.ignore_patterns("dataset.*"))
    bare_run = RunInfo(tmp_path / "run", "ssd", bare_records, bare_records / "label_map.pbtxt",
                       tmp_path / "run" / "saved_model", complete=True).write()
    unverified = tmp_path / "export"
    unverified.mkdir()
    text, page = parse(write_report(tmp_path / "bare.html", records=bare_records, run=bare_run,
                                    export=unverified, title="bare"))
    assert page.images == []
    assert f"odplug data.stats --folder {bare_records} --pictures" in text
    assert "wrote no results.csv" in text and "wrote no curves picture" in text
    assert "No test metrics" in text and f"odplug model.evaluate --model {bare_run.run_dir}" in text
    assert "Not verified" in text


def test_unreadable_files_and_moved_records_are_sentences(records: Path, tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", records, results_rows=3)
    run.pictures["curves"].write_bytes(b"not a png")
    (run.results or Path()).write_text("step\n")
    export = write_export(tmp_path / "export", records)
    moved = tmp_path / "moved"
    shutil.copytree(records, moved)
    document = json.loads((export / DETECTIONS_FILE).read_text())
    for image in document["images"]:
        image["record"]["file"] = str(tmp_path / "gone" / Path(image["record"]["file"]).name)
    document["images"][1]["record"]["offset"] += 1
    (export / DETECTIONS_FILE).write_text(json.dumps(document))
    text, page = parse(write_report(tmp_path / "r.html", records=moved, run=run, export=export,
                                    title="moved"))
    assert "curves.png could not be read as an image" in text
    assert "holds no validation yet" in text
    assert text.count("could not be read: ") == 2, "image 2 in both grids; 1 and 3 found"
    assert all(decoded(uri) for uri in page.images)
