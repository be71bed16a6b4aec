"""A third-party odplug plugin: LabelMe JSON annotations as an import format.

It lives in odplug's tests to prove that a separately installed package, found only through
its ``odplug`` entry point and using only odplug's public API, works end to end through the
real command line. LabelMe is not built into odplug, so this plugin adds a format rather than
shadowing one.

LabelMe saves one JSON file per image, usually beside it: ``imagePath`` (relative to the JSON
file), ``imageWidth``/``imageHeight``, and ``shapes``, each with a ``label``, ``points`` in
pixels and a ``shape_type``. Rectangles, polygons and circles (centre and a point on the
edge) have a box; points, lines and masks do not, and are reported. Files saved without
``--nodata`` also embed the image as base64 ``imageData``: the image file is still preferred,
and a file whose image exists only inside the JSON is reported, because an import reads
images from the dataset folder and never writes into it. LabelMe has no splits: the core's
ratio split applies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from odplug import hookimpl
from odplug.components import Importer
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.samples import Box, Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DETECT_FILES = 5


class LabelMeImporter(Importer):
    name = "labelme"
    summary = "LabelMe JSON: one <image>.json with shapes per image, usually beside it"

    def detect(self, source: Path) -> bool:
        """A folder whose first few ``.json`` files include a LabelMe one."""
        if not source.is_dir():
            return False
        for path in sorted(source.glob("*.json"))[:DETECT_FILES]:
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(data, dict) and isinstance(data.get("shapes"), list) and (
                    "imagePath" in data):
                return True
        return False

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        files = sorted(source.glob("*.json")) if source.is_dir() else []
        if not files:
            raise OdplugError(f"{source}: no LabelMe .json files in this folder")
        for path in files:
            sample = _read_file(path, source, report)
            if sample is not None:
                yield sample


@hookimpl
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(LabelMeImporter())


def _read_file(path: Path, source: Path, report: Report) -> Sample | None:
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:
        report.skip_image(path, "malformed-annotation", f"not LabelMe JSON: {error}")
        return None
    except OSError as error:
        report.skip_image(path, "unreadable-annotation", f"cannot read it: {error}")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        report.skip_image(path, "malformed-annotation", "expected an object with a 'shapes' list")
        return None
    image = _image(path, data.get("imagePath"))
    if image is None:
        if isinstance(data.get("imageData"), str) and data["imageData"]:
            report.skip_image(path, "embedded-image-only",
                              "the image is only embedded as imageData: save it beside the "
                              "JSON under its imagePath (odplug reads images from the dataset)")
        else:
            report.skip_image(path, "missing-image",
                              f"image {data.get('imagePath')!r} not found beside the JSON")
        return None
    boxes = []
    for index, shape in enumerate(data["shapes"]):
        try:
            boxes.append(_box(shape))
        except ValueError as error:
            report.skip_box(path, "malformed-shape", f"shape {index}: {error}")
    return Sample(image=image, key=image.relative_to(source).as_posix()
                  if image.is_relative_to(source) else image.name, boxes=boxes,
                  width=_pixels(data.get("imageWidth")), height=_pixels(data.get("imageHeight")),
                  origin=str(path), skipped_boxes=len(data["shapes"]) - len(boxes))


def _image(path: Path, image_path: object) -> Path | None:
    """The image file: ``imagePath`` relative to the JSON (LabelMe on Windows writes
    backslashes), else the JSON's stem with a common extension."""
    candidates = []
    if isinstance(image_path, str) and image_path and "\x00" not in image_path:
        candidates.append(path.parent / Path(*PureWindowsPath(image_path).parts))
    candidates += [path.with_suffix(extension) for extension in IMAGE_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), None)


def _pixels(value: Any) -> int | None:
    """A size in whole pixels, None when missing or not one (the image's header decides)."""
    if type(value) is int and value > 0:
        return value
    return None


def _box(shape: Any) -> Box:
    """The box around one shape, or ValueError saying why it has none."""
    if not isinstance(shape, dict):
        raise ValueError("not a JSON object")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError("no label")
    kind = shape.get("shape_type") or "polygon"  # LabelMe wrote no shape_type before 4.0
    points = shape.get("points")
    if not isinstance(points, list) or not all(_is_point(p) for p in points):
        raise ValueError(f"({label}) points are not a list of [x, y] number pairs")
    needed = {"rectangle": 2, "circle": 2, "polygon": 3}.get(kind)
    if needed is None:
        raise ValueError(f"({label}) a {kind!r} shape has no box")
    if len(points) < needed or (kind != "polygon" and len(points) != needed):
        raise ValueError(f"({label}) a {kind} needs {needed} points, got {len(points)}")
    if kind == "circle":
        (cx, cy), (px, py) = points
        radius = math.hypot(px - cx, py - cy)
        return Box(label, cx - radius, cy - radius, cx + radius, cy + radius)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return Box(label, min(xs), min(ys), max(xs), max(ys))


def _is_point(value: object) -> bool:
    if not isinstance(value, list) or len(value) != 2:
        return False
    try:
        return all(type(v) in (int, float) and math.isfinite(v) for v in value)
    except OverflowError:  # JSON allows integers no float can hold
        return False
