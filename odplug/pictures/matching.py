"""Detections matched to the ground truth at one score threshold, for people to look at.

COCO's mAP (`odplug.model.coco`) sweeps every score; a picture, a confusion matrix or a list
of "the images with the most errors" needs one threshold, and people are misled when it is not
said which (ultralytics/ultralytics#21856: a confusion matrix drawn at a threshold other than
the one users predicted with). So every such picture here is drawn at a threshold that is
stated on it, by default the one at which the model's F1 over all classes is highest on the
images drawn (`best_f1_threshold`): the operating point a user would pick.

Matching is the greedy one COCO uses, in order of falling score: a detection is a true
positive when it overlaps a not yet matched ground-truth box of its class with IoU >= `IOU`
(0.5, the IoU of mAP@.5). Because higher scores match first, a detection's verdict does not
depend on the detections below it, so one matching at the lowest score gives the verdicts at
every threshold above it (`best_f1_threshold` relies on this). Difficult ground truth is
neither required nor counted: a detection on it is not a false positive, its miss not an error.
Boxes are normalised (ymin, xmin, ymax, xmax), as the Object Detection API keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU = 0.5
"""The IoU at which a detection counts as finding a ground-truth box (mAP@.5's)."""
DEFAULT_THRESHOLD = 0.5
"""The score threshold when there is nothing to choose one from (no ground truth, no
detections)."""


@dataclass(frozen=True)
class Boxes:
    """Boxes of one image: ground truth (scores None) or detections."""

    boxes: np.ndarray
    """float [N, 4], normalised (ymin, xmin, ymax, xmax)."""
    classes: np.ndarray
    """int [N], label-map ids."""
    scores: np.ndarray | None = None
    difficult: np.ndarray | None = None
    """bool [N], ground truth only: boxes neither required nor counted."""

    @classmethod
    def of(cls, boxes: object, classes: object, scores: object = None,
           difficult: object = None) -> Boxes:
        """From anything array-like (lists read from JSON included), with the shapes fixed."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return cls(b, np.asarray(classes, np.int64).reshape(-1),
                   None if scores is None else np.asarray(scores, np.float64).reshape(-1),
                   None if difficult is None else np.asarray(difficult, bool).reshape(-1))

    def __len__(self) -> int:
        return len(self.classes)

    def above(self, threshold: float) -> Boxes:
        if self.scores is None:
            return self
        keep = self.scores >= threshold
        return Boxes(self.boxes[keep], self.classes[keep], self.scores[keep])

    def ignored(self) -> np.ndarray:
        return (np.zeros(len(self), bool) if self.difficult is None
                else self.difficult.astype(bool))


@dataclass(frozen=True)
class Judged:
    """One image's detections at or above `threshold`, each judged against the ground truth."""

    truth: Boxes
    detections: Boxes
    """Those at or above `threshold`, highest score first."""
    threshold: float
    hit: np.ndarray
    """bool per detection: a true positive (or on a difficult box: not an error either)."""
    on_difficult: np.ndarray
    """bool per detection: matched a difficult box, so neither a hit nor a false positive."""
    found: np.ndarray
    """bool per ground-truth box: some detection of its class found it."""
    matched: np.ndarray
    """int per detection: the index of the ground-truth box it found, -1 for none."""

    @property
    def true_positives(self) -> int:
        return int((self.hit & ~self.on_difficult).sum())

    @property
    def false_positives(self) -> int:
        return int((~self.hit & ~self.on_difficult).sum())

    @property
    def missed(self) -> int:
        return int((~self.found & ~self.truth.ignored()).sum())

    @property
    def errors(self) -> int:
        """False positives plus missed boxes: what "most errors first" sorts by."""
        return self.false_positives + self.missed


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of normalised corner boxes, [N, 4] x [M, 4] -> [N, M]; 0 for a box of no
    area. numpy, not `odplug.model.boxops` (TensorFlow): pictures are drawn without it."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)

    def area(x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def judge(truth: Boxes, detections: Boxes, threshold: float, *, iou: float = IOU,
          same_class: bool = True) -> Judged:
    """Greedy matching in order of falling score (module docstring). With `same_class` False a
    detection may match a box of any class (the confusion matrix's matching); `hit` then means
    "found some box", and which class it was is `confusion_matrix`'s business."""
    kept = detections.above(threshold)
    order = np.argsort(-(kept.scores if kept.scores is not None else np.zeros(len(kept))),
                       kind="stable")
    kept = Boxes(kept.boxes[order], kept.classes[order],
                 None if kept.scores is None else kept.scores[order])
    overlaps = iou_matrix(kept.boxes, truth.boxes)
    ignored = truth.ignored()
    found = np.zeros(len(truth), bool)
    hit = np.zeros(len(kept), bool)
    on_difficult = np.zeros(len(kept), bool)
    matched = np.full(len(kept), -1, np.int64)
    for d in range(len(kept)):
        candidates = overlaps[d] >= iou
        if same_class:
            candidates &= truth.classes == kept.classes[d]
        free = candidates & ~found & ~ignored
        if free.any():
            t = int(np.argmax(np.where(free, overlaps[d], -1.0)))
            found[t], hit[d], matched[d] = True, True, t
        elif (candidates & ignored).any():
            on_difficult[d] = True
    return Judged(truth, kept, threshold, hit, on_difficult, found, matched)


def best_f1_threshold(pairs: Sequence[tuple[Boxes, Boxes]], *, iou: float = IOU,
                      floor: float = 0.05) -> float:
    """The score threshold (of those the detections have, at least `floor`) at which F1 over
    all classes of the (truth, detections) `pairs` is highest; `DEFAULT_THRESHOLD` when there
    is no ground truth or no detection to choose from. Ties go to the higher threshold."""
    scores, hits = [], []
    required = 0
    for truth, detections in pairs:
        judged = judge(truth, detections, floor, iou=iou)
        counted = ~judged.on_difficult
        scores.append(judged.detections.scores[counted]  # type: ignore[index]
                      if judged.detections.scores is not None else np.zeros(0))
        hits.append(judged.hit[counted])
        required += int((~truth.ignored()).sum())
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    if required == 0 or all_scores.size == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-all_scores, kind="stable")
    all_scores, all_hits = all_scores[order], np.concatenate(hits)[order]
    tp = np.cumsum(all_hits)
    kept = np.arange(1, len(all_scores) + 1)
    f1 = 2 * tp / (kept + required)
    # a threshold keeps every detection of its score: only the last of equal scores counts
    last = np.r_[all_scores[1:] != all_scores[:-1], True]
    f1 = np.where(last, f1, -1.0)
    best = np.flatnonzero(f1 == f1.max())[0]
    return float(all_scores[best])


def confusion_matrix(pairs: Sequence[tuple[Boxes, Boxes]], class_ids: Sequence[int],
                     threshold: float, *, iou: float = IOU) -> np.ndarray:
    """Counts [predicted, true] over ``class_ids + [background]`` (the last row and column).

    Each detection at or above `threshold` is matched, greedily by score, to the ground-truth
    box of any class it overlaps most with IoU >= `iou`: a match counts at (its class, the
    box's class), so a right box with the wrong class shows off the diagonal; a detection that
    matches nothing counts at (its class, background), a box nothing found at (background, its
    class). Difficult boxes are left out, as from mAP. Class ids not in `class_ids` are an
    error of the caller (`ValueError`)."""
    index = {int(c): i for i, c in enumerate(class_ids)}
    background = len(index)
    counts = np.zeros((background + 1, background + 1), np.int64)

    def at(class_id: int) -> int:
        if int(class_id) not in index:
            raise ValueError(f"class id {int(class_id)} is not one of {list(index)}")
        return index[int(class_id)]

    for truth, detections in pairs:
        judged = judge(truth, detections, threshold, iou=iou, same_class=False)
        for d, t in enumerate(judged.matched):
            if not judged.on_difficult[d]:
                true = at(truth.classes[t]) if t >= 0 else background
                counts[at(judged.detections.classes[d]), true] += 1
        for t in np.flatnonzero(~judged.found & ~truth.ignored()):
            counts[background, at(truth.classes[t])] += 1
    return counts
