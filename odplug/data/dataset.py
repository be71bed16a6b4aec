"""The dataset model that every importer yields and every writer consumes.

A `Sample` holds where an image is and what is annotated on it, never the pixels: an
importer can stream a 100,000-image project through the converter with only this metadata in
memory, and the image bytes are read later, one at a time, inside the worker that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, slots=True)
class Box:
    """One object: class name and corners in pixels of the image as annotated (x right, y down).

    `difficult` (Pascal VOC) and `crowd` (COCO's ``iscrowd``, a region of many objects) are
    both kept in the records and both ignored by evaluation: a detection on one is neither a
    hit nor a false positive, as pycocotools treats crowd regions.
    """

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    crowd: bool = False


@dataclass(slots=True)
class Sample:
    """One image of a dataset and its boxes.

    `key` identifies the image within its dataset (it becomes `image/source_id`, the image id
    COCO evaluation uses), so it must be unique; `origin` is the file a user should open to fix
    a problem with this sample (the annotation file, or the CSV file and row).
    `width`/`height` are the size the annotation claims, checked against the real image when it
    is read; `None` where the format does not record a size. `skipped_boxes` counts the boxes
    of the annotation already left out with a reason in the report, so an image that ends up
    with no box at all can be reported as such rather than pass for a background image.
    """

    image: Path
    key: str
    boxes: list[Box] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    split: str | None = None
    origin: str = ""
    skipped_boxes: int = 0
