"""COCO detection metrics for any detector odplug trains or exports, computed by pycocotools.

The trainer's validation mAP and the verification of every exported model (TFLite, EdgeTPU,
TF.js) must be comparable, so they all hand plain arrays to `evaluate` and get the same
numbers pycocotools would print. Boxes arrive the way the Object Detection API keeps them,
normalised (ymin, xmin, ymax, xmax), and are turned into COCO's absolute [x, y, w, h] here
once. pycocotools and matplotlib are imported inside the functions, so importing this module
stays cheap for the command line.

Conventions worth knowing when reading a `CocoResult`:

- Difficult objects become COCO crowd regions (``iscrowd=1``): a detection on one is neither
  a hit nor a false positive, and it is not counted in ``instances``. (pycocotools overwrites
  an ``ignore`` key with ``iscrowd``, so crowd is the only ignore it honours.)
- A class without ground truth in the evaluated images has no defined AP; it is left out of
  ``per_class`` and ``pr_curves`` (not reported as 0 or NaN), exactly as COCO leaves it out of
  the mean. Summary ``stats`` keep COCO's -1 for "nothing to measure" (e.g. no small objects).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from odplug.atomic import atomic_write_bytes, atomic_write_text
from odplug.errors import OdplugError
from odplug.model.bootstrap import ImageMatches, image_matches

PR_IOU = 0.5  # the IoU threshold of the per-class AP50 and of the plotted curves
MAX_DETS = 100  # detections per image COCO's headline numbers use


@dataclass
class ImageTruth:
    """The ground truth of one image; `difficult` objects are ignored, not required."""

    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray | None = None


@dataclass
class ImageDetections:
    """What a detector found in one image, normalised boxes as the OD API outputs them."""

    image_id: str
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass
class CocoResult:
    """The 12 COCO summary numbers, the headline three by name, and per-class detail."""

    map: float
    map50: float
    map75: float
    per_class: dict[str, dict[str, float]]
    stats: list[float]
    pr_curves: dict[str, tuple[list[float], list[float]]]
    images: int
    detections: int
    matches: ImageMatches | None = field(default=None, repr=False, compare=False)
    """pycocotools' per-image matching, for bootstrap intervals (`odplug.model.bootstrap`);
    not part of the saved metrics."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "matches"}


def evaluate(truths: Sequence[ImageTruth], detections: Sequence[ImageDetections],
             class_names: Mapping[int, str]) -> CocoResult:
    """Score `detections` against `truths` with pycocotools' COCOeval (bbox, 101-point AP)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not truths:
        raise OdplugError("COCO evaluation needs at least one ground-truth image, got none")
    numbers: dict[str, int] = {}
    images, gt_anns = [], []
    for truth in truths:
        if truth.image_id in numbers:
            raise OdplugError(f"image {truth.image_id!r} appears twice in the ground truth")
        if truth.width <= 0 or truth.height <= 0:
            raise OdplugError(f"image {truth.image_id!r}: size {truth.width}x{truth.height} "
                              "is not a positive width and height")
        numbers[truth.image_id] = len(numbers) + 1
        images.append({"id": numbers[truth.image_id], "width": truth.width,
                       "height": truth.height})
        n = _check(truth.image_id, truth.boxes, truth.classes, class_names)
        difficult = np.zeros(n, bool) if truth.difficult is None else truth.difficult
        if np.shape(difficult) != (n,):
            raise OdplugError(f"image {truth.image_id!r}: {n} boxes but difficult has shape "
                              f"{np.shape(difficult)}")
        for box, cls, hard in zip(_xywh(truth.boxes, truth), truth.classes, difficult,
                                  strict=True):
            gt_anns.append({"image_id": numbers[truth.image_id], "bbox": box,
                            "category_id": int(cls), "iscrowd": int(bool(hard))})
    sizes = {truth.image_id: truth for truth in truths}
    dt_anns = []
    for found in detections:
        if found.image_id not in sizes:
            raise OdplugError(f"detections for image {found.image_id!r}, which has no ground "
                              "truth: evaluate on the same split the truths come from")
        n = _check(found.image_id, found.boxes, found.classes, class_names)
        if np.shape(found.scores) != (n,):
            raise OdplugError(f"image {found.image_id!r}: {n} detections but scores has "
                              f"shape {np.shape(found.scores)}")
        for box, cls, score in zip(_xywh(found.boxes, sizes[found.image_id]), found.classes,
                                   found.scores, strict=True):
            dt_anns.append({"image_id": numbers[found.image_id], "bbox": box,
                            "category_id": int(cls), "score": float(score), "iscrowd": 0})
    categories = [{"id": int(i), "name": name} for i, name in sorted(class_names.items())]

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        ground = _coco(COCO, images, categories, gt_anns)
        coco_eval = COCOeval(ground, _coco(COCO, images, categories, dt_anns), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return _result(coco_eval, class_names, gt_anns, len(truths), len(dt_anns))


def write_metrics(result: CocoResult, path: Path) -> None:
    """Save the result as JSON; strict (no NaN) so any JSON reader accepts it."""
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")


def plot_precision_recall(result: CocoResult, path: Path, title: str = "") -> None:
    """Save a PNG with each class's precision-recall curve at IoU 0.5, AP50 in the legend."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(6, 5), dpi=100)
    axes = figure.add_subplot()
    for name, (recall, precision) in result.pr_curves.items():
        axes.plot(recall, precision, label=f"{name} (AP50 {result.per_class[name]['ap50']:.3f})")
    if result.pr_curves:
        axes.legend(loc="lower left")
    else:
        axes.text(0.5, 0.5, "no ground truth to measure", ha="center", va="center")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
             title=title or f"precision-recall at IoU {PR_IOU} (mAP50 {result.map50:.3f})")
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _check(image_id: str, boxes: np.ndarray, classes: np.ndarray,
           class_names: Mapping[int, str]) -> int:
    """Validate one image's arrays; returns the number of boxes."""
    n = len(classes)
    if np.shape(boxes) != (n, 4) and not (n == 0 and np.size(boxes) == 0):
        raise OdplugError(f"image {image_id!r}: boxes have shape {np.shape(boxes)}, expected "
                          f"[{n}, 4] (ymin, xmin, ymax, xmax) for {n} classes")
    unknown = sorted({int(c) for c in classes} - {int(i) for i in class_names})
    if unknown:
        raise OdplugError(f"image {image_id!r}: class ids {unknown} are not in the label map "
                          f"(known: {sorted(int(i) for i in class_names)})")
    return n


def _xywh(boxes: np.ndarray, image: ImageTruth) -> list[list[float]]:
    """Normalised (ymin, xmin, ymax, xmax) to COCO's absolute [x, y, width, height]."""
    if len(boxes) == 0:
        return []
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = image.width, image.height
    return np.stack([b[:, 1] * w, b[:, 0] * h, (b[:, 3] - b[:, 1]) * w,
                     (b[:, 2] - b[:, 0]) * h], axis=1).tolist()


def _coco(coco_class: Any, images: list[dict], categories: list[dict], anns: list[dict]) -> Any:
    """A pycocotools COCO object from memory; built directly for results too, because
    `loadRes` asserts on an empty list and a model that finds nothing must still score 0."""
    for number, ann in enumerate(anns, start=1):
        ann["id"] = number
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    coco = coco_class()
    coco.dataset = {"images": images, "categories": categories, "annotations": anns}
    coco.createIndex()
    return coco


def _result(coco_eval: Any, class_names: Mapping[int, str], gt_anns: list[dict],
            images: int, detections: int) -> CocoResult:
    """Read per-class AP and PR curves out of COCOeval's precision array [T, R, K, A, M]."""
    params = coco_eval.params
    precision = coco_eval.eval["precision"]
    t50 = int(np.argmin(np.abs(params.iouThrs - PR_IOU)))
    m100 = params.maxDets.index(MAX_DETS)
    per_class: dict[str, dict[str, float]] = {}
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for k, class_id in enumerate(params.catIds):
        pr = precision[:, :, k, 0, m100]  # area index 0 is "all"
        if not (pr > -1).any():
            continue  # no (non-difficult) ground truth: AP undefined, see module docstring
        name = class_names[class_id]
        instances = sum(1 for a in gt_anns if a["category_id"] == class_id and not a["iscrowd"])
        per_class[name] = {"ap": float(pr[pr > -1].mean()),
                           "ap50": float(pr[t50][pr[t50] > -1].mean()),
                           "instances": instances}
        curves[name] = (params.recThrs.tolist(), pr[t50].tolist())
    stats = [float(s) for s in coco_eval.stats]
    return CocoResult(map=stats[0], map50=stats[1], map75=stats[2], per_class=per_class,
                      stats=stats, pr_curves=curves, images=images, detections=detections,
                      matches=image_matches(coco_eval))
