"""The verification table: every exported model run on the test split in its own runtime.

Each row is one exported model: its COCO mAP@.5 and mAP@[.5:.95] on the same records as the
SavedModel it came from, the difference to that reference, its file size, and its median
latency per image on this machine (whatever the format costs, shown, never hidden).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel, Exporter
from odplug.data.labelmap import LabelMap
from odplug.model.detector import Detections, SavedModelDetector, evaluate_detector


@dataclass
class Row:
    name: str
    path: str
    size_mb: float
    map50: float
    map: float
    map50_vs_reference: float
    """This model's mAP@.5 as a fraction of the SavedModel's."""
    latency_ms: float
    images: int
    note: str = ""
    """The exporter's remark on this model (`Exporter.note`), e.g. the Edge TPU prediction."""


class _Timed:
    """Wraps a detector and keeps how long each image took."""

    def __init__(self, detector: Callable[[np.ndarray], Detections]) -> None:
        self.detector = detector
        self.seconds: list[float] = []

    def __call__(self, image: np.ndarray) -> Detections:
        started = time.perf_counter()
        found = self.detector(image)
        self.seconds.append(time.perf_counter() - started)
        return found

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000 if self.seconds else float("nan")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def verify(saved_model: Path, exported: Sequence[tuple[Exporter, ExportedModel]],
           files: Sequence[Path], label_map: LabelMap, *, limit: int | None = None,
           on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    reference = _Timed(SavedModelDetector(saved_model))
    result = evaluate_detector(reference, files, label_map, limit=limit)
    rows = [Row("saved_model", str(saved_model), round(_size(saved_model) / 1e6, 2),
                result.map50, result.map, 1.0, round(reference.median_ms, 2), result.images)]
    on_row(rows[0])
    for exporter, model in exported:
        timed = _Timed(exporter.detector(model))  # type: ignore[arg-type]
        scored = evaluate_detector(timed, files, label_map, limit=limit)
        row = Row(model.name, str(model.path), round(model.size_bytes / 1e6, 2), scored.map50,
                  scored.map, scored.map50 / result.map50 if result.map50 else float("nan"),
                  round(timed.median_ms, 2), scored.images, note=exporter.note(model))
        rows.append(row)
        on_row(row)
    return rows


def to_markdown(rows: Sequence[Row]) -> str:
    lines = ["| model | size (MB) | mAP@.5 | mAP@[.5:.95] | vs SavedModel | latency (ms) | notes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        note = row.note.replace("|", "\\|")
        lines.append(f"| {row.name} | {row.size_mb:.2f} | {row.map50:.3f} | {row.map:.3f} | "
                     f"{row.map50_vs_reference:.1%} | {row.latency_ms:.1f} | {note} |")
    return "\n".join(lines) + "\n"


def quantization_checks(rows: Sequence[Row]) -> list[str]:
    """Each ``<format>-int8`` model against its ``<format>-float32`` sibling and the SavedModel:
    mAP@.5 kept (targets: >= 99% and >= 97%) and file size (target: <= 0.35x)."""
    by_name = {row.name: row for row in rows}
    lines = []
    for row in rows:
        if not row.name.endswith("-int8"):
            continue
        float_row = by_name.get(row.name[: -len("int8")] + "float32")
        if float_row is None or not float_row.map50:
            continue
        kept = row.map50 / float_row.map50
        size = row.size_mb / float_row.size_mb if float_row.size_mb else float("nan")
        lines.append(
            f"{row.name}: {kept:.1%} of {float_row.name}'s mAP@.5 (target >= 99%: "
            f"{'met' if kept >= 0.99 else 'NOT met'}), {row.map50_vs_reference:.1%} of the "
            f"SavedModel's (>= 97%: {'met' if row.map50_vs_reference >= 0.97 else 'NOT met'}), "
            f"{size:.2f}x the size (<= 0.35x: {'met' if size <= 0.35 else 'NOT met'})")
    return lines


def write_table(rows: Sequence[Row], folder: Path) -> tuple[Path, Path]:
    markdown, data = folder / "verification.md", folder / "verification.json"
    checks = quantization_checks(rows)
    atomic_write_text(markdown, to_markdown(rows) + "".join(f"\n- {c}" for c in checks)
                      + ("\n" if checks else ""))
    atomic_write_text(data, json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return markdown, data
