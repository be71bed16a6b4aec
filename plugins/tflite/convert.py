"""From the SavedModel's ``raw`` signature to a .tflite file that ends in TFLite's own NMS op.

The graph converted is: image [1, S, S, 3] -> the trained network -> box codes and sigmoid
class scores -> ``TFLite_Detection_PostProcess`` (decode against constant anchors, NMS). That
op has no TensorFlow kernel; as in the TF Object Detection API's TFLite export, an empty
`tf.function` carrying ``experimental_implements`` = the op's name and attributes stands in
for it, and the converter replaces the call with the custom op. The op needs no background
column: it takes ``num_classes`` from its attributes and the scores as they are.

Outputs are ``detection_boxes`` [1, N, 4] (ymin, xmin, ymax, xmax, normalised, not clipped),
``detection_classes`` [1, N] (0-based class column), ``detection_scores`` [1, N] and
``num_detections`` [1], in that order, as TF OD API models and Coral's examples expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.model.litert import POSTPROCESS_OP
from odplug.quiet import native_output_hidden
from odplug.trained import TrainedDetector

OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
VARIABLE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"})
Calibration = Callable[[], Iterator[np.ndarray]]


def implements_signature(trained: TrainedDetector) -> str:
    """The op's NodeDef text that the converter turns into the custom op and its options.

    The NMS is the one ``detector.json`` records, as `odplug.model.postprocess` defines it:
    per class is the op's regular NMS with ``detections_per_class`` = ``max_detections`` (every
    class may fill the output, as in the SavedModel's combined NMS); class-agnostic is its fast
    NMS, each anchor on its best class (``max_classes_per_detection`` 1).
    """
    info = trained.info
    y_scale, x_scale, h_scale, w_scale = info.scale_factors
    attrs: list[tuple[str, str, object]] = [
        ("max_detections", "i", info.max_detections),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", info.max_detections),
        ("use_regular_nms", "b", str(info.per_class_nms).lower()),
        ("nms_score_threshold", "f", info.score_threshold),
        ("nms_iou_threshold", "f", info.iou_threshold),
        ("num_classes", "i", trained.num_classes),
        ("y_scale", "f", y_scale),
        ("x_scale", "f", x_scale),
        ("h_scale", "f", h_scale),
        ("w_scale", "f", w_scale),
    ]
    return " ".join([f'name: "{POSTPROCESS_OP}"'] + [
        f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attrs
    ])


def safe_threads(trained: TrainedDetector) -> str:
    """The LiteRT thread counts that run the op right, for the manifest and the table's note.

    The op's regular NMS hands class columns to its threads from a shared counter that skips a
    column: on N threads, 1 < N < the number of classes, class column N is never suppressed nor
    output (tensorflow/tensorflow#56058; ai-edge-litert 2.3.0 still does it, see
    tests/plugins/tfjs/test_nms.py). No op option avoids it, so a per-class model of 3 or more
    classes says so; the fast NMS and models of 1 or 2 classes are right on any thread count.
    """
    classes = trained.num_classes
    if not trained.info.per_class_nms or classes < 3:
        return "any"
    return (f"1, or at least {classes} (LiteRT's regular NMS skips class column N when it runs "
            f"on N threads, 1 < N < {classes}: tensorflow/tensorflow#56058)")


def detection_function(trained: TrainedDetector, *, uint8_input: bool = False) -> Any:
    """The concrete function to convert: static batch-1 float32 input, four named outputs.

    With `uint8_input` the input passes a fake-quant node of exactly 0..255 in 256 steps, so the
    int8 model's uint8 input gets scale 1 and zero point 0 (a pixel value is its own code)
    however dark or bright the calibration images are; calibration sets every other range.
    """

    @tf.function(experimental_implements=implements_signature(trained))
    def postprocess(box_encodings: tf.Tensor, class_predictions: tf.Tensor,
                    anchors: tf.Tensor) -> tuple[tf.Tensor, ...]:
        del box_encodings, class_predictions, anchors  # replaced by the op; never runs in TF
        placeholder = tf.constant(0.0, tf.float32)
        return placeholder, placeholder, placeholder, placeholder

    size = trained.input_size
    anchors = trained.anchors

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
        if uint8_input:
            images = tf.quantization.fake_quant_with_min_max_args(images, 0.0, 255.0, num_bits=8)
        raw = trained.raw(images=images)
        outputs = postprocess(raw["box_codes"], raw["class_scores"], tf.constant(anchors))
        return dict(zip(OUTPUT_NAMES, outputs, strict=True))

    return detect.get_concrete_function()


def convert(trained: TrainedDetector, variant: str,
            calibration: Calibration | None = None, *, per_channel: bool = False) -> bytes:
    """One variant as .tflite bytes: float32, float16, dynamic (int8 weights) or int8 (all).

    For int8, `per_channel` gives convolution weights one scale per output channel (the
    converter's default) instead of one per tensor; which is better is measured per model
    (`odplug_builtins.tflite.export.choose_int8`). Other variants ignore it.
    """
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [detection_function(trained, uint8_input=variant == "int8")], trained.loaded)
    converter.allow_custom_ops = True
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if calibration is None:
            raise OdplugError("int8 needs calibration images: give the records folder")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in calibration())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter._experimental_disable_per_channel = not per_channel
    elif variant != "float32":
        raise OdplugError(f"unknown TFLite variant {variant!r}")
    try:
        with native_output_hidden():  # int8 calibration prints its settings
            model = converter.convert()
    except Exception as error:  # the converter reports through many exception types
        message = " ".join(str(error).split())[:400]
        raise OdplugError(f"{trained.path}: TFLite conversion ({variant}) failed: "
                          f"{message}") from None
    return outputs_in_op_order(model)


def outputs_in_op_order(model: bytes) -> bytes:
    """Make the model's outputs the post-processing op's outputs, in the op's order.

    The converter lists a function's outputs in no fixed order; runtimes and apps that read
    outputs by position expect boxes, classes, scores, count. The signature keeps its names.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = parsed.subgraphs[0]
    codes = parsed.operatorCodes
    ops = [op for op in graph.operators
           if (codes[op.opcodeIndex].customCode or b"").decode() == POSTPROCESS_OP]
    if len(ops) != 1:
        raise OdplugError(f"the converted model has {len(ops)} {POSTPROCESS_OP} ops, not 1")
    wanted = [int(i) for i in ops[0].outputs]
    if sorted(wanted) != sorted(int(i) for i in graph.outputs):
        raise OdplugError(f"the converted model's outputs are not the {POSTPROCESS_OP} outputs")
    if wanted == [int(i) for i in graph.outputs]:
        return model
    graph.outputs = np.asarray(wanted, dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(parsed))
