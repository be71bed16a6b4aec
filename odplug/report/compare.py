"""The pictures drawn from the verification's kept detections: the test images the SavedModel
errs on most, judged against their labels, and the same images with every exported model's
detections beside the SavedModel's, where they differ marked.

The detections come from ``verification-detections.json`` (`odplug.exports.verify`), the
images from the records themselves, read by the offsets it keeps, without TensorFlow. The
records may have moved or changed since the export: an image whose record is gone or no
longer the one the export saw is a sentence in its place.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from odplug.data.tfrecord import encoded_image, read_record, summarize
from odplug.errors import OdplugError
from odplug.exports.output import DETECTIONS_FILE
from odplug.pictures.boxes import draw_compared, draw_judged
from odplug.pictures.matching import Boxes, judge
from odplug.report.blocks import Block, Cell, Grid, Legend, Note
from odplug.report.embed import THUMBNAIL, jpeg_uri
from odplug.report.sections import read_json


class Kept:
    """``verification-detections.json`` read, and its images read from the records."""

    def __init__(self, document: dict[str, Any], records: Path | None) -> None:
        self.threshold = float(document["threshold"])
        self.reason = str(document.get("threshold_reason", ""))
        self.judged_images = int(document.get("judged_images", 0))
        self.names = {int(key): str(name) for key, name in document["classes"].items()}
        self.images: list[dict[str, Any]] = list(document["images"])
        self.models: list[tuple[str, list[Boxes]]] = [
            (str(model["name"]), [Boxes.of(d["boxes"], d["classes"], d["scores"])
                                  for d in model["detections"]])
            for model in document["models"]]
        if any(len(found) != len(self.images) for _name, found in self.models):
            raise ValueError("a model's detections do not cover every image")
        self.pictures = [_thumbnail(image, records) for image in self.images]

    @classmethod
    def read(cls, export: Path, records: Path | None) -> Kept | str:
        """The kept detections of the export folder `export`, or why there are none."""
        document, why = read_json(export / DETECTIONS_FILE)
        if document is None:
            return (f"No {DETECTIONS_FILE} in {export} ({why.rstrip('.')}): export with "
                    "verification (model.export without --no-verify) to draw the models' "
                    "detections.")
        try:
            return cls(document, records)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return f"{export / DETECTIONS_FILE} is not one this odplug reads ({error!r})."

    def truth(self, index: int) -> Boxes:
        truth = self.images[index]["truth"]
        return Boxes.of(truth["boxes"], truth["classes"], difficult=truth["difficult"])

    def caption(self, index: int) -> str:
        image = self.images[index]
        return f"{image.get('id', '')}"


def _thumbnail(image: dict[str, Any], records: Path | None) -> Image.Image | str:
    """The image of one kept record, fitted into `THUMBNAIL` pixels, or why it cannot be read.
    The record is looked for where the export read it, then in `records` by its shard's name,
    and must still be the same image (id and size)."""
    place = image["record"]
    path = Path(place["file"])
    if not path.is_file() and records is not None:
        path = records / path.name
    try:
        record = read_record(path, int(place["offset"]))
        summary = summarize(record, origin=f"{path} at byte {place['offset']}")
        if (summary.source_id or summary.filename) != image["id"] or (
                summary.width, summary.height) != (image["width"], image["height"]):
            return (f"the record at byte {place['offset']} of {path.name} is no longer "
                    f"image {image['id']} (the records changed since the export)")
        with Image.open(io.BytesIO(encoded_image(record))) as opened:
            picture = opened.convert("RGB")
    except (OdplugError, OSError, Image.DecompressionBombError) as error:
        return f"image {image['id']} could not be read: {error}"
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    return picture


def worst_first(kept: Kept) -> list[Block]:
    """The SavedModel's detections on the chosen images judged against their labels."""
    cells = []
    for index, picture in enumerate(kept.pictures):
        image = kept.images[index]
        found = kept.models[0][1][index]
        if isinstance(picture, str):
            cells.append(Cell(None, picture))
            continue
        judged = judge(kept.truth(index), found, kept.threshold)
        cells.append(Cell(jpeg_uri(draw_judged(picture, judged, kept.names)),
                          f"{image['id']}: {judged.false_positives} false positive(s), "
                          f"{judged.missed} missed"))
    return [Note(f"The {len(cells)} test images (of {kept.judged_images}) on which the "
                 f"SavedModel makes the most errors, most first, at score threshold "
                 f"{kept.threshold:.3g}: {kept.reason}."),
            Legend.of("hit", "false", "missed"), Grid((), [("", cells)])]


def side_by_side(kept: Kept) -> list[Block]:
    """One row per chosen image: the SavedModel's detections, then each export's against
    them, with the count of differences under each."""
    (reference_name, reference), *exports = kept.models
    rows = []
    for index, picture in enumerate(kept.pictures):
        if isinstance(picture, str):
            rows.append((kept.caption(index), [Cell(None, picture)]))
            continue
        own = draw_compared(picture, reference[index], reference[index], kept.threshold,
                            kept.names)
        cells = [Cell(jpeg_uri(own.image),
                      f"{len(reference[index].above(kept.threshold))} detection(s)")]
        for _name, found in exports:
            compared = draw_compared(picture, reference[index], found[index], kept.threshold,
                                     kept.names)
            differences = compared.extra + compared.lost
            cells.append(Cell(jpeg_uri(compared.image),
                              f"{differences} difference(s): {compared.extra} only here, "
                              f"{compared.lost} only in the SavedModel" if differences
                              else "the same as the SavedModel", differences > 0))
        rows.append((kept.caption(index), cells))
    if not exports:
        return [Note("No exported model was verified: nothing to compare with the "
                     "SavedModel.")]
    return [Note(f"The same test images with every model's detections at the SavedModel's "
                 f"threshold {kept.threshold:.3g}; a box counts as the same when an export "
                 "finds one of its class with IoU 0.5 or more."),
            Legend.of("same", "extra", "lost"),
            Grid((reference_name, *(name for name, _found in exports)), rows)]
