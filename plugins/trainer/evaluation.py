"""COCO metrics of the Keras model on a split, for validation during training and evaluation.

The model runs on batches from the evaluation pipeline (no augmentation) and the core's
`odplug.model.postprocess.detect`, the one the SavedModel serves with, turns its outputs into
detections; `odplug.model.coco` computes the metrics,
the same function the export verification uses, so the numbers compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from odplug.labels import LabelMap
from odplug.model.coco import CocoResult, ImageDetections, ImageTruth, evaluate
from odplug.model.postprocess import Nms, detect
from odplug.pictures.matching import Boxes
from odplug_builtins.trainer import data
from odplug_builtins.trainer.config import Config, EvalConfig


def nms(config: EvalConfig) -> Nms:
    """The config's NMS settings, as the core's post-processing and detector.json take them."""
    return Nms(score_threshold=config.score_threshold, iou_threshold=config.iou_threshold,
               max_detections=config.max_detections, per_class=config.per_class_nms)


Predict = Callable[[tf.Tensor], dict[str, tf.Tensor]]


def predictor(model: keras.Model, input_size: int) -> Predict:
    """`model`'s forward pass on evaluation batches, traced once when first called.

    A run validates many times and scores the test split at the end: it keeps one of these
    (the weights it reads are the model's own variables, so swapping in the weight average or
    loading the best weights needs no new trace), where a new ``tf.function`` per evaluation
    traced the whole model again every time."""
    return tf.function(lambda images: model(images, training=False), input_signature=[
        tf.TensorSpec([None, input_size, input_size, 3], tf.float32)])


def collect(model: keras.Model, files: Sequence[Path], label_map: LabelMap, anchors: np.ndarray,
            config: Config, predict: Predict | None = None
            ) -> tuple[list[ImageTruth], list[ImageDetections]]:
    """Ground truth and detections of every image of `files`; `predict` is the model's traced
    forward pass when the caller keeps one (`predictor`)."""
    truths: list[ImageTruth] = []
    found: list[ImageDetections] = []
    anchors_t = tf.constant(anchors)
    settings = nms(config.eval)
    ids = np.asarray(label_map.ids, np.int64)
    predict = predict or predictor(model, config.model.input_size)
    dataset = data.eval_dataset(files, label_map, config.model.input_size,
                                config.eval.batch_size)
    for batch in data.checked(dataset, files):
        outputs = predict(batch["images"])
        dets = detect(outputs["box_codes"], outputs["class_logits"], anchors_t, settings,
                      class_ids=label_map.ids)
        dets = {k: v.numpy() for k, v in dets.items()}
        classes = batch["classes"].numpy()
        for i, source_id in enumerate(batch["source_id"].numpy()):
            image_id = source_id.decode()
            keep = classes[i] >= 0
            truths.append(ImageTruth(
                image_id=image_id, width=int(batch["width"][i]), height=int(batch["height"][i]),
                boxes=batch["boxes"][i].numpy()[keep], classes=ids[classes[i][keep]],
                difficult=batch["difficult"][i].numpy()[keep]))
            n = int(dets["num_detections"][i])
            found.append(ImageDetections(
                image_id=image_id, boxes=dets["detection_boxes"][i][:n],
                classes=dets["detection_classes"][i][:n].astype(np.int64),
                scores=dets["detection_scores"][i][:n]))
    return truths, found


@dataclass(frozen=True)
class Evaluation:
    """A split scored: the COCO numbers and what they were computed from, image by image in
    the order of the split's records (what its pictures are drawn from)."""

    result: CocoResult
    truths: list[ImageTruth]
    detections: list[ImageDetections]

    def pairs(self) -> list[tuple[Boxes, Boxes]]:
        """Each image's (ground truth, detections), as `odplug.pictures.matching` takes them."""
        return [(Boxes.of(t.boxes, t.classes, difficult=t.difficult),
                 Boxes.of(d.boxes, d.classes, d.scores))
                for t, d in zip(self.truths, self.detections, strict=True)]


def evaluate_model(model: keras.Model, files: Sequence[Path], label_map: LabelMap,
                   anchors: np.ndarray, config: Config, predict: Predict | None = None
                   ) -> Evaluation:
    truths, found = collect(model, files, label_map, anchors, config, predict)
    return Evaluation(evaluate(truths, found, {item.id: item.name for item in label_map.items}),
                      truths, found)
