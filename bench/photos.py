"""A synthetic Supervisely project whose images cost what real photos cost to read and copy.

Conversion speed is dominated by image bytes, so the images must be photo-sized: smooth colour
fields with the objects painted on, under fine luminance grain and chroma noise, saved at JPEG
quality 94 with full-resolution chroma. At 640x480 that averages about 250 KB per image, like
camera photos scaled down at high quality. Every image and annotation is a pure function of
(seed, index), so the project is identical whichever process drew which image, and is generated
once per set of parameters and then reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from odplug.atomic import atomic_write_text
from odplug.data.demo import supervisely_annotation, supervisely_meta, supervisely_points

# Bump when the content changes, so cached projects of the old content are not reused.
CONTENT_VERSION = 2

# (title, shape, colour): two rectangle classes and one polygon class, as Supervisely declares them.
CLASSES = (
    ("car", "rectangle", "#F6FF00"),
    ("person", "rectangle", "#FF3D9A"),
    ("tree", "polygon", "#3BD12E"),
)
DATASETS = ("ds0", "ds1")
SPLIT_TAGS = ("train", "test")
DONE_FILE = ".complete.json"


@dataclass(frozen=True)
class ProjectSpec:
    """Everything the generated project depends on; its `name` keys the cache."""

    images: int
    seed: int = 0
    width: int = 640
    height: int = 480
    quality: int = 94

    @property
    def name(self) -> str:
        return (
            f"supervisely-{self.images}img-{self.width}x{self.height}-q{self.quality}"
            f"-seed{self.seed}-v{CONTENT_VERSION}"
        )


def image_name(index: int) -> str:
    """Unique across datasets: the original workflow copies every split into one flat folder."""
    return f"IMG_{index:05d}.jpg"


def dataset_of(index: int) -> str:
    return DATASETS[index % len(DATASETS)]


def split_of(index: int) -> str:
    """Every fifth image is a test image: 80/20, and both splits exist even in a tiny project."""
    return "test" if index % 5 == 4 else "train"


def meta() -> dict:
    """The project's meta.json: its classes and the split tags images may carry."""
    return supervisely_meta(CLASSES, SPLIT_TAGS)


def _rectangle(rng: np.random.Generator, width: int, height: int) -> list[list[int]]:
    w = int(rng.uniform(0.1, 0.5) * width)
    h = int(rng.uniform(0.1, 0.5) * height)
    left = int(rng.integers(0, width - w))
    top = int(rng.integers(0, height - h))
    return [[left, top], [left + w, top + h]]


def _polygon(rng: np.random.Generator, width: int, height: int) -> list[list[int]]:
    """A star-shaped polygon of 5-8 vertices, entirely inside the image."""
    radius = rng.uniform(0.05, 0.25) * min(width, height)
    cx = rng.uniform(radius, width - 1 - radius)
    cy = rng.uniform(radius, height - 1 - radius)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
    radii = radius * rng.uniform(0.5, 1.0, angles.size)
    return [
        [int(round(cx + r * np.cos(a))), int(round(cy + r * np.sin(a)))]
        for a, r in zip(angles, radii, strict=True)
    ]


def annotation(rng: np.random.Generator, spec: ProjectSpec, index: int) -> dict:
    """The ann/<image>.json of one image: its split tag, size and 1-4 objects."""
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        title, shape, _color = CLASSES[int(rng.integers(len(CLASSES)))]
        make = _rectangle if shape == "rectangle" else _polygon
        objects.append(supervisely_points(title, shape, make(rng, spec.width, spec.height)))
    return supervisely_annotation(split_of(index), spec.width, spec.height, objects)


def _upsampled_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale: int, sigma: float
) -> np.ndarray:
    h, w = shape
    coarse = rng.normal(0, sigma, (-(-h // scale), -(-w // scale))).astype(np.float32)
    return np.repeat(np.repeat(coarse, scale, 0), scale, 1)[:h, :w]


def photo(rng: np.random.Generator, spec: ProjectSpec, objects: list[dict]) -> Image.Image:
    """Colour fields, the objects painted in their class colours, then grain over everything."""
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.002, 0.02, 2) * 2 * np.pi
        phase_x, phase_y, offset = rng.uniform(-np.pi, np.pi, 3)
        pixels[..., c] = (
            128 + 60 * np.sin(xx * fx + phase_x) * np.cos(yy * fy + phase_y) + 12 * offset
        )
    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    colours = {title: color for title, _shape, color in CLASSES}
    for obj in objects:
        points = [tuple(p) for p in obj["points"]["exterior"]]
        if obj["geometryType"] == "rectangle":
            draw.rectangle(points, fill=colours[obj["classTitle"]])
        else:
            draw.polygon(points, fill=colours[obj["classTitle"]])
    pixels = np.asarray(canvas, np.float32)
    grain = rng.uniform(11, 17)
    luma = rng.normal(0, grain, (h, w)).astype(np.float32)
    for scale in (2, 4):
        luma += _upsampled_noise(rng, (h, w), scale, grain / 2)
    pixels += luma[..., None] + rng.normal(0, 4, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_item(root: Path, spec: ProjectSpec, index: int) -> int:
    """Write image `index` and its annotation under `root`; return the image's size in bytes."""
    rng = np.random.default_rng([spec.seed, index])
    ann = annotation(rng, spec, index)
    name = image_name(index)
    dataset = root / dataset_of(index)
    image_path = dataset / "img" / name
    photo(rng, spec, ann["objects"]).save(image_path, "JPEG", quality=spec.quality, subsampling=0)
    (dataset / "ann" / f"{name}.json").write_text(json.dumps(ann))
    return image_path.stat().st_size


def _write_chunk(args: tuple[Path, ProjectSpec, range]) -> int:
    root, spec, indices = args
    return sum(write_item(root, spec, i) for i in indices)


def _chunks(images: int, size: int) -> Iterator[range]:
    for start in range(0, images, size):
        yield range(start, min(start + size, images))


def ensure_project(
    workdir: Path,
    spec: ProjectSpec,
    *,
    processes: int | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[Path, dict]:
    """Return the project for `spec` under `workdir` and its summary, generating it if needed.

    A project counts as generated only once its summary file exists; it is built under a
    temporary name and renamed into place, so an interrupted run is redone, never reused.
    """
    root = workdir / spec.name
    done = root / DONE_FILE
    if done.exists():
        return root, json.loads(done.read_text())
    building = workdir / f".{spec.name}.building"
    shutil.rmtree(building, ignore_errors=True)
    for dataset in DATASETS:
        (building / dataset / "img").mkdir(parents=True)
        (building / dataset / "ann").mkdir(parents=True)
    (building / "meta.json").write_text(json.dumps(meta(), indent=2))

    processes = processes or os.cpu_count() or 1
    chunk = max(1, min(50, spec.images // (4 * processes)))
    echo(f"generating {spec.images} images into {root} with {processes} processes")
    image_bytes = written = 0
    step = max(1, spec.images // 10)
    with ProcessPoolExecutor(max_workers=processes) as pool:
        jobs = ((building, spec, indices) for indices in _chunks(spec.images, chunk))
        for indices, size in zip(
            _chunks(spec.images, chunk), pool.map(_write_chunk, jobs), strict=True
        ):
            image_bytes += size
            before, written = written, written + len(indices)
            if written // step > before // step or written == spec.images:
                echo(f"  {written}/{spec.images} images")
    summary = {
        **asdict(spec),
        "image_bytes": image_bytes,
        "mean_image_kb": image_bytes / spec.images / 1000,
        "total_bytes": sum(p.stat().st_size for p in building.rglob("*") if p.is_file()),
    }
    atomic_write_text(building / DONE_FILE, json.dumps(summary, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(building, root)
    return root, summary
