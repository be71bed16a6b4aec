"""Fitting annotated boxes to the real image: clip what sticks out, drop what has no area.

Both are reported per box (file, index, class, before and after), so a user can see exactly
what changed between the annotation tool and the records.
"""

from __future__ import annotations

import math
from dataclasses import replace

from odplug.dataset_report import Report
from odplug.samples import Box


def fit_boxes(boxes: list[Box], width: int, height: int, file: str, report: Report) -> list[Box]:
    kept: list[Box] = []
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = box.xmin, box.ymin, box.xmax, box.ymax
        if 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height:
            kept.append(box)  # the common case: inside and not empty, nothing to say
            continue
        where = f"box {index} ({box.label}) {_corners(box)}"
        if not all(map(math.isfinite, (x0, y0, x1, y1))):
            report.skip_box(file, "malformed-geometry", f"{where}: coordinates are not numbers")
            continue
        if x1 < x0 or y1 < y0:
            report.skip_box(file, "inverted-box", f"{where}: max corner before min corner")
            continue
        clipped = replace(
            box,
            xmin=min(max(x0, 0.0), width), xmax=min(max(x1, 0.0), width),
            ymin=min(max(y0, 0.0), height), ymax=min(max(y1, 0.0), height),
        )
        if clipped.xmax <= clipped.xmin or clipped.ymax <= clipped.ymin:
            if x1 > x0 and y1 > y0:
                report.skip_box(
                    file, "outside-image", f"{where}: outside the {width}x{height} image"
                )
            else:
                report.skip_box(file, "zero-area", f"{where}: has no area")
            continue
        report.change_box(
            file, "clipped", f"{where}: clipped to {_corners(clipped)} ({width}x{height} image)"
        )
        kept.append(clipped)
    return kept


def _corners(box: Box) -> str:
    return f"[{box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}]"
