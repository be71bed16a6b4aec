"""The detector: MobileNetV2 (Keras) backbone, optional FPN-lite neck, SSD heads.

The Keras model maps float32 images with values 0..255 (any batch) to raw outputs: box codes
[B, A, 4] and class logits [B, A, C], one row per anchor of `anchors.make_anchors`. It owns its
input normalisation, so what is exported and calibrated is exactly what was trained. This is
the model contract of the core's `odplug.model.savedmodel.write_detector`. Decoding and
non-maximum suppression live in the core's `odplug.model.postprocess`, outside the trained
graph, so each exporter can put its runtime's own post-processing there.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import keras
from keras import layers

from odplug.data.labelmap import read_label_map
from odplug.errors import OdplugError
from odplug_builtins.trainer import anchors as anchor_lib
from odplug_builtins.trainer import batchnorm
from odplug_builtins.trainer.config import ModelConfig
from odplug_builtins.trainer.pretrained import RunStart

# MobileNetV2 layers whose outputs have stride 8, 16 and 32 (Keras' layer names).
_BACKBONE_OUTPUTS = {3: "block_6_expand_relu", 4: "block_13_expand_relu", 5: "out_relu"}
PRIOR_PROBABILITY = 0.01
log = logging.getLogger(__name__)


def _backbone(config: ModelConfig, weights: Path | None) -> keras.Model:
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=(config.input_size, config.input_size, 3), alpha=config.alpha,
            include_top=False, weights=None,
        )
    except ValueError as error:
        raise OdplugError(f"model: cannot build MobileNetV2: {error}") from None
    backbone = batchnorm.with_fused_batchnorm(backbone, config.batchnorm_momentum)
    if weights is not None:
        try:
            # Keras warns once per variable it cannot match before it raises: a wrong file
            # would print a hundred lines before odplug's one. Kept, and shown, on success.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                backbone.load_weights(str(weights))  # what MobileNetV2(weights=...) would do
        except (ValueError, OSError, KeyError) as error:
            # one line, without the tensor values Keras appends to a shape mismatch
            reason = " ".join(str(error).split()).split(" Target variable:")[0][:400]
            raise OdplugError(
                f"{weights}: not the weights of MobileNetV2 (include_top=False) at "
                f"model.alpha = {config.alpha}: {reason} (a detector's weights, an odplug "
                "run's best.weights.h5, start a run only from inside their run folder, beside "
                "its config.toml and label_map.pbtxt: give that folder)") from None
        for message in dict.fromkeys(" ".join(str(w.message).split())[:300] for w in caught):
            log.warning("%s: %s", weights, message)
    return backbone


def _fpn_lite(config: ModelConfig, maps: list[keras.KerasTensor]) -> list[keras.KerasTensor]:
    """Top-down fusion: 1x1 laterals, nearest upsampling, add, separable 3x3 smoothing."""
    c = config.head_channels
    lateral = [layers.Conv2D(c, 1, name=f"fpn_lateral_{i}")(m) for i, m in enumerate(maps)]
    merged = [lateral[-1]]
    for i in range(len(lateral) - 2, -1, -1):
        up = layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up_{i}")(merged[0])
        merged.insert(0, layers.Add(name=f"fpn_add_{i}")([lateral[i], up]))
    out = []
    for i, m in enumerate(merged):
        m = layers.SeparableConv2D(c, 3, padding="same", use_bias=False, name=f"fpn_smooth_{i}")(m)
        m = batchnorm.BatchNormalization(momentum=config.batchnorm_momentum, name=f"fpn_bn_{i}")(m)
        out.append(layers.ReLU(6.0, name=f"fpn_relu_{i}")(m))
    return out


def build_model(config: ModelConfig, num_classes: int, backbone_weights: Path | None = None
                ) -> keras.Model:
    """The detector, its backbone loaded from `backbone_weights` (a Keras MobileNetV2 weights
    file, include_top=False; None: random). The caller chooses the file: a new run passes
    `pretrained.weights_file` of its config, while a resumed or finished run, whose own weights
    replace every backbone variable, passes none and needs neither the file nor a network."""
    if num_classes < 1:
        raise OdplugError("the label map has no classes")
    size = config.input_size
    images = keras.Input((size, size, 3), name="images")
    normalised = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(images)
    backbone = _backbone(config, backbone_weights)
    inner = keras.Model(backbone.inputs, [backbone.get_layer(n).output
                                          for n in _BACKBONE_OUTPUTS.values()],
                        name="mobilenet_v2_features")
    stride_maps = dict(zip(_BACKBONE_OUTPUTS, inner(normalised), strict=True))
    maps = _extra_levels(config, stride_maps)
    if config.fpn:
        maps = _fpn_lite(config, maps)
    per_cell = anchor_lib.anchors_per_cell(config)
    bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    boxes, logits = [], []
    for level, feature in zip(config.levels, maps, strict=True):
        box = layers.SeparableConv2D(per_cell * 4, 3, padding="same", name=f"box_head_{level}")(
            feature)
        cls = layers.SeparableConv2D(
            per_cell * num_classes, 3, padding="same", name=f"class_head_{level}",
            bias_initializer=keras.initializers.Constant(bias))(feature)
        boxes.append(layers.Reshape((-1, 4), name=f"box_flat_{level}")(box))
        logits.append(layers.Reshape((-1, num_classes), name=f"class_flat_{level}")(cls))
    box_codes = layers.Concatenate(axis=1, name="box_codes", dtype="float32")(boxes)
    class_logits = layers.Concatenate(axis=1, name="class_logits", dtype="float32")(logits)
    return keras.Model(images, {"box_codes": box_codes, "class_logits": class_logits},
                       name="ssd_mobilenet_v2")


CLASS_LAYERS = "class_head_"
"""Names of the layers whose shape or meaning depends on the classes (one per level)."""


def start_from_run(model: keras.Model, config: ModelConfig, start: RunStart,
                   names: list[str]) -> str | None:
    """Load the weights of `start`'s run into `model` (built for the classes `names`).

    With the same classes, in the same order, every weight is loaded. Otherwise the class
    layers (`CLASS_LAYERS`, whose outputs are one column per class) keep their fresh start and
    every other layer is loaded from the run; the returned line says so, and which classes
    each side has. Columns are not carried over class by class: a prediction head trained to
    compete against other classes is no better a start than a fresh one with the prior bias."""
    theirs = read_label_map(start.label_map).names
    if theirs == names:
        model.load_weights(str(start.weights))
        return None
    source = build_model(config, len(theirs))
    source.load_weights(str(start.weights))
    fresh = []
    for layer in model.layers:
        if layer.name.startswith(CLASS_LAYERS):
            fresh.append(layer.name)
        elif layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return (f"model.weights = {start.run}: its classes ({', '.join(theirs)}) are not these "
            f"records' ({', '.join(names)}): {', '.join(fresh)} start fresh, every other layer "
            "from the run")


def _extra_levels(config: ModelConfig, found: dict[int, keras.KerasTensor]
                  ) -> list[keras.KerasTensor]:
    top = found[5]
    for level in range(6, max(config.levels) + 1):
        top = layers.SeparableConv2D(config.head_channels * 2, 3, strides=2, padding="same",
                                     use_bias=False, name=f"extra_{level}_conv")(top)
        top = batchnorm.BatchNormalization(momentum=config.batchnorm_momentum,
                                           name=f"extra_{level}_bn")(top)
        top = layers.ReLU(6.0, name=f"extra_{level}_relu")(top)
        found[level] = top
    return [found[level] for level in config.levels]
