"""Fitting annotated boxes to the real image: clip what sticks out, drop what has no area.

Both are reported per box (file, index, class, before and after), so a user can see exactly
what changed between the annotation tool and the records.
"""

from __future__ import annotations

import math
from dataclasses import replace

from odplug.dataset import Box
from odplug.report import Report


def fit_boxes(boxes: list[Box], width: int, height: int, file: str, report: Report) -> list[Box]:
    kept: list[Box] = []
    for index, box in enumerate(boxes):
        where = f"box {index} ({box.label}) {_corners(box)}"
        if not all(map(math.isfinite, (box.xmin, box.ymin, box.xmax, box.ymax))):
            report.skip_box(file, "malformed-geometry", f"{where}: coordinates are not numbers")
            continue
        if box.xmax < box.xmin or box.ymax < box.ymin:
            report.skip_box(file, "inverted-box", f"{where}: max corner before min corner")
            continue
        clipped = replace(
            box,
            xmin=min(max(box.xmin, 0.0), width), xmax=min(max(box.xmax, 0.0), width),
            ymin=min(max(box.ymin, 0.0), height), ymax=min(max(box.ymax, 0.0), height),
        )
        if clipped.xmax <= clipped.xmin or clipped.ymax <= clipped.ymin:
            if box.xmax > box.xmin and box.ymax > box.ymin:
                report.skip_box(
                    file, "outside-image", f"{where}: outside the {width}x{height} image"
                )
            else:
                report.skip_box(file, "zero-area", f"{where}: has no area")
            continue
        if clipped != box:
            report.change_box(
                file, "clipped", f"{where}: clipped to {_corners(clipped)} ({width}x{height} image)"
            )
        kept.append(clipped)
    return kept


def _corners(box: Box) -> str:
    return f"[{box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}]"
