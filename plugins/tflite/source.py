"""The trained detector as the exporters see it: a SavedModel folder and the files beside it.

Everything is read from the folder the trainer writes (the ``raw`` signature, ``detector.json``,
``anchors.npy``, ``label_map.pbtxt``), never from the trainer's code, so any SavedModel with
that contract exports. Every way the folder can fail to meet the contract is one `OdplugError`
naming the folder and what is wrong with it. Imports TensorFlow: only export calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odplug.data.labelmap import LabelMap
from odplug.errors import OdplugError
from odplug.model.detector_info import DetectorInfo


@dataclass(frozen=True)
class Nms:
    """The settings of ``TFLite_Detection_PostProcess``, from the model's own ``detector.json``.

    Fast NMS (``use_regular_nms=False``): each anchor keeps its best class, then one
    class-agnostic suppression. The op's regular (per-class) NMS loses a class when it runs on
    more than one but fewer threads than there are classes (tensorflow/tensorflow#56058), and
    a deployed model cannot choose its runtime's thread count.
    """

    max_detections: int
    score_threshold: float
    iou_threshold: float
    scale_factors: tuple[float, float, float, float]
    use_regular_nms: bool = False


@dataclass
class SourceModel:
    """A loaded SavedModel with what conversion needs."""

    path: Path
    loaded: Any
    raw: Any
    """The ``raw`` concrete function: float32 [1, S, S, 3] 0..255 -> box_codes, class_scores."""
    input_size: int
    num_classes: int
    anchors: np.ndarray
    label_map: LabelMap
    nms: Nms

    @property
    def class_ids(self) -> list[int]:
        """Label-map id of each class column (column k is id k + 1, as in the serving signature)."""
        return [k + 1 for k in range(self.num_classes)]

    @property
    def labels(self) -> list[str]:
        """The name of each class column, in column order ('???' where the label map has none)."""
        names = {item.id: item.name for item in self.label_map.items}
        return [names.get(class_id, "???") for class_id in self.class_ids]


def load_source(path: Path) -> SourceModel:
    if not path.is_dir():
        raise OdplugError(f"{path}: no such folder; give the saved_model folder of a run")
    info = DetectorInfo.read(path)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many unrelated types for a damaged folder
        raise OdplugError(f"{path}: cannot load the SavedModel ({_short(error)}); the folder "
                          "is damaged or incomplete: export the run again") from None
    raw = loaded.signatures.get("raw")
    if raw is None:
        raise OdplugError(f"{path}: the SavedModel has no 'raw' signature (it has "
                          f"{', '.join(loaded.signatures) or 'none'}); export needs a model "
                          "saved by odplug's trainer")
    spec = raw.structured_input_signature[1]["images"]
    size = int(spec.shape[1])
    boxes, scores = raw.structured_outputs["box_codes"], raw.structured_outputs["class_scores"]
    if info.anchors.shape[0] != boxes.shape[1]:
        raise OdplugError(f"{path}: anchors.npy has {info.anchors.shape[0]} anchors but the "
                          f"model {boxes.shape[1]}; the folder mixes files of two models")
    if info.input_size != size:
        raise OdplugError(f"{path}: detector.json says input_size {info.input_size} but the raw "
                          f"signature takes {size} x {size}")
    return SourceModel(
        path=path, loaded=loaded, raw=raw, input_size=size, num_classes=int(scores.shape[2]),
        anchors=info.anchors, label_map=info.label_map,
        nms=Nms(max_detections=info.max_detections, score_threshold=info.score_threshold,
                iou_threshold=info.iou_threshold, scale_factors=info.scale_factors),
    )


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
