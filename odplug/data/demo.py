"""A small synthetic Supervisely project, generated instead of downloaded.

Tests, the README's demo and smoke training runs need a labelled dataset that exists on every
machine, is byte-identical for the same seed and exercises every geometry the Supervisely
importer turns into boxes: squares are rectangles, triangles polygons and circles bitmaps.
Saturated shapes on muted textured backgrounds are easy enough for a small SSD to learn well,
and the texture keeps a detector from succeeding by finding any edge at all.
"""

from __future__ import annotations

import base64
import colorsys
import io
import json
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.errors import OdplugError
from odplug.samples import SPLITS

# title, Supervisely geometry, base hue: a class has a colour family, each object a variation.
CLASSES = (("circle", "bitmap", 0.0), ("square", "rectangle", 0.6), ("triangle", "polygon", 0.3))
DATASETS = ("shapes-a", "shapes-b")
IMAGES = 600
# Split tags in rank order, each with the upper bound of its share of the ranks: 30 val, 240
# train and 330 test images by default. The test split is the large one because the
# verification table compares exported models to the SavedModel on it: 330 images hold about
# 820 boxes, so a 1% difference in mAP is some eight boxes, and the paired bootstrap interval
# of a ratio is narrow enough to resolve 1% (docs/exports.md, "Measurements"; 30 test images
# could not). Validation only picks the best checkpoint; it comes first so that even a
# dozen-image project has one validation image.
RANK_BOUNDS = (("val", 0.05), ("train", 0.45), ("test", 1.0))
NEGATIVES = 0.03  # share of images without objects
MAX_OVERLAP = 0.3  # of the smaller box, so an occluded object stays mostly visible
JPEG_QUALITY = 90

Box = tuple[int, int, int, int]  # left, top, right, bottom; inclusive pixels like Supervisely


def write_demo_project(out: Path, *, images: int = IMAGES, size: int = 256, seed: int = 0,
                       progress: Callable[[int], None] | None = None) -> Path:
    """Write `images` square JPEGs of `size` pixels and their annotations; returns `out`.

    An earlier demo project in `out` is overwritten (images it had beyond this run's are
    removed); any other non-empty folder is refused so a mistyped path never clobbers data.
    """
    if images < 0 or size < 32:
        raise OdplugError(f"demo project needs images >= 0 and size >= 32, got {images}, {size}")
    meta = json.dumps(_meta(), indent=2) + "\n"
    _claim(out, meta)
    # meta.json first: a run interrupted later still leaves a folder the next run may overwrite
    atomic_write_text(out / "meta.json", meta)
    ranks = np.argsort(np.random.default_rng(seed).permutation(images))
    written: set[Path] = set()
    for index in range(images):
        dataset = DATASETS[index * len(DATASETS) // images]
        name = f"shape_{index + 1:05d}.jpg"
        split = next(tag for tag, bound in RANK_BOUNDS if (ranks[index] + 0.5) / images < bound)
        jpeg, annotation = _sample(np.random.default_rng([seed, index]), size, split)
        for path, data in ((out / dataset / "img" / name, jpeg),
                           (out / dataset / "ann" / f"{name}.json", annotation)):
            atomic_write_bytes(path, data)
            written.add(path)
        if progress is not None:
            progress(1)
    for stale in out.glob("*/*/shape_*"):
        if stale not in written:
            stale.unlink()
    return out


def _claim(out: Path, meta: str) -> None:
    """Refuse a target that holds anything but a demo project (same meta.json as ours)."""
    if out.exists() and not out.is_dir():
        raise OdplugError(f"{out} is a file; give a folder for the demo project")
    if out.is_dir() and any(out.iterdir()):
        existing = out / "meta.json"
        if not existing.is_file() or existing.read_bytes() != meta.encode("utf-8"):
            raise OdplugError(f"{out} is not empty and is not an odplug demo project; "
                              "give a new or empty folder")


def supervisely_meta(classes: Sequence[tuple[str, str, str]], split_tags: Sequence[str]) -> dict:
    """A Supervisely project's ``meta.json``: (title, geometry, ``#RRGGBB``) classes and the
    image tags that mark splits. Shared by every synthetic project odplug writes (this demo,
    the benchmark's photo-sized one), so they cannot drift from the format."""
    return {
        "classes": [{"title": title, "shape": shape, "color": color, "geometry_config": {},
                     "id": number, "hotkey": ""}
                    for number, (title, shape, color) in enumerate(classes, start=1)],
        "tags": [{"name": tag, "value_type": "none", "color": "#888888", "id": number,
                  "hotkey": "", "applicable_type": "imagesOnly", "classes": []}
                 for number, tag in enumerate(split_tags, start=1)],
        "projectType": "images",
    }


def supervisely_annotation(split: str, width: int, height: int, objects: list[dict]) -> dict:
    """One image's ``ann/<image>.json``: its split tag, size and objects."""
    return {"description": "", "tags": [{"name": split, "value": None}],
            "size": {"height": height, "width": width}, "objects": objects}


def supervisely_points(title: str, shape: str, exterior: list[list[int]]) -> dict:
    """A rectangle (its first and last pixel) or polygon (its vertices) object, in image
    pixels. Supervisely's corners are inclusive: a 3x2 rectangle at (0, 0) is [[0, 0], [2, 1]]."""
    return {"classTitle": title, "geometryType": shape, "tags": [],
            "points": {"exterior": exterior, "interior": []}}


def _meta() -> dict:
    return supervisely_meta([(title, shape, _hex(_rgb(hue, 0.8, 0.9)))
                             for title, shape, hue in CLASSES], SPLITS)


def _sample(rng: np.random.Generator, size: int, split: str) -> tuple[bytes, bytes]:
    """One image with 1-4 non-crowding shapes (none for a few negatives): JPEG and annotation."""
    pixels = _background(rng, size)
    count = 0 if rng.random() < NEGATIVES else int(rng.integers(1, 5))
    boxes: list[Box] = []
    objects = []
    for _ in range(count):
        title, shape, hue = CLASSES[int(rng.integers(len(CLASSES)))]
        mask, points = _shape(rng, title, int(rng.uniform(0.10, 0.45) * size))
        for _ in range(20):
            left = int(rng.integers(0, size - mask.width + 1))
            top = int(rng.integers(0, size - mask.height + 1))
            box = (left, top, left + mask.width - 1, top + mask.height - 1)
            if not any(_overlap(box, other) > MAX_OVERLAP for other in boxes):
                break
        else:
            continue  # no room left beside the shapes already drawn
        boxes.append(box)
        colour = _rgb(hue + rng.uniform(-0.06, 0.06), rng.uniform(0.65, 1), rng.uniform(0.75, 1))
        pixels[top:box[3] + 1, left:box[2] + 1][np.asarray(mask) > 0] = colour
        objects.append(_geometry(title, shape, mask, points, left, top))
    pixels += rng.standard_normal((size, size, 1), dtype=np.float32) * 4  # grain, shapes too
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    annotation = supervisely_annotation(split, size, size, objects)
    return buffer.getvalue(), (json.dumps(annotation, indent=2) + "\n").encode("utf-8")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted colour blobs, a brightness ramp and faint stripes: a float32 RGB array, 0-255."""
    cells = int(rng.integers(2, 8))
    coarse = rng.random((cells, cells, 3))
    coarse = 0.4 * coarse + 0.6 * coarse.mean(axis=2, keepdims=True)  # desaturate: shapes pop
    coarse_image = Image.fromarray((coarse * 255).astype(np.uint8))
    blobs = np.asarray(coarse_image.resize((size, size), Image.Resampling.BICUBIC), np.float32)
    # float32 arrays and Python-float scalars only: float64 doubles the time of this step
    x = np.linspace(0, 1, size, dtype=np.float32)[None, :]
    y = x.T
    ramp_angle, stripe_angle = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    ramp = math.cos(ramp_angle) * x + math.sin(ramp_angle) * y
    along = math.cos(stripe_angle) * x + math.sin(stripe_angle) * y
    stripes = np.sin(2 * math.pi * rng.uniform(3, 15) * along + rng.uniform(0, 2 * math.pi))
    grey = 255 * (rng.uniform(0.3, 0.65) + rng.uniform(-0.25, 0.25) * (ramp - float(ramp.mean()))
                  + rng.uniform(0, 0.08) * stripes)
    return grey[..., None] + 0.45 * (blobs - 127.5)


def _shape(rng: np.random.Generator, title: str, side: int) -> tuple[Image.Image, np.ndarray]:
    """A mask cropped to the shape, and the triangle's corners in the mask's pixels.

    The mask is what gets painted, so what is drawn is exactly what is annotated.
    """
    if title == "circle":
        centre = (side - 1) / 2
        y, x = np.mgrid[0:side, 0:side]
        inside = (x - centre) ** 2 + (y - centre) ** 2 <= (side / 2) ** 2
        return Image.fromarray(inside.astype(np.uint8) * 255), np.empty((0, 2), int)
    if title == "square":
        return Image.new("L", (side, side), 255), np.empty((0, 2), int)
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
    points = np.rint(np.stack([np.cos(angles), np.sin(angles)], axis=1) * side / 2).astype(int)
    points -= points.min(axis=0)
    width, height = (int(v) + 1 for v in points.max(axis=0))
    mask = Image.new("L", (width, height))
    ImageDraw.Draw(mask).polygon([(int(px), int(py)) for px, py in points], fill=255)
    return mask, points


def _geometry(title: str, shape: str, mask: Image.Image, points: np.ndarray,
              left: int, top: int) -> dict:
    """The Supervisely object for a shape whose mask's top-left pixel is at (`left`, `top`)."""
    if shape == "bitmap":
        png = io.BytesIO()
        mask.convert("1").save(png, format="PNG")
        data = base64.b64encode(zlib.compress(png.getvalue())).decode("ascii")
        return {"classTitle": title, "geometryType": shape, "tags": [],
                "bitmap": {"data": data, "origin": [left, top]}}
    if shape == "rectangle":
        # Inclusive corners, as the Supervisely SDK reads them: the first and the last pixel.
        return supervisely_points(title, shape, [[left, top],
                                                 [left + mask.width - 1, top + mask.height - 1]])
    return supervisely_points(title, shape, [[int(px) + left, int(py) + top] for px, py in points])


def _overlap(a: Box, b: Box) -> float:
    """Intersection as a share of the smaller box."""
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0] + 1) * (a[3] - a[1] + 1), (b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return width * height / smaller


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{channel:02X}" for channel in rgb)
