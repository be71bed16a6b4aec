"""The edgetpu exporter: without the compiler it writes the compiler-ready int8 model and says
how to compile it; the model is integer up to the NMS op; the compiler's log is parsed and a
model the compiler could not map fails."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from odplug.errors import OdplugError
from odplug_builtins.edgetpu import (
    EdgeTPUExporter,
    check_compiler_log,
    compile_model,
    parse_compiler_log,
    require_integer_ops,
)
from odplug_builtins.tflite.runtime import Op, interpreter, ops
from tests.test_tflite import hide_module, tiny_model

# What edgetpu_compiler 16 prints for the demo detector (91 operators), in Coral's format:
# the summary on stdout, then the operation table, which the .log file repeats in full.
STDOUT = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: edgetpu-int8.tflite
Input size: 0.75MiB
Output model: edgetpu-int8_edgetpu.tflite
Output size: 0.93MiB
On-chip memory used for caching model parameters: 0.70MiB
On-chip memory remaining for caching model parameters: 7.09MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 91
Operation log: edgetpu-int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage \
of the model will instead run on the CPU, which is slower. If possible, consider updating your \
model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 88
Number of operations that will run on CPU: 3

Operator                       Count      Status

DEQUANTIZE                     2          Operation is working on an unsupported data type
CUSTOM                         1          Operation is working on an unsupported data type
... All other operators were mapped successfully. See edgetpu-int8_edgetpu.log.
Compilation child process completed within timeout period.
Compilation succeeded!
"""
LOG = """\
Edge TPU Compiler version 16.0.384591198
Input: edgetpu-int8.tflite
Output: edgetpu-int8_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        42         Mapped to Edge TPU
DEPTHWISE_CONV_2D              24         Mapped to Edge TPU
ADD                            11         Mapped to Edge TPU
RESHAPE                        6          Mapped to Edge TPU
CONCATENATION                  2          Mapped to Edge TPU
QUANTIZE                       1          Mapped to Edge TPU
MUL                            1          Mapped to Edge TPU
LOGISTIC                       1          Mapped to Edge TPU
DEQUANTIZE                     2          Operation is working on an unsupported data type
CUSTOM                         1          Operation is working on an unsupported data type
"""
REGRESSED = LOG.replace(
    "RESHAPE                        6          Mapped to Edge TPU",
    "RESHAPE                        5          Mapped to Edge TPU\n"
    "RESHAPE                        1          Operation is otherwise supported, but not mapped "
    "due to some unspecified limitation")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, registry) -> dict:  # type: ignore[no-untyped-def]
    return tiny_model(tmp_path_factory, registry)


@pytest.fixture(scope="module")
def without_compiler(tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    empty = tmp_path_factory.mktemp("no-compiler-bin")
    out = tmp_path_factory.mktemp("edgetpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(empty))
        handler = _Records()
        logging.getLogger("odplug_builtins.edgetpu").addHandler(handler)
        try:
            (model,) = EdgeTPUExporter().export(tiny["saved"], out, variants=["int8"],
                                                records=tiny["records"])
        finally:
            logging.getLogger("odplug_builtins.edgetpu").removeHandler(handler)
    return {"model": model, "messages": handler.messages}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_without_the_compiler_the_compiler_ready_model_and_one_clear_line(
        without_compiler: dict) -> None:
    model = without_compiler["model"]
    assert model.name == "edgetpu-int8" and model.path.is_file()
    (message,) = without_compiler["messages"]
    assert "\n" not in message
    assert "edgetpu_compiler not found" in message and str(model.path) in message
    assert "dockerfiles/edgetpu.Dockerfile" in message
    manifest = json.loads(model.manifest.read_text())
    assert manifest["edgetpu"] == {"compiled": False, "note": message}
    assert not list(model.path.parent.glob("*_edgetpu.tflite"))


def test_the_model_is_uint8_in_static_and_integer_up_to_the_nms(without_compiler: dict) -> None:
    path = without_compiler["model"].path
    runtime = interpreter(path)
    (inp,) = runtime.get_input_details()
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    assert all(int(n) > 0 for d in runtime.get_tensor_details() for n in d["shape_signature"])
    assert inp["shape"][0] == 1
    found = ops(path)
    require_integer_ops(path.read_bytes(), found)  # raises on a float op
    assert [op.name for op in found if op.is_float] == [
        "DEQUANTIZE", "DEQUANTIZE", "TFLite_Detection_PostProcess"]


def test_a_float_operator_is_named(without_compiler: dict) -> None:
    path = without_compiler["model"].path
    found = ops(path)
    sneaked = Op(999, "CONV_2D", (1, 2), (3,), ("float32", "float32", "float32"))
    with pytest.raises(OdplugError, match=r"float operators .*CONV_2D \(op 999"):
        require_integer_ops(path.read_bytes(), [*found, sneaked])


def test_the_detector_runs_the_compiler_ready_model(without_compiler: dict, tiny: dict) -> None:
    from odplug.model.tfdata import record_dataset

    files = sorted(tiny["records"].glob("test.record-*"))
    image = next(record_dataset(files).as_numpy_iterator())["image"]
    found = EdgeTPUExporter().detector(without_compiler["model"])(image)
    assert len(found.boxes) == len(found.classes) == len(found.scores)
    assert set(found.classes.tolist()) <= {1, 2, 3}


def test_the_compiler_log_is_parsed() -> None:
    report = parse_compiler_log(STDOUT + "\n" + LOG)
    assert report.version == "16.0.384591198"
    assert (report.on_edgetpu, report.on_cpu, report.total, report.subgraphs) == (88, 3, 91, 1)
    assert sum(count for _op, count, _status in report.operators) == 91
    assert [row[0] for row in report.not_mapped()] == ["DEQUANTIZE", "CUSTOM"]
    check_compiler_log(report, Path("m.tflite"))  # the NMS op and its inputs on the CPU: fine


def test_an_operator_left_on_the_cpu_fails() -> None:
    report = parse_compiler_log(STDOUT + "\n" + REGRESSED)
    with pytest.raises(OdplugError, match="m.tflite: operators left on the CPU .*RESHAPE x1"):
        check_compiler_log(report, Path("m.tflite"))
    split = parse_compiler_log(LOG + "Number of Edge TPU subgraphs: 2\n")
    with pytest.raises(OdplugError, match="2 Edge TPU subgraphs"):
        check_compiler_log(split, Path("m.tflite"))
    with pytest.raises(OdplugError, match="no operation table"):
        check_compiler_log(parse_compiler_log("Edge TPU Compiler version 16\n"), Path("m.tflite"))


def _fake_compiler(folder: Path, log: str, exit_code: int = 0) -> Path:
    """A stand-in for edgetpu_compiler with its command line, outputs and log file."""
    (folder / "log.txt").write_text(log)
    (folder / "stdout.txt").write_text(STDOUT)
    script = folder / "edgetpu_compiler"
    script.write_text(f"""#!{sys.executable}
import pathlib, shutil, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out_dir") + 1])
model = pathlib.Path(args[-1])
here = pathlib.Path(__file__).parent
print((here / "stdout.txt").read_text())
if {exit_code}:
    print("ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'")
    sys.exit({exit_code})
shutil.copy(model, out / (model.stem + "_edgetpu.tflite"))
(out / (model.stem + "_edgetpu.log")).write_text((here / "log.txt").read_text())
""")
    script.chmod(0o755)
    return script


def test_the_compiler_is_run_and_its_log_read(without_compiler: dict, tmp_path: Path) -> None:
    model = tmp_path / "edgetpu-int8.tflite"
    shutil.copy(without_compiler["model"].path, model)
    compiled, report = compile_model(str(_fake_compiler(tmp_path, LOG)), model)
    assert compiled == tmp_path / "edgetpu-int8_edgetpu.tflite" and compiled.is_file()
    assert report.on_edgetpu == 88 and ("CONV_2D", 42, "Mapped to Edge TPU") in report.operators
    check_compiler_log(report, model)


def test_a_failing_compiler_is_reported(without_compiler: dict, tmp_path: Path) -> None:
    model = tmp_path / "edgetpu-int8.tflite"
    shutil.copy(without_compiler["model"].path, model)
    with pytest.raises(OdplugError, match=r"edgetpu_compiler failed \(exit 1\).*CONV_2D"):
        compile_model(str(_fake_compiler(tmp_path, LOG, exit_code=1)), model)


def test_check_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "tensorflow")
    with pytest.raises(OdplugError, match="'tensorflow'.*dockerfiles/requirements/tf.txt"):
        EdgeTPUExporter().check()


def test_registered_as_a_built_in_that_requires_tflite(registry) -> None:  # type: ignore[no-untyped-def]
    exporter = registry.exporters["edgetpu"]
    assert isinstance(exporter, EdgeTPUExporter)
    assert exporter.requires == ("tflite",) and "tflite" in registry.exporters
    assert registry.owner("exporters", "edgetpu") == "edgetpu"


@pytest.mark.skipif(shutil.which("edgetpu_compiler") is None,
                    reason="edgetpu_compiler is not on PATH: it comes only from Coral's apt "
                    "repository (dockerfiles/edgetpu.Dockerfile); run this test in that image")
def test_the_real_compiler_maps_everything_before_the_postprocessing(
        tiny: dict, tmp_path: Path) -> None:
    (model,) = EdgeTPUExporter().export(tiny["saved"], tmp_path, variants=["int8"],
                                        records=tiny["records"])
    manifest = json.loads(model.manifest.read_text())
    assert manifest["edgetpu"]["compiled"] is True
    assert list(tmp_path.glob("*_edgetpu.tflite"))
