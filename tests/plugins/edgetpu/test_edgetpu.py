"""The edgetpu exporter: it takes the int8 model the tflite exporter wrote (converted once, never
by importing that plugin); without the compiler it writes the compiler-ready model and says how
to compile it; the model is integer up to the NMS op; the compiler's log is parsed and a model
the compiler could not map fails; the predicted mapping (odplug.model.edgetpu_check) is written
beside the model, recorded in the manifest, shown in the verification table and held against the
compiler's log."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from odplug.errors import OdplugError
from odplug.exports import plan as exporting
from odplug.model.contract import validate_detector
from odplug.model.edgetpu_check import predict
from odplug.model.litert import POSTPROCESS_OP, Op, float_ops, interpreter, ops
from odplug.trained import TrainedDetector
from odplug_builtins.edgetpu import (
    EdgeTPUExporter,
    check_compiler_log,
    compile_model,
    parse_compiler_log,
    prediction_mismatch,
    require_integer_ops,
)
from odplug_builtins.tflite import TFLiteExporter
from tests.support.detectors import TinyRun
from tests.support.tools import ROOT, hide_module

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


def export_edgetpu(registry, tiny_run: TinyRun, out: Path) -> dict:  # type: ignore[no-untyped-def]
    """``model.export --to edgetpu --quantize int8`` through the core, counting the variants
    the tflite exporter converts and keeping what edgetpu logs."""
    import odplug_builtins.tflite.export as tflite_export

    converted: list[tuple[str, bool]] = []
    real = tflite_export.convert

    def counting(trained, variant, calibration=None, *, per_channel=False):  # type: ignore[no-untyped-def]
        converted.append((variant, per_channel))
        return real(trained, variant, calibration, per_channel=per_channel)

    handler = _Records()
    logging.getLogger("odplug_builtins.edgetpu").addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tflite_export, "convert", counting)
            exporters = exporting.plan(registry, ["edgetpu"])
            variants = exporting.variants_for(exporters, ["int8"])
            written = exporting.export_all(exporters, tiny_run.saved_model, out, variants,
                                           tiny_run.records)
    finally:
        logging.getLogger("odplug_builtins.edgetpu").removeHandler(handler)
    return {"models": {model.name: model for _, model in written}, "converted": converted,
            "variants": variants, "messages": handler.messages}


@pytest.fixture(scope="module")
def exported(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory, registry) -> dict:  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(tmp_path_factory.mktemp("no-compiler-bin")))
        return export_edgetpu(registry, tiny_run, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def without_compiler(exported: dict) -> dict:
    return {"model": exported["models"]["edgetpu-int8"], "messages": exported["messages"]}


@pytest.fixture(scope="module")
def trained(tiny_run: TinyRun) -> TrainedDetector:
    return validate_detector(tiny_run.saved_model)


@pytest.fixture(scope="module")
def float_model(trained: TrainedDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detector as a float32 .tflite, from the tflite exporter."""
    out = tmp_path_factory.mktemp("float")
    (model,) = TFLiteExporter().export(trained, out, variants=["float32"])
    return model.path


def test_int8_is_converted_once_and_the_edgetpu_model_is_tflites(exported: dict) -> None:
    assert exported["variants"] == {"tflite": ["int8"], "edgetpu": ["int8"]}
    # tflite converts int8 once per weight quantization, to keep the better; edgetpu converts none
    assert sorted(exported["converted"]) == [("int8", False), ("int8", True)]
    models = exported["models"]
    assert list(models) == ["tflite-int8", "edgetpu-int8"]
    tflite, edgetpu = models["tflite-int8"], models["edgetpu-int8"]
    assert edgetpu.path.parent.name == "edgetpu" and tflite.path.parent.name == "tflite"
    assert edgetpu.path.read_bytes() == tflite.path.read_bytes()
    assert edgetpu.size_bytes == tflite.size_bytes
    manifest = json.loads(edgetpu.manifest.read_text())
    assert manifest["name"] == "edgetpu-int8" and manifest["model"] == edgetpu.path.name
    assert (edgetpu.path.parent / manifest["built_from"]).resolve() == tflite.path.resolve()
    assert manifest["label_ids"] == [1, 2, 3]
    assert (edgetpu.path.parent / manifest["labels_file"]).read_text().splitlines() == [
        "circle", "square", "triangle"]
    # the weight quantization tflite chose, per-channel or per-tensor, reaches the Edge TPU as is
    assert manifest["quantization"] == json.loads(tflite.manifest.read_text())["quantization"]
    assert manifest["quantization"]["weights"] in ("per-channel", "per-tensor")


def test_without_tflites_int8_model_edgetpu_says_so(trained: TrainedDetector,
                                                    tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match="builds on the tflite exporter's int8 model, which it "
                                          "was not given: export with --to edgetpu"):
        EdgeTPUExporter().export(trained, tmp_path, variants=["int8"])
    assert not list(tmp_path.iterdir())


def test_no_built_in_plugin_imports_another() -> None:
    """The import-linter contract in pyproject.toml: edgetpu reaches tflite's output through
    the core, never its modules; the same holds between every two built-ins.

    In a subprocess: import-linter's command configures logging with ``dictConfig``, which
    disables every logger that exists already, and would silence odplug's warnings for the
    rest of this test process.
    """
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache",
                           "--contract", "builtins-independent"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "1 kept, 0 broken" in done.stdout, done.stdout[-1000:]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_without_the_compiler_the_compiler_ready_model_and_one_clear_line(
        without_compiler: dict) -> None:
    model = without_compiler["model"]
    assert (model.exporter, model.variant, model.name) == ("edgetpu", "int8", "edgetpu-int8")
    assert model.path.is_file()
    (message,) = without_compiler["messages"]
    assert "\n" not in message
    assert "edgetpu_compiler not found" in message and str(model.path) in message
    assert "dockerfiles/edgetpu.Dockerfile" in message
    manifest = json.loads(model.manifest.read_text())
    assert {k: v for k, v in manifest["edgetpu"].items() if k != "prediction"} == {
        "compiled": False, "note": message}
    assert not list(model.path.parent.glob("*_edgetpu.tflite"))


def test_the_detector_is_predicted_fully_mapped_up_to_the_postprocessing(
        without_compiler: dict) -> None:
    """The prediction from the file alone: every operator but the NMS op and the two
    DEQUANTIZE ops feeding it on the Edge TPU, in one subgraph; its report beside the model,
    its summary in the manifest and in the verification table's notes."""
    model = without_compiler["model"]
    prediction = predict(model.path)
    before = prediction.operators - 3
    summary = f"predicted: all {before} operators before the post-processing on the Edge TPU " \
              "(1 subgraph)"
    assert prediction.summary == summary, prediction.to_text()
    assert [op.name for op in ops(model.path) if op.index in prediction.postprocessing] == [
        "DEQUANTIZE", "DEQUANTIZE", POSTPROCESS_OP]
    assert prediction.findings == [] and len(prediction.on_edgetpu) == before
    recorded = json.loads(model.manifest.read_text())["edgetpu"]["prediction"]
    assert recorded["summary"] == summary and recorded["fully_mapped"] is True
    assert (model.path.parent / recorded["report"]).is_file()
    assert (model.path.parent / recorded["report_text"]).read_text().startswith(summary)
    assert EdgeTPUExporter().note(model) == summary
    assert not any("predicted" in message for message in without_compiler["messages"])


def test_the_verification_tables_edgetpu_row_shows_the_prediction(without_compiler: dict,
                                                                  tiny_run: TinyRun) -> None:
    from odplug.data.labelmap import read_label_map
    from odplug.exports.verify import to_markdown, verify

    model = without_compiler["model"]
    files = sorted(tiny_run.records.glob("test.record-*"))
    rows = verify(tiny_run.saved_model, [(EdgeTPUExporter(), model)], files,
                  read_label_map(tiny_run.records / "label_map.pbtxt"), limit=1)
    assert [row.note for row in rows] == ["", predict(model.path).summary]
    (line,) = [line for line in to_markdown(rows).splitlines() if line.startswith("| edgetpu")]
    assert line.endswith(" operators before the post-processing on the Edge TPU (1 subgraph) |")


def test_the_model_is_uint8_in_static_and_integer_up_to_the_nms(without_compiler: dict) -> None:
    path = without_compiler["model"].path
    runtime = interpreter(path)
    (inp,) = runtime.get_input_details()
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    assert all(int(n) > 0 for d in runtime.get_tensor_details() for n in d["shape_signature"])
    assert inp["shape"][0] == 1
    found = ops(path)
    require_integer_ops(path)  # raises on a float op
    assert [op.name for op in found if op.is_float] == [
        "DEQUANTIZE", "DEQUANTIZE", "TFLite_Detection_PostProcess"]


@pytest.mark.slow
def test_a_float_model_is_refused_naming_its_float_operators(float_model: Path) -> None:
    with pytest.raises(OdplugError, match=rf"^{float_model}: the Edge TPU model has float "
                                          r"operators before the post-processing: \w+ \(op \d+: "
                                          "float32"):
        require_integer_ops(float_model)


def test_only_the_nms_op_and_the_dequantize_ops_feeding_it_may_be_float() -> None:
    floats = ("float32", "float32")
    found = [Op(0, "CONV_2D", (0,), (1,), ("int8", "int8")),
             Op(1, "DEQUANTIZE", (1,), (2,), ("int8", "float32")),
             Op(2, "DEQUANTIZE", (1,), (3,), ("int8", "float32")),
             Op(3, POSTPROCESS_OP, (2, 4), (5,), floats),
             Op(4, "DEQUANTIZE", (1,), (4,), ("int8", "float32")),
             Op(5, "ADD", (3, 3), (6,), floats)]
    assert [op.index for op in float_ops(found)] == [2, 5]


def test_the_detector_runs_the_compiler_ready_model(without_compiler: dict,
                                                   tiny_run: TinyRun) -> None:
    from odplug.model.tfdata import record_dataset

    files = sorted(tiny_run.records.glob("test.record-*"))
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


def test_a_prediction_the_compiler_contradicts_is_named() -> None:
    report = parse_compiler_log(STDOUT + "\n" + LOG)
    assert prediction_mismatch({"on_edgetpu": 88, "operators": 91}, report) == ""
    assert prediction_mismatch({"on_edgetpu": 80, "operators": 91}, report) == (
        "the prediction (80 of 91 operators on the Edge TPU) differs from edgetpu_compiler's "
        "log (88 of 91)")


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


def test_with_a_compiler_its_log_is_held_against_the_prediction(
        tiny_run: TinyRun, tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    """The stand-in compiler logs the 91-operator demo detector's table, not the tiny one's:
    the export still succeeds, with the disagreement in the manifest and in a warning."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_compiler(bin_dir, LOG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(bin_dir))
        done = export_edgetpu(registry, tiny_run, tmp_path / "out")
    model = done["models"]["edgetpu-int8"]
    entry = json.loads(model.manifest.read_text())["edgetpu"]
    assert entry["compiled"] is True and entry["on_edgetpu"] == 88
    assert entry["prediction"]["matches_compiler"] is False
    (warning,) = done["messages"]
    assert "differs from edgetpu_compiler's log (88 of 91)" in warning


def test_a_failing_compiler_is_reported(without_compiler: dict, tmp_path: Path) -> None:
    model = tmp_path / "edgetpu-int8.tflite"
    shutil.copy(without_compiler["model"].path, model)
    with pytest.raises(OdplugError, match=r"edgetpu_compiler failed \(exit 1\).*CONV_2D"):
        compile_model(str(_fake_compiler(tmp_path, LOG, exit_code=1)), model)


def test_check_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "tensorflow")
    with pytest.raises(OdplugError, match="'tensorflow'.*dockerfiles/requirements/tf.txt"):
        EdgeTPUExporter().check()


@pytest.mark.skipif(shutil.which("edgetpu_compiler") is None,
                    reason="edgetpu_compiler is not on PATH: it comes only from Coral's apt "
                    "repository (dockerfiles/edgetpu.Dockerfile); run this test in that image")
def test_the_prediction_matches_the_compilers_own_table(without_compiler: dict,
                                                        tmp_path: Path) -> None:
    model = tmp_path / "edgetpu-int8.tflite"
    shutil.copy(without_compiler["model"].path, model)
    prediction = predict(model)
    _compiled, report = compile_model(shutil.which("edgetpu_compiler") or "", model)
    assert report.on_edgetpu == len(prediction.on_edgetpu), prediction.to_text()
    assert report.on_cpu == len(prediction.postprocessing) + len(prediction.left_on_cpu)
    assert report.subgraphs == prediction.subgraphs
    assert prediction_mismatch({"on_edgetpu": len(prediction.on_edgetpu),
                                "operators": prediction.operators}, report) == ""
    unmapped = sorted(op for op, count, _status in report.not_mapped() for _ in range(count))
    names = {op.index: op.name for op in ops(model)}
    expected = [names[i] for i in prediction.postprocessing + prediction.left_on_cpu]
    assert unmapped == sorted("CUSTOM" if n == POSTPROCESS_OP else n for n in expected)


def test_registered_as_a_built_in_that_requires_tflite(registry) -> None:  # type: ignore[no-untyped-def]
    exporter = registry.exporters["edgetpu"]
    assert isinstance(exporter, EdgeTPUExporter)
    assert exporter.requires == ("tflite:int8",) and "tflite" in registry.exporters
    assert registry.owner("exporters", "edgetpu") == "edgetpu"


@pytest.mark.skipif(shutil.which("edgetpu_compiler") is None,
                    reason="edgetpu_compiler is not on PATH: it comes only from Coral's apt "
                    "repository (dockerfiles/edgetpu.Dockerfile); run this test in that image")
def test_the_real_compiler_maps_everything_before_the_postprocessing(
        tiny_run: TinyRun, tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    model = export_edgetpu(registry, tiny_run, tmp_path)["models"]["edgetpu-int8"]
    manifest = json.loads(model.manifest.read_text())
    assert manifest["edgetpu"]["compiled"] is True
    assert list((tmp_path / "edgetpu").glob("*_edgetpu.tflite"))
