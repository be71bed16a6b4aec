"""What the MobileNetV2 backbone starts from: scratch, a local weights file, or ImageNet.

``model.weights`` is empty (random initialisation), ``"imagenet"``, or the path of a local Keras
weights file (``.h5``/``.weights.h5`` of ``MobileNetV2(include_top=False)`` at the configured
width). A run makes sure its start is at hand before its run folder is touched (`fetch`), so a
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
    """The local file the backbone loads for ``model.weights`` (None: from scratch), once
    `fetch` has made sure it is there; nothing is downloaded here."""
    if not model.weights:
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
    if weights != IMAGENET:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise OdplugError(
                f"model.weights = {weights!r}: no such file; give a local MobileNetV2 "
                f"(include_top=False) .h5/.weights.h5 file, {IMAGENET!r} for Keras' ImageNet "
                "weights, or leave model.weights empty to train from scratch")
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
