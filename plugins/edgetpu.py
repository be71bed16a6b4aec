"""Built-in exporter ``edgetpu``: a full-integer model for Coral's Edge TPU, compiled when possible.

The model is the ``tflite`` exporter's int8 variant (uint8 pixels in, calibrated on the training
records), held to what the Edge TPU needs: batch 1, static shapes, and every operator int8
except ``TFLite_Detection_PostProcess`` and the dequantize ops that feed it, which run on the
CPU by design. When ``edgetpu_compiler`` is on PATH it compiles the model and its log must show
every other operator mapped to the Edge TPU; without it, the compiler-ready model is written
and the manifest says how to compile it. SELECT_TF_OPS are never used: the Edge TPU runtime has
no TensorFlow kernels.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from odplug import hookimpl
from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel, Exporter
from odplug.errors import OdplugError
from odplug_builtins.tflite import POSTPROCESS_OP, TFLiteExporter, check_variants, tflite_detector

if TYPE_CHECKING:
    from odplug_builtins.tflite.runtime import Op

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
COMPILER_TIMEOUT_S = 600
CPU_BY_DESIGN = frozenset({"CUSTOM", POSTPROCESS_OP, "DEQUANTIZE"})
"""Operators on the CPU in every Edge TPU detector: the NMS op and the dequantize ops feeding it."""
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


def require_integer_ops(model: bytes, found: list[Op]) -> None:
    """Every operator int8/uint8 except the post-processing and the dequantize ops feeding it;
    batch 1 and no dynamic dimension anywhere."""
    from odplug_builtins.tflite import runtime

    postprocess_inputs = {i for op in found if op.name == POSTPROCESS_OP for i in op.inputs}
    floating = [
        f"{op.name} (op {op.index}: {', '.join(op.types)})" for op in found
        if op.is_float and op.name != POSTPROCESS_OP
        and not (op.name == "DEQUANTIZE" and set(op.outputs) <= postprocess_inputs)
    ]
    if floating:
        raise OdplugError("the Edge TPU model has float operators before the post-processing: "
                          + "; ".join(floating))
    dynamic = [detail["name"] for detail in runtime.interpreter(model).get_tensor_details()
               if any(int(n) < 0 for n in detail["shape_signature"])]
    if dynamic:
        raise OdplugError("the Edge TPU model has dynamic shapes: " + ", ".join(dynamic[:5]))


class EdgeTPUExporter(Exporter):
    name = "edgetpu"
    summary = "Coral Edge TPU: int8 TFLite, compiled with edgetpu_compiler when it is installed"
    suffix = ".tflite"
    variants = ("int8",)
    default_variants = ("int8",)
    requires = ("tflite",)

    def check(self) -> None:
        TFLiteExporter().check()

    def export(self, saved_model: Path, out: Path, *, variants: Sequence[str],
               records: Path | None = None) -> list[ExportedModel]:
        """The compiler-ready model (what `detector` runs) and, with the compiler, its
        ``*_edgetpu.tflite`` beside it; the manifest's ``edgetpu`` entry tells which."""
        check_variants(self, variants)
        from odplug_builtins.tflite.export import calibration, export_variant
        from odplug_builtins.tflite.source import load_source

        calibrate = calibration(records)
        source = load_source(saved_model)
        exported = export_variant(source, "int8", out, name=f"{self.name}-int8",
                                  calibrate=calibrate(source.input_size),
                                  check=require_integer_ops)
        compiler = shutil.which(COMPILER)
        if compiler is None:
            message = no_compiler_message(exported.path)
            log.warning(message)
            entry: dict[str, object] = {"compiled": False, "note": message}
        else:
            compiled, report = compile_model(compiler, exported.path)
            check_compiler_log(report, exported.path)
            entry = {"compiled": True, "model": compiled.name,
                     "size_bytes": compiled.stat().st_size} | asdict(report)
        manifest = json.loads(exported.manifest.read_text(encoding="utf-8"))
        manifest["edgetpu"] = entry
        atomic_write_text(exported.manifest, json.dumps(manifest, indent=2) + "\n")
        return [exported]

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        """The compiler-ready model on the CPU: the Edge TPU runs the same int8 arithmetic."""
        return tflite_detector(exported)


@hookimpl(trylast=True)
def odplug_register_exporters(register):  # type: ignore[no-untyped-def]
    register(EdgeTPUExporter())
