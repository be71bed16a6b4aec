"""Running an exported TF.js graph model in Node.js: one process per model, images streamed in.

``runner.mjs`` loads the model with the pure-JavaScript ``@tensorflow/tfjs`` (installed by
``npm ci --prefix plugins/tfjs`` from the committed lock file; no native binary) and answers
JSON lines on stdin/stdout. Images are resized here, with ``tf.image.resize`` bilinear as the
SavedModel's serving signature does, and sent as raw RGB bytes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np

from odplug.errors import OdplugError

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "runner.mjs"
PREFIX_ENV = "ODPLUG_TFJS_NODE_PREFIX"


def node_prefix() -> Path:
    """The folder whose ``node_modules/`` holds ``@tensorflow/tfjs``.

    ``$ODPLUG_TFJS_NODE_PREFIX`` when set (one npm install shared by several environments),
    else this plugin's own folder: ``setup.sh`` runs ``npm ci --prefix plugins/tfjs`` in a
    checkout, and an installed wheel ships ``package.json`` and the lock file here so that the
    same command works on the installed package.
    """
    configured = os.environ.get(PREFIX_ENV)
    return Path(configured).resolve() if configured else HERE


def npm_ci_hint() -> str:
    """What the user runs to install the Node packages, for the error messages."""
    return (f"npm ci --prefix {HERE} (or set {PREFIX_ENV} to a folder where that was run)")


def tfjs_dist() -> Path:
    """The installed ``@tensorflow/tfjs`` dist folder (tf.min.js for the page), or a clear error."""
    modules = node_prefix() / "node_modules"
    dist = modules / "@tensorflow" / "tfjs" / "dist"
    if not (dist / "tf.min.js").is_file():
        raise OdplugError(f"the tfjs exporter needs the @tensorflow/tfjs npm package in "
                          f"{modules}: run {npm_ci_hint()}")
    return dist


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise OdplugError("running TF.js models needs Node.js (no 'node' on PATH): install "
                          f"nodejs (apt-get install nodejs), then {npm_ci_hint()}")
    return node


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3], bilinear like the serving signature, rounded."""
    if image.shape[:2] == (size, size):
        return np.ascontiguousarray(image, dtype=np.uint8)
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size))
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8).numpy()


class NodeDetector:
    """A detector (uint8 RGB image -> `odplug.model.detector.Detections`) running a TF.js model."""

    def __init__(self, folder: Path) -> None:
        manifest_path = folder / "manifest.json"
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise OdplugError(f"{manifest_path}: cannot read the TF.js manifest: {error}") from None
        self.folder = folder
        self.size = int(self.manifest["input"]["shape"][1])
        node = node_binary()
        tfjs_dist()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [node, str(RUNNER), str(folder.resolve()), str(node_prefix())], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=HERE)
        self._closer = weakref.finalize(self, _stop, self._process, self._stderr)
        self.ready = self._reply()

    def describe(self) -> dict[str, Any]:
        """The graph model's inputs and outputs as TF.js reports them (names, shapes, dtypes)."""
        return self._ask({"op": "describe"})

    def __call__(self, image: np.ndarray) -> Any:
        from odplug.model.detector import Detections

        pixels = resize_uint8(image, self.size)
        reply = self._ask({"op": "detect", "shape": list(pixels.shape),
                           "data": base64.b64encode(pixels.tobytes()).decode("ascii")})
        outputs = reply["outputs"]
        count = int(outputs["num_detections"]["data"][0])
        return Detections(
            boxes=np.asarray(outputs["detection_boxes"]["data"], np.float32).reshape(-1, 4)[:count],
            classes=np.asarray(outputs["detection_classes"]["data"])[:count].round().astype(np.int64),
            scores=np.asarray(outputs["detection_scores"]["data"], np.float32)[:count],
        )

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> NodeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._process.poll() is not None or self._process.stdin is None:
            raise OdplugError(f"{self.folder}: the Node.js runner has stopped: {self._tail()}")
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise OdplugError(f"{self.folder}: the Node.js runner has stopped: "
                              f"{self._tail()}") from None
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=10)
            raise OdplugError(f"{self.folder}: the Node.js runner exited "
                              f"({self._process.returncode}): {self._tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise OdplugError(f"{self.folder}: TF.js in Node.js: {reply.get('error')}")
        return reply

    def _tail(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines()
                 if line.strip()]
        return " | ".join(lines[-3:]) or "no message"


def _stop(process: subprocess.Popen[str], stderr: IO[bytes]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
    stderr.close()
