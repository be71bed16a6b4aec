"""The Edge TPU compatibility prediction (odplug.model.edgetpu_check): tiny models converted by
TFLiteConverter, each built to break one rule, are flagged with that rule's name and split where
the compiler would split them; a model that keeps every rule is predicted fully mapped; the
per-operator limits are checked on operators built by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.exports.verify import Row, to_markdown
from odplug.model.edgetpu_check import (
    MAX_VERSION,
    RULES,
    SUPPORTED_OPS,
    Operator,
    Tensor,
    limit_breaks,
    predict,
    read_model,
    write_report,
)

SHAPE = (1, 8, 8, 3)
RNG = np.random.default_rng(0)
FILTER = tf.constant(RNG.normal(size=(3, 3, 3, 4)).astype(np.float32))
FILTER2 = tf.constant(RNG.normal(size=(1, 1, 4, 4)).astype(np.float32))


def convert(body: Callable[[tf.Tensor], tf.Tensor], out: Path, *, shape: tuple = SHAPE,
            integer_io: bool = True) -> Path:
    """`body` as a full-integer .tflite (int8 in and out unless `integer_io` is False),
    calibrated on random images of the static parts of `shape`."""
    function = tf.function(body, input_signature=[tf.TensorSpec(shape, tf.float32)])
    concrete = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    size = [n or 8 for n in shape]
    converter.representative_dataset = lambda: (
        [RNG.random(size, dtype=np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if integer_io:
        converter.inference_input_type = converter.inference_output_type = tf.int8
    out.write_bytes(converter.convert())
    return out


def conv(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.relu(tf.nn.conv2d(x, FILTER, 1, "SAME"))


def conv2(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.conv2d(x, FILTER2, 1, "SAME")


def names(path: Path) -> list[str]:
    return [op.name for op in read_model(path)]


def test_a_model_that_keeps_every_rule_is_predicted_fully_mapped(tmp_path: Path) -> None:
    model = convert(lambda x: conv2(conv(x)), tmp_path / "good.tflite")
    prediction = predict(model)
    assert names(model) == ["CONV_2D", "CONV_2D"]
    assert prediction.findings == [] and prediction.first_unsupported is None
    assert prediction.on_edgetpu == [0, 1] and prediction.left_on_cpu == []
    assert prediction.summary == "predicted: all 2 operators on the Edge TPU (1 subgraph)"


def test_float_input_and_output_are_flagged_full_integer_outside_the_subgraph(
        tmp_path: Path) -> None:
    """Float in and out: the QUANTIZE of the input computes on float32 and stays on the CPU
    ahead of the subgraph (as the compiler logs show), the convolutions still map, and the
    DEQUANTIZE of the output is not in Coral's table."""
    model = convert(lambda x: conv2(conv(x)), tmp_path / "float-io.tflite", integer_io=False)
    assert names(model) == ["QUANTIZE", "CONV_2D", "CONV_2D", "DEQUANTIZE"]
    prediction = predict(model)
    first = prediction.first_unsupported
    assert first is not None and (first.index, first.op, first.rule) == (0, "QUANTIZE",
                                                                          "full-integer")
    assert "float32" in first.detail
    assert prediction.on_edgetpu == [1, 2] and prediction.left_on_cpu == [0, 3]
    assert ("DEQUANTIZE", "unsupported-op") in {(f.op, f.rule) for f in prediction.findings}
    assert prediction.summary.startswith("predicted: 2 of 4 operators on the Edge TPU "
                                         "(1 subgraph); op 0 (QUANTIZE) breaks full-integer")


def test_a_float_op_between_integer_ones_is_flagged_full_integer(tmp_path: Path) -> None:
    """An ADD kept in float by LiteRT's selective quantization (its debugger's denylist), as a
    converter does for an op it cannot quantize: the DEQUANTIZE before it cuts the graph, the
    ADD breaks full-integer, and the convolution after it stays on the CPU."""
    function = tf.function(lambda x: conv2(conv(x) + 1.0),
                           input_signature=[tf.TensorSpec(SHAPE, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def images():  # type: ignore[no-untyped-def]
        return ([RNG.random(SHAPE, dtype=np.float32)] for _ in range(8))

    converter.representative_dataset = images
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=images,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["ADD"]))
    model = tmp_path / "float-add.tflite"
    model.write_bytes(debugger.get_nondebug_quantized_model())
    assert names(model) == ["QUANTIZE", "CONV_2D", "DEQUANTIZE", "ADD", "QUANTIZE", "CONV_2D",
                            "DEQUANTIZE"]
    prediction = predict(model)
    rules_of = {(f.index, f.op): f.rule for f in prediction.findings}
    assert rules_of[(3, "ADD")] == "full-integer"
    first = prediction.first_unsupported
    assert first is not None and (first.index, first.rule) == (0, "full-integer")
    assert prediction.on_edgetpu == [1] and prediction.left_on_cpu == [0, 2, 3, 4, 5, 6]
    assert prediction.placement[5]["placement"] == "cpu (downstream)"


def test_an_unsupported_op_cuts_the_graph(tmp_path: Path) -> None:
    """LEAKY_RELU has an int8 kernel in LiteRT but is not in Coral's table: it and the
    convolution after it run on the CPU."""
    model = convert(lambda x: conv2(tf.nn.leaky_relu(tf.nn.conv2d(x, FILTER, 1, "SAME"))),
                    tmp_path / "leaky.tflite")
    assert names(model) == ["CONV_2D", "LEAKY_RELU", "CONV_2D"]
    prediction = predict(model)
    first = prediction.first_unsupported
    assert first is not None and (first.index, first.rule) == (1, "unsupported-op")
    assert prediction.on_edgetpu == [0] and prediction.left_on_cpu == [1, 2]
    assert prediction.summary == (
        "predicted: 1 of 3 operators on the Edge TPU (1 subgraph); op 1 (LEAKY_RELU) breaks "
        "unsupported-op: LEAKY_RELU is not in Coral's supported-operations table; 2 left on "
        "the CPU")


def test_a_5d_tensor_breaks_the_rank_rule(tmp_path: Path) -> None:
    def body(x: tf.Tensor) -> tf.Tensor:
        halves = tf.constant([0.5, -0.5], shape=(1, 2, 1, 1, 1))
        five = tf.reshape(conv(x), (1, 2, 4, 8, 4)) + halves  # an ADD on a 5-D tensor
        return conv2(tf.reshape(five, (1, 8, 8, 4)))

    model = convert(body, tmp_path / "rank5.tflite")
    prediction = predict(model)
    first = prediction.first_unsupported
    assert first is not None and first.rule == "tensor-rank", prediction.findings
    assert "[1, 2, 4, 8, 4]" in first.detail
    assert first.index in prediction.left_on_cpu and 0 in prediction.on_edgetpu


def test_a_dynamic_shape_breaks_the_static_shape_rule(tmp_path: Path) -> None:
    model = convert(conv, tmp_path / "dynamic.tflite", shape=(1, None, None, 3))
    prediction = predict(model)
    first = prediction.first_unsupported
    assert first is not None and (first.index, first.rule) == (0, "static-shape")
    assert "-1" in first.detail
    assert prediction.on_edgetpu == []
    assert prediction.summary.startswith("predicted: 0 of 1 operators on the Edge TPU "
                                         "(0 subgraphs); op 0 (CONV_2D) breaks static-shape")


def with_version(model: Path, op: str, version: int, out: Path) -> Path:
    """`model` with `op`'s version field rewritten through the schema's object API."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model.read_bytes(), 0)
    number = getattr(schema.BuiltinOperator, op)
    for code in tree.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == number:
            code.version = version
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def test_a_too_new_op_version_is_refused_and_the_limit_named(tmp_path: Path) -> None:
    good = convert(lambda x: conv2(conv(x)), tmp_path / "good.tflite")
    newest = MAX_VERSION["CONV_2D"][0]
    assert predict(with_version(good, "CONV_2D", newest, tmp_path / "ok.tflite")).fully_mapped
    model = with_version(good, "CONV_2D", newest + 1, tmp_path / "v6.tflite")
    assert [op.version for op in read_model(model)] == [newest + 1] * 2
    prediction = predict(model)
    first = prediction.first_unsupported
    assert prediction.refused and first is not None and first.rule == "op-version"
    assert prediction.on_edgetpu == [] and prediction.subgraphs == 0
    assert {p["placement"] for p in prediction.placement} == {"not compiled"}
    assert prediction.summary == (
        f"predicted: edgetpu_compiler 16.0 refuses the model: op 0 (CONV_2D) breaks op-version: "
        f"version {newest + 1}, compiler 16.0 reads up to {newest}")


def test_the_report_is_written_beside_the_model(tmp_path: Path) -> None:
    model = convert(tf.nn.leaky_relu, tmp_path / "m.tflite")
    prediction = predict(model)
    data, text = write_report(prediction, model)
    assert (data.name, text.name) == ("m.tflite.edgetpu-report.json", "m.tflite.edgetpu-report.txt")
    report = json.loads(data.read_text())
    assert report["summary"] == prediction.summary and report["compiler"].endswith("16.0")
    assert report["first_unsupported"]["rule"] == "unsupported-op"
    assert set(report["rules"]) == set(RULES)
    assert "coral.ai/docs/edgetpu/models-intro" in report["sources"]["operators"]
    assert text.read_text().splitlines()[0] == prediction.summary
    assert "LEAKY_RELU" in text.read_text() and "unsupported-op" in text.read_text()


def test_a_file_that_is_not_a_model_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(OdplugError, match=rf"^{bad}: not a TFLite flatbuffer"):
        predict(bad)
    good = convert(conv, tmp_path / "good.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(good[:len(good) // 3])
    with pytest.raises(OdplugError, match=rf"^{cut}: a damaged TFLite flatbuffer"):
        predict(cut)
    with pytest.raises(OdplugError, match="cannot read the model"):
        predict(tmp_path / "missing.tflite")


def activation(shape: tuple[int, ...], dtype: str = "INT8") -> Tensor:
    return Tensor(0, "t", dtype, shape, shape, None)


def constant(values: list, dtype: str = "INT32") -> Tensor:
    value = np.asarray(values, np.int32 if dtype == "INT32" else np.int8)
    return Tensor(1, "c", dtype, value.shape, value.shape, value)


def options(schema_class: str, **fields: int) -> object:
    from ai_edge_litert import schema_py_generated as schema

    made = getattr(schema, schema_class)()
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def rules(op: Operator) -> list[str]:
    return [rule for rule, _detail in limit_breaks(op)]


def test_the_per_operator_limits() -> None:
    x = activation((1, 4, 4, 8))
    concat = options("ConcatenationOptionsT", axis=3, fusedActivationFunction=1)
    assert rules(Operator(0, "CONCATENATION", 1, (x, x), (x,), concat)) == ["fused-activation"]
    plain = options("ConcatenationOptionsT", axis=3)
    zeros, ones = constant([[[[0] * 8]]], "INT8"), constant([[[[1] * 8]]], "INT8")
    assert rules(Operator(0, "CONCATENATION", 1, (x, zeros), (x,), plain)) == []
    assert rules(Operator(0, "CONCATENATION", 1, (x, ones), (x,), plain)) == ["concat-constant"]
    assert rules(Operator(0, "CONCATENATION", 1, (x, x, zeros), (x,), plain)) == [
        "concat-constant"]
    real_zeros = Tensor(1, "c", "INT8", (1, 1, 1, 8), (1, 1, 1, 8), np.full(8, -128, np.int8),
                        zero_point=-128)  # 0.0 in a tensor whose zero point is -128
    assert rules(Operator(0, "CONCATENATION", 1, (x, real_zeros), (x,), plain)) == []
    not_zero = Tensor(1, "c", "INT8", (1, 1, 1, 8), (1, 1, 1, 8), np.zeros(8, np.int8),
                      zero_point=-128)  # the integer 0 stands for 128 * scale here
    assert rules(Operator(0, "CONCATENATION", 1, (x, not_zero), (x,), plain)) == [
        "concat-constant"]
    dilated = options("Conv2DOptionsT", dilationHFactor=2, dilationWFactor=1)
    assert rules(Operator(0, "CONV_2D", 3, (x,), (x,), dilated)) == ["dilation"]
    even = options("Conv2DOptionsT", dilationHFactor=2, dilationWFactor=2)
    assert rules(Operator(0, "CONV_2D", 3, (x,), (x,), even)) == []
    reducer = options("ReducerOptionsT")
    assert rules(Operator(0, "MEAN", 1, (x, constant([1, 2])), (x,), reducer)) == []
    assert rules(Operator(0, "MEAN", 1, (x, constant([0])), (x,), reducer)) == ["batch-axis"]
    assert rules(Operator(0, "SUM", 1, (x, constant([-4])), (x,), reducer)) == ["batch-axis"]
    assert rules(Operator(0, "MEAN", 1, (x, constant([3])), (x,), reducer)) == []
    six = activation((1, 4, 4, 6))
    for axes in ([3], [-1]):
        assert rules(Operator(0, "MEAN", 1, (six, constant(axes)), (six,), reducer)) == [
            "mean-channels"]
    pads = constant([[0, 0], [1, 1], [1, 1], [0, 0]])
    assert rules(Operator(0, "PAD", 1, (x, pads), (x,), None)) == []
    batch_pads = constant([[1, 0], [1, 1], [1, 1], [0, 0]])
    assert rules(Operator(0, "PAD", 1, (x, batch_pads), (x,), None)) == ["batch-axis"]
    flat = activation((1, 16000))
    assert rules(Operator(0, "SOFTMAX", 1, (flat,), (flat,), None)) == []
    for shape in [(1, 16001), (1, 4, 8)]:
        big = activation(shape)
        assert rules(Operator(0, "SOFTMAX", 1, (big,), (big,), None)) == ["softmax-input"]
    slicing = options("StridedSliceOptionsT")
    begin, end = constant([0, 0, 0, 0]), constant([1, 2, 2, 8])
    unit, two = constant([1, 1, 1, 1]), constant([1, 2, 2, 1])
    assert rules(Operator(0, "STRIDED_SLICE", 1, (x, begin, end, unit), (x,), slicing)) == []
    assert rules(Operator(0, "STRIDED_SLICE", 1, (x, begin, end, two), (x,), slicing)) == [
        "strided-slice"]
    fc_out = activation((2, 10))
    assert rules(Operator(0, "FULLY_CONNECTED", 9, (x,), (fc_out,), None)) == [
        "fully-connected-output"]


def test_the_tables_name_only_real_operators() -> None:
    from ai_edge_litert import schema_py_generated as schema

    builtins = set(vars(schema.BuiltinOperator))
    assert set(SUPPORTED_OPS) <= builtins and set(MAX_VERSION) <= builtins
    assert "DEQUANTIZE" not in SUPPORTED_OPS and "CUSTOM" not in SUPPORTED_OPS


def test_the_verification_table_shows_each_exporters_note() -> None:
    rows = [Row("saved_model", "s", 1.0, 0.9, 0.5, 1.0, 3.0, 10),
            Row("edgetpu-int8", "e", 0.5, 0.9, 0.5, 1.0, 3.0, 10, note="predicted: a | b")]
    lines = to_markdown(rows).splitlines()
    assert lines[0].endswith("| latency (ms) | notes |")
    assert lines[2].endswith("| 3.0 |  |")
    assert lines[3].endswith("| 3.0 | predicted: a \\| b |")


def test_the_command_prints_the_prediction_and_strict_fails_on_a_split(
        run_inv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = convert(lambda x: conv(tf.nn.leaky_relu(x)), tmp_path / "leaky.tflite")
    summary = predict(model).summary
    done = run_inv("model.edgetpu-check", "--model", str(model))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == summary and "LEAKY_RELU" in done.stdout
    as_json = run_inv("model.edgetpu-check", "--model", str(model), "--json")
    assert json.loads(as_json.stdout)["first_unsupported"]["rule"] == "unsupported-op"
    strict = run_inv("model.edgetpu-check", "--model", str(model), "--strict")
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines()[-1] == f"odplug: error: {model}: {summary}"
    assert run_inv("model.edgetpu-check", "--model", str(tmp_path)).returncode == 2
