"""Built-in exporter ``edgetpu``: a full-integer model for Coral's Edge TPU, compiled when possible.

The model is the int8 .tflite the ``tflite`` exporter wrote (uint8 pixels in, calibrated on the
training records), handed over by the core (``requires = ("tflite:int8",)``) and copied here, not
converted again. It is held to what the Edge TPU needs: batch 1, static shapes, and every
operator int8 except ``TFLite_Detection_PostProcess`` and the dequantize ops that feed it, which
run on the CPU by design. When ``edgetpu_compiler`` is on PATH it compiles the model and its log
must show every other operator mapped to the Edge TPU; without it, the compiler-ready model is
written and the manifest says how to compile it. SELECT_TF_OPS are never used: the Edge TPU
runtime has no TensorFlow kernels. Reading the file goes through `odplug.model.litert`.

The weight quantization is the one tflite chose on the validation split (its manifest's
``quantization``, kept in this one): per-channel weights need no per-tensor copy for the Edge
TPU. They are what TensorFlow 2's post-training full-integer quantization writes by default,
the way Coral's documentation gives for TensorFlow 2 models, and its TF2 tutorials compile such
models with compilers 15 and 16.

Whether or not the compiler is here, `odplug.model.edgetpu_check` predicts from the file how
compiler 16.0 will map it (Coral's operator table and limits, the operator versions 16.0 reads,
full-integer types, static shapes, tensor rank; the first unsupported operator cuts the graph):
``<model>.edgetpu-report.json`` and ``.txt`` beside the model, its summary line in the manifest's
``edgetpu.prediction`` and in the verification table's notes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from odplug import hookimpl
from odplug.atomic import atomic_write_text
from odplug.components import NO_INPUTS, ExportedModel, Exporter
from odplug.errors import OdplugError

if TYPE_CHECKING:
    from odplug.trained import TrainedDetector

log = logging.getLogger(__name__)

SOURCE = "tflite"
"""The exporter whose int8 model this one takes."""
COMPILER = "edgetpu_compiler"
COMPILER_TIMEOUT_S = 600
CPU_BY_DESIGN = frozenset({"CUSTOM", "TFLite_Detection_PostProcess", "DEQUANTIZE"})
"""Operators on the CPU in every Edge TPU detector: the NMS op (the compiler lists custom ops
as CUSTOM) and the dequantize ops feeding it; `odplug.model.litert.float_ops` agrees."""
MAPPED = "Mapped to Edge TPU"


def no_compiler_message(model: Path) -> str:
    return (f"{COMPILER} not found: wrote the compiler-ready {model}; compiling it needs the Edge "
            "TPU compiler from Coral's apt repository (see dockerfiles/edgetpu.Dockerfile)")


@dataclass
class CompilerLog:
    """What ``edgetpu_compiler`` reported (its stdout and its ``*_edgetpu.log`` together)."""

    version: str = ""
    operators: list[tuple[str, int, str]] = field(default_factory=list)
    """(operator, count, status) rows of the operation table."""
    on_edgetpu: int | None = None
    on_cpu: int | None = None
    total: int | None = None
    subgraphs: int | None = None

    def not_mapped(self) -> list[tuple[str, int, str]]:
        return [row for row in self.operators if row[2] != MAPPED]


_ROW = re.compile(r"^([A-Z][A-Za-z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(text: str) -> CompilerLog:
    """Parse the compiler's report; the table rows are ``OPERATOR  COUNT  STATUS``."""

    def number(label: str) -> int | None:
        found = re.search(rf"{label}:\s*(\d+)", text)
        return int(found.group(1)) if found else None

    version = re.search(r"Edge TPU Compiler version\s+(\S+)", text)
    rows: dict[tuple[str, int, str], None] = {}  # stdout and the .log file repeat the table
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match and match.group(1) != "Operator":
            rows[(match.group(1), int(match.group(2)), match.group(3))] = None
    return CompilerLog(
        version=version.group(1) if version else "",
        operators=list(rows),
        on_edgetpu=number("Number of operations that will run on Edge TPU"),
        on_cpu=number("Number of operations that will run on CPU"),
        total=number("Total number of operations"),
        subgraphs=number("Number of Edge TPU subgraphs"),
    )


def check_compiler_log(report: CompilerLog, model: Path) -> None:
    """Fail unless everything before the post-processing runs on the Edge TPU, in one piece."""
    if not report.operators:
        raise OdplugError(f"{model}: {COMPILER} printed no operation table; cannot tell what "
                          "runs on the Edge TPU")
    regressed = [row for row in report.not_mapped() if row[0] not in CPU_BY_DESIGN]
    if regressed:
        listed = "; ".join(f"{op} x{count}: {status}" for op, count, status in regressed)
        raise OdplugError(f"{model}: operators left on the CPU by {COMPILER}: {listed}")
    if report.subgraphs is not None and report.subgraphs != 1:
        raise OdplugError(f"{model}: {COMPILER} split the model into {report.subgraphs} Edge TPU "
                          "subgraphs, expected 1")


def compile_model(compiler: str, model: Path) -> tuple[Path, CompilerLog]:
    out = model.parent
    try:
        done = subprocess.run([compiler, "--out_dir", str(out), "--show_operations", str(model)],
                              capture_output=True, text=True, timeout=COMPILER_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise OdplugError(f"{model}: {COMPILER} took over {COMPILER_TIMEOUT_S} s") from None
    logged = out / f"{model.stem}_edgetpu.log"
    text = done.stdout + "\n" + done.stderr
    if logged.is_file():
        text += "\n" + logged.read_text(encoding="utf-8", errors="replace")
    compiled = out / f"{model.stem}_edgetpu.tflite"
    if done.returncode != 0 or not compiled.is_file():
        tail = " ".join(text.split())[-400:]
        raise OdplugError(f"{model}: {COMPILER} failed (exit {done.returncode}): {tail}")
    return compiled, parse_compiler_log(text)


def prediction_mismatch(prediction: Mapping[str, object], report: CompilerLog) -> str:
    """"" when the compiler put as many operators on the Edge TPU as predicted, out of as many;
    otherwise one line saying how they differ, so a wrong rule in the prediction shows."""
    predicted = (prediction.get("on_edgetpu"), prediction.get("operators"))
    if predicted == (report.on_edgetpu, report.total):
        return ""
    return (f"the prediction ({predicted[0]} of {predicted[1]} operators on the Edge TPU) "
            f"differs from {COMPILER}'s log ({report.on_edgetpu} of {report.total})")


def require_integer_ops(model: Path) -> None:
    """Every operator int8/uint8 except the post-processing and the dequantize ops feeding it;
    batch 1 and no dynamic dimension anywhere."""
    from odplug.model import litert

    floating = [f"{op.name} (op {op.index}: {', '.join(op.types)})"
                for op in litert.float_ops(litert.ops(model))]
    if floating:
        raise OdplugError(f"{model}: the Edge TPU model has float operators before the "
                          "post-processing: " + "; ".join(floating))
    dynamic = litert.dynamic_tensors(model)
    if dynamic:
        raise OdplugError(f"{model}: the Edge TPU model has dynamic shapes: "
                          + ", ".join(dynamic[:5]))


class EdgeTPUExporter(Exporter):
    name = "edgetpu"
    summary = "Coral Edge TPU: tflite's int8 model, compiled with edgetpu_compiler if installed"
    suffix = ".tflite"
    variants = ("int8",)
    default_variants = ("int8",)
    requires = (f"{SOURCE}:int8",)

    def check(self) -> None:
        from odplug.model import litert

        litert.require_installed(f"the {self.name} exporter")

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        """The compiler-ready model (what `detector` runs) and, with the compiler, its
        ``*_edgetpu.tflite`` beside it; the manifest's ``edgetpu`` entry tells which."""
        source = inputs.get(SOURCE, {}).get("int8")
        if source is None:
            raise OdplugError(f"the {self.name} exporter builds on the {SOURCE} exporter's int8 "
                              f"model, which it was not given: export with --to {self.name} "
                              f"(which runs {SOURCE} first)")
        require_integer_ops(source.path)
        name = f"{self.name}-int8"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}{self.suffix}"
        shutil.copyfile(source.path, path)
        prediction = predict_mapping(path)
        compiler = shutil.which(COMPILER)
        if compiler is None:
            message = no_compiler_message(path)
            log.warning(message)
            entry: dict[str, object] = {"compiled": False, "note": message}
        else:
            compiled, report = compile_model(compiler, path)
            mismatch = prediction_mismatch(prediction, report)
            if mismatch:
                log.warning("%s: %s", path, mismatch)
            prediction["matches_compiler"] = not mismatch
            check_compiler_log(report, path)
            entry = {"compiled": True, "model": compiled.name,
                     "size_bytes": compiled.stat().st_size} | asdict(report)
        manifest = out / f"{name}.json"
        atomic_write_text(manifest, json.dumps(
            _manifest(source, name, path) | {"edgetpu": entry | {"prediction": prediction}},
            indent=2) + "\n")
        return [ExportedModel(exporter=self.name, variant="int8", path=path,
                              manifest=manifest, size_bytes=path.stat().st_size)]

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        """The compiler-ready model on the CPU: the Edge TPU runs the same int8 arithmetic."""
        from odplug.model import litert

        return litert.detector(exported)

    def model_at(self, path: Path) -> ExportedModel | None:
        """The compiler-ready ``edgetpu-int8.tflite`` (its manifest has the ``edgetpu``
        entry), run on the CPU as `detector` runs it; the compiled ``*_edgetpu.tflite`` needs
        the Edge TPU itself and is not claimed."""
        from odplug.model import litert

        return litert.model_at(path, self.name, edgetpu=True)

    def note(self, exported: ExportedModel) -> str:
        """The predicted mapping's summary line, from the manifest the export wrote."""
        from odplug.model import litert

        prediction = litert.read_manifest(exported).get("edgetpu", {}).get("prediction", {})
        return str(prediction.get("summary", "")) if isinstance(prediction, dict) else ""


def predict_mapping(model: Path) -> dict[str, object]:
    """Predict the compiler's mapping of `model`, write the report beside it and return what
    the manifest records; a model predicted not to map fully is a warning, not a failure (the
    compiler, where it runs, has the last word)."""
    from odplug.model.edgetpu_check import predict, write_report

    prediction = predict(model)
    data, text = write_report(prediction, model)
    if not prediction.fully_mapped:
        log.warning("%s: %s (see %s)", model, prediction.summary, text)
    return {"summary": prediction.summary, "fully_mapped": prediction.fully_mapped,
            "on_edgetpu": len(prediction.on_edgetpu), "operators": prediction.operators,
            "report": data.name, "report_text": text.name}


def _manifest(source: ExportedModel, name: str, path: Path) -> dict[str, object]:
    """The source model's manifest, for the same bytes, renamed; its labels file copied too.
    ``built_from`` is relative to the model's folder: the export folder is written under
    another name and renamed into place, so an absolute path would name a folder that is gone."""
    from odplug.model import litert

    manifest = litert.read_manifest(source)
    labels = manifest.get("labels_file")
    if labels and (source.path.parent / labels).is_file():
        shutil.copyfile(source.path.parent / labels, path.parent / labels)
    return manifest | {"name": name, "model": path.name,
                       "built_from": os.path.relpath(source.path, path.parent)}


@hookimpl(trylast=True)
def odplug_register_exporters(register):  # type: ignore[no-untyped-def]
    register(EdgeTPUExporter())
