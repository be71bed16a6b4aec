"""Running an exported TF.js graph model in Node.js: one process per model, images streamed in.

``runner.mjs`` loads the model with ``@tensorflow/tfjs`` on the WebAssembly backend
``@tensorflow/tfjs-backend-wasm`` (both installed by ``npm ci --prefix plugins/tfjs`` from the
committed lock file; the ``.wasm`` binaries ship inside the npm package, nothing is downloaded
at run time) and answers framed requests on stdin/stdout (`send_frame`, `read_frame`: a JSON
header and raw bytes). Images are resized here, with ``tf.image.resize`` bilinear as the
SavedModel's serving signature does, and sent as raw RGB bytes.

Why raw bytes and not JSON lines (as until this was measured): base64 pixels in JSON, the
outputs as JSON number arrays and the pixels copied by ``Int32Array.from`` made every call
slower, and what is left is the model itself (docs/exports.md, "Measurements").

Why wasm by default (`DEFAULT_BACKEND`): one verification call on the demo detector is over
ten times faster on wasm than on the pure-JS ``cpu`` backend, with the same detections
(docs/exports.md, "Measurements"; tests/plugins/tfjs/test_tfjs.py compares the two on every
test image; ``inv bench.tfjs`` measures). wasm runs on one thread in Node (the package turns
threads off there), with SIMD. The ``cpu`` backend stays as the fallback: when wasm cannot
start, the runner says why in one warning line and verifies on ``cpu``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np

from odplug.errors import OdplugError
from odplug.suggest import unknown

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "runner.mjs"
PREFIX_ENV = "ODPLUG_TFJS_NODE_PREFIX"
BACKENDS = ("wasm", "cpu")
DEFAULT_BACKEND = "wasm"
WASM_BINARIES = ("tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm",
                 "tfjs-backend-wasm-threaded-simd.wasm")


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
    return _dist("tfjs", "tf.min.js")


def page_files() -> list[Path]:
    """What the demo page loads beside the model: TF.js, its wasm backend and the backend's
    ``.wasm`` binaries (plain, SIMD, and threaded SIMD for cross-origin-isolated pages).

    The wasm package is required, not optional like in the Node runner: a page without it
    would silently run on the ten times slower cpu backend in every user's browser.
    """
    wasm = _dist("tfjs-backend-wasm", "tf-backend-wasm.min.js")
    return [tfjs_dist() / "tf.min.js", wasm / "tf-backend-wasm.min.js",
            *(wasm / name for name in WASM_BINARIES)]


def _dist(package: str, *files: str) -> Path:
    modules = node_prefix() / "node_modules"
    dist = modules / "@tensorflow" / package / "dist"
    if not all((dist / name).is_file() for name in files):
        raise OdplugError(f"the tfjs exporter needs the @tensorflow/{package} npm package in "
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
    """A detector (uint8 RGB image -> `odplug.model.detector.Detections`) running a TF.js model.

    `backend` is the TF.js backend asked for (`BACKENDS`); `self.backend` is the one running,
    ``cpu`` when wasm could not start (logged as one warning line).
    """

    def __init__(self, folder: Path, backend: str = DEFAULT_BACKEND) -> None:
        if backend not in BACKENDS:
            raise OdplugError(unknown("TF.js backend", backend, BACKENDS))
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
            [node, str(RUNNER), str(folder.resolve()), str(node_prefix()), backend],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=HERE)
        self._closer = weakref.finalize(self, _stop, self._process, self._stderr)
        self.ready, _ = self._reply()
        self.backend: str = self.ready["backend"]
        if "fallback" in self.ready:
            log.warning("TF.js verification runs on the slower cpu backend, %s (the wasm "
                        "backend comes with %s)", self.ready["fallback"], npm_ci_hint())

    def describe(self) -> dict[str, Any]:
        """The graph model's inputs and outputs as TF.js reports them (names, shapes, dtypes)."""
        return self._ask({"op": "describe"})[0]

    def __call__(self, image: np.ndarray) -> Any:
        from odplug.model.detector import Detections

        pixels = resize_uint8(image, self.size)
        reply, payload = self._ask({"op": "detect", "shape": list(pixels.shape)},
                                   pixels.tobytes())
        outputs = {}
        offset = 0
        for output in reply["outputs"]:
            dtype = np.dtype(output["dtype"]).newbyteorder("<")
            outputs[output["name"]] = np.frombuffer(
                payload, dtype, output["bytes"] // dtype.itemsize, offset).reshape(output["shape"])
            offset += output["bytes"]
        count = int(outputs["num_detections"].reshape(-1)[0])
        return Detections(
            boxes=outputs["detection_boxes"].astype(np.float32).reshape(-1, 4)[:count],
            classes=outputs["detection_classes"].reshape(-1)[:count].round().astype(np.int64),
            scores=outputs["detection_scores"].astype(np.float32).reshape(-1)[:count],
        )

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> NodeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, request: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        if self._process.poll() is not None or self._process.stdin is None:
            raise OdplugError(f"{self.folder}: the Node.js runner has stopped: {self._tail()}")
        try:
            send_frame(self._process.stdin, request, payload)
        except BrokenPipeError:
            raise OdplugError(f"{self.folder}: the Node.js runner has stopped: "
                              f"{self._tail()}") from None
        return self._reply()

    def _reply(self) -> tuple[dict[str, Any], bytes]:
        assert self._process.stdout is not None
        frame = read_frame(self._process.stdout)
        if frame is None:
            self._process.wait(timeout=10)
            raise OdplugError(f"{self.folder}: the Node.js runner exited "
                              f"({self._process.returncode}): {self._tail()}")
        reply, payload = frame
        if not reply.get("ok"):
            raise OdplugError(f"{self.folder}: TF.js in Node.js: {reply.get('error')}")
        return reply, payload

    def _tail(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines()
                 if line.strip()]
        return " | ".join(lines[-3:]) or "no message"


def send_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    """One request to ``runner.mjs``: a 4-byte little-endian length, the JSON header (with
    ``bytes``, the payload's length, when there is one), then the payload."""
    text = json.dumps({**header, "bytes": len(payload)} if payload else header).encode()
    stream.write(struct.pack("<I", len(text)) + text + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame ``runner.mjs`` wrote (header, payload), or None when it stopped before
    writing a whole one."""
    length = stream.read(4)
    if len(length) < 4:
        return None
    (size,) = struct.unpack("<I", length)
    text = stream.read(size)
    if len(text) < size:
        return None
    header = json.loads(text)
    wanted = int(header.get("bytes", 0))
    payload = stream.read(wanted)
    return (header, payload) if len(payload) == wanted else None


def _stop(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
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
