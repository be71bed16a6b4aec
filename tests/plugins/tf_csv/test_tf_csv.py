"""The tf_csv importer and writer: the original workflow's intermediate format."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from odplug.errors import OdplugError
from odplug_builtins.tf_csv import TFCsvImporter, find_csvs, split_of
from tests.support.records import problem_files as codes
from tests.support.records import read_records
from tests.support.records import run_import as run


def _csv_dataset(folder: Path, rows: dict[str, list[str]], images: list[str]) -> Path:
    (folder / "images").mkdir(parents=True)
    for name in images:
        Image.new("RGB", (64, 48), (90, 40, 200)).save(folder / "images" / name)
    for split, lines in rows.items():
        (folder / f"{split}.csv").write_text(
            "filename,width,height,class,xmin,ymin,xmax,ymax\n" + "".join(f"{x}\n" for x in lines))
    return folder


def test_csv_problems_are_reported(tmp_path: Path, registry) -> None:
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (64, 48)).save(outside)
    source = _csv_dataset(tmp_path / "ds", {
        "train": ["a.jpg,64,48,cat,1,2,30,40", "a.jpg,64,48,dog,x,2,30,40",
                  "../../secret.jpg,64,48,cat,1,2,3,4", "b.jpg,64,48,cat,1,2,30,40",
                  "c.jpg,64,48,,,,,"],
        "test": ["b.jpg,64,48,cat,1,2,30,40", "d.jpg,64,48,cat,1,2,30,40",
                 "d.jpg,32,48,cat,1,2,30,40"],
    }, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    result = run(source, tmp_path / "out", registry)
    images = codes(result, "image skipped")
    assert images["escapes-dataset"] == [f"{source / 'train.csv'}:4"]
    assert images["duplicate-image"] == [f"{source / 'train.csv'}:5"]
    assert images["inconsistent-size"] == [f"{source / 'test.csv'}:3"]
    assert codes(result, "box skipped")["malformed-row"] == [f"{source / 'train.csv'}:3"]
    assert dict(result.report.images) == {"test": 1, "train": 2}
    negatives = [r for r in read_records(tmp_path / "out", "train") if r["filename"] == "c.jpg"]
    assert negatives[0]["boxes"] == [] and negatives[0]["classes"] == []


def test_images_that_no_row_names_are_reported(tmp_path: Path, registry) -> None:
    source = _csv_dataset(tmp_path / "ds", {"train": ["a.jpg,64,48,cat,1,2,30,40"],
                                            "test": ["b.jpg,64,48,cat,1,2,30,40"]},
                          ["a.jpg", "b.jpg", "c.jpg"])
    result = run(source, tmp_path / "out", registry)
    assert codes(result, "image skipped") == {"no-annotation": [str(source / "images" / "c.jpg")]}
    assert sum(result.report.images.values()) == 2


@pytest.mark.parametrize("header,message", [
    ("filename,cell_type,xmin,xmax,ymin,ymax", "missing column.*width, height, class"),
    ("", "missing column"),
])
def test_wrong_csv_header_is_a_clear_error(tmp_path: Path, registry, header: str,
                                           message: str) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.csv").write_text(header + "\n" if header else "")
    with pytest.raises(OdplugError, match=message) as caught:
        run(tmp_path / "ds", tmp_path / "out", registry, format="tf_csv")
    assert "train.csv" in str(caught.value) and "filename,width,height" in str(caught.value)


def test_malformed_csv_is_a_clear_error(tmp_path: Path, registry) -> None:
    source = _csv_dataset(tmp_path / "ds", {"train": ['"a.jpg,64,48,cat,1,2,30,40']}, ["a.jpg"])
    (source / "train.csv").write_bytes((source / "train.csv").read_bytes() + b"\x00,\n" * 2)
    with pytest.raises(OdplugError, match="train.csv"):
        run(source, tmp_path / "out", registry)




def test_finds_split_files_by_name(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name in ("train_labels.csv", "test_labels.csv", "all_labels.csv"):
        (tmp_path / "data" / name).write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    assert [p.name for p in find_csvs(tmp_path)] == ["test_labels.csv", "train_labels.csv"]
    assert split_of(Path("validation.csv")) == "val" and split_of(Path("x.csv")) is None
    assert TFCsvImporter().detect(tmp_path)
    assert not TFCsvImporter().detect(tmp_path / "data" / "nothing")


def test_raccoon_label_map_is_found_one_level_down(raccoon: Path) -> None:
    label_map = TFCsvImporter().label_map(raccoon)
    assert label_map is not None and label_map.names == ["raccoon"]


def test_writer_keeps_negatives_and_exact_coordinates(tmp_path: Path, registry) -> None:
    source = _csv_dataset(tmp_path / "ds", {
        "train": ["a.jpg,64,48,cat,1.25,2,30,40.5", "c.jpg,64,48,,,,,"],
    }, ["a.jpg", "c.jpg"])
    run(source, tmp_path / "csv", registry, to="tf_csv")
    lines = (tmp_path / "csv" / "train.csv").read_text().splitlines()
    assert lines == ["filename,width,height,class,xmin,ymin,xmax,ymax",
                     "a.jpg,64,48,cat,1.25,2,30,40.5", "c.jpg,64,48,,,,,"]
    assert (tmp_path / "csv" / "images" / "train" / "a.jpg").read_bytes() == (
        source / "images" / "a.jpg").read_bytes()


def test_numbers_that_cannot_be_pixels_are_reported_not_raised(tmp_path: Path, registry) -> None:
    huge = "9" * 400
    source = _csv_dataset(tmp_path / "ds", {"train": [
        "a.jpg,64,48,cat,1,2,30,40",
        f"a.jpg,64,48,cat,{huge},2,30,40",
        "a.jpg,64,48,cat,nan,2,30,40",
        "a.jpg,64,48,cat,1,-inf,30,40",
        f"a.jpg,64,48,cat,1.{huge},2,30,40",
        f"b.jpg,{huge},48,cat,1,2,30,40",
        f"c.jpg,1e{huge},nan,cat,1,2,30,40",
        "c\x00.jpg,64,48,cat,1,2,30,40",
    ]}, ["a.jpg", "b.jpg", "c.jpg"])
    result = run(source, tmp_path / "out", registry)
    train = source / "train.csv"
    assert codes(result, "box skipped")["malformed-row"] == [f"{train}:{n}" for n in (3, 4, 5, 6)]
    assert codes(result, "image skipped")["malformed-row"] == [f"{train}:9"]
    assert dict(result.report.images) == {"train": 3}
    messages = [p.reason for p in result.report.problems if p.code == "malformed-row"]
    assert all(len(message) < 200 for message in messages), messages
    boxes = {r["filename"]: len(r["boxes"]) for r in read_records(tmp_path / "out", "train")}
    assert boxes == {"a.jpg": 1, "b.jpg": 1, "c.jpg": 1}


def test_class_names_with_outer_spaces_survive_a_round_trip(tmp_path: Path, registry) -> None:
    """Supervisely -> tf_csv -> records keeps ' car ' as written: a CSV cell is exact, as the
    original generate_tfrecord.py read it (its label map has the same name, spaces included)."""
    import json

    from odplug.data.demo import supervisely_annotation, supervisely_meta, supervisely_points

    project = tmp_path / "project"
    (project / "ds" / "img").mkdir(parents=True)
    (project / "ds" / "ann").mkdir(parents=True)
    (project / "meta.json").write_text(json.dumps(
        supervisely_meta([(" car ", "rectangle", "#FF0000"), ("van", "rectangle", "#00FF00")],
                         ["train"])))
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30)).save(project / "ds" / "img" / name)
        objects = [supervisely_points(" car ", "rectangle", [[2, 3], [20, 25]]),
                   supervisely_points("van", "rectangle", [[5, 5], [9, 9]])]
        (project / "ds" / "ann" / f"{name}.json").write_text(
            json.dumps(supervisely_annotation("train", 40, 30, objects)))
    run(project, tmp_path / "csv", registry, to="tf_csv")
    result = run(tmp_path / "csv", tmp_path / "records", registry)
    assert not codes(result, "box skipped"), result.report
    from odplug.data.labelmap import read_label_map

    names = {item.id: item.name for item in
             read_label_map(tmp_path / "records" / "label_map.pbtxt").items}
    classes = sorted(names[c] for r in read_records(tmp_path / "records") for c in r["classes"])
    assert classes == [" car ", " car ", "van", "van"]


def test_a_file_name_too_long_for_the_system_is_a_reported_skip(tmp_path: Path,
                                                                registry) -> None:
    """Found by test_fuzz: a first row naming a 300-character file made Path.is_file raise
    ENAMETOOLONG while the importer looked for the images folder, ending the import."""
    long_name = "9" * 300
    source = _csv_dataset(tmp_path / "ds", {"train": [
        f"{long_name},64,48,cat,1,2,30,40", "a.jpg,64,48,cat,1,2,30,40"]}, ["a.jpg"])
    result = run(source, tmp_path / "out", registry)
    skipped = {origin for origins in codes(result, "image skipped").values()
               for origin in origins}
    assert skipped == {str(source / "images" / long_name)}
    assert [r["filename"] for r in read_records(tmp_path / "out", "train")] == ["a.jpg"]
