"""How many video frames per second ``model.predict`` draws with a model, end to end.

A clip is made from the demo dataset's images (256 px, each shown for a few frames, at 30
frames/s: what a camera at the pipeline's size gives), then ``model.predict`` runs on it as a
user would: decode, detect, draw, encode (`odplug.workflows.predict`). Printed: frames/s end to
end and of the detector alone (its calls timed inside the same run), with the load average,
because on a shared 2-core machine the numbers mean little without it. The issue's measurement
is the int8 ``.tflite`` on 2 cores.
"""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from odplug.atomic import atomic_write_text

RESULTS_FILE = "predict-results.json"


def make_clip(workdir: Path, frames: int, *, hold: int = 3, rate: int = 30) -> Path:
    """``clip.mp4`` of `frames` frames: demo images, each held `hold` frames."""
    from PIL import Image

    from odplug.data.demo import write_demo_project
    from odplug.data.media import VideoInfo, VideoWriter

    project = workdir / "demo"
    if not (project / "meta.json").is_file():
        write_demo_project(project, images=max(20, frames // hold + 1), seed=0)
    files = sorted(project.glob("*/img/*.jpg"))
    first = Image.open(files[0])
    clip = workdir / "clip" / "clip.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(clip, VideoInfo(frames, Fraction(rate), *first.size))
    for number in range(frames):
        image = Image.open(files[(number // hold) % len(files)]).convert("RGB")
        writer.write(np.asarray(image.resize(first.size)))
    writer.close()
    return clip


def run(model: Path, workdir: Path, frames: int) -> dict[str, object]:
    from odplug.plugins import load_registry
    from odplug.workflows import predict as predicting

    clip = make_clip(workdir, frames)
    registry = load_registry()
    loaded = predicting.open_model(model, registry)
    seconds: list[float] = []
    detector = loaded.detector

    def timed(image: np.ndarray):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        found = detector(image)
        seconds.append(time.perf_counter() - started)
        return found

    loaded.detector = timed
    original = predicting.find_model
    predicting.find_model = lambda model, registry: lambda: loaded  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        result = predicting.predict(model, clip, workdir / "predictions", 0.3, registry)
        elapsed = time.perf_counter() - started
    finally:
        predicting.find_model = original  # type: ignore[assignment]
    drawn = len(result.images)
    numbers: dict[str, object] = {
        "model": str(model), "frames": drawn, "seconds": round(elapsed, 2),
        "frames_per_second": round(drawn / elapsed, 1),
        "detector_frames_per_second": round(len(seconds) / sum(seconds), 1),
        "cores": os.cpu_count() or 0, "load_average": round(os.getloadavg()[0], 2)}
    atomic_write_text(workdir / RESULTS_FILE, json.dumps(numbers, indent=2) + "\n")
    print(f"{model}: {drawn} frames of {clip} in {elapsed:.1f} s: "
          f"{numbers['frames_per_second']} frames/s end to end (decode, detect, draw, "
          f"encode), {numbers['detector_frames_per_second']} frames/s for the detector alone; "
          f"{numbers['cores']} cores, load average {numbers['load_average']}")
    return numbers
