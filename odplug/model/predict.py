"""``model.predict``: a SavedModel on an image or a folder, drawn PNGs and one JSON out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.data.images import IMAGE_SUFFIXES
from odplug.errors import OdplugError, UsageError
from odplug.model.detector import SavedModelDetector
from odplug.pictures.boxes import draw_detections


def image_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if found:
            return found
        raise OdplugError(f"{source}: no images here ({', '.join(sorted(IMAGE_SUFFIXES))})")
    raise UsageError(f"{source}: no such file or folder")


@dataclass(frozen=True)
class Detection:
    """One object found in an image."""

    class_id: int
    """Its label-map id."""
    name: str
    """Its class name (the id as text when the model has no label map)."""
    score: float
    box: tuple[float, float, float, float]
    """(ymin, xmin, ymax, xmax), normalised to [0, 1] of the image."""


@dataclass
class ImagePrediction:
    """What the model found in one image, and the PNG it was drawn into."""

    file: Path
    width: int
    height: int
    drawn: Path
    detections: list[Detection]


@dataclass
class Predictions:
    """Every image predicted, every image skipped (with why), and ``detections.json``."""

    images: list[ImagePrediction]
    skipped: list[dict[str, str]]
    """``{"file": ..., "reason": ...}`` per image that could not be read."""
    json: Path


def predict_images(model: Path, source: Path, out: Path, threshold: float) -> int:
    """`predict`, returning how many images were drawn."""
    return len(predict(model, source, out, threshold).images)


def predict(model: Path, source: Path, out: Path, threshold: float) -> Predictions:
    """Draw and list detections for every image; unreadable images are reported, not fatal."""
    detector = SavedModelDetector(model)
    names = {item.id: item.name for item in detector.label_map.items} if detector.label_map else {}
    results: list[ImagePrediction] = []
    problems: list[dict[str, str]] = []
    for path in image_files(source):
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            problems.append({"file": str(path), "reason": f"cannot read the image: {error}"})
            continue
        found = detector(np.asarray(image)).above(threshold)
        drawn = draw_detections(image, found.boxes, found.classes, found.scores, names)
        buffer = BytesIO()
        drawn.save(buffer, "PNG")
        target = out / f"{path.stem}.png"
        atomic_write_bytes(target, buffer.getvalue())
        results.append(ImagePrediction(path, image.width, image.height, target, [
            Detection(int(c), names.get(int(c), str(int(c))), float(s),
                      (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for b, c, s in zip(found.boxes, found.classes, found.scores, strict=True)
        ]))
    predictions = Predictions(results, problems, out / "detections.json")
    document = {"model": str(model), "threshold": threshold,
                "images": [_image_json(result) for result in results], "skipped": problems}
    atomic_write_text(predictions.json, json.dumps(document, indent=2) + "\n")
    for problem in problems:
        print(f"odplug: warning: skipped {problem['file']}: {problem['reason']}")
    return predictions


def _image_json(result: ImagePrediction) -> dict[str, Any]:
    return {
        "file": str(result.file), "width": result.width, "height": result.height,
        "detections": [
            {"class_id": d.class_id, "class": d.name, "score": round(d.score, 4),
             "box": dict(zip(("ymin", "xmin", "ymax", "xmax"), d.box, strict=True))}
            for d in result.detections
        ],
    }
