"""``model.predict``: a SavedModel on an image or a folder, drawn PNGs and one JSON out."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.data.images import IMAGE_SUFFIXES
from odplug.errors import OdplugError, UsageError
from odplug.model.detector import SavedModelDetector
from odplug.model.draw import draw_detections


def image_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if found:
            return found
        raise OdplugError(f"{source}: no images here ({', '.join(sorted(IMAGE_SUFFIXES))})")
    raise UsageError(f"{source}: no such file or folder")


def predict_images(model: Path, source: Path, out: Path, threshold: float) -> int:
    """Draw and list detections for every image; unreadable images are reported, not fatal."""
    detector = SavedModelDetector(model)
    names = {item.id: item.name for item in detector.label_map.items} if detector.label_map else {}
    results, problems = [], []
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
        atomic_write_bytes(out / f"{path.stem}.png", buffer.getvalue())
        results.append({
            "file": str(path), "width": image.width, "height": image.height,
            "detections": [
                {"class_id": int(c), "class": names.get(int(c), str(int(c))),
                 "score": round(float(s), 4),
                 "box": {"ymin": float(b[0]), "xmin": float(b[1]),
                         "ymax": float(b[2]), "xmax": float(b[3])}}
                for b, c, s in zip(found.boxes, found.classes, found.scores, strict=True)
            ],
        })
    document = {"model": str(model), "threshold": threshold, "images": results,
                "skipped": problems}
    atomic_write_text(out / "detections.json", json.dumps(document, indent=2) + "\n")
    for problem in problems:
        print(f"odplug: warning: skipped {problem['file']}: {problem['reason']}")
    return len(results)
