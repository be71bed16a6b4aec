"""The trained-detector contract: a conforming SavedModel folder passes `validate_detector`, and
each way of breaking it (a signature missing, a wrong input dtype, anchors or a label map that do
not match the model, logits for scores, a damaged folder) is one line naming the file and what
is wrong. The SavedModels here are tiny tf.Modules with fixed outputs, written in a second."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.data.labelmap import write_label_map
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.contract import RAW, SERVING, validate_detector
from odplug.trained import TrainedDetector
from tests.support.detectors import SIZE, spread_anchors, write_detector


def refused(folder: Path) -> str:
    """The one-line error `validate_detector` gives for `folder`."""
    with pytest.raises(OdplugError) as error:
        validate_detector(folder)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_conforming_folder_passes_and_describes_itself(tmp_path: Path) -> None:
    trained = validate_detector(write_detector(tmp_path / "model"))
    assert isinstance(trained, TrainedDetector) and trained.path == tmp_path / "model"
    assert trained.input_size == SIZE and trained.anchors.shape == (8, 4)
    assert trained.num_classes == 3 and trained.labels == ["a", "b", "c"]
    assert trained.class_ids == [1, 2, 3]
    outputs = trained.raw(images=tf.zeros([1, SIZE, SIZE, 3]))
    assert outputs["class_scores"].shape == (1, 8, 3)


def test_class_columns_are_the_label_map_items_in_order(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model")
    write_label_map(LabelMap.from_names(["x", "y", "z"]), folder / "label_map.pbtxt")
    (folder / "label_map.pbtxt").write_text(
        (folder / "label_map.pbtxt").read_text().replace("id: 2", "id: 7"))
    trained = validate_detector(folder)
    assert trained.class_ids == [1, 3, 7] and trained.labels == ["x", "z", "y"]


def test_a_missing_raw_signature_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model", signatures=(SERVING,))
    message = refused(folder)
    assert message.startswith(f"{folder}: the SavedModel has no 'raw' signature")
    assert "(it has serving_default)" in message and "docs/hooks.md" in message


def test_a_missing_serving_signature_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model", signatures=(RAW,))
    assert "no 'serving_default' signature (it has raw)" in refused(folder)


def test_a_wrong_input_dtype_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model", raw_dtype=tf.uint8)
    assert refused(folder) == (
        f"{folder}: signature 'raw' input 'images' is uint8 [1, 32, 32, 3]; the contract needs "
        "float32 [1, S, S, 3]")


def test_anchors_of_the_wrong_count_are_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model")
    np.save(folder / "anchors.npy", spread_anchors(10))
    message = refused(folder)
    assert message.startswith(f"{folder / 'anchors.npy'}: 10 anchors, but signature 'raw' "
                              "gives 'box_codes' for 8")


def test_a_label_map_of_the_wrong_size_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model")
    write_label_map(LabelMap.from_names(["a", "b"]), folder / "label_map.pbtxt")
    message = refused(folder)
    assert message.startswith(f"{folder / 'label_map.pbtxt'}: 2 classes, but signature 'raw' "
                              "gives 'class_scores' 3 columns")


def test_an_input_size_the_model_does_not_take_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model", info={"input_size": 64})
    assert "detector.json says input_size 64 but signature 'raw' takes 32 x 32" in refused(folder)


def test_logits_instead_of_sigmoid_scores_are_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model", scores=np.full((1, 8, 3), -4.6, np.float32))
    assert re.search(r"'class_scores' from -4.6 to -4.6; they must be sigmoid scores",
                     refused(folder))


def test_a_missing_file_beside_the_model_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model")
    (folder / "anchors.npy").unlink()
    assert refused(folder).startswith(f"{folder}: anchors.npy is missing")


def test_a_folder_without_a_saved_model_is_named(tmp_path: Path) -> None:
    assert refused(tmp_path).startswith(f"{tmp_path}: no SavedModel here")
    assert refused(tmp_path / "nowhere").startswith(f"{tmp_path / 'nowhere'}: no such folder")


def test_a_damaged_saved_model_is_named(tmp_path: Path) -> None:
    folder = write_detector(tmp_path / "model")
    (folder / "saved_model.pb").write_bytes(b"\x08\x01 not a protobuf \xff\xff")
    assert refused(folder).startswith(f"{folder}: cannot load the SavedModel")
