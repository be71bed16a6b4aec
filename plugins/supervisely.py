"""Supervisely projects: ``meta.json`` plus one ``ann/`` folder of JSON files per dataset.

The format is read directly (json, base64, zlib and Pillow), not through the ``supervisely`` SDK:
the SDK is a heavy install and builds a full object model per annotation, while a conversion only
needs each object's box. Annotations are read one file at a time and yielded at once, so a project
of any size streams through with only the file names in memory; masks are decoded only for
bitmap objects.

Boxes follow the SDK's pixel semantics. A point names a pixel, and a geometry covers the pixels
of its points: the SDK's ``Rectangle.width`` is ``right - left + 1``, and ``to_bbox()`` of a
polygon, line or bitmap is the rectangle of its extreme pixels, both ends included. Fractional
coordinates are rounded first, as the SDK's ``PointLocation`` does. odplug's boxes are pixel
edges (a box ends where its last pixel ends), so the right and bottom edge is the last pixel
plus one: corners (2, 3) and (5, 7) become the box [2, 3, 6, 8].

Beyond that the importer yields boxes as annotated. Clipping to the image, dropping zero-area
boxes, class filters, the label map, duplicate keys and the real image size are the core's job.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import reprlib
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from odplug import hookimpl
from odplug.components import Importer
from odplug.dataset_report import Report, Skip
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.samples import SPLITS, Box, Sample

META = "meta.json"
POINT_GEOMETRIES = ("rectangle", "polygon", "line", "polyline")
MASK_GEOMETRIES = ("bitmap", "alpha_mask")
Bounds = tuple[float, float, float, float]
_NUMBER_TYPES = frozenset({int, float})
_DATASET_PARTS = ("ann", "img", "meta")
"""Subfolders of a dataset that hold its files, never a nested dataset: not searched."""


class SuperviselyImporter(Importer):
    name = "supervisely"
    summary = "Supervisely project folder: meta.json and <dataset>/ann/<image>.json files"

    def detect(self, source: Path) -> bool:
        if not (source / META).is_file():
            return False
        return next(_datasets(source), None) is not None

    def label_map(self, source: Path) -> LabelMap:
        """The classes of meta.json, ids 1..n in the order the project lists them."""
        return LabelMap.from_names(_read_classes(_project(source)))

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        project = _project(source)
        _read_classes(project)
        found = False
        for dataset in _datasets(project):
            found = True
            yield from _read_dataset(project, dataset, report)
        if not found:
            raise OdplugError(
                f"{project}: no dataset found; a Supervisely dataset is a folder with an ann/ "
                "subfolder of <image name>.json files"
            )


@hookimpl(trylast=True)
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(SuperviselyImporter())


def _project(source: Path) -> Path:
    if not source.is_dir():
        what = "does not exist" if not source.exists() else "is not a folder"
        raise OdplugError(
            f"{source}: {what}; a Supervisely project is a folder with meta.json and one "
            "folder per dataset"
        )
    return source


def _read_classes(project: Path) -> list[str]:
    """The class titles of meta.json, checked: every later step relies on them."""
    path = project / META
    try:
        meta = _load_json(path.read_bytes())
    except FileNotFoundError:
        raise OdplugError(
            f"{path}: not found; is {project} a Supervisely project? Export it with its "
            "annotations, which writes meta.json at the top"
        ) from None
    except OSError as error:
        raise OdplugError(f"{path}: cannot read it: {error}") from None
    except _BadJson as error:
        raise OdplugError(f"{path}: {error}") from None
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list):
        raise OdplugError(f"{path}: expected an object with a 'classes' list")
    titles: list[str] = []
    for index, entry in enumerate(classes):
        title = entry.get("title") if isinstance(entry, dict) else None
        if not isinstance(title, str) or not title:
            raise OdplugError(f"{path}: class {index} has no 'title'")
        if title in titles:
            raise OdplugError(f"{path}: class {title!r} is listed twice; titles must be unique")
        titles.append(title)
    return titles


def _datasets(project: Path) -> Iterator[Path]:
    """Every folder under `project` with an ``ann/`` subfolder, depth first in name order."""
    seen: set[str] = set()

    def visit(folder: Path, is_dataset: bool) -> Iterator[Path]:
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop
            return
        seen.add(real)
        try:
            names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        except OSError:
            return
        for name in names:
            if is_dataset and name in _DATASET_PARTS:
                continue
            child = folder / name
            child_is_dataset = (child / "ann").is_dir()
            if child_is_dataset:
                yield child
            yield from visit(child, child_is_dataset)

    return visit(project, False)


def _read_dataset(project: Path, dataset: Path, report: Report) -> Iterator[Sample]:
    prefix = dataset.relative_to(project).as_posix()
    ann_dir = dataset / "ann"
    img_dir = dataset / "img"
    try:
        annotated = sorted(
            entry.name
            for entry in os.scandir(ann_dir)
            if not entry.name.startswith(".")
            and entry.name.lower().endswith(".json")
            and entry.is_file()
        )
    except OSError as error:
        raise OdplugError(f"{ann_dir}: cannot list the annotation files: {error}") from None
    images = _image_names(img_dir)
    if images:
        for name in sorted(images.difference(a[: -len(".json")] for a in annotated)):
            report.skip_image(
                img_dir / name,
                "missing-annotation",
                f"no annotation file {prefix}/ann/{name}.json for this image",
            )
    for file_name in annotated:
        image_name = file_name[: -len(".json")]
        sample = _read_annotation(
            os.path.join(ann_dir, file_name), img_dir / image_name, f"{prefix}/{image_name}", report
        )
        if sample is not None:
            yield sample


def _image_names(img_dir: Path) -> set[str]:
    """The files in ``img/``, listed once and not opened; hidden files (.DS_Store) left out."""
    try:
        return {
            entry.name
            for entry in os.scandir(img_dir)
            if not entry.name.startswith(".") and entry.is_file()
        }
    except OSError:
        return set()


def _read_annotation(path: str, image: Path, key: str, report: Report) -> Sample | None:
    """The sample of one annotation file, or None when the whole image is skipped."""
    try:
        with open(path, "rb") as file:
            data = _load_json(file.read())
    except _BadJson as error:
        report.skip_image(path, "malformed-annotation", str(error))
        return None
    except OSError as error:
        report.skip_image(path, "unreadable-annotation", f"cannot read it: {error}")
        return None
    if not isinstance(data, dict):
        report.skip_image(
            path, "malformed-annotation", f"expected a JSON object, got {type(data).__name__}"
        )
        return None
    if "objects" not in data:  # Supervisely writes [] for an image without objects
        report.skip_image(
            path, "missing-objects",
            "no 'objects' list: not a Supervisely annotation, or its objects were lost; "
            "skipped rather than trained on as an image with nothing in it",
        )
        return None
    objects = data["objects"]
    if not isinstance(objects, list):
        report.skip_image(path, "malformed-annotation", "'objects' is not a list")
        return None
    try:
        width, height = _size(data)
        split = _split(data)
    except Skip as skip:
        report.skip_image(path, skip.code, skip.reason)
        return None
    boxes: list[Box] = []
    for index, obj in enumerate(objects):
        try:
            boxes.append(_box(obj, index))
        except Skip as skip:
            report.skip_box(path, skip.code, skip.reason)
    return Sample(image, key, boxes, width=width, height=height, split=split, origin=path,
                  skipped_boxes=len(objects) - len(boxes))


def _size(data: dict[str, Any]) -> tuple[int | None, int | None]:
    if "size" not in data:
        return None, None
    size = data["size"]
    if isinstance(size, dict):
        width, height = size.get("width"), size.get("height")
        if _is_number(width) and _is_number(height) and width > 0 and height > 0:
            if width == int(width) and height == int(height):
                return int(width), int(height)
    raise Skip(
        "malformed-annotation",
        f'\'size\' is {reprlib.repr(size)}; expected {{"height": H, "width": W}} in pixels',
    )


def _split(data: dict[str, Any]) -> str | None:
    """The split named by the image's ``train``/``val``/``test`` tag, if any."""
    tags = data.get("tags") or []
    if not isinstance(tags, list):
        raise Skip("malformed-annotation", "'tags' is not a list")
    splits: set[str] = set()
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name.strip().lower() in SPLITS:
            splits.add(name.strip().lower())
    if len(splits) > 1:
        found = " and ".join(repr(s) for s in sorted(splits, key=SPLITS.index))
        raise Skip("conflicting-split-tags", f"tags {found} both mark a split; keep one of them")
    return splits.pop() if splits else None


def _box(obj: object, index: int) -> Box:
    if not isinstance(obj, dict):
        raise Skip("malformed-geometry", f"object {index}: not a JSON object")
    title = obj.get("classTitle")
    if not isinstance(title, str) or not title:
        raise Skip("malformed-geometry", f"object {index}: no classTitle")
    where = f"object {index} ({title})"
    geometry = obj.get("geometryType")
    if not isinstance(geometry, str) or not geometry:
        raise Skip("malformed-geometry", f"{where}: no geometryType")
    if geometry in POINT_GEOMETRIES:
        xmin, ymin, xmax, ymax = _points_bounds(obj, geometry, where)
    elif geometry in MASK_GEOMETRIES:
        xmin, ymin, xmax, ymax = _mask_bounds(obj, geometry, where)
    else:
        raise Skip("no-box-geometry", f"{where}: geometry {geometry!r} has no box")
    return Box(title, xmin, ymin, xmax, ymax)


def _points_bounds(obj: dict[str, Any], geometry: str, where: str) -> Bounds:
    """The pixel-edge box around ``points.exterior`` (its extreme pixels included, as in the
    SDK); holes and swapped corners do not matter."""
    points = obj.get("points")
    exterior = points.get("exterior") if isinstance(points, dict) else None
    if not isinstance(exterior, list) or not exterior:
        raise Skip("malformed-geometry", f"{where}: {geometry} has no points.exterior")
    if geometry == "rectangle" and len(exterior) != 2:
        raise Skip(
            "malformed-geometry",
            f"{where}: rectangle needs 2 points [[left, top], [right, bottom]], "
            f"got {len(exterior)}",
        )
    try:  # C-level passes over the coordinates: this runs for every object of every file
        xs = [x for x, _ in exterior]
        ys = [y for _, y in exterior]
        numbers = {*map(type, xs), *map(type, ys)} <= _NUMBER_TYPES
        valid = numbers and math.isfinite(sum(xs) + sum(ys))
    except (TypeError, ValueError, OverflowError):  # not pairs; an int no float can hold
        valid = False
    if not valid:  # the slow pass names the bad point; a sum can overflow where no point does
        bad = next((p for p in exterior if not _is_point(p)), None)
        if bad is not None:
            raise Skip(
                "malformed-geometry",
                f"{where}: point {reprlib.repr(bad)} is not a pair of finite numbers [x, y]",
            )
    return round(min(xs)), round(min(ys)), round(max(xs)) + 1, round(max(ys)) + 1


def _mask_bounds(obj: dict[str, Any], geometry: str, where: str) -> Bounds:
    """The box covering exactly the mask's pixels, placed at ``bitmap.origin``."""
    bitmap = obj.get("bitmap")
    if not isinstance(bitmap, dict):
        raise Skip("malformed-geometry", f"{where}: {geometry} has no 'bitmap' object")
    origin = bitmap.get("origin")
    if not _is_point(origin):
        raise Skip(
            "malformed-geometry",
            f"{where}: bitmap.origin {reprlib.repr(origin)} is not a pair of numbers [x, y]",
        )
    data = bitmap.get("data")
    if not isinstance(data, str):
        raise Skip("malformed-geometry", f"{where}: bitmap.data is not a string")
    try:
        bounds = _pixel_bounds(_inflate(base64.b64decode(data)))
    except (binascii.Error, zlib.error, _BadMask) as error:
        raise Skip(
            "malformed-geometry",
            f"{where}: bitmap.data is not base64 of a zlib-compressed PNG: {error}",
        ) from None
    except _MaskTooLarge as error:
        raise Skip("too-large", f"{where}: the {geometry} mask is too large: {error}") from None
    if bounds is None:
        raise Skip("empty-mask", f"{where}: the {geometry} mask has no pixels set")
    x, y = round(origin[0]), round(origin[1])
    left, top, right, bottom = bounds
    return x + left, y + top, x + right, y + bottom


class _BadMask(Exception):
    """The mask PNG cannot be decoded."""


class _MaskTooLarge(Exception):
    """The mask is larger than odplug decodes: the message says how large, and the limit."""


_MAX_MASK_BYTES = 256 * 1024 * 1024
"""The most a mask's PNG may inflate to: far beyond any real mask (one of the largest image
Pillow opens is about 23 MB as 1-bit rows, uncompressed), and a bound on what a zlib bomb in
``bitmap.data`` can take."""


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    png = inflater.decompress(data, _MAX_MASK_BYTES)
    if inflater.unconsumed_tail:
        raise _MaskTooLarge(f"its PNG inflates to more than {_MAX_MASK_BYTES} bytes")
    if not inflater.eof:
        raise zlib.error("the zlib stream is truncated")
    return png


def _pixel_bounds(png: bytes) -> tuple[int, int, int, int] | None:
    """Columns and rows (end exclusive) of the set pixels of a mask PNG; None when none is set.

    Set means alpha > 0 where the PNG has transparency (an alpha channel, or a transparent
    palette entry as Supervisely writes it), and non-zero otherwise. numpy and Pillow are
    imported here, on the first mask, so listing plugins stays fast. Pillow's decompression-bomb
    warning is not printed (the image the mask belongs to gets that note); over its error limit
    the mask is too large.
    """
    import warnings

    import numpy as np
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(png))
        with image:
            if image.mode in ("P", "PA"):
                alpha = image.mode == "PA" or "transparency" in image.info
                image = image.convert("RGBA" if alpha else "RGB")
            elif "transparency" in image.info:  # grey or RGB with a transparent colour (tRNS)
                image = image.convert("RGBA")
            if "A" in image.getbands():
                image = image.getchannel("A")
            pixels = np.asarray(image) != 0
    except Image.DecompressionBombError:
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        raise _MaskTooLarge(
            f"{width}x{height} pixels, limit {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels "
            "(Pillow's decompression-bomb guard)"
        ) from None
    except (OSError, ValueError) as error:
        raise _BadMask(str(error)) from None
    if pixels.ndim == 3:
        pixels = pixels.any(axis=2)
    rows = np.flatnonzero(pixels.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(pixels.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _is_point(value: object) -> TypeGuard[list[float]]:
    return (
        isinstance(value, list)
        and len(value) == 2
        and _is_number(value[0])
        and _is_number(value[1])
    )


def _is_number(value: object) -> TypeGuard[float]:
    """An int or float (not a bool) that is a finite float: JSON allows NaN, Infinity, 1e400
    and integers of any length, none of which is a coordinate."""
    if type(value) not in _NUMBER_TYPES:
        return False
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond the float range
        return False


class _BadJson(Exception):
    """A file that is not JSON odplug can read; the message says why, in one line."""


def _load_json(data: bytes) -> Any:
    """`json.loads`, with every way hostile input can make it fail turned into `_BadJson`:
    syntax errors, bytes that are not UTF-8, nesting deeper than the interpreter's recursion
    limit, and integers longer than Python converts (``sys.get_int_max_str_digits()``)."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise _BadJson(
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except UnicodeDecodeError as error:
        raise _BadJson(f"not UTF-8 text: {error}") from None
    except RecursionError:
        raise _BadJson("not JSON odplug can read: arrays or objects nested too deeply") from None
    except ValueError:
        raise _BadJson(
            f"not JSON odplug can read: a number has more than "
            f"{sys.get_int_max_str_digits()} digits"
        ) from None
