"""Tiny detectors for the export tests: SavedModel folders with fixed outputs, the one tiny
training a test session shares, and detections compared across runtimes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.data.labelmap import write_label_map
from odplug.labels import LabelMap
from odplug.model.contract import RAW, SERVING
from odplug.model.postprocess import Nms
from odplug.model.savedmodel import write_detector as write_trained_detector
from odplug.run import RunInfo
from tests.support.records import run_import


def assert_same_detections(got: tuple, expected: tuple, *, box_atol: float = 1e-4,
                           score_atol: float = 1e-5) -> None:
    """Two runtimes found the same detections: scores in the same order, and each detection's
    class and box matched by one of the other's detections of the same score.

    Detections whose scores tie (an untrained test model has many) may come out of NMS in
    either order, and which of them comes first differs between runtimes; anything else must
    agree to the tolerances.
    """
    import numpy as np

    boxes, classes, scores = (np.asarray(a) for a in got)
    want_boxes, want_classes, want_scores = (np.asarray(a) for a in expected)
    assert len(scores) == len(want_scores), f"{len(scores)} detections, expected {len(want_scores)}"
    np.testing.assert_allclose(scores, want_scores, atol=score_atol)
    unused = set(range(len(want_scores)))
    for i in range(len(scores)):
        match = next((j for j in sorted(unused, key=lambda j: abs(j - i))
                      if abs(want_scores[j] - scores[i]) <= score_atol
                      and want_classes[j] == classes[i]
                      and np.allclose(want_boxes[j], boxes[i], atol=box_atol, rtol=0)), None)
        assert match is not None, (
            f"detection {i} (class {classes[i]}, score {scores[i]:.6f}, box {boxes[i]}) has no "
            f"counterpart among the expected detections of that score")
        unused.remove(match)


SIZE = 32


def spread_anchors(count: int) -> np.ndarray:
    """`count` small anchors on the diagonal, far enough apart that NMS keeps each."""
    centres = (np.arange(count, dtype=np.float32) + 0.5) / count
    return np.stack([centres, centres, np.full(count, 0.05), np.full(count, 0.05)],
                    axis=1).astype(np.float32)


def write_detector(path: Path, *, scores: np.ndarray | None = None,
                   anchors: np.ndarray | None = None, names: Sequence[str] = ("a", "b", "c"),
                   size: int = SIZE, raw_dtype: tf.DType = tf.float32,
                   signatures: Sequence[str] = (SERVING, RAW), info: dict | None = None) -> Path:
    """A SavedModel folder with the contract's signatures and files and fixed outputs.

    ``raw`` returns zero box codes and `scores` [1, A, C] (default: 0.01 everywhere, the
    focal-loss prior); ``serving_default`` returns five empty detections. Keyword arguments
    break one part at a time: a signature left out, the raw input's dtype, anchors or label
    names that do not match the outputs, or ``detector.json`` entries.
    """
    anchors = spread_anchors(8) if anchors is None else anchors
    if scores is None:
        scores = np.full((1, len(anchors), len(names)), 0.01, np.float32)
    rows = scores.shape[1]

    class Fixed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], raw_dtype)])
        def raw(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            bias = tf.reduce_mean(tf.cast(images, tf.float32)) * 0.0  # keeps the input used
            return {"box_codes": tf.zeros([1, rows, 4]) + bias,
                    "class_scores": tf.constant(scores, tf.float32) + bias}

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            bias = tf.reduce_mean(tf.cast(images, tf.float32)) * 0.0
            return {"detection_boxes": tf.zeros([1, 5, 4]) + bias,
                    "detection_classes": tf.ones([1, 5]) + bias,
                    "detection_scores": tf.zeros([1, 5]) + bias,
                    "num_detections": tf.zeros([1]) + bias}

    module = Fixed()
    functions = {SERVING: module.serve, RAW: module.raw}
    tf.saved_model.save(module, str(path),
                        signatures={name: functions[name] for name in signatures})
    np.save(path / "anchors.npy", anchors)
    write_label_map(LabelMap.from_names(names), path / "label_map.pbtxt")
    (path / "detector.json").write_text(json.dumps({
        "input_size": size, "scale_factors": [10.0, 10.0, 5.0, 5.0],
        "nms": {"iou_threshold": 0.5, "score_threshold": 0.05, "max_detections": 20},
    } | (info or {})))
    return path


TINY_RUN = {
    "model.input_size": 96, "model.levels": [4, 5], "model.head_channels": 32,
    "train.batch_size": 4, "train.warmup_steps": 2, "train.learning_rate": 3e-3,
    "train.log_every": 1, "train.checkpoint_every": 5, "train.eval_every": 10,
    "train.shuffle_buffer": 50, "eval.batch_size": 8, "train.steps": 30,
    "train.box_loss": "huber", "train.assigner": "iou", "train.quality_focal": False,
    "train.box_loss_weight": 1.0, "augment.mosaic": 0.0,
}
"""The one tiny training the whole test session shares (`shared_tiny_run`): 30 steps of the
SSD loss without mosaic, over which the loss falls by a fifth (the trainer's tests check it),
with three validations, checkpoints and a test split; its class scores stay near the
focal-loss prior (about 0.01), which the export tests rely on when they lower the NMS
threshold to compare dozens of detections."""


@dataclass(frozen=True)
class TinyRun:
    """Demo records (24 images of 96 px) and a run of the built-in trainer on them."""

    records: Path
    run: Path

    @property
    def saved_model(self) -> Path:
        return self.run / "saved_model"

    @property
    def returned(self) -> RunInfo:
        """The run description `train` returned (pickled by the worker that trained it)."""
        return pickle.loads((self.run.parent / "returned.pickle").read_bytes())

    @property
    def history(self) -> list[dict]:
        """What the trainer reported after each step: ``{"step": n, **metrics}``."""
        return json.loads((self.run.parent / "history.json").read_text())


def shared_tiny_run(tmp_path_factory: pytest.TempPathFactory, registry) -> TinyRun:  # type: ignore[no-untyped-def]
    """`TinyRun`, trained once per test session however many xdist workers ask for it.

    A training costs about half a minute, nearly all of it fixed (tracing the step, writing
    the SavedModel), so every test that only needs *a* trained detector shares this one. It
    lives beside the workers' own temporary folders, and a file lock makes the first worker
    train it while any other that asks meanwhile waits. Treat it as read-only: copy what a test
    changes (`saved_model_copy`, `resaved`).
    """
    from filelock import FileLock

    from odplug.data.demo import write_demo_project
    from odplug_builtins.trainer.train import train

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by every worker
    base = root / "tiny-run"
    with FileLock(str(root / "tiny-run.lock")):
        if not (base / "done").is_file():
            shutil.rmtree(base, ignore_errors=True)
            project = write_demo_project(base / "demo", images=24, size=96)
            run_import(project, base / "records", registry)
            history: list[dict] = []
            returned = train(base / "records", base / "run", overrides=TINY_RUN,
                  on_step=lambda step, total, metrics: history.append({"step": step,
                                                                       **metrics}))
            (base / "history.json").write_text(json.dumps(history))
            (base / "returned.pickle").write_bytes(pickle.dumps(returned))
            (base / "done").touch()
    return TinyRun(base / "records", base / "run")


def saved_model_copy(tiny: TinyRun, out: Path, **nms: float) -> Path:
    """A copy of the shared run's SavedModel whose ``detector.json`` has these NMS settings,
    which the exporters read (the SavedModel's own serving signature keeps its own)."""
    shutil.copytree(tiny.saved_model, out)
    info = json.loads((out / "detector.json").read_text())
    info["nms"].update(nms)
    (out / "detector.json").write_text(json.dumps(info))
    return out


def resaved(tiny: TinyRun, out: Path, nms: Nms) -> Path:
    """The shared run's detector written again from its weights with other NMS settings,
    baked into the serving signature as training would have: a few seconds instead of a
    training."""
    from odplug_builtins.trainer.train import load_run_model

    model, config, label_map, anchors = load_run_model(tiny.run)
    return write_trained_detector(model, anchors, label_map, config.model.input_size, out,
                                  nms=nms)
