"""The YOLO importer and writer: Ultralytics and darknet layouts built in tmp_path."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.labelmap import read_label_map
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.samples import Box, Sample
from odplug_builtins.yolo.layout import label_path
from odplug_builtins.yolo.reader import YoloImporter
from odplug_builtins.yolo.writer import file_names
from tests.support.records import problem_files as codes
from tests.support.records import read_records
from tests.support.records import run_import as run

IMPORTER = YoloImporter()
ULTRALYTICS_IMAGE_SUFFIXES = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp",
                              "pfm", "heic"}


def image(path: Path, size: tuple[int, int] = (64, 32), orientation: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    Image.new("RGB", size, (120, 30, 200)).save(path, fmt, exif=exif.tobytes())
    return path


def text(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ultralytics(root: Path, labels: dict[str, str], *, names: object = ("cat", "dog"),
                extra: str = "") -> Path:
    """images/<split>/<name> + labels/<split>/<stem>.txt for each 'split/name' of `labels`,
    64x32 images, and a data.yaml naming the splits used."""
    for key, content in labels.items():
        split, name = key.split("/")
        image(root / "images" / split / name)
        if content is not None:
            text(root / "labels" / split / f"{Path(name).stem}.txt", content)
    splits = sorted({key.split("/")[0] for key in labels})
    body = {split: f"images/{split}" for split in splits}
    text(root / "data.yaml", yaml.safe_dump({**body, "names": names}) + extra)
    return root


def read(source: Path) -> tuple[list[Sample], Report]:
    report = Report()
    return list(IMPORTER.read(source, report)), report


def problems(report: Report) -> list[tuple[str, str, str]]:
    return [(p.kind, p.code, p.file) for p in report.problems]


# Exact in binary: on a 64x32 image these are whole pixels.
BOX_LINE = "0 0.5 0.5 0.25 0.5"  # cat [24, 8, 40, 24]
POLYGON_LINE = "1 0.125 0.25 0.75 0.25 0.5 0.75"  # dog [8, 8, 48, 24]


# -- reading ------------------------------------------------------------------------------------


def test_ultralytics_layout_imports_without_format(tmp_path: Path, registry) -> None:
    source = ultralytics(tmp_path / "ds", {
        "train/a.jpg": f"{BOX_LINE}\n{POLYGON_LINE}\n", "val/b.jpg": "", "test/c.png": BOX_LINE,
    }, names={0: "cat", 1: "dog", 2: "bird"})
    samples, report = read(source)
    assert not report.problems
    by_key = {s.key: s for s in samples}
    assert sorted(by_key) == ["images/test/c.png", "images/train/a.jpg", "images/val/b.jpg"]
    train = by_key["images/train/a.jpg"]
    assert train.boxes == [Box("cat", 24, 8, 40, 24), Box("dog", 8, 8, 48, 24)]
    assert (train.width, train.height, train.split) == (64, 32, "train")
    assert train.origin == str(source / "labels" / "train" / "a.txt")
    assert by_key["images/val/b.jpg"].boxes == [] and by_key["images/val/b.jpg"].split == "val"

    result = run(source, tmp_path / "records", registry)
    assert result.importer == "yolo" and not result.report.problems
    assert dict(result.report.images) == {"train": 1, "val": 1, "test": 1}
    label_map = read_label_map(tmp_path / "records" / "label_map.pbtxt")
    assert [(item.id, item.name) for item in label_map.items] == [(1, "cat"), (2, "dog"),
                                                                   (3, "bird")]
    [record] = read_records(tmp_path / "records", "train")
    assert record["classes"] == [1, 2]
    assert record["boxes"] == [[0.25, 0.375, 0.75, 0.625], [0.25, 0.125, 0.75, 0.75]]


def test_darknet_layout_with_lists_imports_without_format(tmp_path: Path, registry) -> None:
    """CVAT's "YOLO 1.1" shape: obj.data names the lists, whose paths are relative to darknet's
    working folder (data/...); labels beside the images; an unlisted image has no split."""
    source = tmp_path / "ds"
    text(source / "obj.names", "cat\ndog\n\n")
    text(source / "obj.data", "classes = 2\ntrain = data/train.txt\nvalid = data/valid.txt\n"
                              "names = data/obj.names\nbackup = backup/\n")
    for name, labels in (("a.jpg", BOX_LINE), ("b.jpg", POLYGON_LINE), ("c.jpg", BOX_LINE)):
        image(source / "obj_train_data" / name)
        text(source / "obj_train_data" / f"{Path(name).stem}.txt", labels)
    text(source / "train.txt", "data/obj_train_data/a.jpg\n")
    text(source / "valid.txt", "/content/darknet/data/obj_train_data/b.jpg\r\n")
    assert IMPORTER.detect(source)
    samples, _report = read(source)
    assert [(s.key, s.split, s.boxes) for s in samples] == [
        ("obj_train_data/a.jpg", "train", [Box("cat", 24, 8, 40, 24)]),
        ("obj_train_data/b.jpg", "val", [Box("dog", 8, 8, 48, 24)]),
        ("obj_train_data/c.jpg", None, [Box("cat", 24, 8, 40, 24)]),
    ]
    result = run(source, tmp_path / "records", registry)
    assert result.importer == "yolo"
    assert dict(result.report.images) == {"train": 1, "val": 1}
    assert codes(result, "image skipped") == {"no-split": [str(source / "obj_train_data" /
                                                                "c.txt")]}
    assert not codes(result, "box skipped")


def test_label_studio_layout_classes_txt_and_labels_folder(tmp_path: Path, registry) -> None:
    """classes.txt + images/ + labels/ and no lists (Label Studio's YOLO export): no split in
    the source, so the ratio split decides."""
    source = tmp_path / "ds"
    text(source / "classes.txt", "cat\r\ndog\r\n")
    text(source / "notes.json", "{}")
    for index in range(5):
        image(source / "images" / f"{index}.jpg")
        text(source / "labels" / f"{index}.txt", BOX_LINE)
    result = run(source, tmp_path / "records", registry)
    assert result.importer == "yolo" and not result.report.problems
    assert sum(result.report.images.values()) == 5 and sum(result.report.boxes.values()) == 5


def test_labelimg_flat_folder_with_classes_txt(tmp_path: Path) -> None:
    """LabelImg's YOLO mode: images, their .txt and classes.txt in one folder; classes.txt is
    not taken for an orphan label."""
    source = tmp_path / "ds"
    text(source / "classes.txt", "cat\ndog\n")
    image(source / "a.jpg")
    text(source / "a.txt", POLYGON_LINE)
    text(source / "stray.txt", BOX_LINE)
    assert IMPORTER.detect(source)
    [sample], report = read(source)
    assert (sample.key, sample.split, sample.boxes) == ("a.jpg", None, [Box("dog", 8, 8, 48, 24)])
    assert problems(report) == [("image skipped", "label-without-image", str(source / "stray.txt"))]


def test_unrelated_data_yaml_leaves_a_darknet_folder_to_darknet(tmp_path: Path) -> None:
    source = tmp_path / "ds"
    text(source / "data.yaml", "experiment: 3\n")
    text(source / "obj.names", "cat\ndog\n")
    image(source / "a.jpg")
    text(source / "a.txt", BOX_LINE)
    assert IMPORTER.detect(source)
    [sample], _report = read(source)
    assert sample.boxes == [Box("cat", 24, 8, 40, 24)]


def test_yaml_named_like_its_folder_is_preferred(tmp_path: Path) -> None:
    source = ultralytics(tmp_path / "coco8", {"train/a.jpg": BOX_LINE})
    (source / "data.yaml").rename(source / "coco8.yaml")
    text(source / "coco8-seg.yaml", "train: images/train\nnames: [cat, dog, emu]\n")
    assert IMPORTER.label_map(source).names == ["cat", "dog"]
    (source / "coco8.yaml").rename(source / "other.yaml")
    with pytest.raises(OdplugError, match="several dataset yaml files"):
        IMPORTER.label_map(source)


def test_roboflow_parent_paths_resolve_inside_the_source(tmp_path: Path, registry) -> None:
    """Roboflow writes train: ../train/images beside the yaml; Ultralytics drops the ../ when
    the path does not exist, and so does odplug."""
    source = tmp_path / "ds"
    for split in ("train", "valid"):
        image(source / split / "images" / f"{split}.jpg")
        text(source / split / "labels" / f"{split}.txt", BOX_LINE)
    text(source / "data.yaml", "train: ../train/images\nval: ../valid/images\n"
                               "nc: 2\nnames: ['cat', 'dog']\n")
    text(source / "README.roboflow.txt", "exported")
    result = run(source, tmp_path / "records", registry)
    assert not result.report.problems
    assert dict(result.report.images) == {"train": 1, "val": 1}


def test_split_outside_the_source_is_one_reported_skip(tmp_path: Path, registry) -> None:
    outside = tmp_path / "elsewhere" / "images"
    image(outside / "x.jpg")
    source = ultralytics(tmp_path / "ds", {"val/a.jpg": BOX_LINE})
    text(source / "data.yaml", "train: ../elsewhere/images\nval: images/val\nnames: [cat]\n")
    result = run(source, tmp_path / "records", registry)
    assert codes(result, "image skipped") == {"escapes-dataset": [str(source / "data.yaml")]}
    [problem] = result.report.problems
    assert str(outside) in problem.reason and "source folder" in problem.reason
    assert dict(result.report.images) == {"val": 1}


def test_path_key_from_another_machine_falls_back_to_the_yaml_folder(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE},
                         extra="path: /content/datasets/ds\n")
    with caplog.at_level(logging.WARNING):
        samples, report = read(source)
    assert [s.key for s in samples] == ["images/train/a.jpg"] and not report.problems
    assert "path: /content/datasets/ds is not a folder here" in caplog.text
    assert IMPORTER.label_map(source).names == ["cat", "dog"]


def test_path_key_and_list_files(tmp_path: Path) -> None:
    """path: names the dataset folder; a split may be a list file (./ is beside the list) or
    a list of folders; a listed file that does not exist is reported with its line."""
    source = tmp_path / "project"
    data = source / "data"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        image(data / "images" / name)
        text(data / "labels" / f"{Path(name).stem}.txt", BOX_LINE)
    image(data / "more" / "images" / "d.jpg")
    text(data / "lists" / "train.txt", "./../images/a.jpg\nimages/b.jpg\n\nimages/gone.jpg\n")
    text(source / "cfg.yaml", "path: data\ntrain: lists/train.txt\n"
                              "val: [images/c.jpg, more/images]\nnames: [cat]\n")
    samples, report = read(source)
    assert [(s.key, s.split) for s in samples] == [
        ("data/images/a.jpg", "train"), ("data/images/b.jpg", "train"),
        ("data/images/c.jpg", "val"), ("data/more/images/d.jpg", "val")]
    assert problems(report) == [
        ("image skipped", "missing-image", f"{data / 'lists' / 'train.txt'}:4"),
        ("image note", "no-label-file", str(data / "more" / "images" / "d.jpg")),
    ]


def test_image_in_two_splits_is_a_reported_duplicate(tmp_path: Path, registry) -> None:
    """coco128's yaml uses images/train2017 for train and val: val's copies are reported."""
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE, "train/b.jpg": "1 0 0 0 0"})
    text(source / "data.yaml", "train: images/train\nval: images/train\nnames: [cat]\n")
    result = run(source, tmp_path / "records", registry)
    assert dict(result.report.images) == {"train": 2}
    skipped = codes(result, "image skipped")
    assert skipped == {"duplicate-image": [str(source / "labels" / "train" / n)
                                           for n in ("a.txt", "b.txt")]}
    assert codes(result, "box skipped") == {"unknown-class": [
        f"{source / 'labels' / 'train' / 'b.txt'}:1"]}, "each label file is read once"


def test_exif_rotated_image_boxes_land_on_the_upright_image(tmp_path: Path, registry) -> None:
    """Labels are fractions of the image as displayed (Ultralytics' exif_size); the writer
    rotates the pixels, so the size read from the header must be the rotated one."""
    source = tmp_path / "ds"
    image(source / "images" / "train" / "r.jpg", size=(40, 20), orientation=6)
    text(source / "labels" / "train" / "r.txt", "0 0.25 0.5 0.5 0.5\n")
    text(source / "data.yaml", "train: images/train\nnames: [cat]\n")
    [sample], report = read(source)
    assert not report.problems
    assert (sample.width, sample.height) == (20, 40)
    assert sample.boxes == [Box("cat", 0, 10, 10, 30)]
    result = run(source, tmp_path / "records", registry)
    assert not [p for p in result.report.problems if p.kind != "image note"]
    [record] = read_records(tmp_path / "records")
    assert (record["width"], record["height"]) == (20, 40)
    assert record["boxes"] == [[0.25, 0.0, 0.75, 0.5]]
    run(source, tmp_path / "yolo", registry, to="yolo")
    with Image.open(tmp_path / "yolo" / "images" / "train" / "r.jpg") as written:
        assert written.size == (20, 40)
    assert (tmp_path / "yolo" / "labels" / "train" / "r.txt").read_text() == \
        "0 0.25 0.5 0.5 0.5\n"


# -- bad input ----------------------------------------------------------------------------------


BAD_LINES = [
    (BOX_LINE, None),
    ("0 0.5 0.5 0.25", "malformed-label"),
    ("0 0.5 0.5 0.25 0.5 0.1", "malformed-label"),
    ("cat 0.5 0.5 0.25 0.5", "malformed-label"),
    ("0 nan 0.5 0.25 0.5", "malformed-label"),
    ("0 0.5 inf 0.25 0.5", "malformed-label"),
    ("0 0.5 0.5 0." + "1" * 40 + " 0.5", "malformed-label"),
    ("0.5 0.5 0.5 0.25 0.5", "malformed-label"),
    ("2 0.5 0.5 0.25 0.5", "unknown-class"),
    ("-1 0.5 0.5 0.25 0.5", "unknown-class"),
    ("0 32 16 16 16", "not-normalised"),
    ("0 0.5 -0.2 0.25 0.5", "not-normalised"),
    ("0 0.5 0.5 0 0.5", "zero-area"),
    ("1 0.1 0.1 0.2 0.1 0.3 0.1", "zero-area"),
    ("", None),
    (BOX_LINE.replace(" ", "  "), "duplicate-label"),
    ("1 1.005 0.5 0.25 0.5", None),  # inside Ultralytics' 1% tolerance: kept, then clipped
]


def test_every_bad_label_line_is_reported_with_its_line(tmp_path: Path, registry) -> None:
    content = "\ufeff" + "\r\n".join(line for line, _code in BAD_LINES) + "\r\n"
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": content})
    label = source / "labels" / "train" / "a.txt"
    result = run(source, tmp_path / "records", registry)
    expected: dict[str, list[str]] = {}
    for number, (_line, code) in enumerate(BAD_LINES, start=1):
        if code:
            expected.setdefault(code, []).append(f"{label}:{number}")
    assert codes(result, "box skipped") == expected
    assert codes(result, "box changed") == {"clipped": [str(label)]}
    reasons = [p.reason for p in result.report.problems]
    assert all(len(reason) < 250 for reason in reasons), reasons
    assert "repeats line 1" in " ".join(reasons)
    [record] = read_records(tmp_path / "records")
    assert record["classes"] == [1, 2]
    assert record["boxes"][1] == [0.25, pytest.approx(0.88, abs=1e-6), 0.75, 1.0]


def test_missing_labels_missing_images_and_broken_files_are_reported(tmp_path: Path,
                                                                     registry) -> None:
    source = ultralytics(tmp_path / "ds", {
        "train/good.jpg": BOX_LINE, "train/background.jpg": None, "train/latin1.jpg": "x",
        "train/corrupt.jpg": BOX_LINE,
    })
    text(source / "labels" / "train" / "latin1.txt", b"0 0.5 0.5 0.25 0.5 \xe9\n")
    (source / "images" / "train" / "corrupt.jpg").write_bytes(b"not a jpeg")
    text(source / "labels" / "train" / "orphan.txt", BOX_LINE)
    result = run(source, tmp_path / "records", registry)
    labels, images = source / "labels" / "train", source / "images" / "train"
    assert codes(result, "image skipped") == {
        "corrupt-image": [str(images / "corrupt.jpg")],
        "malformed-label": [str(labels / "latin1.txt")],
        "label-without-image": [str(labels / "orphan.txt")],
    }
    assert codes(result, "image note") == {"no-label-file": [str(images / "background.jpg")]}
    assert dict(result.report.images) == {"train": 2}


@pytest.mark.parametrize("content,message", [
    ("names: [cat, dog\ntrain: images/train\n", "data.yaml: not valid YAML"),
    ("- just\n- a list\n", "data.yaml: expected a mapping"),
    ("train: images/train\nnames: [cat, cat]\n", "'cat' is class 0 and class 1"),
    ("train: images/train\nnames: [cat, null]\n", "class 1 has no name"),
    ("train: images/train\nnames: {0: cat, 2: dog}\n", "indices must be 0 to 1"),
    ("train: images/train\nnc: 3\nnames: [cat, dog]\n", "nc is 3 but names lists 2"),
    ("train: images/train\nnc: 0\n", "no names list"),
    ("names: [cat]\nval: [1, 2]\n", "val: expected a path or a list of paths"),
])
def test_broken_yaml_is_one_error_line_naming_it(tmp_path: Path, registry, content: str,
                                                 message: str) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE})
    text(source / "data.yaml", content)
    with pytest.raises(OdplugError, match=message) as caught:
        run(source, tmp_path / "records", registry, format="yolo")
    assert "\n" not in str(caught.value) and "data.yaml" in str(caught.value)


def test_malformed_data_yaml_is_detected_so_its_error_is_shown(tmp_path: Path, registry) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE})
    text(source / "data.yaml", "names: [cat\n")
    with pytest.raises(OdplugError, match="data.yaml: not valid YAML"):
        run(source, tmp_path / "records", registry)


def test_names_file_with_a_blank_line_inside_is_an_error(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    text(source / "obj.names", "cat\n\ndog\n")
    image(source / "a.jpg")
    text(source / "a.txt", BOX_LINE)
    with pytest.raises(OdplugError, match=r"obj.names:2: empty line: class 1 has no name"):
        run(source, tmp_path / "records", registry)


def test_detect_claims_yolo_only(tmp_path: Path, raccoon: Path, demo_project: Path) -> None:
    assert not IMPORTER.detect(raccoon) and not IMPORTER.detect(demo_project)
    mediapipe = raccoon.parent / "mediapipe"
    for folder in (mediapipe / "coco_data", mediapipe / "pascal_voc_data"):
        assert not IMPORTER.detect(folder)
    voc = tmp_path / "voc"  # a names file but no label file by either rule
    text(voc / "classes.txt", "cat\n")
    image(voc / "JPEGImages" / "a.jpg")
    text(voc / "Annotations" / "a.xml", "<annotation/>")
    assert not IMPORTER.detect(voc)
    other = text(tmp_path / "cfg" / "config.yaml", "model: ssd\nlr: 0.1\n").parent
    text(other / "data.yaml", "lr: 0.1\n")
    assert not IMPORTER.detect(other) and not IMPORTER.detect(tmp_path / "missing")
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE})
    assert IMPORTER.detect(source) and IMPORTER.detect(source / "data.yaml")
    assert IMPORTER.detect(text(tmp_path / "cvat" / "obj.data", "classes = 1\n").parent)


def test_label_rule_is_ultralytics_img2label(tmp_path: Path) -> None:
    root = tmp_path / "images" / "x"
    assert label_path(root / "images" / "train" / "images" / "a.b.jpg", root) == \
        root / "images" / "train" / "labels" / "a.b.txt"
    assert label_path(root / "obj" / "a.png", root) == root / "obj" / "a.txt"
    assert label_path(root / "a.png", root) == root / "a.txt", "not ../labels/x/a.txt"


# -- writing ------------------------------------------------------------------------------------


def _boxes_by_image(folder: Path) -> dict[str, list[tuple[int, list[float]]]]:
    found = {}
    for record in read_records(folder):
        found[Path(record["filename"]).stem] = sorted(
            zip(record["classes"], record["boxes"], strict=True))
    return found


def _assert_same_boxes(first: Path, second: Path) -> None:
    """Same images, classes and boxes, to within float32 rounding."""
    one, two = _boxes_by_image(first), _boxes_by_image(second)
    assert sorted(one) == sorted(two)
    for name, boxes in one.items():
        assert [c for c, _ in boxes] == [c for c, _ in two[name]], name
        for (_, box), (_, other) in zip(boxes, two[name], strict=True):
            assert box == pytest.approx(other, abs=1e-6), name


def test_round_trip_yolo_records_yolo_records(tmp_path: Path, registry) -> None:
    odd = "0 0.3141592653589793 0.2718281828459045 0.1234567 0.3333333333333333"
    source = ultralytics(tmp_path / "ds", {
        "train/a.jpg": f"{BOX_LINE}\n{POLYGON_LINE}\n{odd}\n", "train/b.png": "",
        "val/c.jpg": odd, "test/d.jpg": POLYGON_LINE,
    }, names=["cat", "dog", "unused"])
    run(source, tmp_path / "direct", registry)
    first = run(source, tmp_path / "yolo", registry, to="yolo", workers=1)
    assert first.writer == "yolo" and not first.report.problems
    again = run(tmp_path / "yolo", tmp_path / "again", registry)
    assert again.importer == "yolo" and not again.report.problems
    assert dict(again.report.images) == {"train": 2, "val": 1, "test": 1}
    _assert_same_boxes(tmp_path / "direct", tmp_path / "again")
    assert read_label_map(tmp_path / "again" / "label_map.pbtxt").names == \
        ["cat", "dog", "unused"]


def test_output_follows_ultralytics_rules(tmp_path: Path, registry) -> None:
    """What Ultralytics' check_det_dataset and img2label_paths would find, re-implemented from
    their documented rules (Ultralytics itself is not installed)."""
    names = ["yes", "1", "a: b", " car ", "null"]
    labels = {f"{split}/{i}.jpg": f"{i % 5} 0.5 0.5 0.25 0.5" for split in ("train", "val")
              for i in range(3)}
    labels["train/empty.jpg"] = ""
    source = ultralytics(tmp_path / "ds", labels, names=names)
    run(source, tmp_path / "yolo", registry, to="yolo", workers=2)
    out = tmp_path / "yolo"
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"train": "images/train", "val": "images/val", "nc": 5, "names": names}
    assert "path" not in data  # Ultralytics then resolves against the yaml's folder
    for split in ("train", "val"):
        folder = out / data[split]
        assert folder.is_dir()
        images = [p for p in folder.rglob("*.*")
                  if p.suffix[1:].lower() in ULTRALYTICS_IMAGE_SUFFIXES]
        assert len(images) == (4 if split == "train" else 3)
        sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
        for found in images:
            labels_file = Path(sb.join(str(found).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")
            lines = [line.split() for line in labels_file.read_text().splitlines()]
            assert len(lines) == (0 if found.stem == "empty" else 1)
            for cls, *coords in lines:
                assert 0 <= int(cls) < len(names) and all(0 <= float(c) <= 1 for c in coords)
                assert len(coords) == 4


def test_tf_csv_to_yolo_to_records_equals_tf_csv_to_records(tmp_path: Path, registry) -> None:
    source = tmp_path / "csv"
    text(source / "train.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                               "a.jpg,64,32,cat,1.25,2.5,30.75,31\na.jpg,64,32,dog,0,0,64,32\n"
                               "b.png,64,32,,,,,\nc.jpg,64,32,dog,10.1,3.3,11.7,9.9\n")
    text(source / "test.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                              "d.jpg,64,32,cat,0.001,0.002,63.999,31.998\n")
    for name in ("a.jpg", "b.png", "c.jpg", "d.jpg"):
        image(source / "images" / name)
    run(source, tmp_path / "direct", registry)
    run(source, tmp_path / "yolo", registry, to="yolo")
    result = run(tmp_path / "yolo", tmp_path / "again", registry)
    assert not result.report.problems
    assert dict(result.report.images) == {"train": 3, "test": 1}
    _assert_same_boxes(tmp_path / "direct", tmp_path / "again")


def test_label_map_with_gaps_becomes_consecutive_indices(tmp_path: Path, registry) -> None:
    source = tmp_path / "csv"
    text(source / "train.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                               "a.png,64,32,emu,8,8,24,24\na.png,64,32,dog,0,0,32,16\n")
    image(source / "images" / "a.png")
    text(source / "label_map.pbtxt", "item { id: 1 name: 'cat' }\nitem { id: 3 name: 'dog' }\n"
                                     "item { id: 7 name: 'emu' }\n")
    run(source, tmp_path / "yolo", registry, format="tf_csv", to="yolo")
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["names"] == \
        ["cat", "dog", "emu"]
    lines = (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert lines == ["2 0.25 0.5 0.25 0.5", "1 0.25 0.25 0.5 0.5"]


def test_file_names_drop_shared_folders_and_never_collide() -> None:
    def sample(key: str) -> Sample:
        return Sample(Path("/x") / Path(key).name, key)

    names = file_names([sample(k) for k in ("images/train/a.jpg", "images/train/a.png",
                                            "images/train/sub/images/b.jpg",
                                            "images/train/sub_a.jpg", "images/train/sub/a.jpg")])
    assert names == ["a.jpg", "a_2.png", "sub_images_b.jpg", "sub_a.jpg", "sub_a_2.jpg"]
    assert file_names([sample("../c.jpg"), sample("/abs/d.jpg")]) == ["c.jpg", "d.jpg"]
    assert file_names([sample("only/one.jpg")]) == ["one.jpg"]


def test_reencoded_image_gets_its_format_suffix(tmp_path: Path, registry) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE})
    bmp = source / "images" / "train" / "b.bmp"
    Image.new("RGB", (64, 32)).save(bmp, "BMP")
    text(source / "labels" / "train" / "b.txt", POLYGON_LINE)
    run(source, tmp_path / "yolo", registry, to="yolo")
    written = sorted(p.name for p in (tmp_path / "yolo" / "images" / "train").iterdir())
    assert written == ["a.jpg", "b.png"]
    assert (tmp_path / "yolo" / "labels" / "train" / "b.txt").read_text() == \
        "1 0.4375 0.5 0.625 0.5\n"


@pytest.mark.slow
def test_raccoon_tf_csv_to_yolo_keeps_every_box(raccoon: Path, tmp_path: Path,
                                                registry) -> None:
    run(raccoon, tmp_path / "direct", registry, format="tf_csv")
    run(raccoon, tmp_path / "yolo", registry, format="tf_csv", to="yolo")
    result = run(tmp_path / "yolo", tmp_path / "again", registry)
    assert result.importer == "yolo"
    assert dict(result.report.images) == {"train": 160, "test": 40}
    assert sum(result.report.boxes.values()) == 217
    _assert_same_boxes(tmp_path / "direct", tmp_path / "again")


# -- fuzzing ------------------------------------------------------------------------------------

numbers = st.one_of(st.floats(-0.1, 1.1).map(repr), st.integers(-2, 4).map(str),
                    st.sampled_from(["nan", "-inf", "1e999", "", "x", "0x1", "9" * 40, "1,5"]))
lines = st.one_of(
    st.builds(lambda c, v: " ".join([str(c), *v]), st.integers(0, 1),
              st.lists(st.floats(0.05, 0.95).map(repr), min_size=4, max_size=4)),
    st.lists(numbers, max_size=9).map(" ".join),
    st.text(max_size=12),
)


@given(content=st.lists(lines, max_size=6), ending=st.sampled_from(["\n", "\r\n", "\r"]),
       bom=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_label_file_imports_every_line_or_reports_it(content: list[str], ending: str,
                                                         bom: bool) -> None:
    """Each non-blank line becomes a written box or a reported one; nothing else escapes."""
    from odplug.data.convert import ImportOptions, import_dataset
    from odplug.plugins import load_registry

    with tempfile.TemporaryDirectory() as tmp:
        source = ultralytics(Path(tmp) / "ds", {"train/a.jpg": ""})
        label = source / "labels" / "train" / "a.txt"
        raw = (("\ufeff" if bom else "") + ending.join(content)).encode("utf-8", "surrogatepass")
        label.write_bytes(raw)
        try:
            result = import_dataset(source, Path(tmp) / "out", ImportOptions(to="yolo", workers=1),
                                    load_registry(entry_points=False))
        except OdplugError as error:
            assert "\n" not in str(error)
            return
        written = (Path(tmp) / "out" / "labels" / "train" / "a.txt").read_text().splitlines()
        told = [p for p in result.report.problems
                if p.kind == "box skipped" and p.file.startswith(str(label))]
        skipped_image = [p for p in result.report.problems if p.kind == "image skipped"]
        if skipped_image:
            return
        decoded = raw.decode("utf-8-sig").splitlines()
        expected = sum(1 for line in decoded if line.split())
        assert len(written) + len(told) == expected, (content, written, told)


# -- pose labels, missing splits, the path: fallback ---------------------------------------------

POSE_LINE = "0 0.5 0.5 0.25 0.25 0.1 0.2 0.55 0.45 0.5 0.6"  # 3 keypoints (x, y), 2 in the box


def pose_dataset(root: Path, lines: str, extra: str = "") -> Path:
    """One 64x48 image with `lines` as its labels and a yaml of one class, plus `extra`."""
    image(root / "images" / "train" / "a.jpg", size=(64, 48))
    text(root / "labels" / "train" / "a.txt", lines)
    text(root / "data.yaml", "train: images/train\nnames: [person]\n" + extra)
    return root


def test_pose_labels_with_kpt_shape_read_the_box_and_report_dropped_keypoints(
        tmp_path: Path) -> None:
    """Ultralytics' pose lines are 'class cx cy w h' + k keypoints of kpt_shape's d values."""
    source = pose_dataset(tmp_path / "ds", f"{POSE_LINE}\n0 0.5 0.5 0.25 0.25 0.1 0.2\n",
                          "kpt_shape: [3, 2]\n")
    [sample], report = read(source)
    assert [(b.xmin, b.ymin, b.xmax, b.ymax) for b in sample.boxes] == [(24, 18, 40, 30)]
    [(kind, code, file)] = problems(report)
    assert (kind, code) == ("box skipped", "malformed-label") and file.endswith("a.txt:2")
    assert "kpt_shape [3, 2]" in report.problems[0].reason
    [warning] = report.warnings
    assert warning.code == "keypoints-dropped"
    assert "3 keypoints of 1 label line" in warning.message


@pytest.mark.parametrize("kpt_shape", ["[3]", "[0, 2]", "[3, 4]", "three"])
def test_a_bad_kpt_shape_is_one_error_line(tmp_path: Path, kpt_shape: str) -> None:
    source = pose_dataset(tmp_path / "ds", POSE_LINE, f"kpt_shape: {kpt_shape}\n")
    with pytest.raises(OdplugError, match="data.yaml: kpt_shape: expected"):
        read(source)


def test_pose_lines_without_kpt_shape_are_polygons_and_the_doubt_is_said(tmp_path: Path) -> None:
    """Without kpt_shape Ultralytics reads them as polygons; odplug too, but says why it may
    be wrong and how to tell it."""
    other = "0 0.25 0.25 0.125 0.25 0.2 0.2 0.3 0.3 0.25 0.2"
    source = pose_dataset(tmp_path / "ds", f"{POSE_LINE}\n{other}\n")
    [sample], report = read(source)
    assert len(sample.boxes) == 2
    [warning] = report.warnings
    assert warning.code == "maybe-pose"
    assert "kpt_shape: [3, 2]" in warning.message and "2 label lines" in warning.message


def test_polygons_of_several_lengths_raise_no_pose_doubt(tmp_path: Path) -> None:
    source = pose_dataset(tmp_path / "ds", f"{POSE_LINE}\n0{POLYGON_LINE[1:]}\n")
    _samples, report = read(source)
    assert not report.warnings


def test_a_missing_split_folder_is_named_not_counted_as_an_image(tmp_path: Path,
                                                                 registry) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE})
    text(source / "data.yaml", "train: images/train\nval: images/val\nnames: [cat]\n")
    result = run(source, tmp_path / "records", registry)
    assert not codes(result, "image skipped")
    assert [w.code for w in result.report.warnings if w.code != "empty-split"] == \
        ["missing-split"]
    [warning] = [w for w in result.report.warnings if w.code == "missing-split"]
    assert "val: images/val" in warning.message and str(source / "data.yaml") in warning.message


def test_a_path_key_that_is_not_a_folder_is_a_warning_in_the_report(tmp_path: Path) -> None:
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE}, extra="path: ../gone\n")
    _samples, report = read(source)
    [warning] = report.warnings
    assert warning.code == "path-not-found"
    assert "path: ../gone" in warning.message and str(source) in warning.message


def test_images_no_split_names_are_reported_by_name(tmp_path: Path) -> None:
    """A yaml layout reads only what its splits name: an image elsewhere is a reported skip."""
    source = ultralytics(tmp_path / "ds", {"train/a.jpg": BOX_LINE, "extra/b.jpg": BOX_LINE})
    text(source / "data.yaml", "train: images/train\nnames: [cat]\n")
    samples, report = read(source)
    assert [s.key for s in samples] == ["images/train/a.jpg"]
    assert problems(report) == [
        ("image skipped", "not-in-a-split", str(source / "images" / "extra" / "b.jpg"))]
