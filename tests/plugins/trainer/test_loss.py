"""The trainer's loss: defaults unchanged to the bit, GIoU/CIoU against hand-computed values,
ATSS against the paper's rule on a tiny two-level anchor set, the quality focal target, finite
gradients for every option, and a few training steps per option that lower the loss."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.model import boxcoder, boxops
from odplug_builtins.trainer.anchors import level_sizes, make_anchors
from odplug_builtins.trainer.config import Config, ModelConfig, TrainConfig, load_config
from odplug_builtins.trainer.loss import DetectionLoss, iou_loss, quality_focal_loss

SMALL = ModelConfig(input_size=96, levels=[4, 5])
# two levels, one anchor per cell: 3 x 3 anchors of side 2/3, then 2 x 2 of side 4/3
TWO_LEVELS = ModelConfig(input_size=96, levels=[5, 6], anchor_scales=[1.0], aspect_ratios=[1.0])
OPTIONS = [dict(zip(("box_loss", "assigner", "quality_focal"), values, strict=True))
           for values in itertools.product(("huber", "giou", "ciou"), ("iou", "atss"),
                                           (False, True))]


def _fixed_case() -> tuple[np.ndarray, dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Two images: three objects (one of 4 px, below every anchor) and padding; one object."""
    anchors = make_anchors(SMALL)
    boxes = np.zeros((2, 4, 4), np.float32)
    classes = -np.ones((2, 4), np.int32)
    boxes[0, :3] = [[0.1, 0.1, 0.5, 0.4], [0.55, 0.3, 0.95, 0.9], [0.02, 0.8, 0.06, 0.84]]
    classes[0, :3] = [0, 2, 1]
    boxes[1, :1] = [[0.2, 0.2, 0.8, 0.7]]
    classes[1, :1] = [1]
    rng = np.random.default_rng(0)
    codes = rng.normal(0.0, 0.5, (2, len(anchors), 4)).astype(np.float32)
    logits = rng.normal(-2.0, 1.5, (2, len(anchors), 3)).astype(np.float32)
    return anchors, {"boxes": tf.constant(boxes), "classes": tf.constant(classes)}, {
        "box_codes": tf.constant(codes), "class_logits": tf.constant(logits)}


BEFORE = {"box_loss": "huber", "assigner": "iou", "quality_focal": False, "box_loss_weight": 1.0}
"""The loss options as the trainer had them before the options existed."""


@pytest.mark.parametrize("train,expected", [
    (TrainConfig(**BEFORE), (6.136221885681152, 3.6953282356262207, 13.0)),
    (TrainConfig(**{**BEFORE, "match_iou": 0.3, "box_loss_weight": 2.0, "focal_gamma": 1.5,
                    "focal_alpha": 0.4}),
     (1.5937310457229614, 11.500078201293945, 92.0)),
])
def test_the_old_options_give_the_loss_of_before(train: TrainConfig,
                                                 expected: tuple[float, float, float]) -> None:
    """The numbers are what model.DetectionLoss gave on this input before the options existed
    (commit 624cdac): huber, max-IoU matching and the focal loss are unchanged."""
    anchors, targets, outputs = _fixed_case()
    got = DetectionLoss(anchors, 3, train, SMALL)(targets, outputs)
    classification, box, positives = expected
    assert float(got["classification"]) == pytest.approx(classification, rel=1e-6)
    assert float(got["box"]) == pytest.approx(box, rel=1e-6)
    assert float(got["positives"]) == positives
    assert float(got["loss"]) == pytest.approx(classification + box, rel=1e-6)


def _pair_loss(a: list[float], b: list[float], kind: str) -> float:
    return float(iou_loss(tf.constant([a], tf.float32), tf.constant([b], tf.float32), kind)[0])


@pytest.mark.parametrize("kind", ["giou", "ciou"])
def test_iou_losses_are_zero_for_identical_boxes_and_above_one_for_disjoint(kind: str) -> None:
    assert _pair_loss([0.1, 0.2, 0.5, 0.6], [0.1, 0.2, 0.5, 0.6], kind) == pytest.approx(0.0,
                                                                                        abs=1e-6)
    assert _pair_loss([0, 0, 1, 1], [0, 2, 1, 3], kind) > 1.0


def test_giou_loss_matches_hand_computed_values() -> None:
    # disjoint: IoU 0, enclosing box 1 x 3 with 2 covered -> 1 + 1/3
    assert _pair_loss([0, 0, 1, 1], [0, 2, 1, 3], "giou") == pytest.approx(1 + 1 / 3)
    # half overlapping: IoU 1/3, enclosing box = union -> 1 - 1/3
    assert _pair_loss([0, 0, 1, 1], [0, 0.5, 1, 1.5], "giou") == pytest.approx(2 / 3)
    # far apart, the enclosing box dwarfs both: GIoU loss approaches 2
    assert 1.99 < _pair_loss([0, 0, 0.01, 0.01], [0.99, 0.99, 1, 1], "giou") <= 2.0


def test_ciou_loss_matches_hand_computed_values() -> None:
    # concentric squares: no centre or aspect penalty, so 1 - IoU = 1 - 1/4
    assert _pair_loss([0, 0, 2, 2], [0.5, 0.5, 1.5, 1.5], "ciou") == pytest.approx(0.75)
    # half overlapping unit squares: 1 - 1/3 + centre distance 0.5^2 / enclosing diagonal^2
    # (1 + 1.5^2); same aspect ratio, so no v term
    assert _pair_loss([0, 0, 1, 1], [0, 0.5, 1, 1.5], "ciou") == pytest.approx(
        2 / 3 + 0.25 / 3.25)
    # same centre, 2 x 1 against 1 x 1: IoU 1/2, v = 4/pi^2 (atan 2 - atan 1)^2,
    # alpha = v / (0.5 + v)
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(1)) ** 2
    assert _pair_loss([0, -0.5, 1, 1.5], [0, 0, 1, 1], "ciou") == pytest.approx(
        0.5 + v * v / (0.5 + v), rel=1e-5)


def test_ciou_never_rewards_less_than_one_minus_iou() -> None:
    rng = np.random.default_rng(1)
    corners = np.sort(rng.uniform(0, 1, (2, 500, 2, 2)), axis=2)  # y pair, x pair, sorted
    boxes = tf.constant(corners.transpose(0, 1, 3, 2).reshape(2, 500, 4)[..., [0, 2, 1, 3]],
                        tf.float32)
    one_minus_iou = 1 - tf.linalg.diag_part(boxops.iou(boxes[0], boxes[1]))
    ciou = iou_loss(boxes[0], boxes[1], "ciou")
    giou = iou_loss(boxes[0], boxes[1], "giou")
    assert np.all(ciou.numpy() >= one_minus_iou.numpy() - 1e-6)
    assert np.all(giou.numpy() >= one_minus_iou.numpy() - 1e-6)
    assert np.all((ciou.numpy() <= 3) & (giou.numpy() <= 2))


def _atss(boxes: list[list[list[float]]], classes: list[list[int]], topk: int = 3
          ) -> tuple[np.ndarray, np.ndarray]:
    loss = DetectionLoss(make_anchors(TWO_LEVELS), 3,
                         TrainConfig(assigner="atss", atss_topk=topk), TWO_LEVELS)
    got = loss.assign(tf.constant(boxes, tf.float32), tf.constant(classes))
    assert got.counted.numpy().all()  # no ignore band under ATSS
    return got.positive.numpy(), got.matched.numpy()


def test_atss_picks_the_anchors_the_paper_does_on_two_levels() -> None:
    """The box [0.3, 0.7]^2 (centre 0.5): its top-3 per level by centre distance are anchors 4,
    1, 3 (level 5: the centre cell, then the first two of four equally near) and 9, 10, 11
    (level 6: four equally near, the first three). IoUs 0.36, 0.153, 0.153, 0.09 x 3: mean
    0.157, std 0.105, threshold 0.261, so only anchor 4 is positive (its centre is inside)."""
    positive, matched = _atss([[[0.3, 0.3, 0.7, 0.7], [0, 0, 0, 0]]], [[2, -1]])
    assert np.flatnonzero(positive[0]).tolist() == [4]
    assert matched[0, 4] == 0


def test_atss_gives_an_object_holding_no_anchor_centre_its_best_anchor() -> None:
    """A 4 px box between anchor centres is kept (the SSD rule's forced match), a zero-area
    box overlaps nothing and gets nothing, and padding gets nothing."""
    positive, matched = _atss(
        [[[0.02, 0.02, 0.06, 0.06], [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 0]]], [[1, 0, -1]])
    assert np.flatnonzero(positive[0]).tolist() == [0]
    assert matched[0, 0] == 0


def test_atss_gives_an_anchor_claimed_twice_to_the_object_it_overlaps_most() -> None:
    """[0.3, 0.7]^2 claims anchor 4 (IoU 0.36); [0, 1]^2 finds no candidate above its threshold
    (0.461: IoUs 0.444, 0.3, 0.3, 0.434 x 3), so it falls back to its best anchor, 4 (0.444),
    and wins it."""
    positive, matched = _atss([[[0.3, 0.3, 0.7, 0.7], [0, 0, 1, 1]]], [[0, 1]])
    assert np.flatnonzero(positive[0]).tolist() == [4]
    assert matched[0, 4] == 1


def _atss_reference(anchors: np.ndarray, sizes: list[int], boxes: np.ndarray,
                    classes: np.ndarray, topk: int) -> np.ndarray:
    """ATSS object by object, as the paper's Algorithm 1 reads; -1 = negative, else object."""
    corners = boxcoder.to_corners(tf.constant(anchors)).numpy()
    result = -np.ones((len(boxes), len(anchors)), np.int64)
    for image, (objects, labels) in enumerate(zip(boxes, classes, strict=True)):
        overlaps = boxops.iou(tf.constant(corners), tf.constant(objects)).numpy()  # [A, M]
        claims = np.full(overlaps.shape, -1.0)
        for m, box in enumerate(objects):
            if labels[m] < 0:
                continue
            centre = (box[:2] + box[2:]) / 2
            distance = ((anchors[:, :2] - centre) ** 2).sum(1)
            edges = np.cumsum([0, *sizes])
            candidates = np.concatenate([
                start + np.argsort(distance[start:end], kind="stable")[:topk]
                for start, end in itertools.pairwise(edges)])
            ious = overlaps[candidates, m]
            threshold = ious.mean() + ious.std(ddof=1)
            y, x = anchors[candidates, 0], anchors[candidates, 1]
            inside = (y > box[0]) & (y < box[2]) & (x > box[1]) & (x < box[3])
            chosen = candidates[(ious >= threshold) & inside]
            if not len(chosen) and overlaps[:, m].max() > 0:
                chosen = [overlaps[:, m].argmax()]
            claims[chosen, m] = overlaps[chosen, m]
        positive = claims.max(1) >= 0
        result[image, positive] = claims.argmax(1)[positive]
    return result


def test_atss_agrees_with_an_object_by_object_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(2)
    model = SMALL  # six anchors per cell, 216 + 54 anchors
    anchors = make_anchors(model)
    centre = rng.uniform(0.1, 0.9, (4, 6, 2))
    size = rng.uniform(0.03, 0.6, (4, 6, 2))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, 1)
    classes = rng.integers(0, 3, (4, 6))
    classes[:, 4:] = -1
    boxes[:, 4:] = 0
    loss = DetectionLoss(anchors, 3, TrainConfig(assigner="atss", atss_topk=9), model)
    got = loss.assign(tf.constant(boxes, tf.float32), tf.constant(classes, tf.int32))
    expected = _atss_reference(anchors, level_sizes(model), boxes.astype(np.float32), classes, 9)
    assert np.array_equal(got.positive.numpy(), expected >= 0)
    assert np.array_equal(np.where(got.positive.numpy(), got.matched.numpy(), -1), expected)
    assert (expected >= 0).sum() > 4 * 4  # more than one anchor per object on average


def test_quality_focal_target_is_the_iou_of_the_decoded_box() -> None:
    """One object; the loss's gradient on the positive anchor's class logit vanishes exactly
    where sigmoid(logit) = IoU(decoded box, object), and on the other class at sigmoid 0."""
    anchors = make_anchors(TWO_LEVELS)
    box = [0.1, 0.05, 0.6, 0.5]
    targets = {"boxes": tf.constant([[box]]), "classes": tf.constant([[1]])}
    codes = np.zeros((1, len(anchors), 4), np.float32)
    codes[0, :, 2:] = 0.7  # predicted boxes a little larger than their anchors
    loss = DetectionLoss(anchors, 2, TrainConfig(**{**BEFORE, "quality_focal": True}), TWO_LEVELS)
    assigned = loss.assign(targets["boxes"], targets["classes"])
    (anchor,) = np.flatnonzero(assigned.positive.numpy()[0])
    decoded = boxcoder.decode(tf.constant(codes[0, anchor]), tf.constant(anchors[anchor]))
    quality = float(boxops.iou(decoded[None], tf.constant([box]))[0, 0])
    assert 0.1 < quality < 0.9

    def gradient(probability: float) -> np.ndarray:
        logits = tf.Variable(np.full((1, len(anchors), 2), -30.0, np.float32))
        logits[0, anchor, 1].assign(math.log(probability / (1 - probability)))
        with tf.GradientTape() as tape:
            value = loss(targets, {"box_codes": tf.constant(codes), "class_logits": logits})
        return tape.gradient(value["classification"], logits).numpy()[0, anchor]

    assert gradient(quality)[1] == pytest.approx(0.0, abs=1e-6)
    assert gradient(quality * 0.8)[1] < 0 < gradient(min(quality * 1.2, 0.99))[1]
    assert gradient(quality)[0] == pytest.approx(0.0, abs=1e-6)


def test_quality_focal_loss_is_the_focal_loss_on_negatives() -> None:
    logits = tf.constant([-3.0, -0.5, 0.0, 2.0])
    p = tf.sigmoid(logits)
    expected = -tf.math.log(1 - p) * p**2
    got = quality_focal_loss(logits, tf.zeros(4), 2.0)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_gradients_are_finite_with_degenerate_boxes_and_wild_codes(options: dict) -> None:
    """Zero-area objects, padding rows, an image without objects and codes far outside any
    trained range: every option keeps the loss and its gradients finite."""
    anchors, targets, outputs = _fixed_case()
    boxes = targets["boxes"].numpy()
    classes = targets["classes"].numpy()
    boxes[1] = 0.0
    classes[1] = -1  # an image with no object at all
    boxes[0, 3] = [0.5, 0.5, 0.5, 0.5]
    classes[0, 3] = 0  # a zero-area object
    codes = outputs["box_codes"].numpy()
    codes[0, ::7] = [60.0, -60.0, 80.0, -80.0]
    logits = outputs["class_logits"].numpy()
    logits[0, ::5] = 40.0
    codes_var, logits_var = tf.Variable(codes), tf.Variable(logits)
    loss = DetectionLoss(anchors, 3, replace(TrainConfig(), **options), SMALL)
    with tf.GradientTape() as tape:
        value = loss({"boxes": tf.constant(boxes), "classes": tf.constant(classes)},
                     {"box_codes": codes_var, "class_logits": logits_var})
    grads = tape.gradient(value["loss"], [codes_var, logits_var])
    assert np.isfinite(float(value["loss"])) and float(value["positives"]) > 0
    assert all(np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_dropping_shared_padding_changes_no_value(options: dict) -> None:
    """Without `xla` the loss cuts the object columns no image uses; with it, it keeps them all
    (static shapes): the same numbers either way, also for a batch without any object."""
    anchors, targets, outputs = _fixed_case()
    padded = {"boxes": tf.pad(targets["boxes"], [[0, 0], [0, 96], [0, 0]]),
              "classes": tf.pad(targets["classes"], [[0, 0], [0, 96]], constant_values=-1)}
    empty = {"boxes": tf.zeros([2, 5, 4]), "classes": -tf.ones([2, 5], tf.int32)}
    train = replace(TrainConfig(), **options)
    for batch in (padded, empty):
        kept = DetectionLoss(anchors, 3, train, SMALL, xla=True)(batch, outputs)
        trimmed = DetectionLoss(anchors, 3, train, SMALL)(batch, outputs)
        for key, value in kept.items():
            assert float(trimmed[key]) == float(value), key


@pytest.mark.slow
def test_every_option_compiles_with_xla_and_runs_under_a_strategy() -> None:
    """What the train step does with the loss on a GPU (XLA) and on several devices."""
    anchors, targets, outputs = _fixed_case()
    train = TrainConfig(box_loss="ciou", assigner="atss", quality_focal=True)
    loss = DetectionLoss(anchors, 3, train, SMALL)
    eager = loss(targets, outputs)
    compiled = tf.function(DetectionLoss(anchors, 3, train, SMALL, xla=True),
                           jit_compile=True)(targets, outputs)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    distributed = strategy.run(tf.function(loss), args=(targets, outputs))
    for key, value in eager.items():
        assert float(compiled[key]) == pytest.approx(float(value), rel=1e-5)
        assert float(strategy.reduce("SUM", distributed[key], axis=None)) == pytest.approx(
            float(value), rel=1e-5)


@pytest.mark.parametrize("key,value,message", [
    ("train.assigner", "atts", "unknown train.assigner 'atts'. Did you mean 'atss'? "
                               "Available: atss, iou."),
    ("train.box_loss", "gio", "unknown train.box_loss 'gio'. Did you mean 'giou'?"),
    ("train.atss_topk", 0, "train.atss_topk = 0: the allowed range is 1 <= value <= 1000"),
])
def test_bad_loss_options_are_one_clear_line(key: str, value: object, message: str) -> None:
    with pytest.raises(OdplugError) as caught:
        load_config(overrides={key: value})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_options_are_set_from_the_command_line() -> None:
    from odplug.cli.overrides import parse_overrides

    train = load_config(overrides=parse_overrides(
        "train.box_loss=ciou,train.assigner=atss,train.atss_topk=12,train.quality_focal=true")
    ).train
    assert (train.box_loss, train.assigner, train.atss_topk, train.quality_focal) == (
        "ciou", "atss", 12, True)
    assert (Config().train.box_loss, Config().train.assigner, Config().train.quality_focal) == (
        "giou", "iou", True)


def test_the_loss_refuses_anchors_of_another_model_config() -> None:
    with pytest.raises(ValueError, match="pass make_anchors"):
        DetectionLoss(make_anchors(SMALL), 3, TrainConfig(), TWO_LEVELS)


def _shapes_batch() -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Four 96 px images, each with a bright square and a dim bar: easy to overfit."""
    images = np.zeros((4, 96, 96, 3), np.float32)
    boxes = np.zeros((4, 3, 4), np.float32)
    classes = -np.ones((4, 3), np.int32)
    rng = np.random.default_rng(3)
    for i in range(4):
        y, x = rng.integers(4, 50, 2)
        images[i, y:y + 40, x:x + 40] = 250.0
        boxes[i, 0], classes[i, 0] = [y / 96, x / 96, (y + 40) / 96, (x + 40) / 96], 0
        y, x = rng.integers(4, 70, 2)
        images[i, y:y + 20, x:x + 8, 1] = 120.0
        boxes[i, 1], classes[i, 1] = [y / 96, x / 96, (y + 20) / 96, (x + 8) / 96], 1
    return tf.constant(images), {"boxes": tf.constant(boxes), "classes": tf.constant(classes)}


def _tiny_detector(num_classes: int) -> keras.Model:
    """SMALL's outputs (levels 4 and 5, six anchors per cell) from four plain convolutions: it
    traces in a second where MobileNetV2 takes tens, and the loss is what these steps test."""
    per_cell = 6
    images = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    for _ in range(3):
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    boxes, logits = [], []
    for _level in (4, 5):
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        boxes.append(keras.layers.Reshape((-1, 4))(
            keras.layers.Conv2D(per_cell * 4, 3, padding="same")(x)))
        logits.append(keras.layers.Reshape((-1, num_classes))(keras.layers.Conv2D(
            per_cell * num_classes, 3, padding="same",
            bias_initializer=keras.initializers.Constant(-4.6))(x)))
    return keras.Model(images, {"box_codes": keras.layers.Concatenate(axis=1)(boxes),
                                "class_logits": keras.layers.Concatenate(axis=1)(logits)})


@pytest.mark.parametrize("options", [{"box_loss": "giou"}, {"box_loss": "ciou"},
                                     {"assigner": "atss"}, {"quality_focal": True}],
                         ids=lambda o: "-".join(map(str, o.values())))
def test_a_few_training_steps_lower_every_option_s_loss(options: dict) -> None:
    """The train loop's own step (`learner._make_train_step`) on one batch of 96 px images."""
    from odplug_builtins.trainer.learner import (
        _make_train_step,
        build_optimizer,
        learning_rate_schedule,
    )

    config = load_config(overrides={
        "model.input_size": 96, "model.levels": [4, 5], "train.batch_size": 4,
        "train.warmup_steps": 1, "train.learning_rate": 5e-3,
        **{f"train.{k}": v for k, v in {**BEFORE, **options}.items()}})
    keras.utils.set_random_seed(0)
    model = _tiny_detector(2)
    optimizer = build_optimizer(config, model, learning_rate_schedule(config))
    loss = DetectionLoss(make_anchors(config.model), 2, config.train, config.model)
    step = _make_train_step(model, optimizer, loss, tf.distribute.get_strategy(), None,
                            jit=False, clip_norm=config.train.clip_norm)
    images, targets = _shapes_batch()
    history = [{k: float(v) for k, v in step(images, targets).items()} for _ in range(20)]
    for part in ("classification", "box"):
        values = [h[part] for h in history]
        assert np.all(np.isfinite(values))
        assert np.mean(values[-3:]) < 0.7 * values[0], (part, values)
