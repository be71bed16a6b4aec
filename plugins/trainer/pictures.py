"""What the ssd trainer draws into its run folder as it trains (issue 25): the pictures people
judge a detector by, written where the run is, cheap enough to leave on.

- at the start of a run (and of each resume): ``pictures/batch.jpg``, one training batch as the
  model sees it, after augmentation, with its boxes;
- at each validation: ``results.csv`` and ``pictures/curves.png`` from its rows, and
  ``pictures/val_predictions.jpg``, the first val images judged against their labels at the
  threshold of best F1 on the val split (also a TensorBoard image, ``val/predictions``);
- at the end, on the test split: ``metrics/test-confusion.png`` and
  ``pictures/test_predictions.jpg``, the test images with the most errors first.

The drawing itself is `odplug.pictures` (no TensorFlow), so the report draws the same way;
this module feeds it what the trainer has and keeps the seconds each kind of picture cost
(`RunPictures.seconds`), which ``run.json``'s summary carries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odplug.labels import LabelMap
from odplug.pictures.confusion import plot_confusion
from odplug.pictures.matching import Boxes, best_f1_threshold, confusion_matrix, judge
from odplug.pictures.training import (
    SHEET_IMAGES,
    boxes_sheet,
    judged_sheet,
    plot_curves,
    save_jpeg,
    to_uint8,
    write_results,
)
from odplug_builtins.trainer import data
from odplug_builtins.trainer.evaluation import Evaluation
from odplug_builtins.trainer.runfolder import RunFolder

BEST_F1 = "the threshold of best F1 on this split"


class RunPictures:
    """The pictures of one run folder; only a worker that `draws` (the chief) writes any."""

    def __init__(self, run: RunFolder, label_map: LabelMap, input_size: int, *,
                 draws: bool) -> None:
        self.run = run
        self.label_map = label_map
        self.names = {item.id: item.name for item in label_map.items}
        self.ids = np.asarray(label_map.ids, np.int64)
        self.input_size = input_size
        self.draws = draws
        self.seconds: dict[str, float] = {}
        """Seconds spent on each kind of picture in this process, for the 5% budget."""
        self._val_images: dict[int, np.ndarray] | None = None

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - began

    def batch(self, strategy: tf.distribute.Strategy, images: Any, targets: Mapping[str, Any],
              step: int, augmentation: str) -> None:
        """``pictures/batch.jpg``: up to `SHEET_IMAGES` images of the batch of `step` as the
        step gets them (float 0..255, augmented), with their boxes (class columns mapped back
        to the label map's ids). Replicas' shares are joined first: a batch may be split over
        GPUs (`experimental_local_results`)."""
        if not self.draws:
            return
        with self._timed("batch"):
            pixels = _local(strategy, images)[:SHEET_IMAGES]
            boxes = _local(strategy, targets["boxes"])
            columns = _local(strategy, targets["classes"])
            truth = [Boxes.of(boxes[i][columns[i] >= 0], self.ids[columns[i][columns[i] >= 0]])
                     for i in range(len(pixels))]
            sheet = boxes_sheet([to_uint8(image) for image in pixels], truth, self.names,
                                title=f"one training batch (step {step}) as the model sees it: "
                                      f"{augmentation}")
            save_jpeg(sheet, self.run.pictures / "batch.jpg")

    def results(self, rows: Sequence[Mapping[str, float]]) -> None:
        """``results.csv`` and ``pictures/curves.png``, both from all of `rows`."""
        if not self.draws:
            return
        with self._timed("results.csv"):
            write_results(self.run.results, rows)
        with self._timed("curves"):
            plot_curves(rows, self.run.pictures / "curves.png",
                        title=f"{self.run.root.name}: training")

    def validation(self, evaluation: Evaluation, files: Sequence[Path], step: int,
                   writer: tf.summary.SummaryWriter) -> None:
        """``pictures/val_predictions.jpg`` and TensorBoard's ``val/predictions`` at `step`:
        the first `SHEET_IMAGES` val images (read once, the split does not change), judged at
        the threshold of best F1 over the whole val split."""
        pairs = evaluation.pairs()
        if not self.draws or not pairs:
            return
        with self._timed("val_predictions"):
            if self._val_images is None:
                self._val_images = data.eval_images(files, self.label_map, self.input_size,
                                                    range(min(SHEET_IMAGES, len(pairs))))
            shown = sorted(self._val_images)
            threshold = best_f1_threshold(pairs)
            sheet = judged_sheet([to_uint8(self._val_images[i]) for i in shown],
                                 [pairs[i] for i in shown], self.names, threshold,
                                 title=f"validation at step {step}: the first {len(shown)} of "
                                       f"{len(pairs)} val images",
                                 why=BEST_F1)
            save_jpeg(sheet, self.run.pictures / "val_predictions.jpg")
            with writer.as_default(step=step):
                tf.summary.image("val/predictions", np.asarray(sheet)[None], step=step)

    def test(self, evaluation: Evaluation, files: Sequence[Path]) -> None:
        """``metrics/test-confusion.png`` and ``pictures/test_predictions.jpg`` (the test
        images with the most errors, false positives plus missed boxes, first), both at the
        threshold of best F1 on the test split, which each states."""
        pairs = evaluation.pairs()
        if not self.draws or not pairs:
            return
        threshold = best_f1_threshold(pairs)
        with self._timed("confusion"):
            counts = confusion_matrix(pairs, self.label_map.ids, threshold)
            plot_confusion(counts, [self.names[i] for i in self.label_map.ids],
                           self.run.metrics / "test-confusion.png", threshold=threshold,
                           why=BEST_F1, title=f"{self.run.root.name}: test split")
        with self._timed("test_predictions"):
            errors = [judge(truth, found, threshold).errors for truth, found in pairs]
            worst = sorted(range(len(pairs)), key=lambda i: -errors[i])[:SHEET_IMAGES]
            images = data.eval_images(files, self.label_map, self.input_size, worst)
            sheet = judged_sheet([to_uint8(images[i]) for i in worst], [pairs[i] for i in worst],
                                 self.names, threshold,
                                 title=f"test split: the {len(worst)} of {len(pairs)} images "
                                       "with the most errors (false positives + missed boxes)",
                                 why=BEST_F1)
            save_jpeg(sheet, self.run.pictures / "test_predictions.jpg")

    def written(self) -> dict[str, Path]:
        """The pictures of the run folder that exist, by their `odplug.run.PICTURES` names."""
        places = {"curves": self.run.pictures / "curves.png",
                  "batch": self.run.pictures / "batch.jpg",
                  "val_predictions": self.run.pictures / "val_predictions.jpg",
                  "confusion": self.run.metrics / "test-confusion.png",
                  "pr": self.run.metrics / "test-pr.png",
                  "test_predictions": self.run.pictures / "test_predictions.jpg"}
        return {name: path for name, path in places.items() if path.is_file()}


def _local(strategy: tf.distribute.Strategy, value: Any) -> np.ndarray:
    """A (possibly per-replica) batch tensor as one numpy array of this worker's images."""
    return np.concatenate([np.asarray(part) for part in
                           strategy.experimental_local_results(value)])
