"""How fast an exported TF.js model is verified in Node.js, per TF.js backend.

The number is the one the verification table shows as latency: the median time of one
`NodeDetector` call (resize in Python, the pixels sent to the Node process, the graph model run,
the detections read back), here on demo images of the pipeline's size (256 px, resized to the
model's input). Backends take turns in every run, so load from other processes on this machine
falls on both alike; the load average is printed with the results because on a shared machine
the numbers mean little without it. The first image of each run is a warm-up, not timed
(the backend compiles its kernels on it).

Target: wasm <= 30 ms per 192 px image, with the same detections as cpu (the first image's
largest score difference is shown; tests/plugins/tfjs/test_tfjs.py asserts the equality).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.errors import OdplugError

TARGET_MS = 30.0
RESULTS_FILE = "tfjs-results.json"


def _images(workdir: Path, count: int) -> list[np.ndarray]:
    from PIL import Image

    from odplug.data.demo import write_demo_project

    project = workdir / "demo"
    files = sorted(project.glob("*/img/*.jpg"))
    if len(files) < count:
        write_demo_project(project, images=count, size=256, seed=0)
        files = sorted(project.glob("*/img/*.jpg"))
    return [np.asarray(Image.open(path).convert("RGB")) for path in files[:count]]


def _time(model: Path, backend: str, images: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """Median ms per image after one warm-up image, and the first image's scores."""
    from odplug_builtins.tfjs.node import NodeDetector

    with NodeDetector(model, backend=backend) as detector:
        if detector.backend != backend:
            raise OdplugError(f"bench.tfjs: asked for the {backend} backend, Node ran "
                              f"{detector.backend}: {detector.ready.get('fallback')}")
        first = detector(images[0])
        seconds = []
        for image in images[1:]:
            started = time.perf_counter()
            detector(image)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, np.asarray(first.scores)


def run(*, model: Path, images: int = 30, runs: int = 3,
        workdir: Path = Path("bench/work/tfjs"), echo: Callable[[str], None] = print) -> dict:
    from odplug_builtins.tfjs.node import BACKENDS

    if not (model / "model.json").is_file():
        raise OdplugError(f"{model}: no model.json: give a TF.js export folder "
                          f"(model.export --to tfjs writes tfjs-float32/)")
    workdir.mkdir(parents=True, exist_ok=True)
    pictures = _images(workdir, images + 1)
    size = json.loads((model / "manifest.json").read_text())["input"]["shape"][1]
    timings: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    scores: dict[str, np.ndarray] = {}
    loads = []
    for number in range(1, runs + 1):
        for backend in BACKENDS:
            loads.append(os.getloadavg()[0])
            ms, scores[backend] = _time(model, backend, pictures)
            timings[backend].append(round(ms, 2))
            echo(f"run {number}/{runs} {backend:5s} {ms:7.1f} ms/image "
                 f"(load {loads[-1]:.2f})")
    same_count = len(scores["wasm"]) == len(scores["cpu"])
    results = {
        "model": str(model), "input_size": size, "images_per_run": images,
        "cores": os.cpu_count(), "load_average_1min": [round(x, 2) for x in loads],
        "ms_per_image": timings,
        "median_ms_per_image": {b: statistics.median(t) for b, t in timings.items()},
        "first_image_detections": {b: len(s) for b, s in scores.items()},
        "first_image_max_score_difference": (
            float(np.abs(scores["wasm"] - scores["cpu"]).max()) if same_count and
            len(scores["cpu"]) else None),
        "target_ms": TARGET_MS,
    }
    median = results["median_ms_per_image"]
    echo(f"{size} px model, median of {runs} runs x {images} images: cpu {median['cpu']:.1f} "
         f"ms, wasm {median['wasm']:.1f} ms ({median['cpu'] / median['wasm']:.1f}x); wasm target "
         f"<= {TARGET_MS:.0f} ms: {'met' if median['wasm'] <= TARGET_MS else 'NOT met'}; "
         f"load average {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores")
    atomic_write_text(workdir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    return results
