"""Predict how Coral's ``edgetpu_compiler`` 16.0 will map a ``.tflite`` model, from the file alone.

The compiler is only in Coral's apt repository, so most machines that export a model cannot run
it; this reads the flatbuffer (through the schema module shipped in ``ai_edge_litert``, no
hand-parsed bytes) and applies what Coral documents and what its issue tracker shows the
compiler does. Every rule has a stable name, used in the report and the tests:

``op-version``
    The operator's version is newer than compiler 16.0 reads: it then refuses the whole model
    ("Didn't find op for builtin opcode ... version ..."), nothing maps. `MAX_VERSION`.
``unsupported-op``
    The operator is not in Coral's supported-operations table (`SUPPORTED_OPS`).
``full-integer``
    A tensor the operator computes on is not 8-bit: activations must be int8/uint8, constants
    int8/uint8 or int32 (biases, shapes, axes).
``static-shape``
    A tensor has a dimension unknown until run time (-1 in its shape signature).
``tensor-rank``
    An activation tensor has more than 3 dimensions larger than 1 (Coral: "If a tensor has more
    than 3 dimensions, then only the 3 innermost dimensions may have a size greater than 1" --
    the innermost three of a batch-1 NHWC tensor).
``fused-activation``, ``concat-constant``, ``dilation``, ``batch-axis``, ``mean-channels``,
``softmax-input``, ``strided-slice``, ``fully-connected-output``
    The per-operator limits of Coral's table that can be read from the file (`limit_breaks`).

The split follows Coral's documented rule: the compiler makes one Edge TPU subgraph and cannot
partition a model more than once, so the first unsupported operator inside it and everything
after it runs on the CPU. Two readings of its logs refine that: "after" means downstream in the
graph, not later in the file (in the exported detector the DEQUANTIZE feeding the NMS op's boxes
comes before the class branch in execution order, and the branch still maps); and unsupported
operators before the first mapped one (a float QUANTIZE of the input: f0cal/google-coral#20;
MEAN and SUB next to the input: google-coral/edgetpu#461) run on the CPU ahead of the subgraph
without cutting it. `POSTPROCESS_OP` and the DEQUANTIZE ops that feed it run on the CPU by design
and are reported apart as "the post-processing".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.errors import OdplugError
from odplug.model.litert import POSTPROCESS_OP

COMPILER = "edgetpu_compiler 16.0"

OPS_SOURCE = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
SUPPORTED_OPS: dict[str, str] = {
    # TFLite builtin name -> the limitation Coral's table (OPS_SOURCE, compiler 16) states for
    # it, paraphrased. The rows ADD to RESIZE_BILINEAR and their limits were checked against the
    # copy Axis publishes for its Edge TPU SoC (developer.axis.com/computer-vision/on-device/
    # system-on-chip/artpec-7/supported-ops/); the rows after them are from Coral's page
    # without a second copy to check them against.
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation function; a constant input only as one of exactly two "
                     "inputs and all zeros (a zero padding)",
    "CONV_2D": "the same dilation in x and y",
    "DEPTHWISE_CONV_2D": "the same dilation in x and y",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weights format only; the output is one-dimensional",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "unidirectional only",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional only (Coral's LSTM row)",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "no reduction over the batch dimension; a channel reduction needs a multiple of 4",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "no packing along the batch dimension",
    "PAD": "no padding of the batch dimension",
    "PRELU": "alpha one-dimensional (only its innermost dimension larger than 1)",
    "QUANTIZE": "",
    "REDUCE_MAX": "not over the batch dimension",
    "REDUCE_MIN": "not over the batch dimension",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "some reshapes of large tensors are not mapped",
    "RESIZE_BILINEAR": "3-dimensional input and output; may stay on the CPU to keep precision",
    "RESIZE_NEAREST_NEIGHBOR": "3-dimensional input and output; may stay on the CPU to keep "
                               "precision",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "a 1-D input of at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "no split along the batch dimension",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "all strides 1, no ellipsis or new-axis mask",
    "SUB": "",
    "SUM": "not over the batch dimension",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}

MAX_VERSION: dict[str, tuple[int, str]] = {
    # The newest version of each operator compiler 16.0 (16.0.384591198, its last release)
    # reads: one below the version users saw it reject, each with the report it comes from.
    # Operators not listed: no rejection reported, so their version is not held against them.
    "CONV_2D": (5, "google-coral/edgetpu#631: CONV_2D version 6 (TF 2.9) rejected by 16.0"),
    "TRANSPOSE_CONV": (3, "google-coral/edgetpu#845: TRANSPOSE_CONV version 4 rejected by "
                          "16.0.384591198"),
    "QUANTIZE": (2, "google-coral/edgetpu#879: QUANTIZE version 3 rejected by 16.0.384591198"),
    "EXP": (1, "google-coral/libedgetpu#71: EXP version 2 (TF 2.16) rejected by 16.0.384591198"),
}

RULES: dict[str, str] = {
    "op-version": "operator version newer than the compiler reads (the model is refused)",
    "unsupported-op": "not in Coral's supported-operations table",
    "full-integer": "every tensor int8/uint8 (int32 constants for biases and shapes)",
    "static-shape": "no dimension unknown before run time",
    "tensor-rank": "at most 3 dimensions larger than 1 (the innermost ones)",
    "fused-activation": "no fused activation on pooling and concatenation",
    "concat-constant": "a constant concatenation input is all zeros, one of exactly two",
    "dilation": "the same dilation in x and y",
    "batch-axis": "no reduction, padding, packing or splitting across the batch dimension",
    "mean-channels": "a mean over the channels only when their number is a multiple of 4",
    "softmax-input": "softmax over a 1-D input of at most 16,000 elements",
    "strided-slice": "strided slice with all strides 1 and no ellipsis or new-axis mask",
    "fully-connected-output": "a fully-connected output with one dimension larger than 1",
}
"""Each rule's stable name and what it asks, for the report."""

_INTEGER = {"INT8", "UINT8"}
_CONSTANT_INTEGER = {"INT8", "UINT8", "INT32", "INT64"}
_SOFTMAX_MAX = 16_000


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str
    """The schema's TensorType name: INT8, UINT8, FLOAT32, INT32, ..."""
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    """The shape signature, -1 where a dimension is unknown (the shape where none is stored)."""
    value: np.ndarray | None
    """The constant's data, None for an activation."""
    zero_point: int = 0
    """The integer that stands for 0.0 (the first zero point of a quantized tensor)."""

    @property
    def constant(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Operator:
    index: int
    name: str
    """The builtin name (CONV_2D) or the custom code (TFLite_Detection_PostProcess)."""
    version: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    options: Any
    """The schema's options object (Conv2DOptionsT, ...), None if the operator has none."""


@dataclass(frozen=True)
class Finding:
    index: int
    op: str
    rule: str
    detail: str


@dataclass
class Prediction:
    """What the compiler is predicted to do with one model."""

    model: str
    operators: int
    postprocessing: list[int]
    """The NMS op and the DEQUANTIZE ops feeding it: on the CPU by design."""
    on_edgetpu: list[int]
    left_on_cpu: list[int]
    """Operators outside the post-processing that run on the CPU."""
    first_unsupported: Finding | None
    refused: bool
    """The compiler would reject the file outright (an operator version it cannot read)."""
    findings: list[Finding] = field(default_factory=list)
    """Every rule broken by every operator outside the post-processing."""
    placement: list[dict[str, Any]] = field(default_factory=list)
    """Each operator's index, name, version, where it runs (edgetpu; cpu; "cpu (downstream)" of
    the cut; post-processing; "not compiled" when the compiler refuses the model) and the rules
    it breaks."""

    @property
    def subgraphs(self) -> int:
        return 1 if self.on_edgetpu else 0

    @property
    def fully_mapped(self) -> bool:
        return not self.refused and not self.left_on_cpu

    @property
    def summary(self) -> str:
        first = self.first_unsupported
        if self.refused and first is not None:
            return (f"predicted: {COMPILER} refuses the model: op {first.index} ({first.op}) "
                    f"breaks {first.rule}: {first.detail}")
        before = self.operators - len(self.postprocessing)
        where = " before the post-processing" if self.postprocessing else ""
        if first is None:
            return (f"predicted: all {before} operators{where} on the Edge TPU "
                    f"({self.subgraphs} subgraph)")
        return (f"predicted: {len(self.on_edgetpu)} of {before} operators{where} on the Edge TPU "
                f"({self.subgraphs} subgraph{'' if self.subgraphs == 1 else 's'}); op "
                f"{first.index} ({first.op}) breaks {first.rule}: {first.detail}; "
                f"{len(self.left_on_cpu)} left on the CPU")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"summary": self.summary, "compiler": COMPILER, "subgraphs": self.subgraphs,
                **data, "rules": RULES, "sources": {"operators": OPS_SOURCE, "versions": {
                    op: source for op, (_v, source) in MAX_VERSION.items()}}}

    def to_text(self) -> str:
        lines = [self.summary, "", f"Edge TPU compatibility of {self.model} ({COMPILER}, "
                 "predicted from the file)", ""]
        lines += [f"{p['index']:>4}  {p['op']:<30} v{p['version']:<3} {p['placement']:<17} "
                  + "; ".join(p["rules"]) for p in self.placement]
        lines += ["", f"Operators: {OPS_SOURCE}",
                  *(f"Versions: {op} <= {v}: {source}"
                    for op, (v, source) in MAX_VERSION.items())]
        return "\n".join(lines).rstrip() + "\n"


def read_model(path: Path) -> list[Operator]:
    """The main subgraph's operators in execution order, with their tensors."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        data = path.read_bytes()
    except OSError as error:
        raise OdplugError(f"{path}: cannot read the model ({error.strerror})") from None
    not_tflite = f"{path}: not a TFLite flatbuffer (no TFL3 file identifier)"
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise OdplugError(not_tflite)
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as error:  # the generated reader raises whatever a bad offset causes
        raise OdplugError(f"{path}: a damaged TFLite flatbuffer ({type(error).__name__})"
                          ) from None
    if not model.subgraphs:
        raise OdplugError(f"{path}: the model has no subgraph")
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items()
               if not name.startswith("_")}
    types = {value: name for name, value in vars(schema.TensorType).items()
             if not name.startswith("_")}
    graph = model.subgraphs[0]

    def tensor(index: int) -> Tensor:
        t = graph.tensors[index]
        buffer = model.buffers[t.buffer] if model.buffers and t.buffer else None
        dtype = types.get(t.type, str(t.type))
        value = _constant(buffer, data, dtype)
        shape = tuple(int(n) for n in (t.shape if t.shape is not None else ()))
        signature = (tuple(int(n) for n in t.shapeSignature)
                     if t.shapeSignature is not None and len(t.shapeSignature) else shape)
        name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)
        zero_points = t.quantization.zeroPoint if t.quantization is not None else None
        zero = int(zero_points[0]) if zero_points is not None and len(zero_points) else 0
        return Tensor(int(index), name, dtype, shape, signature, value, zero)

    found = []
    for i, op in enumerate(graph.operators or ()):
        code = model.operatorCodes[op.opcodeIndex]
        number = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if number == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode
            name = custom.decode(errors="replace") if isinstance(custom, bytes) else str(custom)
        else:
            name = builtin.get(number, f"BUILTIN_{number}")
        ins = op.inputs if op.inputs is not None else ()
        outs = op.outputs if op.outputs is not None else ()
        found.append(Operator(i, name, int(code.version),
                              tuple(tensor(t) for t in ins if t >= 0),
                              tuple(tensor(t) for t in outs if t >= 0), op.builtinOptions))
    return found


_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64,
          "BOOL": np.bool_}


def _constant(buffer: Any, data: bytes, dtype: str) -> np.ndarray | None:
    """A constant tensor's values; buffers past 2 GB are stored after the flatbuffer."""
    if buffer is None:
        return None
    if buffer.data is not None and len(buffer.data):
        raw = bytes(np.asarray(buffer.data, np.uint8))
    elif buffer.offset and buffer.offset > 1 and buffer.size:
        raw = data[buffer.offset:buffer.offset + buffer.size]
    else:
        return None
    kind = _NUMPY.get(dtype)
    if kind is None or len(raw) % np.dtype(kind).itemsize:
        return np.frombuffer(raw, np.uint8)
    return np.frombuffer(raw, kind)


def postprocessing(ops: list[Operator]) -> set[int]:
    """The NMS op and the DEQUANTIZE ops whose every output only feeds it."""
    nms = {op.index for op in ops if op.name == POSTPROCESS_OP}
    consumers: dict[int, set[int]] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t.index, set()).add(op.index)
    feeding = {op.index for op in ops if op.name == "DEQUANTIZE" and op.outputs
               and all(consumers.get(t.index, set()) and consumers[t.index] <= nms
                       for t in op.outputs)}
    return nms | feeding


def rule_breaks(op: Operator) -> list[Finding]:
    """Every rule `op` breaks, the most basic first (version, table, types, shapes, limits)."""
    found: list[Finding] = []

    def add(rule: str, detail: str) -> None:
        found.append(Finding(op.index, op.name, rule, detail))

    newest = MAX_VERSION.get(op.name)
    if newest is not None and op.version > newest[0]:
        add("op-version", f"version {op.version}, compiler 16.0 reads up to {newest[0]}")
    if op.name not in SUPPORTED_OPS:
        add("unsupported-op", f"{op.name} is not in Coral's supported-operations table")
    tensors = [*op.inputs, *op.outputs]
    wrong = [t for t in tensors
             if t.dtype not in (_CONSTANT_INTEGER if t.constant else _INTEGER)]
    if wrong:
        add("full-integer", ", ".join(f"{t.name or t.index} is {t.dtype.lower()}"
                                      for t in wrong[:3]))
    dynamic = [t for t in tensors if any(n < 0 for n in t.signature)]
    if dynamic:
        add("static-shape", ", ".join(f"{t.name or t.index} has shape signature "
                                      f"{list(t.signature)}" for t in dynamic[:3]))
    ranked = [t for t in tensors if not t.constant and _outer_dims(t.shape)]
    if ranked:
        add("tensor-rank", ", ".join(f"{t.name or t.index} has shape {list(t.shape)}"
                                     for t in ranked[:3]))
    for rule, detail in limit_breaks(op):
        add(rule, detail)
    return found


def _outer_dims(shape: Iterable[int]) -> bool:
    """More than 3 dimensions, and one outside the innermost 3 larger than 1."""
    dims = list(shape)
    return len(dims) > 3 and any(n > 1 for n in dims[:-3])


def limit_breaks(op: Operator) -> list[tuple[str, str]]:
    """The per-operator limits of Coral's table that the file shows being broken."""
    options, found = op.options, []
    activation = getattr(options, "fusedActivationFunction", 0)
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION") and activation:
        found.append(("fused-activation", f"fused activation {_activation(activation)}"))
    if op.name == "CONCATENATION":
        constants = [t for t in op.inputs if t.constant]
        if constants and (len(op.inputs) != 2
                          or any(np.any(t.value != t.zero_point) for t in constants)):
            found.append(("concat-constant", f"{len(op.inputs)} inputs, a constant one not "
                                             "all zeros" if len(op.inputs) == 2 else
                          f"{len(op.inputs)} inputs with a constant one"))
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and options is not None:
        h, w = options.dilationHFactor, options.dilationWFactor
        if h != w:
            found.append(("dilation", f"dilation {h} (y) and {w} (x)"))
    if op.name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "SPLIT", "PACK", "PAD"):
        if _touches_batch(op):
            found.append(("batch-axis", "works across the batch dimension"))
    if op.name == "MEAN" and len(op.inputs) > 1 and op.inputs[1].value is not None:
        shape = op.inputs[0].shape
        if (shape and shape[-1] % 4
                and any(int(a) % len(shape) == len(shape) - 1 for a in op.inputs[1].value)):
            found.append(("mean-channels", f"a mean over {shape[-1]} channels, not a multiple "
                                           "of 4"))
    if op.name == "SOFTMAX" and op.inputs:
        shape = op.inputs[0].shape
        if sum(n > 1 for n in shape) > 1 or int(np.prod(shape)) > _SOFTMAX_MAX:
            found.append(("softmax-input", f"input shape {list(shape)}"))
    if op.name == "STRIDED_SLICE" and options is not None:
        strides = op.inputs[3].value if len(op.inputs) > 3 else None
        if (strides is None or np.any(strides != 1) or options.ellipsisMask
                or options.newAxisMask):
            found.append(("strided-slice", f"strides {_listed(strides)}, ellipsis mask "
                                           f"{options.ellipsisMask}, new-axis mask "
                                           f"{options.newAxisMask}"))
    if op.name == "FULLY_CONNECTED" and op.outputs:
        if sum(n > 1 for n in op.outputs[0].shape) > 1:
            found.append(("fully-connected-output", f"output shape {list(op.outputs[0].shape)}"))
    return found


def _touches_batch(op: Operator) -> bool:
    """Axis 0 among the axes a reduction, split or pack works on, or padding of dimension 0."""
    rank = len(op.inputs[0].shape) if op.inputs else 0
    if op.name == "PACK":
        return getattr(op.options, "axis", 0) == 0
    if op.name == "PAD":
        pads = op.inputs[1].value if len(op.inputs) > 1 else None
        return pads is not None and pads.size >= 2 and bool(np.any(pads.reshape(-1)[:2]))
    axes_at = 0 if op.name == "SPLIT" else 1
    axes = op.inputs[axes_at].value if len(op.inputs) > axes_at else None
    if axes is None:
        return True  # axes computed at run time: the compiler cannot rule the batch out
    return any(int(a) % max(rank, 1) == 0 for a in axes.reshape(-1))


def _activation(code: int) -> str:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.ActivationFunctionType).items()
             if not k.startswith("_")}
    return names.get(code, str(code))


def _listed(value: np.ndarray | None) -> str:
    return "computed at run time" if value is None else str(value.reshape(-1).tolist())


def predict(path: Path) -> Prediction:
    """Which operators the compiler will put on the Edge TPU, and why the others are not."""
    ops = read_model(path)
    tail = postprocessing(ops)
    breaks = {op.index: rule_breaks(op) for op in ops if op.index not in tail}
    findings = [f for op in ops for f in breaks.get(op.index, [])]
    refusing = next((f for f in findings if f.rule == "op-version"), None)
    producer = {t.index: op.index for op in ops for t in op.outputs}
    on_cpu: set[int] = set()
    cut: set[int] = set()  # the first unsupported op inside the Edge TPU region and after
    started = False
    for op in ops:  # execution order is a topological order
        fed_by_cut = any(producer.get(t.index) in cut for t in op.inputs)
        if refusing or op.index in tail:
            on_cpu.add(op.index)
        elif breaks.get(op.index) or fed_by_cut:
            on_cpu.add(op.index)
            if started:
                cut.add(op.index)
        else:
            started = True
    first = refusing or next((breaks[op.index][0] for op in ops if breaks.get(op.index)), None)
    placement = [{"index": op.index, "op": op.name, "version": op.version,
                  "placement": ("post-processing" if op.index in tail else
                                "not compiled" if refusing else
                                "cpu" if breaks.get(op.index) else
                                "cpu (downstream)" if op.index in on_cpu else "edgetpu"),
                  "rules": [f"{f.rule}: {f.detail}" for f in breaks.get(op.index, [])]}
                 for op in ops]
    return Prediction(
        model=str(path), operators=len(ops), postprocessing=sorted(tail),
        on_edgetpu=[op.index for op in ops if op.index not in on_cpu],
        left_on_cpu=sorted(on_cpu - tail), first_unsupported=first,
        refused=refusing is not None, findings=findings, placement=placement)


def write_report(prediction: Prediction, model: Path) -> tuple[Path, Path]:
    """``<model>.edgetpu-report.json`` and ``.txt`` beside the model."""
    data = model.with_name(model.name + ".edgetpu-report.json")
    text = model.with_name(model.name + ".edgetpu-report.txt")
    atomic_write_text(data, json.dumps(prediction.to_json(), indent=2) + "\n")
    atomic_write_text(text, prediction.to_text())
    return data, text
