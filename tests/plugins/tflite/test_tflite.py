"""The tflite exporter on a tiny trained model: every variant exports and runs, float32 computes
what the SavedModel computes, TFLite's NMS op gives what a reference NMS gives, int8 takes
pixels as they are, every file carries TFLite metadata and scores in MediaPipe Tasks as in
LiteRT, and broken inputs fail with one clear line.

Where the MediaPipe environment (.venv-mediapipe, setup.sh) is missing, the models are exported
without metadata (``ODPLUG_TFLITE_METADATA=off``) so the LiteRT tests still run, and the
metadata and MediaPipe tests are skipped, saying why."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.components import ExportedModel
from odplug.errors import OdplugError
from odplug.model.contract import validate_detector
from odplug.model.litert import POSTPROCESS_OP, TFLiteDetector, interpreter, ops
from odplug_builtins.tflite import TFLiteExporter
from odplug_builtins.tflite.convert import VARIABLE_OPS
from tests.support.detectors import (
    TinyRun,
    assert_same_detections,
    saved_model_copy,
    spread_anchors,
    write_detector,
)
from tests.support.tools import hide_module


@pytest.fixture(scope="module")
def low_threshold(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with NMS keeping scores from 0.001: a few steps of training leave every
    score near the focal-loss prior of 0.01, below the usual 0.05."""
    return saved_model_copy(tiny_run, tmp_path_factory.mktemp("low") / "saved_model",
                            score_threshold=0.001)


@pytest.fixture(scope="module")
def conversions() -> dict[tuple[str, bool], bytes]:
    """What the converter made while `exported` ran, by (variant, per-channel weights)."""
    return {}


def mediapipe_missing() -> str:
    """Why the MediaPipe environment cannot be used here, or "" when it can."""
    from odplug_builtins.tflite.metadata import tasks_python

    try:
        tasks_python()
    except OdplugError as error:
        return f"no MediaPipe environment: {error}"
    return ""


def needs_mediapipe() -> None:
    if mediapipe_missing():
        pytest.skip(mediapipe_missing())


@pytest.fixture(scope="module")
def exported(low_threshold: Path, tiny_run: TinyRun, conversions: dict,
             tmp_path_factory: pytest.TempPathFactory) -> dict:
    from odplug_builtins.tflite import export
    from odplug_builtins.tflite.metadata import SWITCH_ENV

    real = export.convert

    def recorded(trained, variant, calibration=None, *, per_channel=False):  # type: ignore[no-untyped-def]
        conversions[(variant, per_channel)] = real(trained, variant, calibration,
                                                   per_channel=per_channel)
        return conversions[(variant, per_channel)]

    out = tmp_path_factory.mktemp("exported")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "convert", recorded)
        if mediapipe_missing():
            patch.setenv(SWITCH_ENV, "off")
        models = TFLiteExporter().export(validate_detector(low_threshold), out,
                                         variants=TFLiteExporter.variants,
                                         records=tiny_run.records)
    assert {model.exporter for model in models} == {"tflite"}
    return {model.variant: model for model in models}


def images(records: Path, count: int) -> list[np.ndarray]:
    from odplug.model.tfdata import record_dataset

    files = sorted(records.glob("test.record-*"))
    return [item["image"] for item in record_dataset(files).take(count).as_numpy_iterator()]


def test_every_variant_exports_and_runs(exported: dict, tiny_run: TinyRun) -> None:
    assert set(exported) == set(TFLiteExporter.variants)
    image = images(tiny_run.records, 1)[0]
    for variant, model in exported.items():
        assert model.path.is_file() and model.path.suffix == ".tflite", variant
        assert model.size_bytes == model.path.stat().st_size
        assert (model.path.parent / "labelmap.txt").read_text().splitlines() == [
            "circle", "square", "triangle"]
        found = TFLiteExporter().detector(model)(image)
        assert found.boxes.shape[1:] == (4,) and len(found.boxes) == len(found.scores)
        assert np.all((found.boxes >= 0) & (found.boxes <= 1)), variant
        assert set(found.classes.tolist()) <= {1, 2, 3}, variant
        assert np.all(np.isfinite(found.scores)) and len(found.scores) > 0, variant
    assert exported["int8"].size_bytes < 0.5 * exported["float32"].size_bytes


def test_the_files_hold_their_weights_and_end_in_the_nms_op(exported: dict) -> None:
    for variant, model in exported.items():
        names = [op.name for op in ops(model.path)]
        assert not set(names) & VARIABLE_OPS, variant
        assert names.count(POSTPROCESS_OP) == 1, variant
        assert "FlexDelegate" not in names and not any(n.startswith("Flex") for n in names)


def _raw_tensors(path: Path, image: np.ndarray) -> tuple[np.ndarray, ...]:
    """The post-processing op's inputs and the model's outputs for one S x S float image."""
    runtime = interpreter(path, preserve_all_tensors=True)
    (inp,) = runtime.get_input_details()
    runtime.set_tensor(inp["index"], image.astype(inp["dtype"]))
    runtime.invoke()
    (postprocess,) = [op for op in ops(path) if op.name == POSTPROCESS_OP]
    codes, scores, anchors = (runtime.get_tensor(i) for i in postprocess.inputs)
    outputs = [runtime.get_tensor(d["index"]) for d in runtime.get_output_details()]
    return codes, scores, anchors, *outputs


def reference_nms(codes: np.ndarray, scores: np.ndarray, anchors: np.ndarray,
                  manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode, then NMS written from the op's spec: with ``use_regular_nms`` each class on its
    own and the best ``max_detections`` of all classes kept; without, class-agnostic on each
    anchor's best class."""
    post = manifest["postprocess"]
    sy, sx, sh, sw = post["scale_factors"]
    ya, xa, ha, wa = anchors.T
    yc, xc = codes[:, 0] / sy * ha + ya, codes[:, 1] / sx * wa + xa
    h, w = np.exp(codes[:, 2] / sh) * ha, np.exp(codes[:, 3] / sw) * wa
    boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    if post["use_regular_nms"]:
        found = [(scores[i, c], i, c) for c in range(scores.shape[1])
                 for i in _greedy(boxes, scores[:, c], post)]
        found = sorted(found, key=lambda item: -item[0])[:post["max_detections"]]
        kept, classes = [i for _, i, _ in found], np.array([c for _, _, c in found], int)
        return boxes[kept], classes, np.array([s for s, _, _ in found], np.float32)
    best, best_score = scores.argmax(axis=1), scores.max(axis=1)
    kept = _greedy(boxes, best_score, post)
    return boxes[kept], best[kept], best_score[kept]


def _greedy(boxes: np.ndarray, scores: np.ndarray, post: dict) -> list[int]:
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= post["score_threshold"]]
    kept: list[int] = []
    for i in order:
        if len(kept) == post["max_detections"]:
            break
        if all(_iou(boxes[i], boxes[j]) <= post["iou_threshold"] for j in kept):
            kept.append(i)
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def test_float32_computes_what_the_saved_model_computes(exported: dict, low_threshold: Path,
                                                        tiny_run: TinyRun) -> None:
    model = exported["float32"]
    manifest = json.loads(model.manifest.read_text())
    raw = tf.saved_model.load(str(low_threshold)).signatures["raw"]
    size = manifest["input"]["shape"][1]
    for image in images(tiny_run.records, 3):
        resized = tf.image.resize(tf.cast(image[None], tf.float32), (size, size)).numpy()
        expected = raw(images=tf.constant(resized))
        codes, scores, anchors, boxes, classes, found_scores, count = _raw_tensors(
            model.path, resized)
        np.testing.assert_allclose(codes, expected["box_codes"].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(scores, expected["class_scores"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(anchors, np.load(tiny_run.saved_model / "anchors.npy"))
        ref_boxes, ref_classes, ref_scores = reference_nms(codes[0], scores[0], anchors,
                                                           manifest)
        n = int(count[0])
        assert n == len(ref_boxes) > 10
        assert_same_detections((boxes[0, :n], classes[0, :n].astype(int), found_scores[0, :n]),
                               (ref_boxes, ref_classes, ref_scores), score_atol=1e-6)


def test_int8_takes_uint8_pixels_and_is_integer_up_to_the_nms(exported: dict) -> None:
    model = exported["int8"]
    runtime = interpreter(model.path)
    (inp,) = runtime.get_input_details()
    assert inp["dtype"] == np.uint8 and inp["shape"].tolist() == [1, 96, 96, 3]
    scale, zero_point = inp["quantization"]
    assert scale == pytest.approx(1.0) and zero_point == 0  # a pixel value is its own code
    found = ops(model.path)
    feeding = {i for op in found if op.name == POSTPROCESS_OP for i in op.inputs}
    floating = [op.name for op in found if op.is_float and op.name != POSTPROCESS_OP
                and not (op.name == "DEQUANTIZE" and set(op.outputs) <= feeding)]
    assert floating == []


def test_the_manifest_says_what_the_interpreter_sees(exported: dict) -> None:
    for variant, model in exported.items():
        manifest = json.loads(model.manifest.read_text())
        runtime = interpreter(model.path)
        (inp,) = runtime.get_input_details()
        assert manifest["input"]["name"] == "images"
        assert manifest["input"]["index"] == inp["index"]
        assert manifest["input"]["shape"] == inp["shape"].tolist()
        assert manifest["input"]["dtype"] == np.dtype(inp["dtype"]).name
        scale, zero_point = inp["quantization"]
        assert manifest["input"]["quantization"] == (
            {"scale": scale, "zero_point": zero_point} if scale else None), variant
        outputs = runtime.get_output_details()
        assert [o["name"] for o in manifest["outputs"]] == [
            "detection_boxes", "detection_classes", "detection_scores", "num_detections"]
        assert [o["index"] for o in manifest["outputs"]] == [o["index"] for o in outputs]
        assert [o["shape"] for o in manifest["outputs"]] == [o["shape"].tolist() for o in outputs]
        assert [o["dtype"] for o in manifest["outputs"]] == ["float32"] * 4
        assert manifest["labels"] == ["circle", "square", "triangle"]
        assert manifest["label_ids"] == [1, 2, 3]
        assert manifest["variant"] == variant and manifest["model"] == model.path.name


def write_forced_model(path: Path, num_classes: int, *, per_class: bool) -> Path:
    """A SavedModel with the trained-detector contract whose raw outputs are fixed: class k
    scores 0.9 on anchor k only, the anchors far apart, so every class must survive NMS."""
    count = 4 * num_classes
    scores = np.full((1, count, num_classes), 0.01, np.float32)
    scores[0, np.arange(num_classes), np.arange(num_classes)] = 0.9
    nms = {"iou_threshold": 0.5, "score_threshold": 0.05, "max_detections": 20,
           "per_class": per_class}
    return write_detector(path, scores=scores, anchors=spread_anchors(count),
                          names=[f"c{k}" for k in range(num_classes)], info={"nms": nms})


@pytest.mark.parametrize("per_class,threads", [
    (False, 1), (False, 2), (False, 4), (True, 1), (True, 5), (True, 8)])
def test_every_class_can_come_out(tmp_path: Path, per_class: bool, threads: int) -> None:
    """The fast NMS on any thread count; the regular NMS where LiteRT runs it right: on 1
    thread or on as many as there are classes (tensorflow/tensorflow#56058 drops class column N
    on N threads, 1 < N < classes: tests/plugins/tfjs/test_nms.py)."""
    saved = write_forced_model(tmp_path / "forced", num_classes=5, per_class=per_class)
    (model,) = TFLiteExporter().export(validate_detector(saved), tmp_path / "out",
                                       variants=["float32"])
    found = TFLiteDetector(model.path, [1, 2, 3, 4, 5], num_threads=threads)(
        np.zeros((32, 32, 3), np.uint8))
    assert sorted(found.classes.tolist()) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(found.scores, 0.9, atol=1e-6)


def test_int8_needs_the_training_records(tiny_run: TinyRun, tmp_path: Path) -> None:
    trained = validate_detector(tiny_run.saved_model)
    with pytest.raises(OdplugError, match="calibration"):
        TFLiteExporter().export(trained, tmp_path, variants=["int8"])
    with pytest.raises(OdplugError, match=f"{tmp_path}: no train.record"):
        TFLiteExporter().export(trained, tmp_path, variants=["int8"], records=tmp_path)
    assert not list(tmp_path.iterdir())


def test_check_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "ai_edge_litert")
    with pytest.raises(OdplugError, match="'ai_edge_litert'.*dockerfiles/requirements/tf.txt"):
        TFLiteExporter().check()


def test_registered_as_a_built_in(registry) -> None:  # type: ignore[no-untyped-def]
    exporter = registry.exporters["tflite"]
    assert isinstance(exporter, TFLiteExporter)
    assert registry.owner("exporters", "tflite") == "tflite"


def test_calibration_images_are_the_training_preprocessing(tiny_run: TinyRun) -> None:
    from odplug.data.tfrecord import spread_sample
    from odplug.model.tfdata import record_dataset, representative_images

    files = sorted(tiny_run.records.glob("train.record-*"))
    sample = spread_sample(files, 5)
    first = list(representative_images(sample, 32))
    assert len(first) == 5 and all(i.shape == (1, 32, 32, 3) and i.dtype == np.float32
                                   for i in first)
    np.testing.assert_array_equal(np.concatenate(first),
                                  np.concatenate(list(representative_images(sample, 32))))
    decoded = next(record_dataset(files[:1]).as_numpy_iterator())["image"]  # the first record
    expected = tf.image.resize(decoded, [32, 32], method="bilinear").numpy()
    np.testing.assert_array_equal(first[0][0], expected)


def test_calibration_reads_its_records_once_and_no_others(tiny_run: TinyRun,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import odplug.data.tfrecord as tfrecord
    from odplug_builtins.tflite import export

    reads: list[int] = []
    real = tfrecord.read_record
    monkeypatch.setattr(tfrecord, "read_record",
                        lambda path, offset: reads.append(offset) or real(path, offset))
    monkeypatch.setattr(export, "CALIBRATION_IMAGES", 5)
    data = export.calibration(tiny_run.records)(32)
    assert len(reads) == data.calibration_images == 5
    for _ in range(2):  # per-channel, then per-tensor: the same five images, not read again
        assert len(list(data.calibrate())) == 5
    assert len(reads) == 5


def weight_scales_of(model: ExportedModel) -> str:
    from odplug_builtins.tflite.export import weight_scales

    return weight_scales(model.path.read_bytes())


def test_the_manifest_records_the_int8_choice_and_both_scores(exported: dict,
                                                              tiny_run: TinyRun) -> None:
    from odplug_builtins.tflite.export import RULE, choose_weights

    quantization = json.loads(exported["int8"].manifest.read_text())["quantization"]
    candidates = quantization["candidates"]
    assert set(candidates) == {"per-channel", "per-tensor"}
    validation = sum(1 for f in tiny_run.records.glob("val.record-*")
                     for _ in tf.data.TFRecordDataset(str(f)))
    for measured in candidates.values():
        assert set(measured) == {"size_bytes", "convert_s", "val_map50", "val_map", "val_images"}
        assert measured["val_images"] == validation > 0
    assert candidates["per-channel"]["size_bytes"] > candidates["per-tensor"]["size_bytes"]
    assert quantization["weights"] == choose_weights(candidates) == weight_scales_of(
        exported["int8"])
    assert quantization["chosen_by"] == f"validation split ({validation} images)"
    assert quantization["rule"] == RULE
    assert quantization["calibration_images"] == sum(  # every training record: fewer than 200
        1 for f in tiny_run.records.glob("train.record-*") for _ in tf.data.TFRecordDataset(str(f)))
    for variant in ("float32", "float16", "dynamic"):
        assert "quantization" not in json.loads(exported[variant].manifest.read_text())


@pytest.mark.parametrize("better", ["per-channel", "per-tensor"])
def test_the_better_scoring_weights_are_the_ones_written(
        better: str, low_threshold: Path, exported: dict, conversions: dict, tiny_run: TinyRun,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice between the two int8 weight layouts, not the converter, is under test: the
    conversions are those `exported` made of the same SavedModel."""
    from odplug_builtins.tflite import export

    def forced(model: bytes, trained: object, data: object) -> tuple[float, float, int]:
        return (0.5, 0.6, 3) if export.weight_scales(model) == better else (0.5, 0.5, 3)

    def converted(trained, variant, calibration=None, *, per_channel=False):  # type: ignore[no-untyped-def]
        return conversions[(variant, per_channel)]

    monkeypatch.setattr(export, "validation_score", forced)
    monkeypatch.setattr(export, "convert", converted)
    (model,) = TFLiteExporter().export(validate_detector(low_threshold), tmp_path,
                                       variants=["int8"], records=tiny_run.records)
    quantization = json.loads(model.manifest.read_text())["quantization"]
    assert quantization["weights"] == better == weight_scales_of(model)
    assert quantization["candidates"][better]["val_map"] == 0.6


@pytest.mark.parametrize(("per_channel", "per_tensor", "chosen"), [
    (0.521, 0.5, "per-channel"),
    (0.519, 0.5, "per-tensor"),  # within the margin: the smaller file
    (0.5, 0.5, "per-tensor"),
    (0.4, 0.5, "per-tensor"),
])
def test_per_channel_must_score_clearly_higher(per_channel: float, per_tensor: float,
                                               chosen: str) -> None:
    from odplug_builtins.tflite.export import choose_weights

    assert choose_weights({"per-channel": {"val_map": per_channel},
                           "per-tensor": {"val_map": per_tensor}}) == chosen


def test_without_a_validation_split_int8_is_the_documented_default(
        tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from odplug_builtins.tflite import export

    records = tmp_path / "records"
    shutil.copytree(tiny_run.records, records,
                    ignore=lambda folder, names: [n for n in names if n.startswith("val.")])
    converted: list[bool] = []
    real = export.convert
    monkeypatch.setattr(export, "convert", lambda trained, variant, calibration, *, per_channel:
                        converted.append(per_channel) or real(trained, variant, calibration,
                                                              per_channel=per_channel))
    with caplog.at_level(logging.INFO, logger=export.__name__):
        (model,) = TFLiteExporter().export(validate_detector(tiny_run.saved_model),
                                           tmp_path / "out", variants=["int8"], records=records)
    quantization = json.loads(model.manifest.read_text())["quantization"]
    assert quantization["weights"] == export.DEFAULT_WEIGHTS == weight_scales_of(model)
    assert quantization["chosen_by"] == "default: the records have no validation split"
    assert list(quantization["candidates"]) == [export.DEFAULT_WEIGHTS]
    assert converted == [export.DEFAULT_WEIGHTS == "per-channel"]  # converted once
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and f"{records}: no val.record-* shards" in messages[0]


# TFLite metadata and MediaPipe Tasks (issue 26): the files load unchanged in MediaPipe Tasks'
# ObjectDetector and score there as in LiteRT.

def test_every_file_carries_the_metadata_mediapipe_needs(exported: dict) -> None:
    needs_mediapipe()
    from tensorflow.lite.tools import flatbuffer_utils

    for variant, model in exported.items():
        manifest = json.loads(model.manifest.read_text())
        assert manifest["metadata"]["outputs"] == [
            "location", "category", "score", "number of detections"], variant
        assert manifest["metadata"]["input"] == {
            "color_space": "RGB", "normalization": {"mean": [0.0], "std": [1.0]}}, variant
        assert manifest["metadata"]["labels_file"] == "labelmap.txt"
        assert manifest["metadata"]["writer"].startswith("tflite-support ")
        with zipfile.ZipFile(model.path) as packed:  # the label file rides in the model
            assert packed.namelist() == ["labelmap.txt"]
            assert packed.read("labelmap.txt").decode().splitlines() == manifest["labels"]
        parsed = flatbuffer_utils.read_model(str(model.path))
        assert b"TFLITE_METADATA" in [entry.name for entry in parsed.metadata or []], variant
        assert manifest["size_bytes"] == model.size_bytes == model.path.stat().st_size


def _written(exported: dict, conversions: dict, variant: str) -> bytes:
    """What the converter made of the exported `variant`, before its metadata."""
    if variant != "int8":
        return conversions[(variant, False)]
    weights = json.loads(exported["int8"].manifest.read_text())["quantization"]["weights"]
    return conversions[("int8", weights == "per-channel")]


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_metadata_changes_nothing_litert_computes(variant: str, exported: dict,
                                                      conversions: dict, tiny_run: TinyRun,
                                                      tmp_path: Path) -> None:
    needs_mediapipe()  # without it the files are the conversions themselves
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(_written(exported, conversions, variant))
    assert bare.read_bytes() != exported[variant].path.read_bytes()
    for image in images(tiny_run.records, 3):
        with_metadata = TFLiteDetector(exported[variant].path, [1, 2, 3])(image)
        without = TFLiteDetector(bare, [1, 2, 3])(image)
        for got, expected in zip(vars(with_metadata).values(), vars(without).values(),
                                 strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_tasks_finds_what_litert_finds(variant: str, exported: dict,
                                                 tiny_run: TinyRun) -> None:
    """Images already at the model's input size, so neither runtime resizes: MediaPipe reads
    the file as its metadata describes it if its detections are LiteRT's: the same scores
    (the input normalised alike), classes (the label file in column order) and boxes (the
    location output's coordinate order), though in whole pixels (so compared by IoU), and boxes
    that cross the image's edge MediaPipe moves inside rather than cuts (so only matched by
    score and class). MediaPipe leaves out
    a detection or two of the ~100 this untrained model gives per image (none of the demo
    detector's, docs/exports.md), so most, not all, of LiteRT's must be there."""
    needs_mediapipe()
    from odplug_builtins.tflite.mediapipe_tasks import MediaPipeDetector

    model = exported[variant]
    size = json.loads(model.manifest.read_text())["input"]["shape"][1]
    litert = TFLiteExporter().detector(model)
    with MediaPipeDetector(model) as mediapipe:
        for image in images(tiny_run.records, 3):
            resized = tf.image.resize(image, (size, size)).numpy().round().astype(np.uint8)
            found, expected = mediapipe(resized), litert(resized)
            assert len(expected.scores) >= len(found.scores) >= 0.95 * len(expected.scores)
            alike = ((np.abs(found.scores[:, None] - expected.scores[None, :]) <= 1e-5)
                     & (found.classes[:, None] == expected.classes[None, :]))
            inside = np.all((expected.boxes > 0) & (expected.boxes < 1), axis=1)[None, :]
            close = alike & inside & (_ious(found.boxes, expected.boxes) >= 0.7)
            assert (close | (alike & ~inside)).any(axis=1).all(), (variant, found, expected)
            assert close.any(axis=1).sum() >= 10, variant  # enough boxes inside to compare


def test_mediapipe_tasks_gives_each_class_its_name_and_box(tmp_path: Path) -> None:
    """A model whose detections are fixed (class k on anchor k alone: boxes wider than tall,
    off the diagonal, far apart, inside the image): MediaPipe gives each its class and box,
    to the pixel."""
    needs_mediapipe()
    from odplug_builtins.tflite.mediapipe_tasks import MediaPipeDetector

    classes = 5
    centres = (np.arange(classes, dtype=np.float32) + 0.5) / classes
    anchors = np.stack([centres, 0.3 + 0.1 * centres, np.full(classes, 0.1),
                        np.full(classes, 0.3)], axis=1).astype(np.float32)
    scores = np.full((1, classes, classes), 0.01, np.float32)
    scores[0, np.arange(classes), np.arange(classes)] = 0.9
    saved = write_detector(tmp_path / "forced", scores=scores, anchors=anchors,
                           names=[f"c{k}" for k in range(classes)])
    (model,) = TFLiteExporter().export(validate_detector(saved), tmp_path / "out",
                                       variants=["float32"])
    image = np.zeros((100, 100, 3), np.uint8)
    with MediaPipeDetector(model) as mediapipe:
        found = mediapipe(image)
    expected = TFLiteExporter().detector(model)(image)
    assert found.classes.tolist() == expected.classes.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-6)
    np.testing.assert_allclose(found.boxes, expected.boxes, atol=0.02)  # 2 pixels


def _ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, 4] with every box of `b` [M, 4] (ymin, xmin, ymax, xmax)."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a, area_b = (np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) for boxes in (a, b))
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_tasks_scores_the_file_as_litert(variant: str, exported: dict,
                                                   tiny_run: TinyRun) -> None:
    """The whole test split, each image at its own size, in MediaPipe's ObjectDetector (as
    verification runs it) and in LiteRT: the same images, nearly the same detections, and the
    same mAP@.5 (MediaPipe's boxes are whole pixels, so mAP@[.5:.95] is not held to it).

    This shows the plumbing; the demo detector's numbers (mAP@.5 within 99.5%) are in
    docs/exports.md. The tiny model's mAP@.5 is near 0.005 from ~100 detections per image at
    about the prior's score, of which MediaPipe leaves out a few (1274 of 1300 in one session),
    so a relative bound is noise here (that session: 0.00475 against 0.00524); the bound is
    absolute, 0.002, under half of what the tiny model scores at all."""
    needs_mediapipe()
    from odplug.data.labelmap import read_label_map
    from odplug.model.detector import evaluate_detector
    from odplug_builtins.tflite.mediapipe_tasks import MediaPipeDetector

    files = sorted(tiny_run.records.glob("test.record-*"))
    label_map = read_label_map(tiny_run.records / "label_map.pbtxt")
    model = exported[variant]
    (runtime,) = TFLiteExporter().other_runtimes(model).items()  # what verification runs
    assert runtime[0] == "MediaPipe Tasks"
    with runtime[1]() as mediapipe:
        assert isinstance(mediapipe, MediaPipeDetector)
        in_mediapipe = evaluate_detector(mediapipe, files, label_map)
    in_litert = evaluate_detector(TFLiteExporter().detector(model), files, label_map)
    assert in_mediapipe.images == in_litert.images > 0
    assert in_litert.map50 > 0, "the tiny model must find something for this to compare"
    assert in_litert.detections >= in_mediapipe.detections >= 0.95 * in_litert.detections
    assert abs(in_mediapipe.map50 - in_litert.map50) <= 0.002, (in_mediapipe, in_litert)


def test_without_metadata_by_choice_mediapipe_refuses_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from odplug_builtins.tflite.mediapipe_tasks import MediaPipeDetector
    from odplug_builtins.tflite.metadata import SWITCH_ENV

    monkeypatch.setenv(SWITCH_ENV, "off")
    saved = write_forced_model(tmp_path / "forced", num_classes=2, per_class=False)
    with caplog.at_level(logging.WARNING):
        (model,) = TFLiteExporter().export(validate_detector(saved), tmp_path / "out",
                                           variants=["float32"])
    assert json.loads(model.manifest.read_text())["metadata"] is None
    assert TFLiteExporter().other_runtimes(model) == {}
    assert not zipfile.is_zipfile(model.path)
    assert [r.getMessage() for r in caplog.records] == [
        f"tflite-float32: written without TFLite metadata ({SWITCH_ENV}=off): MediaPipe Tasks "
        "and the TFLite Task Library cannot load it"]
    with pytest.raises(OdplugError, match=f"without TFLite metadata.*export it again without "
                                          f"{SWITCH_ENV}$"):
        MediaPipeDetector(model)


def test_a_file_mediapipe_cannot_load_is_one_line(exported: dict, tmp_path: Path) -> None:
    """A model MediaPipe refuses (here: its metadata cut off) is the runner's one line, not a
    hang or a traceback."""
    needs_mediapipe()
    from odplug_builtins.tflite.mediapipe_tasks import MediaPipeDetector

    model = exported["float32"]
    folder = tmp_path / "cut"
    folder.mkdir()
    shutil.copyfile(model.manifest, folder / model.manifest.name)
    (folder / model.path.name).write_bytes(model.path.read_bytes()[:1000])
    broken = ExportedModel("tflite", "float32", folder / model.path.name,
                           folder / model.manifest.name, 1000)
    with pytest.raises(OdplugError, match=f"^{broken.path}: MediaPipe Tasks: "):
        MediaPipeDetector(broken)


def test_model_predict_runs_an_exported_file_by_its_path(exported: dict, tiny_run: TinyRun,
                                                        registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``model.predict --model tflite-int8.tflite``: the exporter claims its file by the
    manifest beside it and runs it in LiteRT, the detections those of its own detector."""
    from PIL import Image

    from odplug.model import litert
    from odplug.workflows.predict import find_model, predict

    int8 = exported["int8"]
    image = images(tiny_run.records, 1)[0]
    Image.fromarray(image).save(tmp_path / "photo.png")
    result = predict(int8.path, tmp_path / "photo.png", tmp_path / "out", 0.0, registry)
    expected = litert.detector(int8)(image)
    assert len(result.images) == 1 and result.images[0].detections
    assert [d.score for d in result.images[0].detections] == pytest.approx(
        expected.scores.tolist(), abs=1e-6)
    assert "tflite-int8 (tflite)" in find_model(int8.path, registry)().description
    for other in (int8.manifest, tmp_path / "photo.png"):
        with pytest.raises(OdplugError, match="not a run folder"):
            find_model(other, registry)
