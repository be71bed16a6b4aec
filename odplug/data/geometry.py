"""The numbers the dataset picture is drawn from, gathered one image at a time.

Per split: images, boxes, images without a box and boxes per class, counted exactly; box
centres and sizes (fractions of the image) and image sizes (pixels), kept as a fixed-size
random sample (`Reservoir`), so collecting over a million boxes holds no more than
`POINTS_PER_SPLIT` of them and nothing of the records they came from.

Two sources feed it: the records of a folder (`odplug.data.stats.folder_stats`, for
``data.stats`` and for an import that wrote TFRecords: what is drawn is what was written),
and an import's own samples (`from_samples`, for writers of other formats, whose files this
module does not read).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from odplug.data.boxes import fit_boxes
from odplug.dataset_report import Report, split_order
from odplug.pictures.dataset import POINTS_PER_SPLIT, SplitPoints
from odplug.samples import Sample

T = TypeVar("T")

Corners = tuple[float, float, float, float]
"""A box as the records hold it: xmin, ymin, xmax, ymax as fractions of the image."""


class Reservoir(Generic[T]):
    """At most `limit` of the items added, each item equally likely to be kept (algorithm R).

    Seeded, so the same dataset always draws the same points.
    """

    def __init__(self, limit: int = POINTS_PER_SPLIT, seed: int = 0) -> None:
        self.limit = limit
        self.items: list[T] = []
        self.seen = 0
        self._random = random.Random(seed)

    def add(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.limit:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.limit:
            self.items[slot] = item


@dataclass
class SplitGeometry:
    """One split's counts and point samples."""

    images: int = 0
    boxes: int = 0
    empty_images: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    box_points: Reservoir[Corners] = field(default_factory=Reservoir)
    """Centre x, centre y, width, height: fractions of the image."""
    image_sizes: Reservoir[tuple[int, int]] = field(default_factory=Reservoir)

    def add(self, width: int | None, height: int | None, names: Sequence[str],
            corners: Iterable[Corners]) -> None:
        """One image: its size (None when not known), its boxes' classes and corners."""
        self.images += 1
        self.boxes += len(names)
        self.empty_images += not names
        self.classes.update(names)
        if width is not None and height is not None:
            self.image_sizes.add((width, height))
        for xmin, ymin, xmax, ymax in corners:
            self.box_points.add(((xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin))

    def numbers(self) -> dict[str, Any]:
        """The split's row of ``dataset.json``."""
        return {"images": self.images, "boxes": self.boxes, "empty_images": self.empty_images,
                "classes": dict(sorted(self.classes.items()))}

    def points(self) -> SplitPoints:
        return SplitPoints(
            images=self.images, boxes=self.boxes, classes=dict(self.classes),
            boxes_xywh=np.array(self.box_points.items, dtype=float).reshape(-1, 4),
            image_sizes=np.array(self.image_sizes.items, dtype=float).reshape(-1, 2))


@dataclass
class DatasetGeometry:
    """Every split's `SplitGeometry`, filled one image at a time."""

    splits: dict[str, SplitGeometry] = field(default_factory=dict)

    def add_image(self, split: str, width: int | None, height: int | None, names: Sequence[str],
                  corners: Iterable[Corners] = ()) -> None:
        if split not in self.splits:  # not setdefault: a new SplitGeometry seeds two generators
            self.splits[split] = SplitGeometry()
        self.splits[split].add(width, height, names, corners)

    def ordered(self) -> dict[str, SplitGeometry]:
        """train, val, test, then any other split by name."""
        return dict(sorted(self.splits.items(), key=lambda item: split_order(item[0])))

    def numbers(self) -> dict[str, dict[str, Any]]:
        return {name: split.numbers() for name, split in self.ordered().items()}

    def points(self) -> Mapping[str, SplitPoints]:
        return {name: split.points() for name, split in self.ordered().items()}


def from_samples(splits: Mapping[str, Sequence[Sample]], report: Report) -> DatasetGeometry:
    """What a writer of another format than TFRecords wrote, from the samples it was given.

    The images the writer skipped (the report names them by location) are left out, and the
    boxes are fitted to the image as the writer fits them (clipped, empty ones dropped). A
    sample whose format records no image size is counted, but its boxes cannot be placed in
    the image and its size is unknown: it adds no points.
    """
    skipped = {p.file for p in report.problems if p.kind == "image skipped"}
    geometry = DatasetGeometry()
    for split, samples in splits.items():
        for sample in samples:
            if sample.location in skipped:
                continue
            width, height = sample.width, sample.height
            if width is None or height is None or width <= 0 or height <= 0:
                geometry.add_image(split, None, None, [box.label for box in sample.boxes])
                continue
            boxes = fit_boxes(sample.boxes, width, height, sample.location, Report())
            geometry.add_image(split, width, height, [box.label for box in boxes], [
                (b.xmin / width, b.ymin / height, b.xmax / width, b.ymax / height)
                for b in boxes])
    return geometry
