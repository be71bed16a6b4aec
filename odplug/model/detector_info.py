"""``detector.json``: what a trained SavedModel folder tells the exporters about itself.

The trainer writes it beside the SavedModel; every exporter reads it (with ``anchors.npy`` and
``label_map.pbtxt``) to rebuild post-processing for its runtime. Reading and writing live here
together so the two sides cannot disagree about a key. ``class_columns`` lists the label id of
each class column of the ``raw`` signature's ``class_scores`` (the label map's ids ascending,
as `odplug.labels` defines), for a reader that does not parse ``label_map.pbtxt``.
These files are one part of the trained-detector contract; `odplug.model.contract` checks them
against the SavedModel itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.data.labelmap import read_label_map, write_label_map
from odplug.errors import OdplugError
from odplug.trained import DetectorInfo

INFO_NAME = "detector.json"
ANCHORS_NAME = "anchors.npy"
LABEL_MAP_NAME = "label_map.pbtxt"


def write_detector_info(info: DetectorInfo, folder: Path) -> None:
    """Write ``detector.json``, ``anchors.npy`` and ``label_map.pbtxt`` of `info` into `folder`."""
    document = {
        "input_size": info.input_size,
        "input": "uint8 RGB for serving_default; float32 0..255 for raw (normalised inside)",
        "classes": {str(item.id): item.name for item in info.label_map.items},
        "class_columns": info.label_map.ids,
        "scale_factors": list(info.scale_factors),
        "anchors": f"{ANCHORS_NAME}: (ycenter, xcenter, height, width), normalised",
        "nms": {"iou_threshold": info.iou_threshold,
                "score_threshold": info.score_threshold,
                "max_detections": info.max_detections, "per_class": info.per_class_nms},
    }
    np.save(folder / ANCHORS_NAME, info.anchors.astype(np.float32))
    write_label_map(info.label_map, folder / LABEL_MAP_NAME)
    atomic_write_text(folder / INFO_NAME, json.dumps(document, indent=2) + "\n")


def read_detector_info(folder: Path) -> DetectorInfo:
    """The description beside the SavedModel in `folder`; one `OdplugError` line naming the file
    when it is missing or does not make sense."""
    if not (folder / "saved_model.pb").is_file():
        raise OdplugError(f"{folder}: no SavedModel here (no saved_model.pb); give the "
                          "saved_model folder of a trained run (model.train writes it)")
    path = folder / INFO_NAME
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        nms = info["nms"]
        factors = tuple(float(f) for f in info["scale_factors"])
        if len(factors) != 4:
            raise ValueError("scale_factors must be 4 numbers (y, x, h, w)")
        anchors = np.load(folder / ANCHORS_NAME).astype(np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"{ANCHORS_NAME} has shape {anchors.shape}, expected [A, 4]")
        described = DetectorInfo(
            input_size=int(info["input_size"]),
            scale_factors=factors,  # type: ignore[arg-type]
            iou_threshold=float(nms["iou_threshold"]),
            score_threshold=float(nms["score_threshold"]),
            max_detections=int(nms["max_detections"]),
            per_class_nms=bool(nms.get("per_class", True)),
            anchors=anchors,
            label_map=read_label_map(folder / LABEL_MAP_NAME),
        )
        if not (0 < described.iou_threshold <= 1 and 0 <= described.score_threshold < 1
                and described.max_detections >= 1 and described.input_size >= 1):
            raise ValueError("needs input_size >= 1, 0 < nms.iou_threshold <= 1, "
                             "0 <= nms.score_threshold < 1 and nms.max_detections >= 1")
        return described
    except FileNotFoundError as error:
        raise OdplugError(f"{folder}: {Path(str(error.filename)).name} is missing; exporters "
                          "need it beside the SavedModel (the trained-detector contract is "
                          "in docs/hooks.md)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OdplugError(f"{path}: cannot read the detector description: "
                          f"{type(error).__name__}: {error}") from None
