"""The core's SavedModel writer with a Keras model that is not the ssd trainer's: what a
third-party trainer supplies becomes a SavedModel that serves the shared post-processing, keeps
the raw outputs, describes itself for the exporters, and a model that breaks the contract is
refused in one line before anything is written."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.labels import LabelMap, LabelMapItem
from odplug.model.boxcoder import SCALE_FACTORS
from odplug.model.detector import SavedModelDetector
from odplug.model.detector_info import read_detector_info
from odplug.model.postprocess import Nms, detect, select, suppress
from odplug.model.savedmodel import write_detector
from tests.support.detectors import assert_same_detections

SIZE = 32
LABELS = LabelMap.from_names(["cat", "dog"])
ANCHORS = np.array([[y, x, 0.5, 0.5] for y in (0.25, 0.75) for x in (0.25, 0.75)], np.float32)


def tiny_detector(anchors: int = len(ANCHORS), classes: int = len(LABELS),
                  *, names: tuple[str, str] = ("box_codes", "class_logits")) -> keras.Model:
    """A few weights from pixels to one box code and one logit per anchor and class."""
    keras.utils.set_random_seed(0)
    images = keras.Input([SIZE, SIZE, 3])
    features = keras.layers.Conv2D(8, 3, strides=4, activation="relu")(
        keras.layers.Rescaling(1 / 255)(images))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    codes = keras.layers.Reshape([anchors, 4])(keras.layers.Dense(anchors * 4)(pooled))
    logits = keras.layers.Reshape([anchors, classes])(keras.layers.Dense(
        anchors * classes, bias_initializer=keras.initializers.Constant(0.5))(pooled))
    return keras.Model(images, dict(zip(names, (codes, logits), strict=True)))


def test_a_third_party_model_becomes_a_conforming_detector(tmp_path: Path) -> None:
    model = tiny_detector()
    nms = Nms(score_threshold=0.1, iou_threshold=0.6, max_detections=5)
    out = tmp_path / "saved_model"
    assert write_detector(model, ANCHORS, LABELS, SIZE, out, nms=nms) == out
    assert not list(tmp_path.glob("*.partial")), "the staging folder is renamed into place"

    info = read_detector_info(out)
    assert (info.input_size, info.scale_factors) == (SIZE, SCALE_FACTORS)
    assert (info.score_threshold, info.iou_threshold, info.max_detections) == (0.1, 0.6, 5)
    np.testing.assert_array_equal(info.anchors, ANCHORS)
    assert info.label_map == LABELS

    detector = SavedModelDetector(out)
    raw = tf.saved_model.load(str(out)).signatures["raw"]
    image = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    resized = tf.image.resize(tf.cast(image[None], tf.float32), (SIZE, SIZE))
    outputs = model(resized, training=False)
    expected = detect(outputs["box_codes"], outputs["class_logits"], ANCHORS, nms,
                      class_ids=LABELS.ids)
    count = int(expected["num_detections"][0])
    got = detector(image)
    assert len(got.scores) == count > 0
    assert_same_detections(
        (got.boxes, got.classes, got.scores),
        tuple(expected[key][0, :count] for key in ("detection_boxes", "detection_classes",
                                                   "detection_scores")), score_atol=1e-5)
    assert set(got.classes) <= {1, 2}
    served = raw(images=resized)
    np.testing.assert_allclose(served["box_codes"], outputs["box_codes"], atol=1e-5)
    np.testing.assert_allclose(served["class_scores"], tf.sigmoid(outputs["class_logits"]),
                               atol=1e-6)


@pytest.mark.parametrize("model,anchors,labels,message", [
    (tiny_detector(names=("boxes", "class_logits")), ANCHORS, LABELS,
     r"returns \['boxes', 'class_logits'\]; a detector returns a dict with 'box_codes'"),
    (tiny_detector(anchors=3), ANCHORS, LABELS,
     r"'box_codes' has shape \[1, 3, 4\] for one image, expected \[1, 4, 4\]"),
    (tiny_detector(classes=3), ANCHORS, LABELS,
     r"'class_logits' has shape \[1, 4, 3\] for one image, expected \[1, 4, 2\] "
     r"\(4 anchors, 2 classes\)"),
    (tiny_detector(), ANCHORS[:, :3], LABELS, r"anchors have shape \[4, 3\], expected \[A, 4\]"),
], ids=["output names", "anchors", "classes", "anchor shape"])
def test_a_model_that_breaks_the_contract_is_refused(tmp_path: Path, model: keras.Model,
                                                     anchors: np.ndarray, labels: LabelMap,
                                                     message: str) -> None:
    with pytest.raises(OdplugError, match=message) as raised:
        write_detector(model, anchors, labels, SIZE, tmp_path / "saved_model")
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == [], "nothing written"


GAPPED = LabelMap([LabelMapItem(7, "triangle"), LabelMapItem(1, "circle"),
                   LabelMapItem(3, "square")])


def test_detect_turns_class_columns_into_the_label_ids() -> None:
    """Anchor k scores high in column k only (anchors far apart, so NMS keeps each): the
    detections carry ids 1, 3, 7, the label map's ids in ascending order, never k + 1."""
    anchors = np.array([[0.15, 0.15, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1], [0.85, 0.85, 0.1, 0.1]],
                       np.float32)
    logits = np.full((1, 3, 3), -6.0, np.float32)
    logits[0, [0, 1, 2], [0, 1, 2]] = [3.0, 2.0, 1.0]
    found = detect(tf.zeros([1, 3, 4]), tf.constant(logits), anchors, Nms(max_detections=5),
                   class_ids=GAPPED.ids)
    count = int(found["num_detections"][0])
    assert found["detection_classes"][0, :count].numpy().tolist() == [1.0, 3.0, 7.0]
    np.testing.assert_allclose(found["detection_boxes"][0, :count, 0], [0.1, 0.45, 0.8],
                               atol=1e-6)


def test_a_label_map_with_gaps_in_its_ids_makes_a_detector(tmp_path: Path) -> None:
    model = tiny_detector(classes=3)
    out = write_detector(model, ANCHORS, GAPPED, SIZE, tmp_path / "saved_model",
                         nms=Nms(score_threshold=0.0, max_detections=12))
    assert read_detector_info(out).label_map == GAPPED
    image = np.random.default_rng(2).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    found = SavedModelDetector(out)(image)
    assert sorted(set(found.classes.tolist())) == [1, 3, 7]


def _random_image(rng: np.random.Generator, anchors: int = 300,
                  classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [A, 4] clipped to the image as `decode_boxes` clips them (many overlapping, some
    cut by the border) and scores [A, C]."""
    centres = rng.uniform(-0.1, 1.1, (anchors, 2))
    sides = rng.uniform(0.05, 0.5, (anchors, 2))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    scores = rng.uniform(0, 1, (anchors, classes)) ** 3
    return np.clip(boxes, 0, 1).astype(np.float32), scores.astype(np.float32)


def test_select_per_class_is_combined_nms() -> None:
    """The TF.js-convertible per-class NMS (class-offset boxes, one suppression) keeps what
    `tf.image.combined_non_max_suppression` keeps."""
    rng = np.random.default_rng(0)
    for count in (5, 40, 120):
        boxes, scores = _random_image(rng)
        nms = Nms(score_threshold=0.05, iou_threshold=0.5, max_detections=count)
        expected = suppress(boxes[None], scores[None], nms, class_ids=[1, 2, 3, 4])
        kept, columns, kept_scores, found = select(tf.constant(boxes), tf.constant(scores), nms)
        n = int(expected["num_detections"][0])
        assert int(found) == n > 0
        assert_same_detections(
            (kept[:n], columns[:n].numpy() + 1, kept_scores[:n]),
            tuple(expected[key][0, :n] for key in ("detection_boxes", "detection_classes",
                                                   "detection_scores")), score_atol=1e-6)


def test_class_agnostic_nms_suppresses_across_classes() -> None:
    """Two overlapping boxes of different classes: per class both stay, class-agnostic only
    the better one; a batch of two images is suppressed image by image."""
    anchors = np.array([[0.3, 0.3, 0.3, 0.3], [0.32, 0.32, 0.3, 0.3]], np.float32)
    logits = np.array([[[2.0, -6.0], [-6.0, 1.0]], [[-6.0, 1.0], [-6.0, 2.0]]], np.float32)
    for per_class, expected in ((True, [[1, 2], [2]]), (False, [[1], [2]])):
        found = detect(tf.zeros([2, 2, 4]), tf.constant(logits), anchors,
                       Nms(max_detections=3, per_class=per_class), class_ids=[1, 2])
        counts = found["num_detections"].numpy().astype(int)
        assert [found["detection_classes"][i, :n].numpy().astype(int).tolist()
                for i, n in enumerate(counts)] == expected, per_class
        assert found["detection_boxes"].shape == (2, 3, 4)


def test_the_nms_setting_reaches_detector_json(tmp_path: Path) -> None:
    for per_class in (True, False):
        out = write_detector(tiny_detector(), ANCHORS, LABELS, SIZE, tmp_path / str(per_class),
                             nms=Nms(per_class=per_class))
        assert read_detector_info(out).per_class_nms is per_class
