"""The confusion matrix drawn so that nobody has to guess how it was made.

Counts come from `odplug.pictures.matching.confusion_matrix` ([predicted, true], background
last); this draws them with the score threshold, the reason for it, the IoU and what
"background" means in the figure itself, because a matrix whose threshold is not the one users
predict with misleads them (ultralytics/ultralytics#21856). Each cell shows its count and its
share of the true class's column (where that class's boxes went: the diagonal is its recall at
this threshold; the background column is where the false positives of each predicted class
went), and is shaded by that share so classes with few boxes read as clearly as common ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from odplug.pictures.figure import new_figure, no_data, save_png
from odplug.pictures.matching import IOU

BACKGROUND = "background"
ANNOTATED = 25
"""Up to this many rows, each cell carries its numbers; above, the shading alone is readable."""


def column_shares(counts: np.ndarray) -> np.ndarray:
    """Each count as a share of its column (its true class); NaN in a column with no count."""
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=0, keepdims=True)
    return np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)


def plot_confusion(counts: np.ndarray, names: Sequence[str], path: Path, *, threshold: float,
                   why: str = "the threshold of best F1 on this split", iou: float = IOU,
                   title: str = "") -> Path:
    """`counts` ([predicted, true] over `names` + background) as a PNG at `path`, its
    subtitle stating ``score >= threshold``, `why` that threshold, the IoU and background's
    meaning. A matrix that is not square, does not match `names` plus background, or holds
    negative or fractional counts is the caller's error (`ValueError`)."""
    counts = _checked(counts, names)
    labels = [*names, BACKGROUND]
    side = len(labels)
    size = min(24.0, max(6.5, 0.55 * side + 3.0))
    figure = new_figure(size, size * 0.9)
    axes = figure.subplots()
    shares = column_shares(counts)
    image = axes.imshow(np.nan_to_num(shares, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's column")
    ticks = np.arange(side)
    axes.set_xticks(ticks, labels, rotation=45 if side > 4 else 0, ha="right" if side > 4
                    else "center")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("true class")
    axes.set_ylabel("predicted class")
    if side <= ANNOTATED:
        for (row, column), count in np.ndenumerate(counts):
            share = shares[row, column]
            text = f"{count}" if np.isnan(share) or count == 0 else f"{count}\n{share:.0%}"
            axes.text(column, row, text, ha="center", va="center", fontsize=8,
                      color="white" if not np.isnan(share) and share > 0.6
                      else "0.6" if count == 0 else "black")
    if counts.sum() == 0:
        no_data(axes, "no boxes and no detections to count")
    subtitle = (f"score >= {threshold:.2f}, {why}\nIoU >= {iou:g}; "
                f"{BACKGROUND} = no box / no detection")
    figure.suptitle(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
    return save_png(figure, path)


def _checked(counts: np.ndarray, names: Sequence[str]) -> np.ndarray:
    array = np.asarray(counts)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"a confusion matrix is square, this one has shape {array.shape}")
    if array.shape[0] != len(names) + 1:
        raise ValueError(f"a confusion matrix of {len(names)} classes has {len(names) + 1} "
                         f"rows (background last), this one has {array.shape[0]}")
    if array.size and (np.any(array < 0) or not np.all(np.equal(np.mod(array, 1), 0))):
        raise ValueError("a confusion matrix holds counts: whole numbers, none negative")
    return array.astype(np.int64)
