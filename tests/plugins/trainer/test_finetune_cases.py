"""Fine-tuning from a run as a user tries it: a run's weights file copied out of its run folder
is refused with the line that says what it needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from odplug.errors import OdplugError
from odplug_builtins.trainer import pretrained
from odplug_builtins.trainer.config import load_config
from odplug_builtins.trainer.model import build_model
from tests.plugins.trainer.common import TINY


def test_a_detector_weights_file_outside_its_run_says_what_it_needs(tmp_path: Path) -> None:
    config = load_config(None, TINY)
    build_model(config.model, 3).save_weights(tmp_path / "best.weights.h5")
    kept = tmp_path / "models" / "best.weights.h5"
    kept.parent.mkdir()
    shutil.move(tmp_path / "best.weights.h5", kept)
    here = load_config(None, {**TINY, "model.weights": str(kept)}).model
    with pytest.raises(OdplugError) as raised:
        pretrained.fetch(here)
        build_model(here, 3, backbone_weights=pretrained.weights_file(here))
    assert "run" in str(raised.value) and "label_map.pbtxt" in str(raised.value), \
        str(raised.value)
