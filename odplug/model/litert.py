"""Running and inspecting .tflite detectors with LiteRT's interpreter (``ai_edge_litert``).

Shared by every exporter that writes or builds on a .tflite file (the built-in tflite and
edgetpu exporters), so neither imports the other: `TFLiteDetector` runs one as an
`odplug.model.detector` detector; `ops`, `float_ops`, `dynamic_tensors` and `describe` read
what a file holds (its operators and their types, its shapes, its input and outputs) for the
exporters' checks and manifests.

A .tflite detector here ends in TFLite's own `POSTPROCESS_OP` and has its outputs in that op's
order (boxes, class columns, scores, count); its manifest beside it is JSON with at least
``label_ids``, the label-map id of each class column. The interpreter's newer CompiledModel API
is not used: it crashed on ``TFLite_Detection_PostProcess`` here. ``ai_edge_litert`` and
TensorFlow are imported only when a model is loaded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odplug.components import ExportedModel, require_module
from odplug.errors import OdplugError
from odplug.quiet import native_output_hidden

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
INSTALL = "install dockerfiles/requirements/tf.txt (pip install -r dockerfiles/requirements/tf.txt)"


def require_installed(what: str) -> None:
    """TensorFlow and LiteRT, which converting, checking and running a .tflite detector need;
    an exporter's `check()` calls it, so a missing one is a clear line before any work."""
    require_module("tensorflow", what=what, install=INSTALL)
    require_module("ai_edge_litert", what=what, install=INSTALL)


@dataclass(frozen=True)
class Op:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    types: tuple[str, ...]
    """Names of the dtypes of every operand and result."""

    @property
    def is_float(self) -> bool:
        return any(name.startswith("float") for name in self.types)


def interpreter(model: Path | bytes, *, delegates: bool = True, num_threads: int | None = None,
                preserve_all_tensors: bool = False) -> Any:
    """A ready interpreter; without `delegates` every node is the file's own operator."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.AUTO if delegates
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    try:
        with warnings.catch_warnings():  # the warning says it costs memory: intended here
            warnings.filterwarnings("ignore", message=".*preserve_all_tensors")
            result = Interpreter(**source, num_threads=num_threads,
                                 experimental_op_resolver_type=resolver,
                                 experimental_preserve_all_tensors=preserve_all_tensors)
        with native_output_hidden():  # LiteRT announces its XNNPACK delegate here
            result.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        where = model if isinstance(model, Path) else "the converted model"
        message = " ".join(str(error).split())
        raise OdplugError(f"{where}: LiteRT cannot load it: {message}") from None
    return result


def ops(model: Path | bytes) -> list[Op]:
    """The file's operators in execution order, with the types they work on."""
    found = []
    for detail in interpreter(model, delegates=False)._get_ops_details():
        types = [np.dtype(t).name for t in [*detail["operand_types"], *detail["result_types"]]]
        found.append(Op(int(detail["index"]), detail["op_name"],
                        tuple(int(i) for i in detail["inputs"] if i >= 0),
                        tuple(int(i) for i in detail["outputs"]), tuple(types)))
    return found


def float_ops(found: list[Op]) -> list[Op]:
    """The float operators before the post-processing: none in a full-integer model.

    `POSTPROCESS_OP` works in float by design, and so do the dequantize ops that feed it."""
    feeding = {i for op in found if op.name == POSTPROCESS_OP for i in op.inputs}
    return [op for op in found if op.is_float and op.name != POSTPROCESS_OP
            and not (op.name == "DEQUANTIZE" and set(op.outputs) <= feeding)]


def dynamic_tensors(model: Path | bytes) -> list[str]:
    """Names of the tensors with a dimension unknown before running (-1 in the signature)."""
    return [detail["name"] for detail in interpreter(model).get_tensor_details()
            if any(int(n) < 0 for n in detail["shape_signature"])]


def describe(model: Path | bytes) -> dict[str, Any]:
    """Input and outputs as the interpreter sees them, outputs named by the signature."""
    runtime = interpreter(model, delegates=False)
    signature = runtime.get_signature_runner()
    names = {detail["index"]: name for name, detail in signature.get_output_details().items()}
    (input_name,) = signature.get_input_details()
    (inp,) = runtime.get_input_details()
    return {
        "input": {"name": input_name, **_tensor(inp), "quantization": _quantization(inp)},
        "outputs": [{"name": names.get(d["index"], d["name"]), **_tensor(d)}
                    for d in runtime.get_output_details()],
    }


def _tensor(detail: dict[str, Any]) -> dict[str, Any]:
    return {"tensor": detail["name"], "index": int(detail["index"]),
            "shape": [int(n) for n in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}


def _quantization(detail: dict[str, Any]) -> dict[str, float] | None:
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)} if scale else None


def read_manifest(exported: ExportedModel) -> dict[str, Any]:
    try:
        manifest = json.loads(exported.manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OdplugError(f"{exported.manifest}: cannot read the manifest ({error})") from None
    if not isinstance(manifest, dict) or "label_ids" not in manifest:
        raise OdplugError(f"{exported.manifest}: not an odplug TFLite manifest (no label_ids)")
    return manifest


def model_at(path: Path, exporter: str, *, edgetpu: bool) -> ExportedModel | None:
    """The .tflite at `path` as `exporter` wrote it, told by the manifest beside it
    (``<name>.json``: an odplug TFLite manifest, with an ``edgetpu`` entry when `edgetpu`);
    None for anything else. Shared by the tflite and edgetpu exporters' `model_at`."""
    manifest = path.with_suffix(".json")
    if path.suffix != ".tflite" or not path.is_file() or not manifest.is_file():
        return None
    try:
        described = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(described, dict) or described.get("format") != "tflite" \
            or "label_ids" not in described or ("edgetpu" in described) != edgetpu:
        return None
    return ExportedModel(exporter, str(described.get("variant", "")), path, manifest,
                         path.stat().st_size)


def detector(exported: ExportedModel) -> TFLiteDetector:
    """The exported file in LiteRT's interpreter, class ids from its manifest."""
    return TFLiteDetector(exported.path, read_manifest(exported)["label_ids"])


class TFLiteDetector:
    """A .tflite detector (see above) as an `odplug.model.detector` detector: uint8 [H, W, 3]
    -> Detections.

    The image is stretched to the model's S x S with ``tf.image.resize`` (bilinear), as the
    SavedModel's serving signature does, and quantized with the input's own scale and zero
    point when the input is uint8. Boxes are clipped to [0, 1] (the op leaves them unclipped)
    and class columns become label-map ids.
    """

    def __init__(self, path: Path, class_ids: list[int], *, num_threads: int | None = None) -> None:
        self.path = path
        self._runtime = interpreter(path, num_threads=num_threads)
        (self._input,) = self._runtime.get_input_details()
        self._outputs = [d["index"] for d in self._runtime.get_output_details()]
        self._size = (int(self._input["shape"][1]), int(self._input["shape"][2]))
        self._ids = np.asarray(class_ids, np.int64)

    def __call__(self, image: np.ndarray) -> Any:
        import tensorflow as tf

        from odplug.model.detector import Detections

        resized = tf.image.resize(tf.cast(image[None], tf.float32), self._size).numpy()
        self._runtime.set_tensor(self._input["index"], self._quantize(resized))
        self._runtime.invoke()
        boxes, classes, scores, count = (self._runtime.get_tensor(i) for i in self._outputs)
        n = int(count.reshape(-1)[0])
        columns = np.clip(np.round(classes[0, :n]).astype(np.int64), 0, len(self._ids) - 1)
        return Detections(boxes=np.clip(boxes[0, :n], 0.0, 1.0), classes=self._ids[columns],
                          scores=scores[0, :n].astype(np.float32))

    def _quantize(self, image: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._input["dtype"])
        if dtype.kind == "f":
            return image.astype(dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(image / scale + zero_point), info.min, info.max).astype(dtype)
