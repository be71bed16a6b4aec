"""Verification: every exported model run on the test split in its own runtime, beside the
SavedModel it came from, into the rows of the verification table (`odplug.exports.table`).

Each model's COCO mAP@.5 and mAP@[.5:.95] are compared with the SavedModel's on the same
records, with a 95% interval: a paired bootstrap over the test images
(`odplug.model.bootstrap`: 1000 draws, the same draws for the model and the SavedModel) that
says how far the point estimate can be trusted: an upper bound under the target means below
target with 95% confidence, a lower bound at or above it means met with 95% confidence, and an
interval that straddles it means the test split cannot tell. Latency is the median per image
on this machine (whatever the format costs, shown, never hidden).

Beside the numbers the verification keeps what the report (`odplug.report`) draws, so that
people can see where models differ, not only by how much: the SavedModel's detections on the
test split are judged against the labels at one stated threshold (the best F1 over the split,
`odplug.pictures.matching.best_f1_threshold`), the `KEEP_IMAGES` images with the most errors
are chosen, and every model's detections on those images alone (above `FLOOR`, so the file
stays small whatever the split's size) go to ``verification-detections.json``
(`write_detections`) with the images' labels and where each image's record is.

The table's names (`Row`, `table_cells`, `write_table`, ...) live in `odplug.exports.table`,
which imports no TensorFlow, and are re-exported here.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel, Exporter
from odplug.data.tfrecord import record_offsets
from odplug.exports.output import DETECTIONS_FILE
from odplug.exports.table import (
    COLUMNS,
    EIGHT_BIT,
    EIGHT_BIT_TARGET,
    FLOAT_TARGET,
    NUMERIC,
    Row,
    intervals_note,
    missed,
    quantization_checks,
    table_cells,
    target_for,
    to_markdown,
    write_table,
)
from odplug.labels import LabelMap
from odplug.model.bootstrap import RESAMPLES, average_precision, draws, ratio_interval
from odplug.model.coco import CocoResult, ImageTruth
from odplug.model.detector import SavedModelDetector, evaluate_detector
from odplug.pictures.matching import DEFAULT_THRESHOLD, IOU, Boxes, best_f1_threshold, judge

__all__ = ["COLUMNS", "DETECTIONS_FILE", "EIGHT_BIT", "EIGHT_BIT_TARGET", "FLOAT_TARGET",
           "FLOOR", "KEEP_IMAGES", "NUMERIC", "RESAMPLES", "Row", "Verified", "intervals_note",
           "missed", "quantization_checks", "table_cells", "target_for", "to_markdown",
           "verify", "verify_models", "write_detections", "write_table"]

SEED = 0
"""Seed of the bootstrap draws: the same test split gives the same intervals."""
KEEP_IMAGES = 12
"""How many test images the report shows every model's detections on: those the SavedModel
errs on most, where a difference between the models matters most to a reader."""
FLOOR = 0.05
"""The lowest score of a kept detection: lower ones are never drawn (the threshold chosen is
at least this), and leaving them out keeps the file to a few kilobytes."""
DETECTIONS_SCHEMA = 1


class _Timed:
    """Wraps a detector and keeps how long each image took."""

    def __init__(self, detector: Callable[[np.ndarray], Any]) -> None:
        self.detector = detector
        self.seconds: list[float] = []

    def __call__(self, image: np.ndarray) -> Any:
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
    """The table's rows: the SavedModel's, then one per model of `exported` (`verify_models`
    without the detections kept for the report)."""
    return verify_models(saved_model, exported, files, label_map, limit=limit,
                         on_row=on_row).rows


@dataclass
class Verified:
    rows: list[Row]
    detections: dict[str, Any]
    """What ``verification-detections.json`` holds (`write_detections`, `_Sample.document`)."""


def verify_models(saved_model: Path, exported: Sequence[tuple[Exporter, ExportedModel]],
                  files: Sequence[Path], label_map: LabelMap, *, limit: int | None = None,
                  keep: int = KEEP_IMAGES,
                  on_row: Callable[[Row], None] = lambda row: None) -> Verified:
    """Score the SavedModel and every model of `exported` on the records in `files` (at most
    `limit` images), and keep every model's detections on the `keep` test images the
    SavedModel errs on most (module docstring)."""
    sample = _Sample(files, label_map)
    reference = _Timed(SavedModelDetector(saved_model))
    result = evaluate_detector(reference, files, label_map, limit=limit,
                               on_image=sample.add_reference)
    sample.choose(keep)
    rows = [Row("saved_model", str(saved_model), round(_size(saved_model) / 1e6, 2),
                result.map50, result.map, 1.0, round(reference.median_ms, 2), result.images)]
    on_row(rows[0])
    assert result.matches is not None  # evaluate always keeps them
    weights = draws(result.images, resamples=RESAMPLES, seed=SEED)
    reference_scores = average_precision(result.matches, weights)
    for exporter, model in exported:
        timed = _Timed(exporter.detector(model))  # type: ignore[arg-type]
        scored = evaluate_detector(timed, files, label_map, limit=limit,
                                   on_image=sample.collector(model.name))
        row = Row(model.name, str(model.path), round(model.size_bytes / 1e6, 2), scored.map50,
                  scored.map, _ratio(scored.map50, result.map50), round(timed.median_ms, 2),
                  scored.images, note=exporter.note(model),
                  map_vs_reference=_ratio(scored.map, result.map),
                  target=target_for(model.variant), exporter=model.exporter,
                  variant=model.variant)
        _add_interval(row, scored, result, weights, reference_scores)
        rows.append(row)
        on_row(row)
        for runtime, make in exporter.other_runtimes(model).items():
            other = _runtime_row(row, runtime, make, files, label_map, limit, sample,
                                 (result, weights, reference_scores))
            rows.append(other)
            on_row(other)
    return Verified(rows, sample.document())


def _runtime_row(own: Row, runtime: str, make: Callable[[], Any], files: Sequence[Path],
                 label_map: LabelMap, limit: int | None, sample: _Sample,
                 reference: tuple[CocoResult, np.ndarray, np.ndarray]) -> Row:
    """The row of `own`'s model run in `runtime` (`Exporter.other_runtimes`): its ratios
    against the SavedModel as every row's, its target on mAP@.5 against `own` (the same file
    in its own runtime, `FLOAT_TARGET`: one file, so nothing may be lost but rounding)."""
    result, weights, reference_scores = reference
    name = f"{own.name} ({runtime})"
    detector = make()
    try:
        timed = _Timed(detector)
        scored = evaluate_detector(timed, files, label_map, limit=limit,
                                   on_image=sample.collector(name))
    finally:
        close = getattr(detector, "close", None)
        if close is not None:
            close()
    row = replace(own, name=name, map50=scored.map50, map=scored.map,
                  map50_vs_reference=_ratio(scored.map50, result.map50),
                  map_vs_reference=_ratio(scored.map, result.map),
                  latency_ms=round(timed.median_ms, 2), images=scored.images, note="",
                  target=FLOAT_TARGET, runtime=runtime, held_to=own.name,
                  held_ratio=_ratio(scored.map50, own.map50))
    _add_interval(row, scored, result, weights, reference_scores)
    return row


class _Sample:
    """The test images the SavedModel errs on most, and each model's detections on them.

    The SavedModel's detections on every image are kept above `FLOOR` (to choose the
    threshold and the images); an exported model's only on the chosen images. Images are
    counted in record order, the order `evaluate_detector` reads them in, which locates each
    one's record: its shard and byte offset (`odplug.data.tfrecord.read_record`)."""

    def __init__(self, files: Sequence[Path], label_map: LabelMap) -> None:
        self.files = list(files)
        self.names = {item.id: item.name for item in label_map.items}
        self.truths: list[ImageTruth] = []
        self.found: list[Boxes] = []
        self.threshold = DEFAULT_THRESHOLD
        self.reason = ""
        self.chosen: list[int] = []
        self.errors: dict[int, tuple[int, int]] = {}
        self.models: list[tuple[str, dict[int, Boxes]]] = []

    def add_reference(self, truth: ImageTruth, detections: Any) -> None:
        self.truths.append(truth)
        self.found.append(_kept(detections))

    def choose(self, keep: int) -> None:
        """The threshold (best F1 over the split) and the `keep` images with the most errors
        at it, ties in record order."""
        pairs = [(_truth_boxes(truth), found) for truth, found in zip(self.truths, self.found,
                                                                      strict=True)]
        self.threshold = best_f1_threshold(pairs, floor=FLOOR)
        if not any(len(truth) for truth, _found in pairs) or not any(
                len(found) for _truth, found in pairs):
            self.reason = (f"the default {DEFAULT_THRESHOLD}: the test images have no labelled "
                           f"box or the SavedModel no detection scoring {FLOOR} or more")
        else:
            self.reason = (f"the score at which the SavedModel's F1 over all classes is highest "
                           f"on the {len(pairs)} test images (IoU {IOU}): the operating point "
                           "a user would pick")
        judged = [judge(truth, found, self.threshold) for truth, found in pairs]
        order = np.argsort([-j.errors for j in judged], kind="stable")
        self.chosen = [int(i) for i in order[:keep]]
        self.errors = {i: (judged[i].false_positives, judged[i].missed) for i in self.chosen}
        self.models = [("saved_model", {i: self.found[i] for i in self.chosen})]

    def collector(self, name: str) -> Callable[[ImageTruth, Any], None]:
        """An `on_image` that keeps model `name`'s detections on the chosen images."""
        kept: dict[int, Boxes] = {}
        self.models.append((name, kept))
        wanted = set(self.chosen)
        seen = iter(range(len(self.truths)))

        def on_image(truth: ImageTruth, detections: Any) -> None:
            index = next(seen)
            if index in wanted:
                kept[index] = _kept(detections)

        return on_image

    def document(self) -> dict[str, Any]:
        """``verification-detections.json``'s content (`write_detections`)."""
        places = [(path, offset) for path in self.files for offset in record_offsets(path)]
        images = []
        for i in self.chosen:
            truth = self.truths[i]
            false_positives, missed = self.errors[i]
            images.append({
                "id": truth.image_id, "record": {"file": str(places[i][0]),
                                                 "offset": places[i][1]},
                "width": truth.width, "height": truth.height,
                "errors": false_positives + missed, "false_positives": false_positives,
                "missed": missed,
                "truth": {**_plain(_truth_boxes(truth)),
                          "difficult": _truth_boxes(truth).ignored().tolist()}})
        # rounded down: a detection scoring exactly the threshold stays above it in the file
        return {"schema": DETECTIONS_SCHEMA, "threshold": math.floor(self.threshold * 1e4) / 1e4,
                "threshold_reason": self.reason, "iou": IOU, "floor": FLOOR,
                "judged_images": len(self.truths),
                "classes": {str(key): name for key, name in self.names.items()},
                "images": images,
                "models": [{"name": name, "detections": [_plain(kept.get(i, _NONE))
                                                         for i in self.chosen]}
                           for name, kept in self.models]}


_NONE = Boxes.of(np.zeros((0, 4)), [], [])


def _kept(detections: Any) -> Boxes:
    keep = np.asarray(detections.scores) >= FLOOR
    return Boxes.of(np.asarray(detections.boxes)[keep], np.asarray(detections.classes)[keep],
                    np.asarray(detections.scores)[keep])


def _truth_boxes(truth: ImageTruth) -> Boxes:
    difficult = truth.difficult if truth.difficult is not None else np.zeros(len(truth.classes))
    return Boxes.of(truth.boxes, truth.classes, difficult=difficult)


def _plain(boxes: Boxes) -> dict[str, Any]:
    """Boxes as JSON keeps them: four decimals are a tenth of a pixel at 1000 px."""
    plain: dict[str, Any] = {"boxes": np.round(boxes.boxes, 4).tolist(),
                             "classes": boxes.classes.tolist()}
    if boxes.scores is not None:
        plain["scores"] = np.round(boxes.scores, 4).tolist()
    return plain


def write_detections(detections: dict[str, Any], folder: Path) -> Path:
    """``verification-detections.json`` in `folder`, written whole."""
    path = folder / DETECTIONS_FILE
    atomic_write_text(path, json.dumps(detections) + "\n")
    return path


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("nan")


def _add_interval(row: Row, scored: CocoResult, reference: CocoResult, weights: np.ndarray,
                  reference_scores: np.ndarray) -> None:
    """Fill `row`'s intervals; the point ratios stay pycocotools' own summary numbers."""
    if scored.matches is None or reference.matches is None:
        return
    interval = ratio_interval(scored.matches, reference.matches, weights,
                              reference_scores=reference_scores)
    row.map50_low, row.map50_high = interval.map50_low, interval.map50_high
    row.map_low, row.map_high = interval.map_low, interval.map_high


