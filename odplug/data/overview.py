"""``dataset.png`` and ``dataset.json``: the dataset drawn, and its numbers for the report.

Written by ``data.import`` into its staging folder (so they are swapped in with the records,
or not at all) and by ``data.stats --pictures`` into an existing records folder. The JSON holds
per split what the report shows as a table, and what the import skipped by reason, per split
where the split is known::

    {"splits": {"train": {"images": 240, "boxes": 557, "empty_images": 3,
                          "classes": {"circle": 191, ...}}, ...},
     "skipped": {"images": {"missing-image": 2}, "boxes": {"zero-area": 1},
                 "splits": {"train": {"images": {}, "boxes": {"zero-area": 1}}}},
     "picture": "dataset.png"}

``"skipped"`` is null when it is not known (a records folder without its import's report).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_write_text
from odplug.data.geometry import DatasetGeometry, from_samples
from odplug.data.shards import shard_files
from odplug.data.stats import folder_stats
from odplug.dataset_report import Report, split_order
from odplug.errors import OdplugError
from odplug.pictures.dataset import draw_dataset
from odplug.samples import Sample

PICTURE_NAME = "dataset.png"
NUMBERS_NAME = "dataset.json"
REPORT_NAME = "report.json"

def is_overview_picture(path: Path) -> bool:
    """Whether `path` is the dataset picture an import wrote (`PICTURE_NAME` with
    `NUMBERS_NAME` beside it), which a dataset reader must not take for one of its images:
    a YOLO, COCO or CSV output imported again would list it as an unlabelled image."""
    return path.name == PICTURE_NAME and (path.parent / NUMBERS_NAME).is_file()


_KINDS = {"image skipped": "images", "box skipped": "boxes"}


def write_overview(folder: Path, geometry: DatasetGeometry,
                   skipped: Mapping[str, Any] | None) -> Path:
    """``dataset.json`` and ``dataset.png`` of `geometry` and `skipped` into `folder`, each
    written whole; returns the picture's path."""
    numbers = {"splits": geometry.numbers(), "skipped": skipped, "picture": PICTURE_NAME}
    atomic_write_text(folder / NUMBERS_NAME, json.dumps(numbers, indent=2) + "\n")
    return draw_dataset(geometry.points(), skipped, folder / PICTURE_NAME)


def skipped_by_split(report: Report, splits: Mapping[str, Sequence[Sample]]) -> dict[str, Any]:
    """The report's skipped images and boxes by reason, and by split where it is known.

    A problem names a file (an image, or the annotation file to fix); the split is known when
    that file belongs to the samples of one split only: an image the writer skipped, a box of
    an image that was split, a per-split annotation file. Skips met before the split was
    decided (a missing image, an unreadable annotation) have none.
    """
    owners: dict[str, set[str]] = {}
    for split, samples in splits.items():
        for sample in samples:
            for file in (sample.location, sample.origin):
                if file:
                    owners.setdefault(file, set()).add(split)
    totals: dict[str, Counter[str]] = {kind: Counter() for kind in _KINDS.values()}
    per_split: dict[str, dict[str, Counter[str]]] = {}
    for problem in report.problems:
        kind = _KINDS.get(problem.kind)
        if kind is None:
            continue
        totals[kind][problem.code] += 1
        found = owners.get(problem.file, set())
        if len(found) == 1:
            split = next(iter(found))
            counts = per_split.setdefault(split, {k: Counter() for k in _KINDS.values()})
            counts[kind][problem.code] += 1
    return {**{kind: dict(counts) for kind, counts in totals.items()},
            "splits": {split: {kind: dict(c) for kind, c in per_split[split].items()}
                       for split in sorted(per_split, key=split_order)}}


def import_overview(staging: Path, splits: Mapping[str, Sequence[Sample]],
                    report: Report) -> Path:
    """The overview of an import just written to `staging`: drawn from its TFRecords when it
    wrote some (what is drawn is what was written), else from the samples given the writer."""
    if shard_files(staging):
        geometry = DatasetGeometry()
        folder_stats(staging, geometry=geometry, check_images=False)
    else:
        geometry = from_samples(splits, report)
    return write_overview(staging, geometry, skipped_by_split(report, splits))


def folder_overview(folder: Path, geometry: DatasetGeometry) -> Path:
    """The overview of an existing records folder (`geometry` filled by `folder_stats`),
    written into it: ``data.stats --pictures``. The skips come from the import's own files in
    the folder, when they are there."""
    try:
        return write_overview(folder, geometry, folder_skips(folder))
    except OSError as error:
        raise OdplugError(f"{folder}: cannot write {PICTURE_NAME} and {NUMBERS_NAME} there: "
                          f"{error.strerror or error}") from None


def folder_skips(folder: Path) -> dict[str, Any] | None:
    """What the import of `folder` skipped: the ``"skipped"`` of its ``dataset.json`` (per split,
    written by the import), else the totals of its ``report.json``; None when neither is there.
    """
    for name, per_split in ((NUMBERS_NAME, True), (REPORT_NAME, False)):
        path = folder / name
        if not path.is_file():
            continue
        try:
            skipped = json.loads(path.read_text()).get("skipped")
        except (OSError, ValueError, AttributeError) as error:
            raise OdplugError(f"{path}: not readable as an odplug import's JSON ({error}); "
                              "delete it or import the dataset again") from None
        if isinstance(skipped, dict):
            return skipped if per_split else {kind: dict(skipped.get(kind, {}))
                                              for kind in _KINDS.values()}
    return None
