"""TFLite metadata in every exported .tflite, so the file loads unchanged in MediaPipe Tasks.

MediaPipe Tasks' ``ObjectDetector`` (the runtime of MediaPipe's Android, iOS and web samples,
and the TFLite Task Library before it) refuses a detector without TFLite metadata. The
metadata odplug writes with ``tflite-support``'s object-detector writer says:

- the input: an RGB image, normalised as ``(pixel - mean) / std`` with mean 0 and std 1
  (`NORM_MEAN`, `NORM_STD`): the float models take pixel values 0..255 and normalise inside,
  the int8 model takes uint8 pixels as they are (scale 1, zero point 0);
- the four outputs of ``TFLite_Detection_PostProcess`` in the op's order, which the model's
  outputs follow (`odplug_builtins.tflite.convert.outputs_in_op_order`): location (ymin, xmin,
  ymax, xmax), category (the 0-based class column), score, number of detections;
- the label file (``labelmap.txt``, line i the name of class column i), packed into the model
  as the category tensor's labels, so detections come out named.

The metadata is a buffer of the flatbuffer and the label file a zip appended to it: LiteRT
and every other runtime read the model as before. tflite-support pins protobuf 3, which
odplug's TensorFlow cannot share, so it runs in an environment of its own, ``.venv-mediapipe``
(setup.sh makes it; MediaPipe is installed beside it to run the files, `mediapipe_tasks`),
through ``mediapipe_runner.py``, as the TF.js converter runs in ``.venv-tfjs``. Without that
environment the export fails in one line naming the command that makes it, or, with
``ODPLUG_TFLITE_METADATA=off`` (`SWITCH_ENV`), writes files without metadata and says so.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odplug.components import side_python
from odplug.errors import OdplugError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
"""The checkout's root when this runs from one (plugins/tflite/ -> the repository)."""
RUNNER = HERE / "mediapipe_runner.py"
VENV = ".venv-mediapipe"
REQUIREMENTS = "dockerfiles/requirements/mediapipe.txt"
PYTHON_ENV = "ODPLUG_MEDIAPIPE_PYTHON"
SWITCH_ENV = "ODPLUG_TFLITE_METADATA"
SETUP = (f"run ./setup.sh, or python3 -m venv {VENV} && {VENV}/bin/pip install -r "
         f"{REQUIREMENTS} (on Debian also apt-get install libusb-1.0-0), or set {PYTHON_ENV} "
         "to a Python that has tflite-support and mediapipe")
NORM_MEAN = 0.0
NORM_STD = 1.0
OUTPUTS = ("location", "category", "score", "number of detections")
"""The metadata's names of the post-processing op's outputs, in the op's order: the names
MediaPipe Tasks and the Task Library find the outputs by."""
RUNS_IN = "MediaPipe Tasks ObjectDetector (and the TFLite Task Library)"


def enabled() -> bool:
    """False when the user chose files without metadata (``ODPLUG_TFLITE_METADATA=off``)."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def tasks_python() -> Path:
    """The Python of the MediaPipe environment: $ODPLUG_MEDIAPIPE_PYTHON, else ``.venv-mediapipe``
    in the checkout this plugin runs from or in the current folder; a clear error without one.

    Only the interpreter is looked for here (cheap, for the exporter's `check`); a Python
    without the packages fails when it runs, in one line that says so (`run_runner`).
    """
    found = side_python(PYTHON_ENV, VENV, REPO, SETUP)
    if found is not None:
        return found
    raise OdplugError("the tflite exporter writes TFLite metadata (which MediaPipe Tasks "
                      f"needs) with tflite-support in an environment of its own, {VENV}, "
                      f"which is missing: {SETUP}; or export without metadata: {SWITCH_ENV}=off")


def check() -> None:
    """Fail before any slow work when metadata is wanted and nothing can write it."""
    if enabled():
        tasks_python()


def run_runner(python: Path, *arguments: str, what: str) -> str:
    """`arguments` to ``mediapipe_runner.py`` in the MediaPipe environment; its stdout, or one
    line naming `what` failed and why (a missing package names the setup)."""
    done = subprocess.run([str(python), "-I", str(RUNNER), *arguments], capture_output=True,
                          text=True, check=False, env=runner_env())
    if done.returncode == 0:
        return done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if any("ModuleNotFoundError" in line or "ImportError" in line for line in lines):
        raise OdplugError(f"{what}: {python} cannot import tflite-support or mediapipe "
                          f"({lines[-1].strip()}): {SETUP}")
    raise OdplugError(f"{what} failed ({python}): " + " | ".join(lines[-3:]))


def runner_env() -> dict[str, str]:
    """The environment for the runner: no GPU, and MediaPipe's and LiteRT's native logging
    held to errors (it goes to stderr, which odplug shows only when something fails)."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GLOG_minloglevel": "2",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def with_metadata(model: bytes, labels: Sequence[str], *, labels_file: str,
                  name: str) -> tuple[bytes, dict[str, Any] | None]:
    """`model` with its metadata and label file, and the manifest's account of what the
    written file holds; `model` itself and None when metadata is switched off."""
    if not enabled():
        log.warning("%s: written without TFLite metadata (%s=off): MediaPipe Tasks and the "
                    "TFLite Task Library cannot load it", name, SWITCH_ENV)
        return model, None
    python = tasks_python()
    with tempfile.TemporaryDirectory(prefix="odplug-metadata-") as folder:
        source, target = Path(folder) / "model.tflite", Path(folder) / "with-metadata.tflite"
        source.write_bytes(model)
        (Path(folder) / labels_file).write_text("".join(f"{label}\n" for label in labels),
                                                encoding="utf-8")
        job = {"model": str(source), "out": str(target), "labels": str(Path(folder) / labels_file),
               "mean": [NORM_MEAN], "std": [NORM_STD]}
        shown = json.loads(run_runner(python, "write", json.dumps(job),
                                      what=f"{name}: writing TFLite metadata").splitlines()[-1])
        written = target.read_bytes()
    return written, summary(shown, labels_file=labels_file, name=name)


def summary(shown: dict[str, Any], *, labels_file: str, name: str) -> dict[str, Any]:
    """The manifest's ``metadata`` entry from what the runner read back from the written file,
    checked: the outputs named in the op's order (the writer matches names to outputs by tensor
    index, so a model whose op outputs were not in index order would get them crossed) and the
    label file packed."""
    (graph,) = shown["metadata"]["subgraph_metadata"]
    outputs = [tensor["name"] for tensor in graph["output_tensor_metadata"]]
    if tuple(outputs) != OUTPUTS:
        raise OdplugError(f"{name}: the metadata writer named the outputs {outputs}, not "
                          f"{list(OUTPUTS)} in the post-processing op's order")
    if shown["associated_files"] != [labels_file]:
        raise OdplugError(f"{name}: the metadata packs {shown['associated_files']}, not "
                          f"[{labels_file!r}]")
    (inp,) = graph["input_tensor_metadata"]
    (normalization,) = [unit["options"] for unit in inp.get("process_units", [])
                        if unit.get("options_type") == "NormalizationOptions"]
    return {
        "writer": shown["writer"],
        "runs_in": RUNS_IN,
        "input": {"color_space": inp["content"]["content_properties"]["color_space"],
                  "normalization": {"mean": normalization["mean"],
                                    "std": normalization["std"]}},
        "outputs": outputs,
        "labels_file": labels_file,
        "min_parser_version": shown["metadata"].get("min_parser_version"),
    }
