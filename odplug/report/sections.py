"""The dataset, training and evaluation sections, from the files the stages left.

Each reads what it can and says what it cannot: a records folder imported before odplug drew
datasets, a trainer that writes no ``results.csv``, a run never evaluated. A file that is
there but unreadable is a sentence naming it and why, not an error: the report describes
work that is already done, and a part of it missing must not hide the rest.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odplug.report.blocks import Block, Note, Picture, Section, Table
from odplug.report.embed import show_file
from odplug.run import PICTURES, RunInfo

DATASET_FILE = "dataset.json"
DRAW_DATASET = "odplug data.stats --folder RECORDS --pictures"
PHOTOS = ("batch", "val_predictions", "test_predictions")
"""The run pictures that are photographs (embedded as JPEG); the others are charts."""
ALL_ROWS = 10
"""A results.csv of at most this many rows is shown whole; a longer one by its first, best and
last rows."""


def read_json(path: Path) -> tuple[Any, str]:
    """(the document, "") or (None, a sentence saying why it could not be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, f"{path} is not there."
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path} could not be read ({error})."


def number(value: Any) -> str:
    """A cell of a table: integers as they are, other numbers to four significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)
                                  and abs(value) < 1e9):
        return str(int(value))
    return f"{value:.4g}"


def dataset_section(records: Path | None) -> Section:
    section = Section("dataset", "Dataset")
    if records is None:
        section.blocks.append(Note("No records folder was given, so the dataset is not shown."))
        return section
    document, why = read_json(records / DATASET_FILE)
    if not isinstance(document, dict):
        section.blocks.append(Note(
            f"Not drawn: {records} has no readable {DATASET_FILE} (imported before odplug drew "
            f"datasets?{'' if document is None and 'not there' in why else ' ' + why}). "
            "This command draws it:", DRAW_DATASET.replace("RECORDS", str(records))))
        return section
    splits = document.get("splits")
    section.blocks += _split_tables(splits if isinstance(splits, dict) else {})
    section.blocks.append(Picture(show_file(
        "The dataset drawn", records / str(document.get("picture") or "dataset.png"),
        "Boxes per class, box centres, widths against heights and image sizes, per split.",
        photo=False, missing="The dataset picture is not there: "
        + DRAW_DATASET.replace("RECORDS", str(records)) + " draws it.")))
    section.blocks.append(_skipped(document.get("skipped")))
    return section


def _split_tables(splits: dict[str, Any]) -> list[Block]:
    if not splits:
        return [Note("dataset.json lists no split.")]
    rows = [[str(split), *(number(info.get(key, "")) for key in
                           ("images", "boxes", "empty_images"))]
            for split, info in splits.items() if isinstance(info, dict)]
    blocks: list[Block] = [Table("Images and boxes per split",
                                 ("split", "images", "boxes", "images without a box"), rows,
                                 (False, True, True, True))]
    classes: dict[str, dict[str, Any]] = {}
    for split, info in splits.items():
        counts = info.get("classes") if isinstance(info, dict) else None
        for name, count in (counts.items() if isinstance(counts, dict) else ()):
            classes.setdefault(str(name), {})[split] = count
    if classes:
        names = list(splits)
        blocks.append(Table("Boxes per class and split", ("class", *names),
                            [[name, *(number(per.get(split, 0)) for split in names)]
                             for name, per in sorted(classes.items())],
                            (False, *(True for _ in names))))
    return blocks


def _skipped(skipped: Any) -> Block:
    """``{"images": {reason: n}, "boxes": {...}, "splits": {split: {"images": ...}}}``
    (`odplug.data.overview`) as one row per kind and reason, with its count per split."""
    if skipped is None:
        return Note("What the import skipped is not known (the records folder has no report "
                    "of its import).")
    if not isinstance(skipped, dict):
        return Note(f"What the import skipped: {skipped}.")
    given = skipped.get("splits")
    splits: dict[str, Any] = given if isinstance(given, dict) else {}
    rows = []
    for kind in ("images", "boxes"):
        counts = skipped.get(kind)
        for reason, count in (counts.items() if isinstance(counts, dict) else ()):
            where = [f"{split}: {number(per[kind][reason])}" for split, per in splits.items()
                     if isinstance(per, dict) and isinstance(per.get(kind), dict)
                     and reason in per[kind]]
            rows.append([kind, str(reason), number(count), ", ".join(where)])
    if not rows:
        return Note("The import skipped nothing.")
    return Table("What the import skipped, by reason", ("skipped", "reason", "count", "by split"),
                 rows, (False, False, True, False))


def training_section(run: RunInfo | None) -> Section:
    section = Section("training", "Training")
    if run is None:
        section.blocks.append(Note("The model is a bare SavedModel, not a run folder: how it "
                                   "was trained is not known here."))
        return section
    section.blocks.append(_run_picture(run, "curves"))
    section.blocks += _results(run.results)
    section.blocks += _summary(run.summary)
    section.blocks += [_run_picture(run, "batch"), _run_picture(run, "val_predictions")]
    others = [name for name in run.pictures if name not in PICTURES]
    section.blocks += [_run_picture(run, name) for name in others]
    return section


def _run_picture(run: RunInfo, name: str) -> Block:
    what = PICTURES.get(name, name)
    path = run.pictures.get(name)
    missing = (f"Not drawn: the {run.trainer} trainer wrote no {name} picture for this run "
               f"({what})." if path is None else f"{path} ({what}) is not there.")
    return Picture(show_file(what[:1].upper() + what[1:], path, path.name if path else "",
                             photo=name in PHOTOS, missing=missing))


def _results(path: Path | None) -> list[Block]:
    if path is None:
        return [Note("The trainer wrote no results.csv (one row per validation).")]
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            table = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [Note(f"{path} could not be read ({error}).")]
    if len(table) < 2:
        return [Note(f"{path} holds no validation yet.")]
    header, rows = table[0], table[1:]
    shown, labels = _pick_rows(header, rows)
    return [Table(f"Validations ({path.name}: {len(rows)} rows"
                  f"{'' if len(shown) == len(rows) else ', ' + _shown(labels)})",
                  ("", *header), [[label, *(_cell(v) for v in row)]
                                  for label, row in zip(labels, shown, strict=True)],
                  (False, *(True for _ in header)))]


def _pick_rows(header: Sequence[str], rows: list[list[str]]
               ) -> tuple[list[list[str]], list[str]]:
    """Every row when there are few; else the first, the best (highest ``val_map50``) and the
    last, each once, with what it is. Without a validation score there is no best: first and
    last only (another column, such as the learning rate, would make one up)."""
    if len(rows) <= ALL_ROWS:
        return rows, ["" for _ in rows]
    column = header.index("val_map50") if "val_map50" in header else None

    def score(i: int) -> float:
        try:
            return float(rows[i][column]) if column is not None else -math.inf
        except (ValueError, IndexError):
            return -math.inf

    marks = [(0, "first"), (len(rows) - 1, "last")]
    if column is not None:
        marks.insert(1, (max(range(len(rows)), key=score), "best"))
    picked: dict[int, list[str]] = {}
    for index, label in marks:
        picked.setdefault(index, []).append(label)
    return [rows[i] for i in sorted(picked)], [", ".join(picked[i]) for i in sorted(picked)]


def _shown(labels: list[str]) -> str:
    """"first, best and last shown" for the rows `_pick_rows` chose."""
    names = [name for label in labels for name in label.split(", ")]
    return (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]) \
        + " shown"


def _cell(text: str) -> str:
    try:
        return number(float(text)) if text.strip() else ""
    except ValueError:
        return text


def _summary(summary: dict[str, Any]) -> list[Block]:
    if not summary:
        return [Note("The trainer wrote no summary (time, steps, images per second).")]
    seconds = summary.get("seconds")
    time = (f"{int(seconds // 60)} min {seconds % 60:.0f} s"
            if isinstance(seconds, (int, float)) else "not known")
    rows = [["training time", time], ["steps", number(summary.get("steps", "not known"))],
            ["images per second", number(summary.get("images_per_second", "not known"))]]
    blocks: list[Block] = [Table("How training went", ("", ""), rows, (False, True))]
    changed = summary.get("changed")
    if isinstance(changed, dict) and changed:
        blocks.append(Table("Settings changed from the defaults", ("setting", "value"),
                            [[str(key), json.dumps(value)] for key, value in changed.items()]))
    else:
        blocks.append(Note("Every setting was the trainer's default."
                           if isinstance(changed, dict) else
                           "The trainer did not say which settings differ from its defaults."))
    return blocks


def evaluation_numbers(run: RunInfo | None) -> list[Block]:
    """The per-class table of the run's test metrics, its PR curves and confusion matrix."""
    if run is None:
        return [Note("No run folder: the test metrics of a bare SavedModel are not kept.")]
    metrics = run.metrics_dir / "test.json" if run.metrics_dir else None
    blocks: list[Block] = []
    document, why = read_json(metrics) if metrics else (None, "the run has no metrics folder.")
    if isinstance(document, dict) and isinstance(document.get("per_class"), dict):
        rows = [[str(name), number(values.get("ap", "")), number(values.get("ap50", "")),
                 number(values.get("instances", ""))]
                for name, values in document["per_class"].items() if isinstance(values, dict)]
        rows.append(["all classes", number(document.get("map", "")),
                     number(document.get("map50", "")), ""])
        blocks.append(Table(f"Per class on the test split ({number(document.get('images', '?'))}"
                            " images)", ("class", "AP@[.5:.95]", "AP@.5", "instances"), rows,
                            (False, True, True, True)))
    else:
        blocks.append(Note(f"No test metrics: {why} This command writes them:",
                           f"odplug model.evaluate --model {run.run_dir}"))
    pr = run.pictures.get("pr") or (run.metrics_dir / "test-pr.png" if run.metrics_dir
                                    else None)
    blocks.append(Picture(show_file("Precision-recall per class", pr, PICTURES["pr"],
                                    photo=False, missing="No precision-recall curves were "
                                    "drawn for the test split.")))
    blocks.append(_run_picture(run, "confusion"))
    if "test_predictions" in run.pictures:
        blocks.append(_run_picture(run, "test_predictions"))
    return blocks
