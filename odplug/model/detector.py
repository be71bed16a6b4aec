"""Running a detector on images and scoring it on a split, whatever format the detector is in.

A detector is any callable from one uint8 RGB image [H, W, 3] to `Detections` (normalised
boxes, label-map ids, scores). The SavedModel that training writes is one; the exporters'
TFLite and TF.js models are others. Scoring them all through `evaluate_detector` on the same
records gives numbers that compare. It also runs SavedModels the TF Object Detection API
exported, since they share the serving signature. Imports TensorFlow: tasks import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from odplug.data.labelmap import read_label_map
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.coco import CocoResult, ImageDetections, ImageTruth, evaluate
from odplug.model.contract import load_saved_model, signature_of
from odplug.model.tfdata import record_dataset


@dataclass
class Detections:
    boxes: np.ndarray  # float [K, 4] normalised (ymin, xmin, ymax, xmax)
    classes: np.ndarray  # int [K] label-map ids
    scores: np.ndarray  # float [K]

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep])


Detector = Callable[[np.ndarray], Detections]


class SavedModelDetector:
    """A SavedModel with the TF OD API serving signature (uint8 [1, H, W, 3] in)."""

    def __init__(self, path: Path) -> None:
        if not (path / "saved_model.pb").is_file():
            raise OdplugError(f"{path}: no SavedModel here (no saved_model.pb); train a model "
                              "first (model.train) or give the saved_model folder of a run")
        loaded = load_saved_model(path)
        self._serve = signature_of(loaded, "serving_default", path)
        self._loaded = loaded
        self.path = path
        self.label_map = (read_label_map(path / "label_map.pbtxt")
                          if (path / "label_map.pbtxt").is_file() else None)

    def __call__(self, image: np.ndarray) -> Detections:
        outputs = self._serve(tf.constant(image[None], tf.uint8))
        count = int(outputs["num_detections"][0])
        return Detections(
            boxes=outputs["detection_boxes"][0, :count].numpy(),
            classes=outputs["detection_classes"][0, :count].numpy().astype(np.int64),
            scores=outputs["detection_scores"][0, :count].numpy(),
        )


def evaluate_detector(detector: Detector, files: Sequence[Path], label_map: LabelMap,
                      *, limit: int | None = None,
                      on_image: Callable[[ImageTruth, Detections], None] | None = None
                      ) -> CocoResult:
    """COCO metrics of `detector` on the records in `files` (each image at its own size).

    `on_image` hears each image's truth and detections in record order (the files' order, each
    file's records in turn), so a caller can keep what it needs of them, as the verification
    keeps the images people should look at, without a second pass over the split."""
    truths: list[ImageTruth] = []
    found: list[ImageDetections] = []
    dataset = record_dataset(files, label_map)
    if limit is not None:
        dataset = dataset.take(limit)
    for item in dataset.as_numpy_iterator():
        image_id = item["source_id"].decode() or item["filename"].decode()
        truths.append(ImageTruth(image_id, int(item["width"]), int(item["height"]),
                                 item["boxes"], item["classes"], item["difficult"]))
        detections = detector(item["image"])
        found.append(ImageDetections(image_id, detections.boxes, detections.classes,
                                     detections.scores))
        if on_image is not None:
            on_image(truths[-1], detections)
    if not truths:
        raise OdplugError("no records to evaluate on: " + ", ".join(map(str, files)))
    return evaluate(truths, found, {item.id: item.name for item in label_map.items})
