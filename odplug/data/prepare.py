"""Turning one `Sample` into what a writer stores: checked image bytes and fitted boxes.

Runs inside the writer's worker processes, one image at a time, so only one image per worker
is ever in memory. Every reason a sample or box is dropped goes into the worker's report, and
so does the consequence when every box of an image was dropped: the image is still written,
as a background image, and the report says so.

An image held in a TFRecord (`Sample.record`) is read the same way: that one record is read
at its byte offset, its CRCs checked and its ``image/encoded`` bytes checked like a file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from odplug.components import Verify
from odplug.data.boxes import fit_boxes
from odplug.data.images import ImageData, ImageProblem, check_image, load_image
from odplug.data.tfrecord import encoded_image, read_record
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.samples import Box, Sample


@dataclass(slots=True)
class Prepared:
    sample: Sample
    image: ImageData
    boxes: list[Box]


def prepare(sample: Sample, verify: Verify, report: Report, *,
            crowd: bool = True) -> Prepared | None:
    """The sample's checked image and fitted boxes; None when the image is skipped (reported).

    A writer whose format cannot mark a box as a crowd region (COCO's ``iscrowd``: YOLO
    labels, tf_csv rows) passes ``crowd=False``: crowd boxes are then left out, each reported,
    as Ultralytics' COCO converter leaves them out. Written as ordinary boxes they would teach
    a detector one object drawn around many; TFRecord and COCO keep them, flagged."""
    try:
        image = _read(sample, verify)
    except ImageProblem as problem:
        report.skip_image(sample.location, problem.code, problem.reason)
        return None
    where = sample.origin or sample.location
    declared = (sample.width, sample.height)
    if None not in declared and declared != (image.width, image.height):
        report.skip_image(
            where,
            "size-mismatch",
            f"annotation says {sample.width}x{sample.height} but {sample.location} is "
            f"{image.width}x{image.height} (after EXIF rotation); boxes would be misplaced",
        )
        return None
    if image.reencoded:
        report.reencoded[image.reencoded] += 1
    for code, reason in image.notes:
        report.note_image(sample.location, code, reason)
    kept = sample.boxes if crowd else _without_crowd(sample.boxes, where, report)
    boxes = fit_boxes(kept, image.width, image.height, where, report)
    skipped = sample.skipped_boxes + len(sample.boxes) - len(boxes)
    if skipped and not boxes:
        report.note_image(
            where, "all-boxes-skipped",
            f"kept as background: all {skipped} box{'es' if skipped > 1 else ''} skipped",
        )
    return Prepared(sample, image, boxes)


def _without_crowd(boxes: list[Box], where: str, report: Report) -> list[Box]:
    for box in boxes:
        if box.crowd:
            report.skip_box(where, "crowd-region",
                            f"crowd region of class {box.label!r} (COCO iscrowd) left out: this "
                            "format cannot mark a box as a crowd, and as an ordinary box it "
                            "would be one object drawn around many")
    return [box for box in boxes if not box.crowd]


def _read(sample: Sample, verify: Verify) -> ImageData:
    """The sample's checked image, from its own file or from the one record that holds it."""
    if sample.record is None:
        return load_image(sample.image, verify)
    try:
        data = encoded_image(read_record(sample.image, sample.record.offset),
                             origin=sample.location)
    except OdplugError as error:
        raise ImageProblem("unreadable-record", str(error)) from None
    return check_image(data, verify, name=f"{sample.location} image/encoded", upright=False)


def copy_image(prepared: Prepared, folder: Path, name: str) -> str:
    """Write the checked image bytes as `folder`/`name` for a writer that keeps image files;
    returns the name used: a re-encoded image gets its new format's suffix added, so its file
    name never claims a format its bytes are not."""
    image = prepared.image
    if image.reencoded and not name.lower().endswith(image.format):
        name = f"{name}.{image.format}"
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.data)
    return name
