"""What a new run starts from: scratch, ImageNet or a local backbone file, or a previous run.

``model.weights`` is empty (random initialisation), ``"imagenet"``, the path of a local Keras
weights file (``.h5``/``.weights.h5`` of ``MobileNetV2(include_top=False)`` at the configured
width), or a previous odplug run: its folder (its best weights, else its last) or one of its
``best.weights.h5``/``last.weights.h5`` (`RunStart`). A run starts the whole detector, not only
the backbone: fine-tuning a detector on new images, the most common thing done after a first
run. Its model settings must build the same layers (`check_run_start`; only ``input_size`` may
differ: every layer is convolutional); when its classes differ from the records', the layers
that depend on the classes start fresh (`odplug_builtins.trainer.model.start_from_run`).
A run makes sure its start is at hand before its run folder is touched (`fetch`), so a
missing file or a failed download leaves nothing behind, and notes what it started from in the
run folder's ``inputs.json`` (`fetch`'s record).

ImageNet weights are Keras' own files, downloaded and cached the way
``keras.applications.MobileNetV2(weights="imagenet")`` does it: from `BASE_URL` into the Keras
cache (``$KERAS_HOME/models``, else ``~/.keras/models``, else ``/tmp/.keras/models`` where those
are not writable), named as `ImagenetFile.name` says. A file already in the cache needs no
network; a machine without one gets a single line naming the file, its URL and the exact path
to put it at. Keras publishes files for the widths in `ALPHAS` (any other width is refused when
the config is read) and the input sizes in `SIZES`. A larger input uses the file of the nearest
published size, 224, and says so once: the convolution weights do not depend on the input size.
(Keras itself loads the 224 file, with a warning, for a size it has no file for.)

TensorFlow-free: Keras is imported only to download.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odplug.errors import OdplugError

if TYPE_CHECKING:
    from odplug_builtins.trainer.config import ModelConfig

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
"""The ``model.weights`` value that asks for Keras' ImageNet weights."""
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
"""MobileNetV2 widths Keras publishes ImageNet weights for."""
SIZES = (96, 128, 160, 192, 224)
"""Input sizes Keras publishes ImageNet weights for (square inputs)."""
BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
"""Where Keras downloads them from (``keras.applications.mobilenet_v2.BASE_WEIGHT_PATH``)."""
_LOCAL_HINT = ("or give a local MobileNetV2 (include_top=False) .h5/.weights.h5 file as "
               "model.weights=<path>")


def check(model: ModelConfig) -> None:
    """The config-time rule: ImageNet weights exist only for the widths in `ALPHAS`."""
    alpha = model.alpha
    if model.weights == IMAGENET and alpha not in ALPHAS:
        widths = ", ".join(str(a) for a in ALPHAS)
        raise OdplugError(f"model.alpha = {alpha}: Keras publishes ImageNet MobileNetV2 weights "
                          f"only for alpha {widths}; choose one of them, leave model.weights "
                          "empty to train from scratch, " + _LOCAL_HINT)


RUN_WEIGHTS = ("best.weights.h5", "last.weights.h5")
"""A run's weights files, in the order a run folder given as ``model.weights`` is read."""
SAME_LAYERS_EXCEPT = ("weights", "input_size", "batchnorm_momentum")
"""Model settings a run started from another may change: they build the same weights."""


@dataclass(frozen=True)
class RunStart:
    """A previous run of this trainer that a new run starts the whole detector from."""

    run: Path
    weights: Path
    """Its ``best.weights.h5`` (or ``last``): the detector's weights, class heads included."""

    @property
    def config(self) -> Path:
        return self.run / "config.toml"

    @property
    def label_map(self) -> Path:
        return self.run / "label_map.pbtxt"


def run_start(model: ModelConfig) -> RunStart | None:
    """The run ``model.weights`` names (its folder, or a weights file in it), else None.

    A folder that is not a run of this trainer, or a run without trained weights, is one
    `OdplugError` line; a file is a run's only when its folder holds the run's config and
    label map (else it is a backbone file)."""
    if not model.weights or model.weights == IMAGENET:
        return None
    path = Path(model.weights).expanduser()
    if path.is_dir():
        if not (path / "config.toml").is_file() or not (path / "label_map.pbtxt").is_file():
            raise OdplugError(f"model.weights = {model.weights!r}: a folder, but not a run of "
                              "this trainer (no config.toml and label_map.pbtxt): give a run "
                              "folder, its best.weights.h5, or a backbone weights file")
        found = next((path / name for name in RUN_WEIGHTS if (path / name).is_file()), None)
        if found is None:
            raise OdplugError(f"model.weights = {model.weights!r}: the run has no trained "
                              "weights yet (no best.weights.h5 or last.weights.h5): finish it "
                              "with model.train --resume first")
        return RunStart(path, found)
    if path.is_file() and (path.parent / "config.toml").is_file() \
            and (path.parent / "label_map.pbtxt").is_file():
        return RunStart(path.parent, path)
    return None


def check_run_start(start: RunStart, model: ModelConfig) -> None:
    """Refuse, in one line, a run whose model settings build other layers than `model`."""
    from odplug_builtins.trainer.config import load_config  # config imports this module

    theirs = load_config(start.config).model
    differ = [f"model.{key} = {value!r} there, {getattr(model, key)!r} here"
              for key, value in vars(theirs).items()
              if key not in SAME_LAYERS_EXCEPT and getattr(model, key) != value]
    if differ:
        raise OdplugError(f"model.weights = {model.weights!r}: that run's model has other "
                          f"layers ({'; '.join(differ)}): start from it with the same model "
                          "settings (--set them as there)")


@dataclass(frozen=True)
class ImagenetFile:
    """One of Keras' ImageNet MobileNetV2 (include_top=False) weights files."""

    alpha: float
    rows: int
    """The published input size whose file it is."""

    @property
    def name(self) -> str:
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{self.alpha}_{self.rows}_no_top.h5"

    @property
    def url(self) -> str:
        return BASE_URL + self.name

    @property
    def path(self) -> Path:
        """Where the Keras cache holds it (and where to put it by hand)."""
        return keras_cache() / "models" / self.name


def imagenet_file(alpha: float, input_size: int) -> ImagenetFile:
    """The file for this width and the published size nearest `input_size` (the larger on a
    tie)."""
    rows = min(SIZES, key=lambda size: (abs(size - input_size), -size))
    return ImagenetFile(float(alpha), rows)


def keras_cache() -> Path:
    """The Keras cache folder, as Keras and ``keras.utils.get_file`` choose it.

    ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` if the home folder is not writable);
    Keras creates it when imported, and ``get_file`` falls back to ``/tmp/.keras`` when it is
    not writable. Read from the environment at call time, like Keras reads it at import.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        user = os.path.expanduser("~")
        home = os.path.join(user if os.access(user, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    try:
        os.makedirs(home, exist_ok=True)
    except OSError:
        pass  # not writable: the fallback below, as get_file does
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home)


def weights_file(model: ModelConfig) -> Path | None:
    """The local file the backbone loads for ``model.weights`` (None: from scratch, or from a
    run: `run_start`), once `fetch` has made sure it is there; nothing is downloaded here."""
    if not model.weights or run_start(model) is not None:
        return None
    if model.weights == IMAGENET:
        return imagenet_file(model.alpha, model.input_size).path
    return Path(model.weights).expanduser()


def fetch(model: ModelConfig) -> dict[str, Any]:
    """Make sure the backbone's start is at hand (downloading ImageNet weights into the Keras
    cache if need be) and return what the run records about it in ``inputs.json``.

    One `OdplugError` line for a missing local file or a failed download.
    """
    weights, input_size = model.weights, model.input_size
    if not weights:
        return {"from": "scratch"}
    start = run_start(model)
    if start is not None:
        check_run_start(start, model)
        return {"from": "run", "run": str(start.run.resolve()),
                "path": str(start.weights.resolve()), "sha256": _sha256(start.weights)}
    if weights != IMAGENET:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise OdplugError(
                f"model.weights = {weights!r}: no such file; give a previous run's folder, a "
                f"local MobileNetV2 (include_top=False) .h5/.weights.h5 file, {IMAGENET!r} for "
                "Keras' ImageNet weights, or leave model.weights empty to train from scratch")
        return {"from": "file", "path": str(path.resolve()), "sha256": _sha256(path)}
    file = imagenet_file(model.alpha, input_size)
    if file.rows != input_size:
        log.warning("model.weights = %r: Keras publishes no ImageNet weights for input_size "
                    "%d; using those of %d (%s), which suit any input size: the convolution "
                    "weights do not depend on it", IMAGENET, input_size, file.rows, file.name)
    if not file.path.is_file():
        _download(file)
    return {"from": IMAGENET, "file": file.name, "url": file.url, "sha256": _sha256(file.path)}


def _download(file: ImagenetFile) -> None:
    from keras.utils import get_file

    try:
        get_file(file.name, file.url, cache_subdir="models", cache_dir=str(file.path.parent.parent))
    except Exception as error:  # get_file wraps a URLError or HTTPError in a bare Exception
        reason = getattr(error.__context__, "reason", None) or error
        raise OdplugError(
            f"model.weights = {IMAGENET!r}: cannot download {file.name} from {file.url} "
            f"({reason}); without internet, download it on another machine and put it at "
            f"{file.path}, " + _LOCAL_HINT) from None
    if not file.path.is_file():
        raise OdplugError(f"model.weights = {IMAGENET!r}: the download of {file.url} left no "
                          f"file at {file.path}; put the file there by hand, " + _LOCAL_HINT)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
