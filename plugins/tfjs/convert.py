"""Converting the TF.js-ready SavedModel with ``tensorflowjs`` and writing what goes beside it.

``tensorflowjs`` pins its own TensorFlow, so it lives in its own environment and runs here as a
subprocess: `converter_python` finds that environment's interpreter. Every variant is converted
in one subprocess (the converter's import takes most of the time). Beside each model go
``manifest.json`` (input and outputs as the model really has them, checked against model.json),
``labels.json``, ``label_map.pbtxt`` and the demo page with its own copy of TF.js and its wasm
backend (`odplug_builtins.tfjs.node.page_files`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel, side_python
from odplug.errors import OdplugError
from odplug_builtins.tfjs import FORMAT
from odplug_builtins.tfjs.node import page_files

if TYPE_CHECKING:
    from odplug.trained import DetectorInfo, TrainedDetector

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
"""The checkout's root when this runs from one (plugins/tfjs/ -> the repository)."""
REQUIREMENTS = "dockerfiles/requirements/tfjs.txt"
PYTHON_ENV = "ODPLUG_TFJS_PYTHON"
SETUP = (f"python3 -m venv .venv-tfjs && .venv-tfjs/bin/pip install -r {REQUIREMENTS} "
         f"(or set {PYTHON_ENV} to a Python that has it)")
QUANTIZE = {"float32": [], "float16": ["--quantize_float16=*"], "uint8": ["--quantize_uint8=*"]}
DTYPES = {"DT_FLOAT": "float32", "DT_UINT8": "uint8", "DT_INT32": "int32"}
TFJS_DTYPES = {"float32": "float32", "uint8": "int32", "int32": "int32"}
WEB_FILES = ("index.html", "app.js")

# Runs in the tensorflowjs environment: argv[1] is a JSON list of [input, output, flags].
CONVERT_ALL = """
import json, sys
from tensorflowjs.converters import converter
for source, target, flags in json.loads(sys.argv[1]):
    converter.convert(["--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
                       "--signature_name=serving_default", "--saved_model_tags=serve",
                       *flags, source, target])
"""


def converter_python() -> Path:
    """The interpreter that has ``tensorflowjs``: $ODPLUG_TFJS_PYTHON, else ``.venv-tfjs`` in the
    checkout this plugin runs from (setup.sh makes it) or in the current folder, else this one.
    """
    python = side_python(PYTHON_ENV, ".venv-tfjs", REPO, SETUP)
    if python is None:
        if importlib.util.find_spec("tensorflowjs") is not None:
            return Path(sys.executable)
        raise OdplugError("the tfjs exporter needs the tensorflowjs converter in its own "
                          f"environment: {SETUP}, or use the tfjs image")
    found = subprocess.run(
        [str(python), "-c", "import importlib.util, sys; "
         "sys.exit(importlib.util.find_spec('tensorflowjs') is None)"],
        capture_output=True, check=False)
    if found.returncode != 0:
        raise OdplugError(f"{python} has no tensorflowjs package: {SETUP}")
    return python


def export(trained: TrainedDetector, out: Path, variants: Sequence[str]) -> list[ExportedModel]:
    """Build the TF.js-ready SavedModel, convert each variant, write manifests and pages."""
    from odplug_builtins.tfjs.graph import build_tfjs_saved_model

    saved_model, info = trained.path, trained.info
    python = converter_python()
    runtime = page_files()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tfjs-staging-", dir=out) as staging_dir:
        staging = Path(staging_dir)
        tensors = build_tfjs_saved_model(trained, staging / "saved_model")
        jobs = [(str(staging / "saved_model"), str(staging / variant), QUANTIZE[variant])
                for variant in variants]
        _run_converter(python, jobs, saved_model)
        exported = []
        for variant in variants:
            folder = staging / variant
            manifest = build_manifest(folder, tensors, variant, info, saved_model,
                                      {str(item.id): item.name for item in info.label_map.items})
            atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
            atomic_write_text(folder / "labels.json",
                              json.dumps(manifest["labels"], indent=2) + "\n")
            shutil.copyfile(saved_model / "label_map.pbtxt", folder / "label_map.pbtxt")
            for name in WEB_FILES:
                shutil.copyfile(HERE / "web" / name, folder / name)
            for path in runtime:
                shutil.copyfile(path, folder / path.name)
            target = out / f"tfjs-{variant}"
            shutil.rmtree(target, ignore_errors=True)
            folder.rename(target)
            size = sum(target.joinpath(f).stat().st_size
                       for f in ["model.json", *manifest["weights"]])
            exported.append(ExportedModel("tfjs", variant, target, target / "manifest.json",
                                          size))
    return exported


def _run_converter(python: Path, jobs: list[tuple[str, str, list[str]]],
                   source: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([str(python), "-c", CONVERT_ALL, json.dumps(jobs)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise OdplugError(f"tensorflowjs converter ({python}) failed on {source}: "
                          + " | ".join(lines[-3:]))


def build_manifest(folder: Path, tensors: dict[str, str], variant: str, info: DetectorInfo,
                   saved_model: Path, labels: dict[str, str]) -> dict[str, Any]:
    """The manifest from model.json's real signature, each output named by `tensors`.

    ``index`` is the output's place in the graph model's outputs (what ``model.outputs`` and
    ``executeAsync`` without names follow); ``tensor`` is the name to ask ``executeAsync`` for.
    """
    from odplug_builtins.tfjs.graph import OUTPUTS

    model_json = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    signature = model_json["signature"]
    ((input_key, input_spec),) = signature["inputs"].items()
    by_tensor = {spec["name"]: (index, key, spec)
                 for index, (key, spec) in enumerate(signature["outputs"].items())}
    outputs = []
    for name, tensor in tensors.items():
        index, key, spec = by_tensor.get(tensor, (None, None, None))
        if spec is None or key not in (name, tensor):
            raise OdplugError(f"{folder / 'model.json'}: output {name} ({tensor}) is not where "
                              "the converter should have put it; the model has "
                              + ", ".join(sorted(by_tensor)))
        outputs.append({"name": name, "tensor": tensor, "index": index, "shape": _shape(spec),
                        "dtype": DTYPES[spec["dtype"]], "meaning": OUTPUTS[name]})
    input_dtype = DTYPES[input_spec["dtype"]]
    size = info.input_size
    weights = [path for group in model_json["weightsManifest"] for path in group["paths"]]
    return {
        "format": FORMAT,
        "variant": variant,
        "weights_quantization": "none" if variant == "float32" else variant,
        "model": "model.json",
        "weights": weights,
        "converter": model_json.get("convertedBy"),
        "run": "await tf.loadGraphModel(...).executeAsync({[input.tensor]: x}, "
               "outputs.map(o => o.tensor)): NMS is asynchronous in TF.js",
        "input": {
            "name": input_key,
            "tensor": input_spec["name"],
            "dtype": input_dtype,
            "tfjs_dtype": TFJS_DTYPES[input_dtype],
            "shape": _shape(input_spec),
            "preprocessing": f"RGB resized to {size}x{size} (bilinear, aspect ratio not "
                             "kept), values 0..255 as integers; the model normalises inside",
        },
        "outputs": outputs,
        "nms": {"kind": "per class" if info.per_class_nms
                else "class-agnostic (class = best score per box)",
                "per_class": info.per_class_nms,
                "iou_threshold": info.iou_threshold, "score_threshold": info.score_threshold,
                "max_detections": info.max_detections},
        "labels": labels,
        "labels_file": "labels.json",
        "label_map": "label_map.pbtxt",
        "page": "index.html",
        "source": str(saved_model),
    }


def _shape(spec: dict) -> list[int]:
    return [int(dim.get("size", -1)) for dim in spec["tensorShape"].get("dim", [])]
