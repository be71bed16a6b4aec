"""Reading YOLO label files into samples: boxes in pixels from each image's upright size,
every bad line reported with its file and line number."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from odplug.components import Importer
from odplug.data.images import ImageProblem, upright_size
from odplug.data.numbers import MAX_NUMBER_CHARS, finite_number
from odplug.dataset_report import Report
from odplug.labels import LabelMap
from odplug.samples import Box, Sample
from odplug_builtins.yolo.layout import (
    IMAGE_SUFFIXES,
    Dataset,
    absolute,
    describe,
    images_under,
    is_image,
    is_inside,
    label_for,
    label_path,
    looks_like_yolo,
    resolve_entry,
)

log = logging.getLogger(__name__)


TOLERANCE = 0.01
"""How far outside [0, 1] Ultralytics accepts a normalised value (its 1% check)."""


@dataclass
class _Entry:
    image: Path
    split: str | None
    where: str
    """The list line that named the image, or the image itself."""


@dataclass
class _Reading:
    """One read's state: the dataset, and the label files looked for and where."""

    dataset: Dataset
    report: Report
    label_dirs: set[Path] = field(default_factory=set)
    used: set[Path] = field(default_factory=set)
    read_images: set[Path] = field(default_factory=set)
    pose_lines: int = 0
    """Lines read by the yaml's kpt_shape that had keypoints (dropped: boxes only)."""
    long_lines: Counter[int] = field(default_factory=Counter)
    """Without kpt_shape: the lines of more than 5 values, read as polygons, by length."""
    pose_like: Counter[tuple[int, int]] = field(default_factory=Counter)
    """Of those, the ones that read as well as a pose line, by (keypoints, values each)."""


class YoloImporter(Importer):
    name = "yolo"
    summary = "YOLO: data.yaml + images/ + labels/ (Ultralytics), or obj.names + .txt per image"

    def detect(self, source: Path) -> bool:
        return looks_like_yolo(source)

    def label_map(self, source: Path) -> LabelMap:
        """Class index i as label id i + 1, every name in index order."""
        return LabelMap.from_names(describe(source).names)

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        reading = _Reading(describe(source), report)
        for code, warning in reading.dataset.warnings:
            report.warn(code, warning)
        for entry in _entries(reading):
            sample = _sample(reading, entry)
            if sample is not None:
                yield sample
        _report_orphans(reading)
        _report_keypoints(reading)


def _entries(reading: _Reading) -> Iterator[_Entry]:
    """Every image the dataset names, with its split, in split order; for darknet, then every
    other image of the folder, without a split; for a yaml, the others are reported skips."""
    dataset = reading.dataset
    listed: set[Path] = set()
    for split, entries in dataset.splits:
        for entry in entries:
            for item in _split_entry(reading, split, entry):
                listed.add(item.image)
                yield item
    for image in images_under(dataset.root):
        if image in listed:
            continue
        if dataset.darknet:
            yield _Entry(image, None, str(image))
        else:
            reading.report.skip_image(image, "not-in-a-split", "no train, val or test entry "
                                      f"of {dataset.config.name} names it, so it is left out")


def _split_entry(reading: _Reading, split: str, entry: str) -> Iterator[_Entry]:
    dataset, report = reading.dataset, reading.report
    key = f"{split}: {entry}"
    found = _split_source(dataset, entry)
    if found is None:  # a folder, not an image: a warning naming it, not one skipped image
        report.warn("missing-split", f"{dataset.config}: {key}: no such file or folder under "
                    f"{dataset.base}; this split is left out")
        return
    if not is_inside(found, dataset.root):
        report.skip_image(dataset.config, "escapes-dataset", f"{key} is {found}, outside "
                          f"{dataset.root}; odplug imports only what is inside the source "
                          "folder: give a folder that holds the yaml and the images")
        return
    if found.is_dir():
        reading.label_dirs.add(label_path(found / "x.jpg", dataset.root).parent)
        for image in images_under(found):
            yield _Entry(image, split, str(image))
    elif is_image(found.name):  # one image named directly: Ultralytics lists only folders
        yield _Entry(found, split, str(found))
    else:
        yield from _listed_images(reading, split, found)


def _split_source(dataset: Dataset, entry: str) -> Path | None:
    """The folder or list file a split entry names: Ultralytics' rule (against the base, then
    without a leading ``../``), an existing one inside the source preferred."""
    if dataset.darknet:
        return resolve_entry(entry, dataset.config, [dataset.root], dataset.root)
    text = entry.strip()
    candidates = [absolute(dataset.base / text)]
    if text.startswith("../"):
        candidates.append(absolute(dataset.base / text[3:]))
    existing = [c for c in candidates if c.exists()]
    inside = [c for c in existing if is_inside(c, dataset.root)]
    return next(iter(inside or existing), None)


def _listed_images(reading: _Reading, split: str, listing: Path) -> Iterator[_Entry]:
    dataset, report = reading.dataset, reading.report
    dataset.reserved.add(listing)
    try:
        text = listing.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        report.skip_image(listing, "unreadable-list", f"cannot read this {split} list: {error}")
        return
    bases = [dataset.base, listing.parent, dataset.root]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{listing}:{number}"
        image = resolve_entry(line, listing, bases, dataset.root)
        if image is None or not image.is_file():
            report.skip_image(where, "missing-image", f"{line.strip()!r:.120} is not a file "
                              f"under {dataset.root}")
            continue
        yield _Entry(image, split, where)


def _sample(reading: _Reading, entry: _Entry) -> Sample | None:
    dataset, report = reading.dataset, reading.report
    if not is_inside(entry.image, dataset.root):  # the core reports it: not worth reading
        return Sample(entry.image, str(entry.image), split=entry.split, origin=entry.where)
    key = Path(os.path.relpath(entry.image, dataset.root)).as_posix()
    label = label_for(entry.image, dataset.root, dataset.darknet)
    if entry.image in reading.read_images:  # in a second split: the core reports the repeat
        origin = str(label) if label in reading.used else entry.where
        return Sample(entry.image, key, split=entry.split, origin=origin)
    reading.read_images.add(entry.image)
    reading.label_dirs.add(label.parent)
    try:
        width, height = upright_size(entry.image)
    except ImageProblem as problem:
        report.skip_image(entry.where, problem.code, problem.reason)
        reading.used.add(label)
        return None
    if not label.is_file():
        report.note_image(entry.image, "no-label-file", f"no label file {label}: kept as a "
                          "background image (Ultralytics' rule)")
        return Sample(entry.image, key, [], width, height, entry.split, entry.where)
    reading.used.add(label)
    parsed = _read_labels(reading, label, width, height)
    if parsed is None:
        return None
    boxes, skipped = parsed
    return Sample(entry.image, key, boxes, width, height, entry.split, str(label), skipped)


def _read_labels(reading: _Reading, path: Path, width: int,
                 height: int) -> tuple[list[Box], int] | None:
    """The boxes of one label file in pixels and how many lines were skipped; None when the
    file cannot be read at all (its image is skipped, not kept as a background image)."""
    report, names = reading.report, reading.dataset.names
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        report.skip_image(path, "unreadable-label", f"cannot read it: {error.strerror}")
        return None
    except UnicodeDecodeError as error:
        report.skip_image(path, "malformed-label", f"not UTF-8 text: {error.reason} at byte "
                          f"{error.start}")
        return None
    boxes: list[Box] = []
    skipped = 0
    seen: dict[tuple[float, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        parsed = _parse_line(fields, len(names), reading.dataset.kpt_shape)
        if isinstance(parsed, tuple):
            code, reason = parsed
            report.skip_box(where, code, reason)
            skipped += 1
            continue
        if parsed.values in seen:
            report.skip_box(where, "duplicate-label", f"repeats line {seen[parsed.values]}; "
                            "Ultralytics drops repeated lines too")
            skipped += 1
            continue
        seen[parsed.values] = number
        _count_shape(reading, parsed.values)
        x0, y0, x1, y1 = parsed.extents
        boxes.append(Box(names[parsed.index], x0 * width, y0 * height, x1 * width, y1 * height))
    return boxes, skipped


@dataclass(frozen=True)
class _Line:
    index: int
    values: tuple[float, ...]
    extents: tuple[float, float, float, float]


def _count_problem(count: int, kpt_shape: tuple[int, int] | None) -> str | None:
    """Why a line of `count` values is no label line, or None."""
    if kpt_shape is not None:
        keypoints, each = kpt_shape
        if count in (5, 5 + keypoints * each):
            return None
        return (f"{count} values: with kpt_shape [{keypoints}, {each}] a line is 'class cx cy "
                f"w h' and {keypoints} keypoints of {each} values ({5 + keypoints * each})")
    if count != 5 and (count < 7 or count % 2 == 0):
        return (f"{count} values: a box line is 'class cx cy w h' (5), a polygon line 'class "
                "x1 y1 x2 y2 x3 y3 ...' (an odd number, 7 or more)")
    return None


def _parse_line(fields: list[str], classes: int,
                kpt_shape: tuple[int, int] | None) -> _Line | tuple[str, str]:
    """One label line as a class index and normalised corners, or (code, reason). With a
    `kpt_shape` the box is the first 4 values and the keypoints after them are left out."""
    count = len(fields)
    problem = _count_problem(count, kpt_shape)
    if problem is not None:
        return ("malformed-label", problem)
    numbers = [finite_number(text) for text in fields]
    if any(number is None for number in numbers):
        bad = next(text for text, n in zip(fields, numbers, strict=True) if n is None)
        return ("malformed-label", f"{bad[:MAX_NUMBER_CHARS]!r} is not a finite number")
    values = tuple(n for n in numbers if n is not None)
    index = values[0]
    if not index.is_integer():
        return ("malformed-label", f"class {fields[0]!r} is not a whole number")
    if not 0 <= index < classes:
        return ("unknown-class", f"class {int(index)} is not one of the {classes} classes "
                f"(0 to {classes - 1})")
    boxed = count == 5 or kpt_shape is not None
    coords = values[1:5] if boxed else values[1:]
    outside = [v for v in coords if not -TOLERANCE <= v <= 1 + TOLERANCE]
    if outside:
        return ("not-normalised", f"value {outside[0]:g} is outside [0, 1] (by more than "
                f"Ultralytics' {TOLERANCE:g}); YOLO coordinates are fractions of the image size")
    if boxed:
        extents = _box_extents(coords)
    else:
        xs, ys = coords[0::2], coords[1::2]
        extents = (min(xs), min(ys), max(xs), max(ys))
    if not (extents[2] > extents[0] and extents[3] > extents[1]):
        return ("zero-area", "the box has no area (width or height is 0 or less)")
    return _Line(int(index), values, extents)


def _box_extents(values: tuple[float, ...]) -> tuple[float, float, float, float]:
    cx, cy, w, h = values[:4]
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _count_shape(reading: _Reading, values: tuple[float, ...]) -> None:
    """Count what the pose warnings need: keypoints dropped, or lines that may be pose lines."""
    count = len(values)
    if count <= 5:
        return
    if reading.dataset.kpt_shape is not None:
        reading.pose_lines += 1
        return
    reading.long_lines[count] += 1
    shape = _pose_reading(values)
    if shape is not None:
        reading.pose_like[shape] += 1


def _pose_reading(values: tuple[float, ...]) -> tuple[int, int] | None:
    """(keypoints, values each) when a polygon line reads as well as a pose line: a box in
    the image from values 1-4, visibilities of 0, 1 or 2 (3 values each), and at least half of
    the labelled keypoints inside the box. Ultralytics reads such a line as a polygon unless
    the yaml has kpt_shape; the numbers alone cannot tell, so this only raises the doubt."""
    x0, y0, x1, y1 = _box_extents(values[1:5])
    if not (x1 > x0 and y1 > y0 and -TOLERANCE <= x0 and -TOLERANCE <= y0
            and x1 <= 1 + TOLERANCE and y1 <= 1 + TOLERANCE):
        return None
    rest = values[5:]
    for each in (3, 2):
        if len(rest) % each or (each == 3 and any(v not in (0, 1, 2) for v in rest[2::3])):
            continue
        points = [(x, y) for x, y in zip(rest[0::each], rest[1::each], strict=True)
                  if (x, y) != (0, 0)]
        inside = sum(1 for x, y in points if x0 <= x <= x1 and y0 <= y <= y1)
        return (len(rest) // each, each) if 2 * inside >= len(points) else None
    return None


def _report_keypoints(reading: _Reading) -> None:
    """Keypoints the boxes-only import left out, or the doubt that polygon lines were pose."""
    dataset, lines = reading.dataset, reading.pose_lines
    if dataset.kpt_shape is not None and lines:
        keypoints, each = dataset.kpt_shape
        reading.report.warn("keypoints-dropped", (
            f"{lines * keypoints} keypoints of {lines} label line{'s' * (lines != 1)} left out "
            f"(kpt_shape [{keypoints}, {each}] in {dataset.config}): odplug imports the boxes, "
            "the first 4 values of each line"))
    total = sum(reading.long_lines.values())
    if len(reading.long_lines) != 1 or 2 * sum(reading.pose_like.values()) < total:
        return
    (count,) = reading.long_lines
    (keypoints, each), _ = reading.pose_like.most_common(1)[0]
    reading.report.warn("maybe-pose", (
        f"{total} label line{'s' * (total != 1)} of {count} values read as polygons (as "
        "Ultralytics reads them without kpt_shape), but they read as well as 'class cx cy w h' "
        f"and {keypoints} keypoints: if they are pose labels, add kpt_shape: [{keypoints}, "
        f"{each}] to {dataset.config} and import again"))


def _report_orphans(reading: _Reading) -> None:
    """Label files in the folders labels were looked for in that no image used."""
    ignored = reading.used | reading.dataset.reserved
    for folder in sorted(reading.label_dirs):
        try:
            names = sorted(entry.name for entry in os.scandir(folder)
                           if entry.name.endswith(".txt") and entry.is_file())
        except OSError:
            continue
        for name in names:
            if folder / name not in ignored:
                reading.report.skip_image(
                    folder / name, "label-without-image",
                    "no image of the dataset uses this label file (one with its stem and an "
                    f"image suffix is expected: {', '.join(sorted(IMAGE_SUFFIXES))})")
