"""Boxes drawn on images, for people to check a detector by eye.

Three pictures: detections with their class and score (`draw_detections`, what
``model.predict`` writes); detections judged against the ground truth (`draw_judged`: true
positives, false positives and missed boxes in three styles, `STYLES`); and one model's
detections against another's (`draw_compared`: what an export finds that the SavedModel does
not, and what it loses). `tile` puts several into one image with captions. Colours by verdict,
not by class, in the judged pictures: the class is in each label, and a verdict must be seen at
a glance on a grid of small images.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from odplug.pictures.matching import IOU, Boxes, Judged, judge


@dataclass(frozen=True)
class Style:
    colour: tuple[int, int, int]
    dashed: bool
    meaning: str


STYLES = {
    "hit": Style((40, 200, 60), False, "true positive: a detection that found a box"),
    "false": Style((235, 40, 40), False, "false positive: a detection that found no box"),
    "missed": Style((255, 200, 0), True, "missed: a labelled box no detection found"),
    "same": Style((150, 150, 150), False, "found by both models"),
    "extra": Style((230, 40, 230), False, "found only by this model"),
    "lost": Style((230, 40, 230), True, "found only by the reference model"),
}
"""The look of each verdict, with the words a legend gives it."""


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, well separated colour per class (golden-ratio hues)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def name_of(names: Mapping[int, str], class_id: int) -> str:
    return names.get(int(class_id), f"class {int(class_id)}")


class _Canvas:
    """An RGB copy of an image with line width and font scaled to its size."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image.convert("RGB")
        self.draw = ImageDraw.Draw(self.image)
        self.width, self.height = self.image.size
        self.line = max(1, round(min(self.width, self.height) / 150))
        self.font = ImageFont.load_default(size=max(10, round(min(self.width,
                                                                  self.height) / 28)))

    def box(self, box: np.ndarray, colour: tuple[int, int, int], label: str = "", *,
            dashed: bool = False, below: bool = False) -> None:
        """One normalised (ymin, xmin, ymax, xmax) box; its label above it (`below`: under
        it, so a missed box's label does not hide the detection's at the same place)."""
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        corners = (xmin * self.width, ymin * self.height, xmax * self.width,
                   ymax * self.height)
        if dashed:
            self._dashed(corners, colour)
        else:
            self.draw.rectangle(corners, outline=colour, width=self.line)
        if label:
            self.label(corners, label, colour, below=below)

    def label(self, corners: tuple[float, float, float, float], text: str,
              colour: tuple[int, int, int], *, below: bool = False) -> None:
        line = self.line
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=self.font)
        tall = bottom - top + 2 * line
        y = min(corners[3], self.height - tall) if below else max(0.0, corners[1] - tall)
        x = min(corners[0], max(0.0, self.width - (right - left) - 2 * line))
        self.draw.rectangle((x, y, x + right - left + 2 * line, y + tall), fill=colour)
        self.draw.text((x + line, y + line - top), text, fill=(0, 0, 0), font=self.font)

    def _dashed(self, corners: tuple[float, float, float, float],
                colour: tuple[int, int, int]) -> None:
        """PIL draws no dashed lines: dashes of 4 line widths, gaps of 2."""
        x0, y0, x1, y1 = corners
        dash, gap = 4 * self.line, 2 * self.line
        for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)),
                                   ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
            length = max(abs(bx - ax), abs(by - ay))
            start = 0.0
            while start < length:
                end = min(start + dash, length)
                f0, f1 = start / max(length, 1e-9), end / max(length, 1e-9)
                self.draw.line((ax + (bx - ax) * f0, ay + (by - ay) * f0,
                                ax + (bx - ax) * f1, ay + (by - ay) * f1),
                               fill=colour, width=self.line)
                start = end + gap


def draw_detections(image: Image.Image, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray | None, names: Mapping[int, str]) -> Image.Image:
    """A copy of `image` with each box (normalised ymin, xmin, ymax, xmax) and its label,
    coloured by class; labelled boxes (`scores` None) are named without a score."""
    canvas = _Canvas(image)
    for i, (box, class_id) in enumerate(zip(boxes, classes, strict=True)):
        score = "" if scores is None else f" {scores[i]:.2f}"
        canvas.box(box, class_colour(int(class_id)), f"{name_of(names, class_id)}{score}")
    return canvas.image


def draw_judged(image: Image.Image, judged: Judged, names: Mapping[int, str]) -> Image.Image:
    """A copy of `image` with `judged`'s verdicts in the three `STYLES`: true positives and
    false positives with class and score, missed boxes dashed with their class. A detection on
    a difficult box is drawn as a hit: it is not an error."""
    return _verdicts(image, judged, names, ("hit", "false", "missed"), counted=True)


def _verdicts(image: Image.Image, judged: Judged, names: Mapping[int, str],
              styles: tuple[str, str, str], *, counted: bool) -> Image.Image:
    """`judged` drawn with `styles` for (found, not found, missed); missed boxes dashed under
    the detections, so a detection's label stays readable. `counted`: difficult boxes are
    neither missed nor wrong (ground truth); else every box counts (another model's)."""
    canvas = _Canvas(image)
    truth, found = judged.truth, judged.detections
    missed = ~judged.found & (~truth.ignored() if counted else True)
    for t in np.flatnonzero(missed):
        canvas.box(truth.boxes[t], STYLES[styles[2]].colour, name_of(names, truth.classes[t]),
                   dashed=True, below=True)
    scores = found.scores if found.scores is not None else np.ones(len(found))
    for d in range(len(found)):
        right = judged.hit[d] or (counted and judged.on_difficult[d])
        canvas.box(found.boxes[d], STYLES[styles[0] if right else styles[1]].colour,
                   f"{name_of(names, found.classes[d])} {scores[d]:.2f}")
    return canvas.image


@dataclass(frozen=True)
class Compared:
    image: Image.Image
    extra: int
    """Detections of the model that the reference does not have (same class, IoU >= 0.5)."""
    lost: int
    """Detections of the reference the model does not have."""


def draw_compared(image: Image.Image, reference: Boxes, model: Boxes, threshold: float,
                  names: Mapping[int, str], *, iou: float = IOU) -> Compared:
    """`model`'s detections at or above `threshold` beside the `reference`'s (both models run on
    the same image): boxes both find in grey, the differences marked (`STYLES` "extra",
    "lost"), so an export that drifts from its SavedModel shows where."""
    kept_reference = reference.above(threshold)
    as_truth = Boxes(kept_reference.boxes, kept_reference.classes)
    judged = judge(as_truth, model, threshold, iou=iou)
    drawn = _verdicts(image, judged, names, ("same", "extra", "lost"), counted=False)
    return Compared(drawn, int((~judged.hit).sum()), int((~judged.found).sum()))


def tile(images: Sequence[Image.Image], *, columns: int, captions: Sequence[str] = (),
         size: int = 256) -> Image.Image:
    """`images` scaled to fit `size` x `size` cells, `columns` to a row, each with its caption
    (if given) under it, on white: one picture of many (a batch, the validation images)."""
    if not images:
        raise ValueError("tile needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    font_size = max(10, size // 18)
    font = ImageFont.load_default(size=font_size)
    caption_height = font_size + 6 if captions else 0
    sheet = Image.new("RGB", (columns * (size + 4) + 4, rows * (size + caption_height + 4) + 4),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for i, picture in enumerate(images):
        cell = picture.convert("RGB")
        cell.thumbnail((size, size))
        x = 4 + (i % columns) * (size + 4)
        y = 4 + (i // columns) * (size + caption_height + 4)
        sheet.paste(cell, (x + (size - cell.width) // 2, y + (size - cell.height) // 2))
        if i < len(captions):
            draw.text((x + 2, y + size + 2), captions[i], fill=(0, 0, 0), font=font)
    return sheet
