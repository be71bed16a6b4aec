"""Images that a dataset's folders hold but none of its annotation files lists.

Every image of the input ends up in the records or in the report by name: an importer lists
the folders its images came from, and each image file in them that no annotation names is
reported as skipped, once, with why. An image without its annotation file is not annotated,
which is not the same as annotated with nothing, so it is never imported as a background image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from odplug.data.images import IMAGE_SUFFIXES
from odplug.data.overview import is_overview_picture
from odplug.dataset_report import Report

NO_ANNOTATION = "no-annotation"
"""The report code of an image that no annotation file lists, whatever the format."""


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, by name (hidden files left out); none when the
    folder cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                           and e.is_file())
    except OSError:
        return []
    return [folder / name for name in names if not is_overview_picture(folder / name)]


def report_unlisted(root: Path, folders: Iterable[Path], listed: Iterable[str | Path],
                    report: Report, reason: str) -> None:
    """Report as skipped, with `reason`, each image file directly in `folders` that is not
    among `listed` (paths compared in their absolute, normalised form). Folders outside the
    dataset folder `root` are left alone: an annotation that names ``../../x.jpg`` is reported
    where it is read, and the folder it points to is none of the dataset's business."""
    known = {_normal(path) for path in listed}
    inside = os.path.join(_normal(root), "")
    seen: set[str] = set()
    for folder in folders:
        if _normal(folder) in seen or not os.path.join(_normal(folder), "").startswith(inside):
            continue
        seen.add(_normal(folder))
        for image in image_files(folder):
            if _normal(image) not in known:
                report.skip_image(image, NO_ANNOTATION, reason)


def _normal(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(path))
