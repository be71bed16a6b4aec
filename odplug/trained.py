"""What an exporter receives: a trained detector's SavedModel, loaded and described.

`DetectorInfo` is what a SavedModel folder says of itself beside the model (``detector.json``,
``anchors.npy``, ``label_map.pbtxt``; `odplug.model.detector_info` reads and writes those
files) and `TrainedDetector` is the loaded model with that description, after
`odplug.model.contract.validate_detector` has checked the two against each other. Both are
plain values at the bottom of odplug, beside the plugin API that hands them to exporters, so
the API names them without importing TensorFlow or any tier above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odplug.labels import LabelMap


@dataclass(frozen=True)
class DetectorInfo:
    input_size: int
    """Square side the ``raw`` signature takes, float32 0..255 (normalised inside)."""
    scale_factors: tuple[float, float, float, float]
    iou_threshold: float
    score_threshold: float
    max_detections: int
    per_class_nms: bool
    anchors: np.ndarray
    """float32 [A, 4]: (ycenter, xcenter, height, width), normalised, in output order."""
    label_map: LabelMap


@dataclass(frozen=True)
class TrainedDetector:
    """A SavedModel folder that meets the contract, loaded once; what exporters convert."""

    path: Path
    info: DetectorInfo
    loaded: Any
    """What ``tf.saved_model.load`` returned: it owns the variables both signatures read, and
    converters take it as the root object of what they convert."""
    serving: Any
    """``serving_default``: uint8 [1, H, W, 3] ``images`` -> the four ``detection_*`` outputs."""
    raw: Any
    """``raw``: float32 [1, S, S, 3] ``images`` (0..255) -> ``box_codes`` [1, A, 4] and
    ``class_scores`` [1, A, C] (sigmoid scores)."""

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def anchors(self) -> np.ndarray:
        return self.info.anchors

    @property
    def label_map(self) -> LabelMap:
        return self.info.label_map

    @property
    def num_classes(self) -> int:
        return len(self.info.label_map)

    @property
    def class_ids(self) -> list[int]:
        """The label-map id of each class column of ``class_scores``: column i is the i-th item
        in ascending id order (`odplug.labels.LabelMap.ids`)."""
        return self.info.label_map.ids

    @property
    def labels(self) -> list[str]:
        """The name of each class column, in column order."""
        return self.info.label_map.names
