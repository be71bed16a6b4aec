"""Where the ssd trainer's backbone starts: a local weights file or Keras' ImageNet weights.

No test touches the network: ImageNet weights are files placed in a temporary Keras cache under
the name Keras gives them, with random values, and the offline case downloads from an address
that refuses connections.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from odplug.errors import OdplugError
from odplug_builtins.trainer import pretrained
from odplug_builtins.trainer.config import ModelConfig, load_config
from odplug_builtins.trainer.model import build_model
from odplug_builtins.trainer.runfolder import RunFolder, start
from tests.plugins.trainer.common import TINY, Weights, random_backbone
from tests.support.records import run_import

UNREACHABLE = "http://127.0.0.1:1/keras-applications/mobilenet_v2/"


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random backbone at the trainer's TINY width and size, saved as a Keras 3 weights file
    (what a user fine-tuned elsewhere) and as a legacy .h5 (the format of Keras' ImageNet
    files)."""
    folder = tmp_path_factory.mktemp("backbone")
    model, weights = random_backbone(0.35, TINY["model.input_size"])
    model.save_weights(folder / "backbone.weights.h5")
    model.save(folder / "legacy.h5")
    return {"weights": weights, "file": folder / "backbone.weights.h5",
            "legacy": folder / "legacy.h5"}


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras cache, and any download attempt an error."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(pretrained, "BASE_URL", UNREACHABLE)
    return home


def _cache(home: Path, legacy: Path, alpha: float, rows: int) -> Path:
    """`legacy` under the name and in the folder Keras downloads that ImageNet file to."""
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5"
    target = home / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(legacy.read_bytes())
    return target


def _backbone_of(config: ModelConfig) -> Weights:
    """The backbone variables of the detector a new run builds from `config`."""
    detector = build_model(config, 2, pretrained.weights_file(config))
    features = detector.get_layer("mobilenet_v2_features")
    return {layer.name: layer.get_weights() for layer in features.layers if layer.weights}


def _assert_same(got: Weights, expected: Weights) -> None:
    assert sorted(got) == sorted(expected), "every backbone layer with weights, no other"
    for name, arrays in expected.items():
        assert len(got[name]) == len(arrays), name
        for have, want in zip(got[name], arrays, strict=True):
            np.testing.assert_array_equal(have, want, err_msg=name)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_backbone_starts_from_exactly_a_local_weights_file(backbone: dict) -> None:
    config = load_config(overrides={**TINY, "model.weights": str(backbone["file"])})
    assert pretrained.fetch(config.model) == {
        "from": "file", "path": str(backbone["file"].resolve()),
        "sha256": _sha256(backbone["file"])}
    _assert_same(_backbone_of(config.model), backbone["weights"])
    legacy = load_config(overrides={**TINY, "model.weights": str(backbone["legacy"])})
    _assert_same(_backbone_of(legacy.model), backbone["weights"])
    scratch = _backbone_of(load_config(overrides=TINY).model)
    assert not np.array_equal(scratch["Conv1"][0], backbone["weights"]["Conv1"][0])


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, registry) -> Path:  # type: ignore[no-untyped-def]
    from odplug.data.demo import write_demo_project

    base = tmp_path_factory.mktemp("pretrained")
    project = write_demo_project(base / "demo", images=12, size=96, seed=5)
    run_import(project, base / "records", registry)
    return base / "records"


def test_imagenet_weights_in_the_keras_cache_load_without_network(
        backbone: dict, keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded although the file is in the cache")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    cached = _cache(keras_home, backbone["legacy"], 0.35, 96)
    config = load_config(overrides={**TINY, "model.weights": "imagenet"})
    assert pretrained.weights_file(config.model) == cached
    assert pretrained.fetch(config.model) == {
        "from": "imagenet", "file": cached.name, "url": UNREACHABLE + cached.name,
        "sha256": _sha256(cached)}
    _assert_same(_backbone_of(config.model), backbone["weights"])


@pytest.mark.parametrize("size,rows", [(96, 96), (128, 128), (160, 160), (192, 192),
                                       (224, 224), (256, 224), (640, 224), (1024, 224)])
def test_each_input_size_uses_its_own_file_or_the_nearest(size: int, rows: int) -> None:
    file = pretrained.imagenet_file(1.0, size)
    assert (file.rows, file.name) == (
        rows, f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5")
    assert file.url == pretrained.BASE_URL + file.name


def test_a_larger_input_loads_the_224_file_and_says_so_once(
        backbone: dict, keras_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The convolution weights do not depend on the input size: the 96 px backbone's values,
    cached as the 224 file, are exactly where a 256 px backbone starts."""
    cached = _cache(keras_home, backbone["legacy"], 0.35, 224)
    config = load_config(overrides={**TINY, "model.input_size": 256, "model.weights": "imagenet"})
    with caplog.at_level(logging.WARNING):
        assert pretrained.fetch(config.model)["file"] == cached.name
    notes = [r.getMessage() for r in caplog.records if "input_size 256" in r.getMessage()]
    assert len(notes) == 1 and "using those of 224" in notes[0], caplog.text
    assert pretrained.weights_file(config.model) == cached
    _assert_same(_backbone_of(config.model), backbone["weights"])


def test_offline_imagenet_is_one_line_naming_the_file_url_and_path(
        keras_home: Path, records: Path, tmp_path: Path) -> None:
    config = load_config(overrides={**TINY, "model.alpha": 0.5, "model.weights": "imagenet"})
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_96_no_top.h5"
    path = keras_home / "models" / name
    with pytest.raises(OdplugError) as caught:
        pretrained.fetch(config.model)
    message = str(caught.value)
    assert "\n" not in message and "URL fetch failure" not in message
    assert f"cannot download {name} from {UNREACHABLE}{name}" in message
    assert f"put it at {path}," in message and "model.weights=<path>" in message
    assert not path.exists(), "no partial download is left in the cache"
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(OdplugError, match="cannot download"):
        start(records, folder, None, {**TINY, "model.alpha": 0.5, "model.weights": "imagenet"},
              "never")
    assert not folder.root.exists(), "a failed download starts no run"


@pytest.mark.parametrize("alpha", [0.25, 0.6, 1.2])
def test_a_width_without_imagenet_weights_is_refused_at_config_time(alpha: float) -> None:
    with pytest.raises(OdplugError) as caught:
        load_config(overrides={"model.alpha": alpha, "model.weights": "imagenet"})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"model.alpha = {alpha}:")
    assert "only for alpha 0.35, 0.5, 0.75, 1.0, 1.3, 1.4" in message
    assert load_config(overrides={"model.alpha": alpha}).model.alpha == alpha


def test_a_missing_or_mismatched_local_file_is_one_line(backbone: dict, records: Path,
                                                       tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.h5")
    with pytest.raises(OdplugError,
                       match=r"nowhere.h5'\: no such file; give a previous run's folder, a local"):
        start(records, RunFolder(tmp_path / "run"), None, {**TINY, "model.weights": missing},
              "never")
    assert not (tmp_path / "run").exists()
    wider = load_config(overrides={**TINY, "model.alpha": 0.5,
                                   "model.weights": str(backbone["file"])})
    with warnings.catch_warnings(record=True) as shown, pytest.raises(OdplugError) as caught:
        warnings.simplefilter("always")
        _backbone_of(wider.model)
    assert not shown, "Keras' per-variable warnings would print before the one line"
    message = str(caught.value)
    assert "\n" not in message
    assert "Target variable" not in message and len(message) < 800
    assert message.startswith(f"{backbone['file']}: not the weights of MobileNetV2 "
                              "(include_top=False) at model.alpha = 0.5:")
