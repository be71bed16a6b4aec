"""The dataset drawn in one figure, per split: what a person checks before training on it.

Five panels, each split in its own colour: boxes per class (a class missing from val or test
cannot be scored there), box centres (a dataset whose objects all sit in the middle teaches a
detector that they do), box widths against heights (the sizes and shapes the anchors must
cover), image sizes (what the input resize will squeeze), and what the import skipped, by
reason. Drawn from plain numbers (`SplitPoints`), so the import, ``data.stats`` and the report
share it without reading records here.

Points are a sample: the collector keeps at most `POINTS_PER_SPLIT` boxes and image sizes of
each split (`odplug.data.geometry`), and a panel drawn from a sample says so, so a dataset of
a million boxes draws as fast as one of a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odplug.pictures.figure import new_figure, no_data, save_png

POINTS_PER_SPLIT = 20_000
"""Boxes (and image sizes) of each split kept for the point panels; more are sampled down."""

MOST_CLASSES = 40
"""Classes shown in the bar panel; a dataset with more shows its most common ones."""

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
UNKNOWN_SPLIT = "#9e9e9e"

Skipped = Mapping[str, Any]
"""What the import skipped, as ``dataset.json`` holds it: ``{"images": {reason: n}, "boxes":
{reason: n}, "splits": {split: {"images": {reason: n}, "boxes": {reason: n}}}}``, the per-split
counts only for the skips whose split is known."""


@dataclass(frozen=True)
class SplitPoints:
    """One split as drawn: its counts, and a sample of its boxes and image sizes.

    `boxes_xywh` rows are box centre x, centre y, width and height as fractions of the image
    (the records' normalised corners); `image_sizes` rows are width and height in pixels. Each
    holds every box or image of the split, or a sample of them when there were more (`boxes`
    and `images` say how many there were).
    """

    images: int
    boxes: int
    classes: Mapping[str, int]
    boxes_xywh: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def split_colour(split: str, others: list[str]) -> str:
    """train, val and test always in the same colours; any other split in the next free one."""
    if split in SPLIT_COLOURS:
        return SPLIT_COLOURS[split]
    if split not in others:
        others.append(split)
    return OTHER_COLOURS[others.index(split) % len(OTHER_COLOURS)]


def draw_dataset(splits: Mapping[str, SplitPoints], skipped: Skipped | None,
                 path: Path) -> Path:
    """The five panels of `splits` (in the order given) and `skipped` as a PNG at `path`.

    `skipped` None means the skips are not known (a records folder without its import's
    report); the panel says so rather than claim nothing was skipped.
    """
    figure = new_figure(15, 9)
    grid = figure.add_gridspec(2, 3)
    others: list[str] = []
    named = [*splits, *(dict(skipped.get("splits", {})) if skipped is not None else {})]
    colours = {split: split_colour(split, others) for split in named}
    _classes(figure.add_subplot(grid[0, :2]), splits, colours)
    _skips(figure.add_subplot(grid[0, 2]), skipped, colours)
    _centres(figure.add_subplot(grid[1, 0]), splits, colours)
    _shapes(figure.add_subplot(grid[1, 1]), splits, colours)
    _image_sizes(figure.add_subplot(grid[1, 2]), splits, colours)
    figure.suptitle(_title(splits, skipped))
    return save_png(figure, path)


def _title(splits: Mapping[str, SplitPoints], skipped: Skipped | None) -> str:
    parts = [f"{name}: {info.images} images, {info.boxes} boxes" for name, info in splits.items()]
    if skipped is not None:
        images, boxes = (sum(dict(skipped.get(kind, {})).values()) for kind in ("images", "boxes"))
        parts.append(f"skipped: {images} images, {boxes} boxes" if images or boxes
                     else "nothing skipped")
    return " · ".join(parts) or "no splits"


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _classes(axes: Any, splits: Mapping[str, SplitPoints], colours: Mapping[str, str]) -> None:
    """Grouped bars: one group per class, one bar per split."""
    totals: dict[str, int] = {}
    for info in splits.values():
        for name, count in info.classes.items():
            totals[name] = totals.get(name, 0) + count
    if not totals:
        _empty(axes, "no boxes in any split")
        axes.set_title("boxes per class")
        return
    names = sorted(totals, key=lambda n: (-totals[n], n))[:MOST_CLASSES]
    width = 0.8 / max(1, len(splits))
    positions = np.arange(len(names))
    for index, (split, info) in enumerate(splits.items()):
        counts = [info.classes.get(name, 0) for name in names]
        axes.bar(positions + index * width - 0.4 + width / 2, counts, width, label=split,
                 color=colours[split])
    axes.set_xticks(positions, names, rotation=90 if len(names) > 8 else 0,
                    fontsize=8 if len(names) > 20 else 10)
    axes.set_ylabel("boxes")
    axes.yaxis.set_major_locator(_integer_ticks())
    tallest = max(max(info.classes.values(), default=0) for info in splits.values())
    axes.set_ylim(0, tallest * 1.25)  # room for the legend above the bars
    shown = (f"the {len(names)} most common of {len(totals)} classes"
             if len(totals) > len(names) else f"{len(names)} class{'es' * (len(names) != 1)}")
    axes.set_title(f"boxes per class ({shown})")
    axes.legend(title="split")


def _empty(axes: Any, text: str) -> None:
    """An empty panel that says why, without axes that would suggest a scale."""
    no_data(axes, text)
    axes.set_xticks([])
    axes.set_yticks([])


def _sampled(drawn: int, total: int, what: str) -> str:
    return f" ({drawn} of {total} {what}, sampled)" if drawn < total else ""


def _points(axes: Any, splits: Mapping[str, SplitPoints], colours: Mapping[str, str],
            columns: tuple[int, int], what: str) -> bool:
    """Scatter two columns of each split's box sample; False (and a word) when there is none."""
    drawn = False
    count = sum(len(info.boxes_xywh) for info in splits.values())
    size = min(12.0, max(2.0, 4000 / max(count, 1)))  # a few points large, many small
    for split, info in splits.items():
        xy = info.boxes_xywh
        if not len(xy):
            continue
        axes.scatter(xy[:, columns[0]], xy[:, columns[1]], s=size, alpha=0.35, linewidths=0,
                     color=colours[split], label=f"{split}{_sampled(len(xy), info.boxes, what)}",
                     rasterized=True)
        drawn = True
    if not drawn:
        no_data(axes, "no boxes to draw")  # the axes stay: they say what the panel would show
    else:
        axes.legend(markerscale=6 / np.sqrt(size), fontsize=8)
    return drawn


def _centres(axes: Any, splits: Mapping[str, SplitPoints], colours: Mapping[str, str]) -> None:
    _points(axes, splits, colours, (0, 1), "boxes")
    axes.set(xlim=(0, 1), ylim=(1, 0), aspect="equal", title="box centres",
             xlabel="x (fraction of the image width)", ylabel="y (fraction of the height, down)")


def _shapes(axes: Any, splits: Mapping[str, SplitPoints], colours: Mapping[str, str]) -> None:
    _points(axes, splits, colours, (2, 3), "boxes")
    axes.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title="box widths against heights",
             xlabel="width (fraction of the image)", ylabel="height (fraction of the image)")
    axes.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, zorder=0)


def _image_sizes(axes: Any, splits: Mapping[str, SplitPoints],
                 colours: Mapping[str, str]) -> None:
    """Each distinct size once, its marker's area growing with how many images have it."""
    drawn = False
    for split, info in splits.items():
        if not len(info.image_sizes):
            continue
        sizes, counts = np.unique(info.image_sizes, axis=0, return_counts=True)
        label = f"{split}{_sampled(len(info.image_sizes), info.images, 'images')}"
        if len(sizes) == 1:
            label += f": all {int(sizes[0, 0])}x{int(sizes[0, 1])}"
        axes.scatter(sizes[:, 0], sizes[:, 1], s=12 + 60 * np.sqrt(counts / counts.max()),
                     alpha=0.5, color=colours[split], label=label, linewidths=0)
        drawn = True
    if drawn:
        axes.legend(fontsize=8)
        most = np.concatenate([info.image_sizes for info in splits.values()]).max(axis=0)
        axes.set(xlim=(0, most[0] * 1.1), ylim=(0, most[1] * 1.1))
    else:
        _empty(axes, "no image sizes known")
    axes.set(title="image sizes", xlabel="width (pixels)", ylabel="height (pixels)")


def _skip_rows(skipped: Skipped | None) -> list[tuple[str, str, int]]:
    """(kind, reason, count) of every skip, images first, the most common first in each."""
    if skipped is None:
        return []
    rows = []
    for kind in ("images", "boxes"):
        counts = dict(skipped.get(kind, {}))
        rows += [(kind, reason, counts[reason])
                 for reason in sorted(counts, key=lambda r: (-counts[r], r))]
    return rows


def _skips(axes: Any, skipped: Skipped | None, colours: Mapping[str, str]) -> None:
    """One horizontal bar per kind and reason, split into the splits it is known for."""
    axes.set_title("skipped by the import")
    if skipped is None:
        _empty(axes, "not known: the folder has no report\nof its import (report.json)")
        return
    rows = _skip_rows(skipped)
    if not rows:
        _empty(axes, "nothing skipped:\nevery image and box of the source was imported")
        return
    by_split = dict(skipped.get("splits", {}))
    known = [split for split in colours if split in by_split]
    left = np.zeros(len(rows))
    for split in known:
        counts = [dict(by_split[split].get(kind, {})).get(reason, 0) for kind, reason, _ in rows]
        axes.barh(range(len(rows)), counts, 0.6, left=left, label=split, color=colours[split])
        left += counts
    rest = [total - done for (_, _, total), done in zip(rows, left, strict=True)]
    if any(rest):
        axes.barh(range(len(rows)), rest, 0.6, left=left, color=UNKNOWN_SPLIT,
                  label="split not known (skipped before the split)")
    words = {"images": "image", "boxes": "box"}
    axes.set_yticks(range(len(rows)), [f"{words[kind]}: {reason}" for kind, reason, _ in rows])
    axes.invert_yaxis()
    axes.set_xlabel("skipped")
    axes.xaxis.set_major_locator(_integer_ticks())
    axes.set_xlim(0, max(total for _, _, total in rows) * 1.5)  # room for the legend
    axes.legend(fontsize=8, loc="lower right")
