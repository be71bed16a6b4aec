"""A run started from a previous run (``model.weights = <run>``): the whole detector loaded,
the class layers fresh when the classes differ (and one line saying so), refused when the
layers cannot match, recorded in inputs.json, and starting where the previous run ended."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from odplug.data.labelmap import write_label_map
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug_builtins.trainer import pretrained
from odplug_builtins.trainer.config import load_config, save_config
from odplug_builtins.trainer.model import CLASS_LAYERS, build_model, start_from_run
from tests.plugins.trainer.common import TINY
from tests.support.detectors import TINY_RUN, TinyRun

NAMES = ["circle", "square", "triangle"]


def _run(folder: Path, names: list[str], **overrides: object) -> pretrained.RunStart:
    """A run folder as the trainer leaves it: config, label map and best weights (random)."""
    config = load_config(None, {**TINY, **overrides})
    folder.mkdir(parents=True)
    save_config(config, folder / "config.toml")
    write_label_map(LabelMap.from_names(names), folder / "label_map.pbtxt")
    build_model(config.model, len(names)).save_weights(folder / "best.weights.h5")
    start = pretrained.run_start(load_config(None, {**TINY, "model.weights": str(folder)}).model)
    assert start is not None and start.weights == folder / "best.weights.h5"
    return start


def _weights(model) -> dict[str, list[np.ndarray]]:  # type: ignore[no-untyped-def]
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def test_same_classes_load_every_weight(tmp_path: Path) -> None:
    start = _run(tmp_path / "before", NAMES)
    config = load_config(None, TINY).model
    source = build_model(config, 3)
    source.load_weights(str(start.weights))
    model = build_model(config, 3)
    assert start_from_run(model, config, start, NAMES) is None
    for name, values in _weights(source).items():
        for got, expected in zip(_weights(model)[name], values, strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_other_classes_start_the_class_layers_fresh_and_say_so(tmp_path: Path) -> None:
    start = _run(tmp_path / "before", NAMES)
    config = load_config(None, TINY).model
    source = build_model(config, 3)
    source.load_weights(str(start.weights))
    model = build_model(config, 2)
    said = start_from_run(model, config, start, ["cat", "dog"])
    assert said is not None and "class_head_4, class_head_5 start fresh" in said
    assert "(circle, square, triangle)" in said and "(cat, dog)" in said
    for name, values in _weights(source).items():
        if name.startswith(CLASS_LAYERS):
            continue
        for got, expected in zip(_weights(model)[name], values, strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_a_run_whose_layers_differ_is_refused_in_one_line(tmp_path: Path) -> None:
    _run(tmp_path / "before", NAMES, **{"model.levels": [4, 5, 6]})
    here = load_config(None, {**TINY, "model.weights": str(tmp_path / "before"),
                              "model.input_size": 128}).model
    with pytest.raises(OdplugError, match=r"model.levels = \[4, 5, 6\] there, \[4, 5\] here"
                       ) as raised:
        pretrained.fetch(here)
    assert "input_size" not in str(raised.value), "the input size may differ"


def test_what_is_not_a_run_with_weights_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(OdplugError, match="not a run of this trainer"):
        pretrained.run_start(load_config(None, {"model.weights": str(tmp_path / "folder")}).model)
    start = _run(tmp_path / "run", NAMES)
    start.weights.unlink()
    with pytest.raises(OdplugError, match="the run has no trained weights yet"):
        pretrained.run_start(load_config(None, {"model.weights": str(start.run)}).model)


def test_a_backbone_file_outside_a_run_is_still_a_backbone(tmp_path: Path) -> None:
    (tmp_path / "backbone.weights.h5").write_bytes(b"")
    model = load_config(None, {"model.weights": str(tmp_path / "backbone.weights.h5")}).model
    assert pretrained.run_start(model) is None
    assert pretrained.weights_file(model) == tmp_path / "backbone.weights.h5"


@pytest.mark.slow
def test_a_run_from_a_run_starts_where_it_ended(tiny_run: TinyRun, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """One step at a learning rate too small to move anything: its loss on the first batch
    (the same batch as the first run's first step: same seed) is that of the trained weights,
    well under the first run's first loss, from random weights on that batch (what this step
    would give if the weights were not loaded).

    How far under varies with the shared run, which TensorFlow's threads make differ from one
    session to the next: measured 6.3 against a first loss of 7.8 and a last of 4.8 (the last
    on another batch), so the bound is a quarter of the way from first to last, not half."""
    from odplug_builtins.trainer.train import train

    losses: list[float] = []
    overrides = {**TINY_RUN, "train.steps": 1, "train.learning_rate": 1e-9,
                 "train.warmup_steps": 0,
                 "model.weights": str(tiny_run.run / "last.weights.h5")}
    with caplog.at_level(logging.WARNING):
        train(tiny_run.records, tmp_path / "fine", overrides=overrides,
              on_step=lambda step, total, metrics: losses.append(metrics["loss"]))
    first, last = tiny_run.history[0]["loss"], tiny_run.history[-1]["loss"]
    assert losses[0] < first - 0.25 * (first - last), (losses, first, last)
    inputs = json.loads((tmp_path / "fine" / "inputs.json").read_text())
    assert inputs["backbone"]["from"] == "run"
    assert inputs["backbone"]["run"] == str(tiny_run.run.resolve())
    assert inputs["backbone"]["path"] == str((tiny_run.run / "last.weights.h5").resolve())
    assert "start fresh" not in caplog.text, "same classes: every layer loaded"
    with pytest.raises(OdplugError, match="the run being replaced"):
        train(tiny_run.records, tmp_path / "fine", resume="overwrite",
              overrides={**overrides, "model.weights": str(tmp_path / "fine")})
    assert (tmp_path / "fine" / "run.json").is_file(), "refused before anything was deleted"
