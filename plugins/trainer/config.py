"""The one config file of a training run: every setting with a default, saved in the run folder.

A user's TOML file needs only the keys it changes; `load_config` fills the rest from the
defaults below, refuses unknown keys with a "did you mean", and the run folder gets the full
resolved config (``config.toml``) so a run can always be reproduced or resumed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_write_text
from odplug.errors import OdplugError
from odplug.suggest import unknown
from odplug_builtins.trainer import pretrained

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class ModelConfig:
    """SSD with a MobileNetV2 backbone, as the TF OD API ships for mobile."""

    input_size: int = 192
    """Square input side in pixels (images are resized to it): 128-640, a multiple of 32."""
    alpha: float = 0.35
    """MobileNetV2 width multiplier (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)."""
    fpn: bool = False
    """Add an FPN-lite neck (top-down feature fusion with separable convolutions)."""
    levels: list[int] = field(default_factory=lambda: [4, 5, 6])
    """Feature levels (stride 2**level) the heads predict from: 3 = stride 8 ... 6 = stride 64."""
    head_channels: int = 64
    """Channels of the prediction heads (and of the FPN-lite neck)."""
    anchor_size: float = 2.0
    """Base anchor side of a level, in multiples of its stride (2 x 16 = 32 px at level 4)."""
    anchor_scales: list[float] = field(default_factory=lambda: [1.0, 1.6])
    """Anchor sizes per cell as multiples of the level's base size."""
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 2.0, 0.5])
    """Anchor width/height ratios, combined with every scale."""
    weights: str = ""
    """What a new run starts from: empty = from scratch; "imagenet" = Keras' ImageNet weights
    for this alpha (downloaded once into the Keras cache); the path of a local Keras weights
    file (.h5/.weights.h5 of MobileNetV2 with include_top=False); or a previous run's folder
    (or its best.weights.h5) to fine-tune the whole detector from (same model settings; the
    class layers start fresh when its classes differ)."""
    batchnorm_momentum: float = 0.9
    """BatchNorm momentum: Keras' 0.999 adapts too slowly for short runs from scratch."""


@dataclass
class TrainConfig:
    """How the detector learns. The defaults of the loss (GIoU x 2, quality focal loss), the
    weight average and mosaic (`AugmentConfig.mosaic`) were first taken together from one
    measurement (docs/training.md, "Ablation"): on the demo (1000 steps, 192 px, test split
    of 330 images) test mAP@[.5:.95] 0.845 against 0.804 for the SSD defaults before them
    (Huber, max-IoU matching, focal loss, no average, no mosaic), ahead at every one of the
    ten validations (0.577 against 0.362 after 200 steps). ATSS came in with them and went out
    again (`assigner`)."""

    batch_size: int = 16
    steps: int = 1000
    """Optimizer steps in total (ignored when `minutes` is set)."""
    minutes: float = 0.0
    """Time budget of the training loop in minutes (validation included, the final test
    evaluation and the SavedModel after it not); 0 = train exactly `steps`. The step count is
    estimated from the measured speed, re-estimated at each validation and fixed for the last
    fifth of the run, so the learning-rate schedule always ends where training ends; the steps
    actually run are in ``metrics/curve.json`` (``train.steps`` = that count reproduces the
    run without the clock)."""
    ema_decay: float = 0.998
    """Keep an exponential moving average of the weights with this decay (e.g. 0.998; 0 = off)
    and evaluate, keep and export the averaged weights. The decay ramps up as
    min(ema_decay, (1 + step) / (10 + step)), TensorFlow's ExponentialMovingAverage rule, so a
    short run from scratch does not keep its random start in the average."""
    deterministic: bool = True
    """Seed every random choice (weight initialisation from `seed`; the input pipeline always
    is) and use TensorFlow's deterministic op implementations, so the same seed and config on
    the same machine give the same run. False skips the op determinism for speed."""
    learning_rate: float = 1.2e-2
    """Peak learning rate of AdamW, reached after the warm-up, then cosine decay to 1%.
    Measured on the demo (seed 0, 1000 steps, test mAP@[.5:.95]): 2e-3 0.842, 4e-3 0.866,
    6e-3 0.870, 8e-3 0.874, 1.2e-2 0.886; raccoon (320 px) 0.376 at 2e-3 (562 steps),
    0.414 at 4e-3 and 0.416 at 8e-3 (550 steps) (docs/training.md, "The learning rate, and
    one change at a time")."""
    warmup_steps: int = 150
    weight_decay: float = 1e-4
    clip_norm: float = 10.0
    """Clip the global gradient norm (early norms exceed 100 from scratch)."""
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss_weight: float = 2.0
    """Weight of the box loss against the classification loss, whichever box loss is chosen
    (ATSS and GFL weight GIoU 2.0 against their focal losses)."""
    box_loss: str = "giou"
    """What a positive anchor's box learns (`loss.iou_loss`): "huber" on the box codes (the SSD
    loss), or "giou" / "ciou" (generalised / complete IoU loss) on the box decoded from them."""
    assigner: str = "iou"
    """Which anchors learn which object (`loss.DetectionLoss.assign`): "iou" (IoU >= match_iou,
    every object's best anchor forced, an ignore band below) or "atss" (adaptive training sample
    selection: per object, a threshold from the IoUs of its atss_topk nearest anchors per
    level; match_iou is then unused). "iou" because ATSS did not pay for itself at learning
    rate 1.2e-2: demo, 3 seeds, test mAP@[.5:.95] 0.885 against 0.884 with ATSS; raccoon, 700
    steps, seeds 0 / 1: 0.424 / 0.496 against 0.424 / 0.412; the same step time
    (docs/training.md, "Leave-one-out, at the new learning rate")."""
    atss_topk: int = 9
    """ATSS candidates per object and level, by centre distance (counted in anchors: with six
    anchors per cell, 9 covers about a cell and a half)."""
    quality_focal: bool = True
    """Quality focal loss (GFL): a positive anchor's class target is the IoU of its decoded box
    with its object instead of 1, so scores rank boxes by fit; focal_gamma is its exponent and
    focal_alpha is unused."""
    match_iou: float = 0.5
    """An anchor is positive for the object it overlaps at least this much (and every object
    gets its best anchor)."""
    seed: int = 0
    checkpoint_every: int = 100
    """Steps between checkpoints (the latest ones are kept for --resume)."""
    eval_every: int = 250
    """Steps between validation mAP evaluations; the best checkpoint is kept by mAP@[.5:.95]."""
    log_every: int = 10
    mixed_precision: bool = True
    """float16 compute on a GPU (ignored on a CPU)."""
    xla: bool = True
    """XLA-compile the train step on a GPU (ignored on a CPU)."""
    shuffle_buffer: int = 1000


@dataclass
class AugmentConfig:
    flip: bool = True
    """Random horizontal flip."""
    scale_min: float = 0.6
    """Random crop: smallest crop side as a fraction of the image (1.0 = no cropping)."""
    scale_max: float = 1.0
    crop_probability: float = 0.5
    min_box_visible: float = 0.3
    """A box cut by the crop is kept if at least this fraction of its area stays inside."""
    brightness: float = 0.15
    """Colour jitter strengths (0 disables each)."""
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03
    mosaic: float = 0.5
    """Probability that a training sample is a mosaic of four images (YOLO's: the sample's own
    and three others decoded near it in the shuffled stream) instead of one cropped image; 0
    leaves the pipeline as it was. Flip and colour jitter apply to the whole mosaic. A mosaic
    carries the boxes of four images, of which the pipeline keeps 100 (and warns once)."""
    mosaic_scale_min: float = 0.5
    """How far a mosaic zooms out: each of its four images is shown at a scale drawn uniformly
    from [mosaic_scale_min, 1] times the size a plain sample has (1 = YOLO's S x S crop out of
    its 2S x 2S canvas, 0.5 = the whole canvas resized to S x S, objects at half size)."""
    mixup: float = 0.0
    """Probability that a training sample (mosaic or not) is blended half and half with one
    more, separately augmented image, keeping the boxes of both; 0 leaves the pipeline as it
    was."""
    close_mosaic: float = 0.0
    """The last fraction of the run's steps trains without mosaic and mixup (YOLO's
    ``close_mosaic``, counted in steps rather than epochs), so the weights end on images
    composed like the ones they will see; 0 keeps both to the end. Under ``train.minutes`` the
    step count is fixed for the last fifth of the run, so a fraction up to 0.2 closes at a
    step that no longer moves."""


@dataclass
class EvalConfig:
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    """Non-maximum suppression IoU."""
    max_detections: int = 100
    per_class_nms: bool = False
    """Suppress overlapping boxes within each class (True) or across classes, each box on its
    best class (False); the SavedModel, its exports and validation all apply this choice
    (`odplug.model.postprocess`). Measured on one trained model scored both ways (SavedModel
    and TFLite float32 gave the same numbers): the demo (1000 steps, 192 px), mAP@.5 /
    mAP@[.5:.95] per class vs class-agnostic, test split 0.990 / 0.768 vs 0.993 / 0.767, val
    split 0.956 / 0.764 vs 0.943 / 0.758 (30 images each: per class is ahead by about half a
    point on average, within the noise of either split); raccoon (one class, 320 px, 150
    steps) 0.413 / 0.123 either way. Class-agnostic is the default all the same: the TFLite
    op's per-class NMS drops a whole class on 2 to C - 1 LiteRT threads
    (tensorflow/tensorflow#56058, still in ai-edge-litert 2.3.0), a far larger loss on the
    devices that run it; set it True for models run on one thread (the TFLite manifest and
    the verification table then say which thread counts are safe)."""
    batch_size: int = 16
    curve_splits: list[str] = field(default_factory=list)
    """Splits scored at every validation besides `val`, e.g. ["test"] for a learning curve in
    ``metrics/curve.json`` and TensorBoard. Never used to choose the checkpoint; their
    evaluation time is left out of the curve's seconds and of the `minutes` budget."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts; NaN and infinities never are."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        left = "<" if self.low_open else "<="
        right = "<" if self.high_open else "<="
        return f"{_plain(self.low)} {left} value {right} {_plain(self.high)}"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


CURVE_SPLITS = ("train", "test")
"""What `EvalConfig.curve_splits` may name (val is always scored)."""
_MANY = 10**9  # a count no run reaches: the bound is there to refuse overflow, not to advise
_OPEN_UNIT = Range(0, 1, low_open=True)
_UNIT = Range(0, 1)
RANGES: dict[str, Range] = {
    "model.input_size": Range(96, 1024),
    "model.alpha": Range(0, 1.4, low_open=True),
    "model.levels": Range(3, 7),
    "model.head_channels": Range(1, 1024),
    "model.anchor_size": Range(0, 16, low_open=True),
    "model.anchor_scales": Range(0, 16, low_open=True),
    "model.aspect_ratios": Range(0, 16, low_open=True),
    "model.batchnorm_momentum": Range(0, 1, high_open=True),
    "train.batch_size": Range(1, 4096),
    "train.steps": Range(1, _MANY),
    "train.learning_rate": Range(0, 1, low_open=True),
    "train.minutes": Range(0, 10**7),
    "train.ema_decay": Range(0, 1, high_open=True),
    "train.warmup_steps": Range(0, _MANY),
    "train.weight_decay": _UNIT,
    "train.clip_norm": Range(0, 1e6, low_open=True),
    "train.focal_alpha": _UNIT,
    "train.focal_gamma": Range(0, 10),
    "train.box_loss_weight": Range(0, 1000),
    "train.match_iou": _OPEN_UNIT,
    "train.atss_topk": Range(1, 1000),
    "train.seed": Range(0, 2**31 - 1),
    "train.checkpoint_every": Range(1, _MANY),
    "train.eval_every": Range(1, _MANY),
    "train.log_every": Range(1, _MANY),
    "train.shuffle_buffer": Range(1, 10**7),
    "augment.scale_min": _OPEN_UNIT,
    "augment.scale_max": _OPEN_UNIT,
    "augment.crop_probability": _UNIT,
    "augment.min_box_visible": _UNIT,
    "augment.brightness": _UNIT,
    "augment.contrast": _UNIT,
    "augment.saturation": _UNIT,
    "augment.hue": Range(0, 0.5),
    "augment.mosaic": _UNIT,
    "augment.mosaic_scale_min": Range(0.5, 1),
    "augment.mixup": _UNIT,
    "augment.close_mosaic": _UNIT,
    "eval.score_threshold": _UNIT,
    "eval.iou_threshold": _OPEN_UNIT,
    "eval.max_detections": Range(1, 10000),
    "eval.batch_size": Range(1, 4096),
}
"""The allowed range of every numeric setting (of each element, for a list of numbers)."""
CHOICES: dict[str, tuple[str, ...]] = {
    "train.box_loss": ("huber", "giou", "ciou"),
    "train.assigner": ("iou", "atss"),
}
"""The values of every setting that names one of a few choices."""


def _apply(target: Any, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in fields(target)}
    for key, value in values.items():
        if key not in known:
            raise OdplugError(f"{where}: {unknown('setting', key, known)}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise OdplugError(f"{where}: [{key}] must be a table")
            _apply(current, value, f"{where} [{key}]")
            continue
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise OdplugError(f"{where}: {key} = {value!r} should be a {expected.__name__}")
        setattr(target, key, value)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, updated from a TOML file and then from ``{"train.steps": 10}``-style overrides."""
    config = Config()
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OdplugError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise OdplugError(f"{path}: is a folder; give the config TOML file") from None
        except OSError as error:
            raise OdplugError(f"{path}: cannot read the config: {error.strerror}") from None
        except UnicodeDecodeError:
            raise OdplugError(f"{path}: not a text file; give the config TOML file") from None
        except tomllib.TOMLDecodeError as error:
            raise OdplugError(f"{path}: not valid TOML: {error}") from None
        except RecursionError:
            raise OdplugError(f"{path}: not valid TOML: nested too deeply") from None
        _apply(config, values, str(path))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _apply(config, {section: {key: value}}, "override")
    validate(config)
    return config


def validate(config: Config) -> None:
    """Every numeric setting within its `RANGES`, every choice one of its `CHOICES`, then the
    rules that tie settings together."""
    values = config.to_dict()
    for dotted, allowed in RANGES.items():
        section, key = dotted.split(".")
        value = values[section][key]
        for number in value if isinstance(value, list) else [value]:
            if number not in allowed:
                raise OdplugError(f"{dotted} = {value!r}: the allowed range is {allowed}")
    for dotted, names in CHOICES.items():
        section, key = dotted.split(".")
        if values[section][key] not in names:
            raise OdplugError(unknown(dotted, values[section][key], names))
    model = config.model
    if not 96 <= model.input_size <= 1024 or model.input_size % 32:
        raise OdplugError(f"model.input_size = {model.input_size}: use a multiple of 32 "
                          "between 96 and 1024 (e.g. 192, 320, 640)")
    if not model.levels or any(not 3 <= lv <= 7 for lv in model.levels):
        raise OdplugError(f"model.levels = {model.levels}: use levels between 3 and 7")
    if model.input_size // 2 ** max(model.levels) < 1:
        raise OdplugError(f"model.levels: level {max(model.levels)} is smaller than one cell "
                          f"at input_size {model.input_size}")
    if model.fpn:
        _check_fpn(model)
    pretrained.check(model)
    if config.train.steps < 1 or config.train.batch_size < 1:
        raise OdplugError("train.steps and train.batch_size must be at least 1")
    for split in config.eval.curve_splits:
        if not isinstance(split, str) or split not in CURVE_SPLITS:
            raise OdplugError(f"eval.curve_splits: {unknown('split', str(split), CURVE_SPLITS)}")
    if not 0 < config.augment.scale_min <= config.augment.scale_max <= 1:
        raise OdplugError("augment: need 0 < scale_min <= scale_max <= 1")


def _check_fpn(model: ModelConfig) -> None:
    """The FPN-lite neck doubles each level's grid to add it to the next level down, so the
    levels must follow one another and every grid must be exactly twice the one above it."""
    first, last = min(model.levels), max(model.levels)
    if model.levels != list(range(first, last + 1)):
        raise OdplugError(f"model.levels = {model.levels}: with model.fpn the levels must be "
                          f"consecutive and ascending (e.g. {list(range(first, last + 1))})")
    if model.input_size % 2**last:
        raise OdplugError(f"model.input_size = {model.input_size}: with model.fpn and level "
                          f"{last} it must be a multiple of {2**last} (each level's grid is "
                          "twice the next one's)")


def changed_settings(config: Config) -> dict[str, Any]:
    """The settings of `config` that differ from the defaults, by the dotted names ``--set``
    takes (``{"train.steps": 200}``): what makes a run this run, for its report."""
    defaults = Config().to_dict()
    return {f"{section}.{key}": value
            for section, values in config.to_dict().items()
            for key, value in values.items() if value != defaults[section][key]}


def to_toml(config: Config) -> str:
    import tomli_w

    header = "# odplug training config: every setting of this run (defaults included).\n"
    return header + tomli_w.dumps(config.to_dict())


def save_config(config: Config, path: Path) -> None:
    atomic_write_text(path, to_toml(config))
