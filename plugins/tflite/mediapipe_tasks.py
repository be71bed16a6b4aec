"""Running an exported .tflite in MediaPipe Tasks' ``ObjectDetector``, as an app would.

`MediaPipeDetector` is an `odplug.model.detector` detector (uint8 RGB image [H, W, 3] ->
`Detections`), so the verification table can score the file in MediaPipe beside LiteRT. The
model is loaded once in one long-lived ``mediapipe_runner.py detect`` process in the MediaPipe
environment (`odplug_builtins.tflite.metadata.tasks_python`), and images are streamed to it
whole: MediaPipe stretches each to the model's input itself, as the file's own metadata tells
it, which is what an app gets. It keeps every detection the model outputs (score threshold 0, no
limit on results), so mAP compares with LiteRT's.

What differs from LiteRT, by design of MediaPipe's API: boxes come back in whole pixels (an
origin and a size, `to_detections` normalises them), so a box moves by up to half a pixel: on
small images that costs some mAP@[.5:.95] and none of mAP@.5 (compare MediaPipe on mAP@.5), and
classes come back by label name (the category index is not set), mapped to label-map ids with
the manifest's ``labels`` and ``label_ids``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import weakref
from multiprocessing.connection import Connection
from typing import IO, Any

import numpy as np

from odplug.components import ExportedModel
from odplug.errors import OdplugError
from odplug.model import litert
from odplug_builtins.tflite.metadata import RUNNER, SWITCH_ENV, runner_env, tasks_python

RUNTIME = "MediaPipe Tasks"
"""What the verification row adds to the model's name: ``tflite-int8 (MediaPipe Tasks)``."""


def label_ids(manifest: dict[str, Any], where: object) -> dict[str, int]:
    """Label name -> label-map id: MediaPipe names a detection's class and gives no index, so
    the names must tell the classes apart."""
    labels, ids = manifest["labels"], manifest["label_ids"]
    if len(set(labels)) != len(labels):
        raise OdplugError(f"{where}: labels repeat a name ({', '.join(labels)}); MediaPipe "
                          "Tasks reports classes by name only, so it cannot tell them apart")
    return dict(zip(labels, ids, strict=True))


def to_detections(rows: list[list[Any]], height: int, width: int,
                  ids: dict[str, int]) -> Any:
    """The runner's [x, y, width, height, label, score] pixel rows as `Detections`: boxes
    (ymin, xmin, ymax, xmax) normalised to the image and clipped to [0, 1], as LiteRT's are."""
    from odplug.model.detector import Detections

    if not rows:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                          np.zeros(0, np.float32))
    x, y, w, h = (np.array([row[i] for row in rows], np.float64) for i in range(4))
    boxes = np.stack([y / height, x / width, (y + h) / height, (x + w) / width], axis=1)
    return Detections(boxes=np.clip(boxes, 0.0, 1.0).astype(np.float32),
                      classes=np.array([ids[row[4]] for row in rows], np.int64),
                      scores=np.array([row[5] for row in rows], np.float32))


class MediaPipeDetector:
    """An exported .tflite (with metadata) run by MediaPipe Tasks' ObjectDetector in its own
    process; `close` it, or leave it to be stopped when it is garbage."""

    def __init__(self, exported: ExportedModel) -> None:
        manifest = litert.read_manifest(exported)
        if not manifest.get("metadata"):
            raise OdplugError(f"{exported.path}: written without TFLite metadata ({SWITCH_ENV}="
                              "off), which MediaPipe Tasks needs: export it again without "
                              f"{SWITCH_ENV}")
        self.path = exported.path
        self.ids = label_ids(manifest, exported.manifest)
        python = tasks_python()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [str(python), "-I", str(RUNNER), "detect", str(exported.path.resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=runner_env())
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._answers = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self._process.stdin.close()  # the connections hold their own copies of the pipes
        self._process.stdout.close()
        self._closer = weakref.finalize(self, _stop, self._process, self._requests,
                                        self._answers, self._stderr)
        self._answer()

    def __call__(self, image: np.ndarray) -> Any:
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise OdplugError(f"{self.path}: MediaPipe takes RGB images [H, W, 3], not "
                              f"{list(pixels.shape)}")
        try:
            self._requests.send_bytes(json.dumps({"shape": list(pixels.shape)}).encode())
            self._requests.send_bytes(pixels.tobytes())
        except (BrokenPipeError, OSError):
            raise OdplugError(f"{self.path}: the MediaPipe runner has stopped: "
                              f"{self._tail()}") from None
        rows = self._answer()["detections"]
        return to_detections(rows, pixels.shape[0], pixels.shape[1], self.ids)

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self) -> dict[str, Any]:
        try:
            answer = json.loads(self._answers.recv_bytes())
        except (EOFError, OSError):
            self._process.wait(timeout=10)
            raise OdplugError(f"{self.path}: the MediaPipe runner exited "
                              f"({self._process.returncode}): {self._tail()}") from None
        if not answer.get("ok"):
            raise OdplugError(f"{self.path}: MediaPipe Tasks: {answer.get('error')}")
        return answer

    def _tail(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines()
                 if line.strip()]
        return " | ".join(lines[-3:]) or "no message"


def _stop(process: subprocess.Popen[bytes], requests: Connection, answers: Connection,
          stderr: IO[bytes]) -> None:
    """Close the runner's stdin (it ends at the end of its input), wait, kill if it hangs."""
    requests.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    answers.close()
    stderr.close()
