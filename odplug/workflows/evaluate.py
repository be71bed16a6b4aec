"""``model.evaluate``: a trained model's COCO metrics on one split of a records folder.

The model is a run folder (its run description, `odplug.run.RunInfo`, names the records it
trained on and where its metrics go) or a bare SavedModel folder (then the records must be
given). The command line and the pipeline call this and only print what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from odplug.data.labelmap import read_label_map
from odplug.data.shards import shard_files
from odplug.errors import OdplugError
from odplug.run import resolve_model
from odplug.workflows.buckets import input_path

if TYPE_CHECKING:
    from odplug.model.coco import CocoResult


@dataclass
class Evaluation:
    split: str
    result: CocoResult
    metrics: Path
    """``<split>.json``: overall and per-class numbers."""
    plot: Path
    """``<split>-pr.png``: a precision-recall curve per class."""


def split_files(records: Path, split: str, purpose: str) -> list[Path]:
    """The shards of one split of a data.import folder; one clear line when there are none."""
    files = shard_files(records, split)
    if not files:
        raise OdplugError(f"{records}: no {split}.record-* shards {purpose}")
    return files


def evaluate_model(model: Path | str, *, records: Path | str | None = None,
                   split: str = "test", out: Path | None = None,
                   note: Callable[[str], None] = lambda text: None) -> Evaluation:
    """Score `model` on `split` of `records` (default: the run's own) and write the metrics
    to `out` (default: the run's metrics folder, else the model's folder).

    `model` and `records` may be bucket URLs: they are read from their cached copies
    (`odplug.workflows.buckets.input_path`; `note` hears the downloads), and a run's metrics
    are then written into its cached copy unless `out` says elsewhere."""
    model = input_path(model, "run folder or SavedModel folder", note)
    if records is not None:
        records = input_path(records, "records folder", note)
    saved_model, run = resolve_model(model)
    if records is None:
        if run is None:
            raise OdplugError(f"{model}: a SavedModel folder does not say which records it "
                              "was trained on: give --records")
        records = run.records
    files = split_files(records, split, "to evaluate on")
    # TensorFlow only now: a wrong model, records or split is one line in a second, not after
    # the seconds TensorFlow takes to import
    from odplug.model.coco import plot_precision_recall, write_metrics
    from odplug.model.detector import SavedModelDetector, evaluate_detector

    detector = SavedModelDetector(saved_model)
    label_map = detector.label_map or read_label_map(records / "label_map.pbtxt")
    result = evaluate_detector(detector, files, label_map)
    out_dir = out or (run.metrics_dir or run.run_dir if run else saved_model)
    evaluation = Evaluation(split, result, out_dir / f"{split}.json", out_dir / f"{split}-pr.png")
    write_metrics(result, evaluation.metrics)
    plot_precision_recall(result, evaluation.plot, title=f"{model.name}: {split}")
    return evaluation
