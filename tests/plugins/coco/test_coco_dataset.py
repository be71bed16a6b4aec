"""The COCO detection importer and writer (tests/core/test_coco.py is the COCO evaluation's)."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.labelmap import read_label_map
from odplug.dataset_report import Report, render_summary
from odplug.errors import OdplugError
from odplug.samples import Box
from odplug_builtins.coco import CocoImporter, split_of
from tests.support.fuzz import FUZZ, assert_accounted, image_files, imported, json_values
from tests.support.records import problem_files as codes
from tests.support.records import read_records
from tests.support.records import run_import as run
from tests.support.tools import ROOT

MEDIAPIPE = ROOT.parent / "shared" / "datasets" / "mediapipe" / "coco_data"
CATS = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "fox"}]


def _image(path: Path, size: tuple[int, int] = (64, 48), colour: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (colour, 40, 200)).save(path)


def _write(path: Path, images: list, annotations: list, categories: list | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": CATS if categories is None else categories}))
    return path


def _ann(image_id: int, category_id: int, bbox: Any, **extra: Any) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def _dataset(root: Path) -> Path:
    """COCO 2017's layout: annotations/instances_<split>2017.json and <split>2017/ images,
    ids with gaps, a crowd region, a polygon-only object and a background image."""
    for split, names in (("train", ["a.png", "b.png", "c.png"]), ("val", ["d.png"])):
        images = []
        for number, name in enumerate(names, start=1):
            colour = 20 * number + (100 if split == "val" else 0)
            _image(root / f"{split}2017" / name, colour=colour)
            images.append({"id": number, "file_name": name, "width": 64, "height": 48})
        annotations = [
            _ann(1, 1, [1.25, 2.5, 20.125, 30.0]),
            _ann(1, 7, [30, 4, 10, 12], iscrowd=1),
            _ann(2, 3, [], segmentation=[[5, 6, 25, 6, 15, 40.5]]),
        ][:len(names)]
        _write(root / "annotations" / f"instances_{split}2017.json", images, annotations)
    return root


def _by_filename(folder: Path) -> dict[str, dict]:
    return {row["filename"]: row for row in read_records(folder)}


def _crowd(folder: Path) -> dict[str, list[int]]:
    """`is_crowd` and the ignore flag of every record's boxes, by file name."""
    from odplug.data.shards import shard_files
    from odplug.model.tfdata import record_dataset

    return {item["filename"].decode(): [item["crowd"].tolist(), item["difficult"].tolist()]
            for item in record_dataset(shard_files(folder)).as_numpy_iterator()}


def test_mediapipe_coco_data_imports_without_format(tmp_path: Path, registry) -> None:
    """MediaPipe Model Maker's own test data: no image sizes, and a category 0 "background"
    that 15 boxes use. Every box is in the records or in the report, and ids are kept."""
    if not MEDIAPIPE.is_dir():
        pytest.skip(f"MediaPipe's COCO data is not at {MEDIAPIPE} (it ships in shared/datasets)")
    result = run(MEDIAPIPE, tmp_path / "out", registry)
    assert result.importer == "coco"
    background = codes(result, "box skipped")["background-class"]
    assert len(background) == 15
    assert all(f.startswith(f"{MEDIAPIPE / 'labels.json'}:annotations[") for f in background)
    assert sum(result.report.images.values()) == 5
    assert sum(result.report.boxes.values()) == 42
    categories = json.loads((MEDIAPIPE / "labels.json").read_text())["categories"]
    assert [(i.id, i.name) for i in result.label_map.items] == [
        (c["id"], c["name"]) for c in categories if c["id"]]
    records = read_records(tmp_path / "out")
    assert sum(len(r["classes"]) for r in records) == 42
    assert set().union(*(r["classes"] for r in records)) <= set(range(1, 12))


def test_round_trip_keeps_every_box_ids_and_crowd(tmp_path: Path, registry) -> None:
    """COCO -> records, and COCO -> COCO (odplug's writer) -> records, give the same records."""
    source = _dataset(tmp_path / "ds")
    direct = run(source, tmp_path / "direct", registry)
    assert dict(direct.report.images) == {"train": 3, "val": 1}
    run(source, tmp_path / "coco", registry, to="coco")
    again = run(tmp_path / "coco", tmp_path / "again", registry)
    assert again.importer == "coco" and dict(again.report.images) == {"train": 3, "val": 1}
    for out in ("direct", "again"):
        assert read_label_map(tmp_path / out / "label_map.pbtxt").ids == [1, 3, 7]
    first, second = _by_filename(tmp_path / "direct"), _by_filename(tmp_path / "again")
    assert sorted(first) == sorted(second) == ["a.png", "b.png", "c.png", "d.png"]
    for name, row in first.items():
        assert row["classes"] == second[name]["classes"]
        np.testing.assert_allclose(second[name]["boxes"], row["boxes"], rtol=2**-23, atol=0)
        assert row["sha256"] == second[name]["sha256"]
    assert first["a.png"]["classes"] == [1, 7] and first["c.png"]["classes"] == []
    assert first["b.png"]["boxes"][0] == pytest.approx([6 / 48, 5 / 64, 40.5 / 48, 25 / 64])
    crowd = _crowd(tmp_path / "again")
    assert crowd["a.png"] == [[0, 1], [0, 1]] and crowd["b.png"] == [[0], [0]]


def test_written_coco_loads_in_pycocotools(tmp_path: Path, registry) -> None:
    from pycocotools.coco import COCO

    source = _dataset(tmp_path / "ds")
    run(source, tmp_path / "coco", registry, to="coco")
    written = tmp_path / "coco" / "annotations" / "instances_train.json"
    assert (tmp_path / "coco" / "images" / "train" / "a.png").is_file()
    coco = COCO(str(written))
    original = json.loads((source / "annotations" / "instances_train2017.json").read_text())
    assert len(coco.getImgIds()) == len(original["images"]) == 3
    assert len(coco.getAnnIds()) == len(original["annotations"]) == 3
    assert coco.getCatIds() == [1, 3, 7]
    ids = {image["file_name"]: image["id"] for image in coco.dataset["images"]}
    boxes = sorted((a["category_id"], a["bbox"], a["iscrowd"])
                   for a in coco.loadAnns(coco.getAnnIds(imgIds=[ids["a.png"], ids["b.png"]])))
    assert boxes == [(1, [1.25, 2.5, 20.125, 30.0], 0), (3, [5.0, 6.0, 20.0, 34.5], 0),
                     (7, [30.0, 4.0, 10.0, 12.0], 1)]
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in coco.dataset["annotations"])
    assert coco.dataset["images"][0].keys() >= {"id", "file_name", "width", "height"}


def test_writer_keeps_images_that_share_a_name_apart(tmp_path: Path, registry) -> None:
    names = ["x/a.png", "y/a.png", "b.png"]
    for number, name in enumerate(names):
        _image(tmp_path / "ds" / "images" / name, colour=number * 50)
    _write(tmp_path / "ds" / "coco.json", [{"id": i, "file_name": n} for i, n in
                                           enumerate(names)], [_ann(1, 3, [1, 1, 5, 5])])
    run(tmp_path / "ds", tmp_path / "coco", registry, to="coco", split="ratio", ratios=(1, 0))
    written = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert sorted(i["file_name"] for i in written["images"]) == [
        "b.png", "images/x/a.png", "images/y/a.png"]
    again = run(tmp_path / "coco", tmp_path / "records", registry)
    assert dict(again.report.images) == {"train": 3} and not again.report.problems
    boxes = {r["source_id"]: len(r["boxes"]) for r in read_records(tmp_path / "records")}
    assert boxes == {"images/train/b.png": 0, "images/train/images/x/a.png": 0,
                     "images/train/images/y/a.png": 1}


@pytest.mark.parametrize("to", ["yolo", "tf_csv"])
def test_crowd_regions_are_left_out_of_formats_without_a_crowd_flag(tmp_path: Path, registry,
                                                                   to: str) -> None:
    """YOLO labels and tf_csv rows cannot mark a box as a crowd region: written there, one
    became an ordinary box around many objects and report.json said nothing. Now each is left
    out, as Ultralytics' own COCO converter does, and reported by its image."""
    source = _dataset(tmp_path / "ds")
    result = run(source, tmp_path / "out", registry, to=to)
    train = source / "annotations" / "instances_train2017.json"
    assert codes(result, "box skipped") == {"crowd-region": [f"{train}:images[0]"]}
    assert sum(result.report.boxes.values()) == 3
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["skipped"]["boxes"] == {"crowd-region": 1}
    summary = render_summary(result.report)
    assert "Skipped boxes: 1 (1 crowd-region)" in summary and "crowd region" in summary


def test_images_that_no_coco_file_lists_are_reported(tmp_path: Path, registry) -> None:
    source = _dataset(tmp_path / "ds")
    _image(source / "train2017" / "extra.png")
    _image(source / "val2017" / "more.jpg")
    _image(source / "val2017" / "again.png")
    val = source / "annotations" / "instances_val2017.json"
    document = json.loads(val.read_text())
    document["images"].append({"id": 1, "file_name": "again.png"})
    val.write_text(json.dumps(document))
    result = run(source, tmp_path / "out", registry)
    assert codes(result, "image skipped") == {
        "duplicate-image-id": [f"{val}:images[1]"],
        "no-annotation": [str(source / "train2017" / "extra.png"),
                          str(source / "val2017" / "more.jpg")]}
    assert sum(result.report.images.values()) == 4


def test_a_split_folder_without_its_annotation_file_is_reported(tmp_path: Path,
                                                               registry) -> None:
    """Roboflow's export whose valid/ lost its _annotations.coco.json: its images were never
    mentioned."""
    export = tmp_path / "export"
    _image(export / "train" / "a.png")
    _write(export / "train" / "_annotations.coco.json", [{"id": 0, "file_name": "a.png"}],
           [_ann(0, 1, [1, 1, 5, 5])])
    _image(export / "valid" / "b.png")
    result = run(export, tmp_path / "out", registry)
    assert codes(result, "image skipped") == {"no-annotation": [str(export / "valid" / "b.png")]}
    reason = next(p.reason for p in result.report.problems if p.code == "no-annotation")
    assert "valid/" in reason and "_annotations.coco.json" in reason


def test_evaluation_ignores_crowd_regions(tmp_path: Path, registry) -> None:
    """A crowd box is neither required nor a false positive, as pycocotools treats it."""
    from odplug.data.shards import shard_files
    from odplug.model.detector import Detections, evaluate_detector

    _image(tmp_path / "ds" / "images" / "a.png")
    _write(tmp_path / "ds" / "labels.json", [{"id": 1, "file_name": "a.png"}],
           [_ann(1, 1, [0, 0, 32, 24]), _ann(1, 1, [32, 24, 32, 24], iscrowd=1)])
    run(tmp_path / "ds", tmp_path / "out", registry, split="ratio", ratios=(1.0, 0.0))
    label_map = read_label_map(tmp_path / "out" / "label_map.pbtxt")
    files = shard_files(tmp_path / "out")
    for boxes in ([[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]):
        def detector(image: np.ndarray, boxes: list = boxes) -> Detections:
            n = len(boxes)
            return Detections(np.array(boxes, np.float32), np.ones(n, int),
                              np.linspace(0.9, 0.8, n))

        result = evaluate_detector(detector, files, label_map)
        assert result.per_class["cat"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0),
                                           "instances": 1}


def test_box_crowd_survives_the_record(tmp_path: Path) -> None:
    from odplug.data.example import encode_example
    from odplug.data.images import ImageData
    from odplug.data.protos import Example
    from odplug.labels import LabelMap

    boxes = [Box("cat", 1, 1, 3, 4), Box("cat", 2, 2, 5, 5, crowd=True)]
    parts = encode_example(ImageData(b"x", "png", 7, 5), filename="a.png", source_id="a",
                           boxes=boxes, label_map=LabelMap.from_names(["cat"]))
    feature = Example.FromString(b"".join(parts)).features.feature
    assert feature["image/object/is_crowd"].int64_list.value == [0, 1]


def test_category_id_zero_background_is_left_out(tmp_path: Path, registry) -> None:
    _image(tmp_path / "ds" / "a.png")
    _write(tmp_path / "ds" / "data.json", [{"id": 5, "file_name": "a.png"}],
           [_ann(5, 0, [1, 1, 5, 5]), _ann(5, 2, [1, 1, 9, 9])],
           [{"id": 0, "name": "BackGround"}, {"id": 2, "name": "cat"}, {"id": 4, "name": "x"}])
    result = run(tmp_path / "ds", tmp_path / "out", registry, split="ratio", ratios=(1.0, 0.0))
    assert codes(result, "box skipped") == {
        "background-class": [f"{tmp_path / 'ds' / 'data.json'}:annotations[0]"]}
    assert [(i.id, i.name) for i in result.label_map.items] == [(2, "cat"), (4, "x")]
    assert [r["classes"] for r in read_records(tmp_path / "out")] == [[2]]


def test_category_id_zero_with_a_name_gets_the_first_free_id(tmp_path: Path, registry) -> None:
    _image(tmp_path / "ds" / "images" / "a.png")
    for split in ("train", "val"):
        _write(tmp_path / "ds" / "annotations" / f"instances_{split}.json",
               [{"id": 1, "file_name": "a.png" if split == "train" else "b.png"}],
               [_ann(1, 0, [1, 1, 5, 5]), _ann(1, 4, [1, 1, 9, 9])],
               [{"id": 0, "name": "person"}, {"id": 4, "name": "cat"}])
    _image(tmp_path / "ds" / "images" / "b.png")
    result = run(tmp_path / "ds", tmp_path / "out", registry)
    assert [(i.id, i.name) for i in result.label_map.items] == [(4, "cat"), (5, "person")]
    notes = [p for p in result.report.problems if p.code == "category-id-0"]
    assert [(n.kind, n.file) for n in notes] == [
        ("image note", str(tmp_path / "ds" / "annotations" / "instances_train.json"))]
    assert "gets the first free id, 5" in notes[0].reason
    assert [r["classes"] for r in read_records(tmp_path / "out", "train")] == [[5, 4]]


def test_annotation_problems_are_reported_with_file_and_index(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    for name in ("a.png", "b.png", "c.png"):
        _image(source / "images" / name)
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
              {"id": 2, "file_name": "b.png"}, {"id": 1, "file_name": "c.png"},
              {"file_name": "c.png"}, {"id": 3}, "d.png", {"id": 4, "file_name": "../../x.png"},
              {"id": 5, "file_name": "c.png", "width": 60, "height": 48}]
    rle = {"size": [48, 64], "counts": [48 * 10 + 5, 3, 45, 3, 48 * 64 - 48 * 11 - 8]}
    annotations = [
        _ann(1, 1, [1, 2, 3, 4]),
        _ann(9, 1, [1, 2, 3, 4]),
        _ann(1, 2, [1, 2, 3, 4]),
        _ann(1, 1, [1, 2, 3]),
        _ann(1, 1, ["1", 2, 3, 4]),
        _ann(1, 1, [1, 2, 0, 4]),
        _ann(1, 1, [1, 2, float("nan"), 4]),
        _ann(1, 1, None),
        [1, 2, 3],
        _ann(1, 1, [], segmentation=[[1, 2, 3]]),
        _ann(2, 3, None, segmentation=rle),
        _ann(2, 3, [1, 2, 10 ** 400, 4]),
        {"image_id": [1], "category_id": 1, "bbox": [1, 2, 3, 4]},
        _ann(1, True, [1, 2, 3, 4]),
    ]
    path = _write(source / "annotations" / "instances_train.json", images, annotations)
    result = run(source, tmp_path / "out", registry)
    at = [f"{path}:annotations[{i}]" for i in range(len(annotations))]
    assert codes(result, "box skipped") == {
        "unknown-image": [at[1], at[12]],
        "unknown-category": [at[2], at[13]],
        "malformed-bbox": [at[3], at[4], at[5], at[6], at[11]],
        "no-bbox": [at[7]],
        "malformed-annotation": [at[8]],
        "malformed-segmentation": [at[9]],
    }
    where = [f"{path}:images[{i}]" for i in range(len(images))]
    assert codes(result, "image skipped") == {
        "duplicate-image-id": [where[2]],
        "malformed-image": [where[3], where[4], where[5]],
        "escapes-dataset": [where[6]],
        "size-mismatch": [where[7]],
    }
    records = _by_filename(tmp_path / "out")
    assert sorted(records) == ["a.png", "b.png"]
    assert records["a.png"]["boxes"][0] == pytest.approx([2 / 48, 1 / 64, 6 / 48, 4 / 64])
    # the RLE mask covers rows 5..7 of columns 10 and 11 (column-major runs)
    assert records["b.png"]["boxes"][0] == pytest.approx([5 / 48, 10 / 64, 8 / 48, 12 / 64])


def test_rle_without_pycocotools_is_a_reported_skip(tmp_path: Path, registry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    _image(tmp_path / "ds" / "a.png")
    path = _write(tmp_path / "ds" / "coco.json", [{"id": 1, "file_name": "a.png"}], [
        _ann(1, 1, [1, 1, 5, 5]),
        _ann(1, 1, None, segmentation={"size": [48, 64], "counts": [5, 3, 48 * 64 - 8]})])
    result = run(tmp_path / "ds", tmp_path / "out", registry, split="ratio", ratios=(1, 0))
    assert codes(result, "box skipped") == {"rle-needs-pycocotools": [f"{path}:annotations[1]"]}
    assert "pip install odplug[tf]" in result.report.problems[0].reason


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "the top level is a list"),
    ('{"images": {}, "annotations": [], "categories": []}', "'images' is a dict, not a list"),
    ('{"images": [], "categories": []}', "'annotations' is missing"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1}]}', "categories.0.: name None"),
    ('{"images": [], "annotations": [], "categories": [{"id": -1, "name": "a"}]}',
     "id -1 is not a whole number"),
    ('{"images": [], "annotations": [], "categories": [7]}', r"categories\[0\] is a int"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, '
     '{"id": 2, "name": "a"}]}', "categories 1 and 2 are both named 'a'"),
])
def test_a_file_that_is_not_coco_is_one_line(tmp_path: Path, registry, content: str,
                                             message: str) -> None:
    path = tmp_path / "ds" / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(OdplugError, match=message) as caught:
        run(tmp_path / "ds", tmp_path / "out", registry, format="coco")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_split_files_must_agree_on_category_ids(tmp_path: Path, registry) -> None:
    _write(tmp_path / "ds" / "annotations" / "instances_train.json", [], [], CATS)
    val = _write(tmp_path / "ds" / "annotations" / "instances_val.json", [], [],
                 [{"id": 2, "name": "cat"}])
    with pytest.raises(OdplugError, match="category 'cat' has id 2 here but id 1 in") as caught:
        run(tmp_path / "ds", tmp_path / "out", registry)
    assert str(val) in str(caught.value)


def test_detection_and_splits(tmp_path: Path) -> None:
    importer = CocoImporter()
    roboflow = tmp_path / "roboflow"
    for folder in ("train", "valid", "test"):
        _image(roboflow / folder / f"{folder}.png")
        _write(roboflow / folder / "_annotations.coco.json",
               [{"id": 0, "file_name": f"{folder}.png"}], [_ann(0, 1, [1, 1, 5, 5])])
    (roboflow / "README.roboflow.txt").write_text("exported")
    assert importer.detect(roboflow)
    samples = list(importer.read(roboflow, Report()))
    assert [(s.split, s.key, len(s.boxes)) for s in samples] == [
        ("train", "train/train.png", 1), ("val", "valid/valid.png", 1),
        ("test", "test/test.png", 1)]
    single = _write(tmp_path / "one" / "export.json", [], [])
    assert importer.detect(single) and importer.detect(single.parent)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text('{"classes": [], "images": []}')
    (tmp_path / "other" / "broken.json").write_text('{"images": [')
    assert not importer.detect(tmp_path / "other")
    assert not importer.detect(tmp_path / "other" / "meta.json")
    assert not importer.detect(tmp_path / "missing")
    assert [split_of(Path(n)) for n in ("instances_train2017.json", "instances_val2017.json",
                                        "image_info_test-dev2017.json", "labels.json",
                                        "my-validation.json", "trainval.json")] == [
        "train", "val", "test", None, "val", None]


def test_a_single_file_without_a_split_gets_the_ratio_split(tmp_path: Path, registry) -> None:
    images = []
    for number in range(10):
        _image(tmp_path / "ds" / "images" / f"{number}.png", colour=number * 10)
        images.append({"id": number, "file_name": f"{number}.png"})
    _write(tmp_path / "ds" / "coco.json", images, [_ann(0, 3, [1, 1, 5, 5])])
    result = run(tmp_path / "ds", tmp_path / "out", registry)
    assert dict(result.report.images) == {"train": 8, "val": 1, "test": 1}
    assert [(i.id, i.name) for i in result.label_map.items] == [(1, "cat"), (3, "dog"),
                                                                 (7, "fox")]


def test_each_file_is_parsed_once(tmp_path: Path, registry, monkeypatch) -> None:
    import odplug_builtins.coco as coco

    source = _dataset(tmp_path / "ds")
    (source / "extra.json").write_text(json.dumps({"images": [], "annotations": [],
                                                   "categories": CATS}))
    parsed: list[str] = []
    real = coco._parse
    monkeypatch.setattr(coco, "_parse", lambda path: parsed.append(path.name) or real(path))
    run(source, tmp_path / "out", registry)
    assert sorted(parsed) == ["extra.json", "instances_train2017.json", "instances_val2017.json"]


# -- fuzzing: malformed COCO structures end in one line or a full account ----------------------

entries = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(0, 3), json_values), "file_name": st.sampled_from(
        ["img0.png", "img1.jpg", "../x.png", "", "missing.png"]) | json_values,
    "width": st.sampled_from([8, 5, 0, None, "8", 1e999]), "height": st.sampled_from([8, 5, 0]),
}))
bboxes = st.one_of(st.lists(st.floats(-5, 12) | st.integers(-5, 12), min_size=4, max_size=4),
                   json_values)
annotations = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "image_id": st.integers(0, 4) | json_values, "category_id": st.integers(-1, 4) | json_values,
    "bbox": bboxes, "iscrowd": st.sampled_from([0, 1, True, "1"]),
    "segmentation": json_values | st.lists(st.lists(st.integers(0, 9), max_size=8), max_size=2),
}))
categories = st.one_of(st.just(CATS), st.just([{"id": 0, "name": "background"}, *CATS]),
                       st.lists(json_values | st.fixed_dictionaries(
                           {"id": st.integers(-1, 4), "name": st.sampled_from(["a", "b", ""])}),
                           max_size=3))


@given(data=st.data())
@settings(FUZZ, max_examples=40)
def test_coco_import_survives_malformed_structures(data: st.DataObject) -> None:
    names = ["img0.png", "img1.jpg"]
    document = data.draw(st.one_of(
        st.fixed_dictionaries({"images": st.lists(entries, max_size=4),
                               "annotations": st.lists(annotations, max_size=6),
                               "categories": categories}),
        json_values))
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "ds", Path(tmp) / "out"
        (source / "images").mkdir(parents=True)
        for name in names:
            (source / "images" / name).write_bytes(data.draw(image_files((8, 8))))
        path = source / "annotations" / "instances_train.json"
        path.parent.mkdir()
        path.write_text(json.dumps(document))
        result = imported(source, out)
        if result is None or not isinstance(document, dict):
            return
        origins: dict[str, str] = {}
        for index, entry in enumerate(document["images"]):
            if isinstance(entry, dict) and entry.get("file_name") in names:
                origins.setdefault(entry["file_name"], f"{path}:images[{index}]")
        assert_accounted(result, out, origins, origins)
        assert all(math.isfinite(v) for row in read_records(out) for box in row["boxes"]
                   for v in box)


def test_rename_and_class_filter_keep_the_dataset_ids(tmp_path: Path, registry) -> None:
    """Filtering or renaming classes keeps COCO's ids (a model trained on COCO ids stays
    comparable); classes merged by --rename take the lowest id of those merged."""
    source = _dataset(tmp_path / "ds")
    kept = run(source, tmp_path / "kept", registry, classes=["dog", "fox"])
    assert [(i.id, i.name) for i in kept.label_map.items] == [(3, "dog"), (7, "fox")]
    assert {c for r in read_records(tmp_path / "kept") for c in r["classes"]} == {3, 7}
    merged = run(source, tmp_path / "merged", registry, rename={"fox": "animal",
                                                                "dog": "animal"})
    assert [(i.id, i.name) for i in merged.label_map.items] == [(1, "cat"), (3, "animal")]
    assert {c for r in read_records(tmp_path / "merged") for c in r["classes"]} == {1, 3}
