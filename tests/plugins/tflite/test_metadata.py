"""Finding the MediaPipe environment and reading MediaPipe's answers, without a model: where
the environment is missing or broken the exporter says so in one line naming the fix;
MediaPipe's pixel boxes and label names become odplug's detections."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from odplug.errors import OdplugError
from odplug_builtins.tflite import TFLiteExporter, metadata
from odplug_builtins.tflite.mediapipe_tasks import label_ids, to_detections


@pytest.fixture
def no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the checkout nor the current folder has .venv-mediapipe, and nothing names one."""
    monkeypatch.delenv(metadata.PYTHON_ENV, raising=False)
    monkeypatch.delenv(metadata.SWITCH_ENV, raising=False)
    monkeypatch.setattr(metadata, "REPO", tmp_path)
    monkeypatch.chdir(tmp_path)


def test_a_missing_environment_fails_the_check_naming_the_setup(no_environment: None) -> None:
    with pytest.raises(OdplugError) as error:
        TFLiteExporter().check()
    message = str(error.value)
    assert "\n" not in message
    assert ".venv-mediapipe, which is missing: run ./setup.sh" in message
    assert "dockerfiles/requirements/mediapipe.txt" in message
    assert message.endswith("or export without metadata: ODPLUG_TFLITE_METADATA=off")


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no", "false"])
def test_switched_off_metadata_needs_no_environment(no_environment: None, value: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metadata.SWITCH_ENV, value)
    metadata.check()
    model, summary = metadata.with_metadata(b"model", ["a"], labels_file="labelmap.txt",
                                            name="tflite-float32")
    assert (model, summary) == (b"model", None)


def test_the_environment_is_found_in_the_current_folder(no_environment: None,
                                                        tmp_path: Path) -> None:
    python = tmp_path / ".venv-mediapipe" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    assert metadata.tasks_python() == Path(".venv-mediapipe/bin/python").resolve()


def test_a_named_python_that_does_not_exist_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv(metadata.SWITCH_ENV, raising=False)
    monkeypatch.setenv(metadata.PYTHON_ENV, str(tmp_path / "nothing"))
    with pytest.raises(OdplugError, match=f"^ODPLUG_MEDIAPIPE_PYTHON={tmp_path / 'nothing'}: "
                                          "no such Python; run ./setup.sh"):
        TFLiteExporter().check()


def test_a_python_without_the_packages_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """odplug's own Python has neither tflite-support nor mediapipe."""
    monkeypatch.delenv(metadata.SWITCH_ENV, raising=False)
    monkeypatch.setenv(metadata.PYTHON_ENV, sys.executable)
    with pytest.raises(OdplugError) as error:
        metadata.with_metadata(b"model", ["a"], labels_file="labelmap.txt", name="tflite-int8")
    message = str(error.value)
    assert message.startswith(f"tflite-int8: writing TFLite metadata: {sys.executable} cannot "
                              "import tflite-support or mediapipe (ModuleNotFoundError: ")
    assert "run ./setup.sh" in message and "\n" not in message


@pytest.mark.slow  # Detections comes from odplug.model.detector, which imports TensorFlow
def test_pixel_boxes_become_normalised_clipped_boxes_with_label_ids() -> None:
    ids = {"circle": 1, "square": 3, "triangle": 7}
    found = to_detections([[10, 20, 30, 40, "square", 0.9], [-5, 90, 20, 30, "triangle", 0.25]],
                          height=100, width=200, ids=ids)
    np.testing.assert_allclose(found.boxes, [[0.2, 0.05, 0.6, 0.2], [0.9, 0.0, 1.0, 0.075]])
    assert found.classes.tolist() == [3, 7]
    np.testing.assert_allclose(found.scores, [0.9, 0.25])
    empty = to_detections([], height=100, width=200, ids=ids)
    assert empty.boxes.shape == (0, 4) and empty.classes.shape == empty.scores.shape == (0,)


def test_labels_that_repeat_a_name_are_refused() -> None:
    assert label_ids({"labels": ["a", "b"], "label_ids": [2, 5]}, "m.json") == {"a": 2, "b": 5}
    with pytest.raises(OdplugError, match="^m.json: labels repeat a name"):
        label_ids({"labels": ["a", "a"], "label_ids": [1, 2]}, "m.json")
