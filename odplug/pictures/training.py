"""What a training run draws as it goes: ``results.csv``, its curves, and tiles of images.

``results.csv`` is the table people open first (Ultralytics writes one into every run), so the
trainer writes it and the report reads it with the same two functions (`write_results`,
`read_results`): one row per validation, ``step`` first, each value a number (an empty cell is
NaN: a column a row does not have). `plot_curves` draws the losses and the validation mAP
against steps and against seconds from those rows; `judged_sheet` and `boxes_sheet` tile
images with judged detections or with labelled boxes under a title that says what is shown
and at which threshold. Plain numpy, PIL and matplotlib: no TensorFlow, so the report can
draw the same pictures from the files.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.errors import OdplugError
from odplug.pictures.boxes import STYLES, draw_detections, draw_judged, tile
from odplug.pictures.figure import new_figure, no_data, save_png
from odplug.pictures.matching import IOU, Boxes, judge

RESULTS_FILE = "results.csv"
LOSSES = ("loss", "classification", "box")
"""The loss columns the curves draw, when a row has them (the built-in trainer's terms)."""
SCORES = {"map50": "mAP@.5", "map": "mAP@[.5:.95]"}
"""Score columns are ``<split>_<score>``, e.g. ``val_map50``; their words on the curves."""
SHEET_IMAGES = 16
"""Images on one tile at the most: enough to judge by, small enough to load at a glance."""
READABLE = 192
"""The side images are scaled up to, at least, before boxes and labels are drawn on them."""


def write_results(path: Path, rows: Sequence[Mapping[str, float]]) -> Path:
    """`rows` as a CSV at `path`, written whole (a reader never sees half a table).

    The columns are every key of the rows in the order first seen, ``step`` first; a row
    without a column, or with NaN in it, leaves the cell empty. Integral values are written
    as integers (steps, images), others in the shortest form that reads back exactly."""
    columns = ["step"] + [key for key in dict.fromkeys(k for row in rows for k in row)
                          if key != "step"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column, math.nan)) for column in columns])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
    return path


def _cell(value: float) -> str:
    number = float(value)
    if not math.isfinite(number):
        return "" if math.isnan(number) else repr(number)
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def read_results(path: Path) -> list[dict[str, float]]:
    """The rows of a ``results.csv``, every value a float (NaN for an empty cell); an
    `OdplugError` in one line naming the file (and the row and column) when it cannot be read
    as one: missing, no ``step`` column, a cell that is not a number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OdplugError(f"{path}: no such file (the trainer writes it at each "
                          "validation)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OdplugError(f"{path}: cannot read: {error}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0] != "step":
        raise OdplugError(f"{path}: not a results table (its first column should be 'step', "
                          f"found {header[0] if header else 'nothing'!r})")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise OdplugError(f"{path} line {number}: {len(cells)} cells, the header has "
                              f"{len(header)}")
        row = {}
        for column, cell in zip(header, cells, strict=True):
            try:
                row[column] = float(cell) if cell.strip() else math.nan
            except ValueError:
                raise OdplugError(f"{path} line {number}: {column} = {cell!r} is not a "
                                  "number") from None
        rows.append(row)
    return rows


def _column(rows: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
    return np.asarray([row.get(name, math.nan) for row in rows], np.float64)


def score_columns(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The ``<split>_map50`` / ``<split>_map`` columns of `rows`, val first, in the order seen."""
    names = [key for key in dict.fromkeys(k for row in rows for k in row)
             if key.rpartition("_")[2] in SCORES and key.rpartition("_")[0]]
    return sorted(names, key=lambda name: not name.startswith("val_"))


def plot_curves(rows: Sequence[Mapping[str, float]], path: Path, *, title: str = "") -> Path:
    """The losses (top) and the scores (bottom) of `rows` against steps (left) and seconds
    (right), as a PNG at `path`. Against seconds as well as steps because that is what a
    change of batch size, input size or machine trades. A panel with nothing to draw (no
    rows, no val split, a column of NaN) says so instead of staying blank."""
    figure = new_figure(11, 7.5)
    axes = figure.subplots(2, 2)
    scores = score_columns(rows)
    for column, x in enumerate(("step", "seconds")):
        _panel(axes[0][column], rows, x, [name for name in LOSSES if name in _keys(rows)],
               "loss (mean since the previous row)", "no losses recorded yet")
        _panel(axes[1][column], rows, x, scores, "mAP",
               "no validation scores (the records have no val split, or none ran yet)")
    if title:
        figure.suptitle(title)
    return save_png(figure, path)


def _keys(rows: Sequence[Mapping[str, float]]) -> set[str]:
    return {key for row in rows for key in row}


def _panel(ax: Any, rows: Sequence[Mapping[str, float]], x: str, names: Sequence[str],
           ylabel: str, empty: str) -> None:
    """One panel: each column of `names` against column `x`, points joined, so a single row
    shows as a dot; `empty` said in the panel when no point has both values."""
    xs = _column(rows, x)
    drawn = False
    splits: dict[str, int] = {}
    for name in names:
        ys = _column(rows, name)
        usable = np.isfinite(xs) & np.isfinite(ys)
        if not usable.any():
            continue
        split, _, score = name.rpartition("_")
        if score in SCORES and split:  # one colour a split, mAP@[.5:.95] dashed
            label, colour = f"{split} {SCORES[score]}", f"C{splits.setdefault(split, len(splits))}"
        else:
            label, colour = name, f"C{len(splits) + names.index(name)}"
        ax.plot(xs[usable], ys[usable], "--" if score == "map" else "-", color=colour,
                marker="o", markersize=3, label=label)
        drawn = True
    ax.set_xlabel("training seconds" if x == "seconds" else x)
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    else:
        no_data(ax, empty)


def titled(image: Image.Image, lines: Sequence[str]) -> Image.Image:
    """`image` under a white band holding `lines` of text: what a tile shows and how to read
    it, inside the picture itself (a JPEG has nowhere else to say it)."""
    font_size = max(12, min(20, image.width // 60))
    font = ImageFont.load_default(size=font_size)
    band = len(lines) * (font_size + 6) + 8
    measure = ImageDraw.Draw(image)
    width = max([image.width] + [int(measure.textlength(line, font=font)) + 12
                                 for line in lines])
    sheet = Image.new("RGB", (width, image.height + band), "white")
    sheet.paste(image.convert("RGB"), (0, band))
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * (font_size + 6)), line, fill=(0, 0, 0), font=font)
    return sheet


def _readable(images: Sequence[Image.Image]) -> list[Image.Image]:
    """Images smaller than `READABLE` pixels a side scaled up to it before boxes are drawn
    (boxes are normalised, so they follow), so labels stay legible on a 96 px input."""
    return [image if min(image.size) >= READABLE else
            image.resize((round(image.width * READABLE / min(image.size)),
                          round(image.height * READABLE / min(image.size))),
                         Image.Resampling.BICUBIC)
            for image in images]


def _tiled(images: Sequence[Image.Image], captions: Sequence[str], columns: int
           ) -> Image.Image:
    """`tile` with cells as large as the images, up to 256 px: no white around small ones."""
    return tile(images, columns=columns, captions=captions,
                size=min(256, max(max(image.size) for image in images)))


def legend(*verdicts: str) -> list[str]:
    """The colours of `verdicts` (`STYLES` names) in words, a line each, for a tile's title."""
    words = {(40, 200, 60): "green", (235, 40, 40): "red", (255, 200, 0): "yellow",
             (150, 150, 150): "grey", (230, 40, 230): "magenta"}
    return [f"{words.get(STYLES[v].colour, 'coloured')}{' dashed' if STYLES[v].dashed else ''}"
            f" - {STYLES[v].meaning}" for v in verdicts]


def judged_sheet(images: Sequence[Image.Image], pairs: Sequence[tuple[Boxes, Boxes]],
                 names: Mapping[int, str], threshold: float, *, title: str, why: str,
                 captions: Sequence[str] = (), columns: int = 4) -> Image.Image:
    """Up to `SHEET_IMAGES` images, each with its (truth, detections) pair judged at
    `threshold` (`judge`) and drawn in the three verdict styles, tiled under `title`, the
    threshold and `why` it was chosen, and the legend. Each caption defaults to the image's
    count of errors."""
    if len(images) != len(pairs):
        raise ValueError(f"{len(images)} images but {len(pairs)} (truth, detections) pairs")
    drawn, counts = [], []
    for image, (truth, found) in list(zip(_readable(images[:SHEET_IMAGES]), pairs,
                                          strict=False)):
        judged = judge(truth, found, threshold)
        drawn.append(draw_judged(image, judged, names))
        counts.append(f"{judged.true_positives} hit, {judged.false_positives} false, "
                      f"{judged.missed} missed")
    return titled(_tiled(drawn, list(captions)[:len(drawn)] or counts, columns),
                  [title, f"score >= {threshold:.2f}, {why}; IoU >= {IOU:g}",
                   *legend("hit", "false", "missed")])


def boxes_sheet(images: Sequence[Image.Image], boxes: Sequence[Boxes],
                names: Mapping[int, str], *, title: str, columns: int = 4) -> Image.Image:
    """Up to `SHEET_IMAGES` images with their labelled boxes (class-coloured, named), tiled
    under `title`: the ground truth as the model is given it."""
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} sets of boxes")
    drawn = [draw_detections(image, b.boxes, b.classes, None, names)
             for image, b in zip(_readable(images[:SHEET_IMAGES]), boxes, strict=False)]
    captions = [f"{len(b)} box{'' if len(b) == 1 else 'es'}" for b in boxes[:SHEET_IMAGES]]
    return titled(_tiled(drawn, captions, columns), [title])


def to_uint8(image: np.ndarray) -> Image.Image:
    """A float image in 0..255 (what the trainer's pipeline feeds the model: it normalises
    inside) as the 8-bit RGB picture it came from; values outside are clipped."""
    array = np.asarray(image, np.float64)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {array.shape}")
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "RGB")


def save_jpeg(image: Image.Image, path: Path) -> Path:
    """`image` as a JPEG at `path`, written whole; returns `path`."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
