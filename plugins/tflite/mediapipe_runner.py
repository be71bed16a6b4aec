"""Runs in the MediaPipe environment (.venv-mediapipe), never in odplug's: writes TFLite metadata
with ``tflite-support`` and runs MediaPipe Tasks' ``ObjectDetector``.

Both packages pin what odplug's TensorFlow toolchain cannot have (tflite-support needs
protobuf 3), so odplug starts this file with that environment's Python in isolated mode
(``python -I``: its own folder is not on ``sys.path``, so no module here shadows a package) and
talks to it; odplug is not installed there and nothing here imports it.

    python -I mediapipe_runner.py write '{"model": ..., "out": ..., "labels": ..., ...}'
        One model: `write` the metadata, print what the written file holds as one JSON line.
    python -I mediapipe_runner.py detect MODEL
        Serve `detect` requests for one model on stdin/stdout, framed by
        ``multiprocessing.connection`` (a length, then the bytes): a JSON header
        ``{"shape": [H, W, 3]}`` then the image's RGB bytes; the answer is one JSON frame
        ``{"ok": true, "detections": [[x, y, width, height, label, score], ...]}`` in pixels,
        or ``{"ok": false, "error": ...}``. The first frame says ``{"ok": true}`` once the model
        is loaded (or why it is not).
"""

from __future__ import annotations

import json
import os
import sys
from multiprocessing.connection import Connection
from typing import Any


def write(job: dict[str, Any]) -> dict[str, Any]:
    """Populate the object-detector metadata of ``job["model"]`` into ``job["out"]``.

    ``create_for_inference`` describes the input (RGB, the normalisation mean and std, read
    as ``(pixel - mean) / std``), the post-processing op's four outputs (location, category,
    score, number of detections; it matches them to the outputs by tensor index) and packs the
    label file into the model, beside the flatbuffer, as the category tensor's value labels.
    """
    from importlib.metadata import version

    from tflite_support import metadata
    from tflite_support.metadata_writers import object_detector, writer_utils

    writer = object_detector.MetadataWriter.create_for_inference(
        writer_utils.load_file(job["model"]), job["mean"], job["std"], [job["labels"]])
    writer_utils.save_file(writer.populate(), job["out"])
    shown = metadata.MetadataDisplayer.with_model_file(job["out"])
    return {"metadata": json.loads(shown.get_metadata_json()),
            "associated_files": shown.get_packed_associated_file_list(),
            "writer": f"tflite-support {version('tflite-support')}"}


def detector(model: str) -> Any:
    """MediaPipe Tasks' ObjectDetector on `model`, keeping every detection the model outputs
    (score threshold 0, no limit), so its mAP compares with LiteRT's on the same file."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=model),
        running_mode=vision.RunningMode.IMAGE, score_threshold=0.0, max_results=-1)
    return vision.ObjectDetector.create_from_options(options)


def detect(found: Any, header: dict[str, Any], pixels: bytes) -> list[list[Any]]:
    import mediapipe as mp
    import numpy as np

    image = np.frombuffer(pixels, np.uint8).reshape(header["shape"])
    result = found.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    return [[d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width,
             d.bounding_box.height, d.categories[0].category_name, d.categories[0].score]
            for d in result.detections if d.categories]


def serve(model: str) -> None:
    """Answer `detect` requests until stdin closes. Native code may print to stdout, so the
    frames go to a copy of it and stdout itself is pointed at stderr."""
    requests = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    try:
        found = detector(model)
    except Exception as error:  # MediaPipe raises ValueError, RuntimeError, ...
        answers.send_bytes(json.dumps({"ok": False, "error": one_line(error)}).encode())
        return
    answers.send_bytes(json.dumps({"ok": True}).encode())
    while True:
        try:
            header = json.loads(requests.recv_bytes())
            pixels = requests.recv_bytes()
        except EOFError:
            break
        try:
            answer = {"ok": True, "detections": detect(found, header, pixels)}
        except Exception as error:  # one bad image is reported, the runner stays up
            answer = {"ok": False, "error": one_line(error)}
        answers.send_bytes(json.dumps(answer).encode())
    found.close()


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "write":
        try:
            print(json.dumps(write(json.loads(argv[2]))))
        except Exception as error:  # the caller turns this line into its one-line error
            print(one_line(error), file=sys.stderr)
            return 1
        return 0
    if len(argv) == 3 and argv[1] == "detect":
        serve(argv[2])
        return 0
    print(f"usage: {argv[0]} write JOB_JSON | detect MODEL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
