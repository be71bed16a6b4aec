"""``data.import`` end to end: real datasets in, records out, every bad input reported."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.data import convert
from odplug.data.labelmap import read_label_map
from odplug.data.shards import shard_files
from odplug.errors import OdplugError
from tests.support.records import problem_files as codes
from tests.support.records import read_records
from tests.support.records import run_import as run

# -- real datasets ----------------------------------------------------------------------------

def test_raccoon_boxes_equal_the_csv(raccoon: Path, tmp_path: Path, registry) -> None:
    result = run(raccoon, tmp_path / "out", registry, format="tf_csv")
    assert result.importer == "tf_csv" and not result.report.problems
    assert dict(result.report.images) == {"train": 160, "test": 40}
    assert dict(result.report.boxes) == {"train": 173, "test": 44}
    assert read_label_map(tmp_path / "out" / "label_map.pbtxt").names == ["raccoon"]
    for split, csv_name in (("train", "train_labels.csv"), ("test", "test_labels.csv")):
        expected: dict[str, list[list[float]]] = {}
        with (raccoon / "data" / csv_name).open() as handle:
            for row in csv.DictReader(handle):
                w, h = float(row["width"]), float(row["height"])
                expected.setdefault(row["filename"], []).append([
                    float(row["ymin"]) / h, float(row["xmin"]) / w,
                    float(row["ymax"]) / h, float(row["xmax"]) / w])
        rows = read_records(tmp_path / "out", split)
        assert {r["source_id"] for r in rows} == set(expected)
        for row in rows:
            assert row["classes"] == [1] * len(expected[row["source_id"]])
            got = np.array(row["boxes"], dtype=np.float32)
            want = np.array(expected[row["source_id"]], dtype=np.float32)
            assert np.array_equal(got, want), row["source_id"]
            assert row["image_shape"] == (row["height"], row["width"], 3)
            assert row["sha256"] and row["format"] == "jpeg"


def _expected_demo_boxes(project: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Boxes read straight from the annotation JSON, independently of the importer."""
    expected = {}
    for ann in sorted(project.glob("*/ann/*.json")):
        data = json.loads(ann.read_text())
        boxes = []
        for obj in data["objects"]:
            if obj["geometryType"] == "bitmap":
                mask = np.asarray(Image.open(io.BytesIO(
                    zlib.decompress(base64.b64decode(obj["bitmap"]["data"])))).convert("L"))
                rows, cols = np.nonzero(mask)
                ox, oy = obj["bitmap"]["origin"]
                box = (ox + cols.min(), oy + rows.min(), ox + cols.max() + 1, oy + rows.max() + 1)
            else:
                points = np.array(obj["points"]["exterior"], dtype=float)
                box = (*points.min(axis=0), *points.max(axis=0) + 1)  # inclusive corners
            boxes.append((obj["classTitle"], *map(float, box)))
        expected[f"{ann.parent.parent.name}/{ann.name[:-5]}"] = boxes
    return expected


def test_demo_project_boxes_equal_the_annotations(demo_project: Path, tmp_path: Path,
                                                  registry) -> None:
    result = run(demo_project, tmp_path / "out", registry)
    assert result.importer == "supervisely" and not result.report.problems
    assert set(result.report.images) == {"train", "val", "test"}
    expected = _expected_demo_boxes(demo_project)
    names = result.label_map.names
    rows = read_records(tmp_path / "out")
    assert len(rows) == len(expected) == 30
    for row in rows:
        want = expected[row["source_id"]]
        w, h = row["width"], row["height"]
        assert [names[c - 1] for c in row["classes"]] == [b[0] for b in want]
        got = np.array(row["boxes"], dtype=np.float32).reshape(-1, 4)
        ref = np.array([[b[2] / h, b[1] / w, b[4] / h, b[3] / w] for b in want],
                       dtype=np.float32).reshape(-1, 4)
        assert np.array_equal(got, ref), row["source_id"]


def test_supervisely_to_tf_csv_to_tfrecord_equals_direct(demo_project: Path, tmp_path: Path,
                                                         registry) -> None:
    """The original two-step flow, reproduced, gives the same records as the direct one."""
    run(demo_project, tmp_path / "direct", registry)
    run(demo_project, tmp_path / "csv", registry, to="tf_csv")
    assert (tmp_path / "csv" / "train.csv").is_file()
    assert (tmp_path / "csv" / "images" / "train").is_dir()
    run(tmp_path / "csv", tmp_path / "two-step", registry)
    direct = {r["source_id"]: r for r in read_records(tmp_path / "direct")}
    two_step = {r["source_id"]: r for r in read_records(tmp_path / "two-step")}
    assert direct.keys() == two_step.keys()
    for key, row in direct.items():
        other = two_step[key]
        for field in ("boxes", "classes", "sha256", "width", "height"):
            assert row[field] == other[field], (key, field)
    for split in ("train", "val", "test"):
        assert {r["source_id"] for r in read_records(tmp_path / "direct", split)} == {
            r["source_id"] for r in read_records(tmp_path / "two-step", split)}


# -- options ----------------------------------------------------------------------------------

def test_ratio_split_is_seeded_complete_and_disjoint(demo_project: Path, tmp_path: Path,
                                                     registry) -> None:
    first = run(demo_project, tmp_path / "a", registry, split="ratio", ratios=(0.5, 0.25, 0.25))
    again = run(demo_project, tmp_path / "b", registry, split="ratio", ratios=(0.5, 0.25, 0.25))
    other = run(demo_project, tmp_path / "c", registry, split="ratio", ratios=(0.5, 0.25, 0.25),
                seed=7)
    assert dict(first.report.images) == {"train": 15, "val": 8, "test": 7}
    ids = {s: {r["source_id"] for r in read_records(tmp_path / "a", s)}
           for s in first.report.images}
    assert sum(map(len, ids.values())) == 30 and len(set.union(*ids.values())) == 30
    assert ids["test"] == {r["source_id"] for r in read_records(tmp_path / "b", "test")}
    assert ids["test"] != {r["source_id"] for r in read_records(tmp_path / "c", "test")}
    assert dict(again.report.images) == dict(first.report.images)
    assert other.report.images["train"] == 15


def test_rename_merges_and_classes_filter(demo_project: Path, tmp_path: Path, registry) -> None:
    result = run(demo_project, tmp_path / "out", registry,
                 rename={"square": "polygon", "triangle": "polygon"}, classes=["polygon"])
    assert result.label_map.names == ["polygon"]
    assert result.report.filtered_boxes["circle"] > 0
    rows = read_records(tmp_path / "out")
    # the project's ids are kept: merged classes take the lowest id of those merged (square's)
    square = run(demo_project, tmp_path / "plain", registry).label_map.id_of("square")
    assert result.label_map.ids == [square]
    assert {c for r in rows for c in r["classes"]} == {square}
    assert len(rows) == 30  # images left with no box stay, as negatives


def test_explicit_shards_and_decode_verification(demo_project: Path, tmp_path: Path,
                                                 registry) -> None:
    run(demo_project, tmp_path / "out", registry, shards=3, verify="decode", workers=2)
    names = [p.name for p in shard_files(tmp_path / "out", "train")]
    assert names == [f"train.record-0000{i}-of-00003" for i in range(3)]
    run(demo_project, tmp_path / "out", registry, shards=1)
    assert [p.name for p in shard_files(tmp_path / "out", "train")] == [
        "train.record-00000-of-00001"]  # the earlier run's shards are gone


def test_a_crash_leaves_no_partial_file_and_keeps_the_old_output(
        demo_project: Path, tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    run(demo_project, out, registry, shards=2, workers=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = convert.WriteJob  # noqa: F841 - the job is built in convert; break the encoder

    import odplug.data.shards as shards

    original = shards.encode_example

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(shards, "encode_example", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        run(demo_project, out, registry, shards=3, workers=1)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before


# -- bad input --------------------------------------------------------------------------------

def _ann(project: Path, name: str) -> Path:
    return next(project.glob(f"*/ann/{name}.json"))


def _edit(project: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    path = _ann(project, name)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_every_supervisely_problem_is_reported_and_the_rest_imported(
        demo_copy: Path, tmp_path: Path, registry) -> None:
    images = sorted(p.name for p in demo_copy.glob("*/img/*.jpg"))
    with_objects = [n for n in images if json.loads(_ann(demo_copy, n).read_text())["objects"]]
    missing, corrupt, truncated, clipped, zero, point, bad_json, resized, *_ = with_objects
    next(demo_copy.glob(f"*/img/{missing}")).unlink()
    next(demo_copy.glob(f"*/img/{corrupt}")).write_bytes(b"\x00" * 100)
    image = next(demo_copy.glob(f"*/img/{truncated}"))
    image.write_bytes(image.read_bytes()[:400])

    def stick_out(data: dict) -> None:
        data["objects"] = [{"classTitle": "square", "geometryType": "rectangle",
                            "points": {"exterior": [[-5, 10], [50, 500]], "interior": []}}]

    def flatten(data: dict) -> None:
        data["objects"] = [{"classTitle": "square", "geometryType": "rectangle",
                            "points": {"exterior": [[500, 10], [510, 50]], "interior": []}},
                           {"classTitle": "circle", "geometryType": "rectangle",
                            "points": {"exterior": [[5, 10], [30, 50]], "interior": []}}]

    def add_point(data: dict) -> None:
        data["objects"].append({"classTitle": "circle", "geometryType": "point",
                                "points": {"exterior": [[5, 5]], "interior": []}})

    def resize(data: dict) -> None:
        data["size"] = {"width": 200, "height": 100}

    clipped_ann = _edit(demo_copy, clipped, stick_out)
    zero_ann = _edit(demo_copy, zero, flatten)
    point_ann = _edit(demo_copy, point, add_point)
    resized_ann = _edit(demo_copy, resized, resize)
    bad_ann = _ann(demo_copy, bad_json)
    bad_ann.write_text("{\"objects\": [")
    result = run(demo_copy, tmp_path / "out", registry)
    skipped = codes(result, "image skipped")
    assert [Path(f).name for f in skipped["missing-image"]] == [missing]
    assert sorted(Path(f).name for f in skipped["corrupt-image"]) == sorted([corrupt, truncated])
    assert skipped["malformed-annotation"] == [str(bad_ann)]
    assert skipped["size-mismatch"] == [str(resized_ann)]
    assert codes(result, "box changed")["clipped"] == [str(clipped_ann)]
    assert codes(result, "box skipped")["outside-image"] == [str(zero_ann)]
    assert codes(result, "box skipped")["no-box-geometry"] == [str(point_ann)]
    assert sum(result.report.images.values()) == 30 - 5
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped"]["images"]["corrupt-image"] == 2
    assert report["total"]["images"] == 25
    clipped_row = next(r for r in read_records(tmp_path / "out") if r["filename"] == clipped)
    assert clipped_row["boxes"][0] == pytest.approx([10 / 96, 0.0, 1.0, 51 / 96])  # x -5..50


def test_class_not_in_the_given_label_map(demo_project: Path, tmp_path: Path, registry) -> None:
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text("item { id: 1 name: 'circle' }\nitem { id: 2 name: 'square' }\n")
    result = run(demo_project, tmp_path / "out", registry, label_map=label_map)
    unknown = [p for p in result.report.problems if p.code == "unknown-class"]
    assert unknown and all("'triangle' is not in the label map" in p.reason for p in unknown)
    assert {c for r in read_records(tmp_path / "out") for c in r["classes"]} == {1, 2}


def test_empty_and_unknown_datasets_are_clear_errors(tmp_path: Path, registry,
                                                     demo_copy: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OdplugError, match="not a dataset format odplug recognises"):
        run(empty, tmp_path / "out", registry)
    with pytest.raises(OdplugError, match="no such file or folder"):
        run(tmp_path / "nope", tmp_path / "out", registry)
    with pytest.raises(OdplugError, match="unknown importer 'supervisly'. Did you mean "
                                          "'supervisely'"):
        run(demo_copy, tmp_path / "out", registry, format="supervisly")
    for ann in demo_copy.glob("*/img/*.jpg"):
        ann.unlink()
    with pytest.raises(OdplugError, match="every image was skipped") as caught:
        run(demo_copy, tmp_path / "out", registry)
    failed = tmp_path / "out.failed-report.json"
    assert str(failed) in str(caught.value) and not (tmp_path / "out").exists()
    assert json.loads(failed.read_text())["skipped"]["images"]


def test_untagged_images_are_reported_when_others_are_tagged(demo_copy: Path, tmp_path: Path,
                                                             registry) -> None:
    first = sorted(demo_copy.glob("*/ann/*.json"))[0]
    data = json.loads(first.read_text())
    data["tags"] = []
    first.write_text(json.dumps(data))
    result = run(demo_copy, tmp_path / "out", registry)
    assert codes(result, "image skipped")["no-split"] == [str(first)]
    shutil.rmtree(tmp_path / "out")
    assert sum(run(demo_copy, tmp_path / "out", registry,
                   split="ratio").report.images.values()) == 30


# -- near misses: a dataset of a known format that cannot be read says why ----------------------


def test_a_data_yaml_without_names_says_so_not_unknown_format(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    (source / "images" / "train").mkdir(parents=True)
    (source / "data.yaml").write_text("train: images/train\nval: images/val\n")
    with pytest.raises(OdplugError) as caught:
        run(source, tmp_path / "out", registry)
    message = str(caught.value)
    assert "not a dataset format" not in message and "\n" not in message
    assert f"{source}: looks like a yolo dataset, but {source / 'data.yaml'}: no names" in message


def test_a_record_file_with_a_corrupt_first_length_says_so(tmp_path: Path, registry) -> None:
    from odplug.data.tfrecord import write_record

    source = tmp_path / "ds"
    source.mkdir()
    with (source / "train.tfrecord").open("wb") as handle:
        write_record(handle, b"\x08\x01")
    data = bytearray((source / "train.tfrecord").read_bytes())
    data[0] ^= 0x10
    (source / "train.tfrecord").write_bytes(bytes(data))
    with pytest.raises(OdplugError) as caught:
        run(source, tmp_path / "out", registry)
    message = str(caught.value)
    assert "not a dataset format" not in message
    assert f"looks like a tfrecord dataset, but {source / 'train.tfrecord'}: " in message
    assert "length" in message


def test_a_near_miss_does_not_stand_in_the_way_of_a_real_dataset(tmp_path: Path, registry,
                                                                demo_copy: Path) -> None:
    (demo_copy / "broken.tfrecord").write_bytes(b"not a record at all")
    from odplug.data.convert import choose_importer

    assert choose_importer(registry, demo_copy, None).name == "supervisely"
