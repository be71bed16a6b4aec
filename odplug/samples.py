"""The dataset model that every importer yields and every writer consumes.

A `Sample` holds where an image is and what is annotated on it, never the pixels: an
importer can stream a 100,000-image project through the converter with only this metadata in
memory, and the image bytes are read later, one at a time, inside the worker that writes them.

An image is either a file of its own (`Sample.image`) or held inside a TFRecord file: then
`Sample.image` is the record file and `Sample.record` (a `RecordRef`) says which record of it
holds the image as ``image/encoded``. The record is found again by its byte offset, so the worker
reads that one record and nothing else; code that reports on a sample uses `Sample.location`
and `Sample.file_name`, which say the right thing for both.
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


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Which record of a TFRecord file holds a sample's image (``image/encoded``).

    `offset` is the byte where the record's framing starts (what `odplug.data.tfrecord.
    read_record` seeks to), `index` its position in the file (for messages), `size` the bytes
    of the record (for sizing output shards) and `filename` the record's ``image/filename``.
    A few numbers and a name: samples cross process boundaries to the writer's workers, and
    100,000 of them must fit in memory without any image bytes.
    """

    offset: int
    index: int
    size: int
    filename: str = ""


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
    `record` is set when `image` is a TFRecord file whose record at that offset holds the image.
    """

    image: Path
    key: str
    boxes: list[Box] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    split: str | None = None
    origin: str = ""
    skipped_boxes: int = 0
    record: RecordRef | None = None

    @property
    def location(self) -> str:
        """Where the image is, for messages: its path, or ``<file>: record N (byte offset M)``."""
        if self.record is None:
            return str(self.image)
        return f"{self.image}: record {self.record.index} (byte offset {self.record.offset})"

    @property
    def file_name(self) -> str:
        """The image's own file name, for ``image/filename`` and for writers that copy images.

        For a record-held image: the last part of the record's ``image/filename``, else of the
        key, else ``record-<index>``. Only a last part that names a file is taken, since both
        come from the record as any tool wrote them (``../../x.jpg``, ``C:\\pics\\a.jpg``)
        and a writer puts the name under its output folder.
        """
        if self.record is None:
            return self.image.name
        return (_base_name(self.record.filename) or _base_name(self.key)
                or f"record-{self.record.index}")


def _base_name(text: str) -> str:
    """The last part of a slash or backslash path when it can name a file; else empty."""
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    return "" if name in ("", ".", "..") or "\x00" in name else name
