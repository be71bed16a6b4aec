"""The Pascal VOC importer: real datasets, each layout, split lists, and every bad input."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.convert import choose_importer
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.samples import Box
from odplug_builtins.tf_csv import TFCsvImporter
from odplug_builtins.voc import VocImporter
from tests.support.records import problem_files as codes
from tests.support.records import run_import as run
from tests.support.tools import ROOT

IMPORTER = VocImporter()
MEDIAPIPE = ROOT.parent / "shared" / "datasets" / "mediapipe" / "pascal_voc_data"
Obj = tuple[str, tuple[object, object, object, object]]


def voc_xml(filename: str | None, objects: Iterable[Obj] = (), *, size: tuple | None = (64, 48),
            extra: str = "") -> str:
    """An annotation as labelImg writes it; `objects` are (name, (xmin, ymin, xmax, ymax))."""
    parts = ["<annotation>", "<folder>images</folder>"]
    if filename is not None:
        parts.append(f"<filename>{escape(filename)}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                     "<depth>3</depth></size>")
    for name, corners in objects:
        xmin, ymin, xmax, ymax = (escape(str(c)) for c in corners)
        parts.append(f"<object><name>{escape(name)}</name><difficult>0</difficult><bndbox>"
                     f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                     f"<ymax>{ymax}</ymax></bndbox></object>")
    return "".join(parts) + extra + "</annotation>\n"


def image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 40, 200)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def devkit(root: Path, ids: Iterable[str]) -> Path:
    """A VOC year folder: one image and one single-box XML per id."""
    for image_id in ids:
        image(root / "JPEGImages" / f"{image_id}.jpg")
        write(root / "Annotations" / f"{image_id}.xml",
              voc_xml(f"{image_id}.jpg", [("dog", (1, 2, 30, 40))]))
    return root


def lists(root: Path, **splits: list[str]) -> None:
    for name, ids in splits.items():
        write(root / "ImageSets" / "Main" / f"{name}.txt", "".join(f"{i}\n" for i in ids))


def read(source: Path) -> tuple[dict[str, list[Box]], Report]:
    report = Report()
    return {s.key: s.boxes for s in IMPORTER.read(source, report)}, report


# -- real datasets -------------------------------------------------------------------------------


def test_mediapipe_voc_imports_without_format_with_every_box(tmp_path: Path, registry) -> None:
    if not MEDIAPIPE.is_dir():
        pytest.skip(f"MediaPipe's VOC test data is not at {MEDIAPIPE}")
    result = run(MEDIAPIPE, tmp_path / "out", registry)
    assert result.importer == "voc" and not result.report.problems
    assert sum(result.report.images.values()) == 4
    assert sum(result.report.boxes.values()) == 6
    assert result.label_map.names == ["android", "pig_android"]


def test_raccoon_as_voc_gives_the_boxes_of_its_csv(raccoon: Path) -> None:
    """Same numbers in the XML and the CSV: both importers take them as written."""
    boxes, report = read(raccoon)
    assert not report.problems and len(boxes) == 200
    from_csv: dict[str, list[tuple]] = {}
    for sample in TFCsvImporter().read(raccoon / "data" / "raccoon_labels.csv", Report()):
        from_csv.setdefault(sample.key, []).extend(
            (b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in sample.boxes)
    assert {key: [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in found]
            for key, found in boxes.items()} == from_csv


def test_raccoon_holds_two_formats_and_says_so(raccoon: Path, tmp_path: Path, registry) -> None:
    with pytest.raises(OdplugError, match=r"several formats \(tf_csv, voc\); give --format"):
        run(raccoon, tmp_path / "out", registry)
    assert run(raccoon, tmp_path / "out", registry, format="voc").importer == "voc"


def test_mediapipe_folder_holds_a_voc_and_a_coco_and_says_so(registry) -> None:
    """Its VOC (one level down) was taken without a word, its COCO beside it left out."""
    folder = MEDIAPIPE.parent
    if not (folder / "coco_data").is_dir():
        pytest.skip(f"MediaPipe's test data is not at {folder}")
    with pytest.raises(OdplugError) as raised:
        choose_importer(registry, folder, None)
    assert str(raised.value) == (f"{folder}: looks like several formats (voc, coco in "
                                 f"coco_data/); give --format voc or --source "
                                 f"{folder / 'coco_data'}")


# -- layouts and splits --------------------------------------------------------------------------


def test_devkit_split_lists_are_honoured_and_their_problems_reported(tmp_path: Path,
                                                                     registry) -> None:
    year = devkit(tmp_path / "src" / "VOCdevkit" / "VOC2007", ["a", "b", "c", "d", "e", "f"])
    lists(year, train=["a", "b", "ghost"], val=["c", "b"], test=["d"], trainval=["e"],
          dog_train=["f 1", "a -1"])
    image(year / "JPEGImages" / "lonely.jpg")
    result = run(tmp_path / "src", tmp_path / "out", registry)
    assert result.importer == "voc"
    assert dict(result.report.images) == {"train": 1, "val": 1, "test": 1}
    skipped = codes(result, "image skipped")
    annotations = year / "Annotations"
    assert skipped["conflicting-split"] == [str(annotations / "b.xml")]
    assert skipped["missing-annotation"] == [f"{year / 'ImageSets/Main/train.txt'}:3"]
    assert sorted(skipped["no-split"]) == [str(annotations / "e.xml"), str(annotations / "f.xml")]
    assert skipped["no-annotation"] == [str(year / "JPEGImages" / "lonely.jpg")]
    keys = {p.reason for p in result.report.problems if p.code == "conflicting-split"}
    assert any("train.txt:2" in k and "val.txt:2" in k for k in keys)


def test_trainval_counts_as_train_only_without_train_and_val(tmp_path: Path) -> None:
    year = devkit(tmp_path / "VOC2012", ["a", "b"])
    lists(year, trainval=["a"], test=["b"])
    report = Report()
    assert {s.key: s.split for s in IMPORTER.read(tmp_path, report)} == {
        "VOC2012/a.jpg": "train", "VOC2012/b.jpg": "test"}
    lists(year, train=["b"], test=[])
    assert {s.key: s.split for s in IMPORTER.read(year, report)} == {"a.jpg": None,
                                                                      "b.jpg": "train"}


def test_no_split_lists_means_a_ratio_split(tmp_path: Path, registry) -> None:
    devkit(tmp_path / "ds", [f"i{n}" for n in range(10)])
    result = run(tmp_path / "ds", tmp_path / "out", registry)
    assert dict(result.report.images) == {"train": 8, "val": 1, "test": 1}


def test_xml_beside_each_image(tmp_path: Path, registry) -> None:
    folder = tmp_path / "shots"
    image(folder / "a.jpg")
    write(folder / "a.xml", voc_xml("a.jpg", [("cat", (1, 2, 30, 40))]))
    image(folder / "b.png")
    write(folder / "b.xml", voc_xml("B.jpeg", [("cat", (5, 5, 20, 20))]))  # renamed since
    image(folder / "c.jpg")
    assert IMPORTER.detect(folder)
    result = run(folder, tmp_path / "out", registry)
    assert result.importer == "voc" and sum(result.report.images.values()) == 2
    assert codes(result, "image skipped") == {"no-annotation": [str(folder / "c.jpg")]}


def test_split_folders_of_images_with_xml_beside_them(tmp_path: Path, registry) -> None:
    """Roboflow's VOC export: train/, valid/, test/, each image with its XML beside it; the
    folder names the split."""
    export = tmp_path / "export"
    for split, names in (("train", ["a", "b"]), ("valid", ["c"]), ("test", ["d"])):
        for name in names:
            image(export / split / f"{name}.jpg")
            write(export / split / f"{name}.xml", voc_xml(f"{name}.jpg",
                                                          [("cat", (1, 2, 30, 40))]))
    (export / "README.roboflow.txt").write_text("exported")
    assert IMPORTER.detect(export)
    result = run(export, tmp_path / "out", registry)
    assert result.importer == "voc"
    assert dict(result.report.images) == {"train": 2, "val": 1, "test": 1}
    assert not result.report.problems


def test_image_found_from_path_and_never_outside_the_source(tmp_path: Path) -> None:
    source = tmp_path / "ds"
    image(source / "JPEGImages" / "photo.jpg")
    write(source / "Annotations" / "x.xml", voc_xml(None, extra=(
        "<path>C:\\Users\\me\\Pictures\\photo.jpg</path>")))
    image(tmp_path / "secret.jpg")
    write(source / "Annotations" / "evil.xml", voc_xml("../../secret.jpg"))
    report = Report()
    samples = list(IMPORTER.read(source, report))
    assert [(s.key, s.image) for s in samples] == [
        ("photo.jpg", source / "JPEGImages" / "photo.jpg")]
    assert [(p.code, p.file) for p in report.problems] == [
        ("escapes-dataset", str(source / "Annotations" / "evil.xml"))]


def named_images(source: Path, images: list[str], **xml: tuple[str, str]) -> Path:
    """JPEGImages/<stem>.jpg of each of `images`; Annotations/<stem>.xml of each keyword, its
    value (<filename>, class of its one box)."""
    for stem in images:
        image(source / "JPEGImages" / f"{stem}.jpg")
    for stem, (filename, label) in xml.items():
        write(source / "Annotations" / f"{stem}.xml", voc_xml(filename, [(label, (1, 2, 30, 40))]))
    return source


def test_an_xml_naming_another_xmls_image_keeps_its_own_image(tmp_path: Path,
                                                              registry) -> None:
    """a.xml says <filename>b.jpg</filename>, and b.xml annotates b.jpg: a.xml's boxes were
    b.jpg's, b.xml's own box was dropped as a duplicate and a.jpg was in neither the records
    nor the report. Now each XML gives its boxes to the image of its own name, with a note."""
    source = named_images(tmp_path / "ds", ["a", "b"], a=("b.jpg", "cat"), b=("b.jpg", "dog"))
    annotations = source / "Annotations"
    result = run(source, tmp_path / "out", registry)
    assert sum(result.report.images.values()) == 2
    assert dict(sum((c for c in result.report.classes.values()), Counter())) == {
        "cat": 1, "dog": 1}
    assert codes(result, "image note") == {"filename-mismatch": [str(annotations / "a.xml")]}
    assert not codes(result, "image skipped")
    boxes, _ = read(source)
    assert [b.label for b in boxes["a.jpg"]] == ["cat"]
    assert [b.label for b in boxes["b.jpg"]] == ["dog"]
    note = next(p.reason for p in result.report.problems if p.code == "filename-mismatch")
    assert "'b.jpg'" in note and "b.xml" in note and "a.jpg" in note


def test_an_xml_naming_another_xmls_image_without_its_own_is_skipped(tmp_path: Path) -> None:
    source = named_images(tmp_path / "ds", ["b"], a=("b.jpg", "cat"), b=("b.jpg", "dog"))
    annotations = source / "Annotations"
    boxes, report = read(source)
    assert {key: [b.label for b in found] for key, found in boxes.items()} == {"b.jpg": ["dog"]}
    assert [(p.kind, p.code, p.file) for p in report.problems] == [
        ("image skipped", "filename-conflict", str(annotations / "a.xml"))]
    assert "b.xml" in report.problems[0].reason and "'b.jpg'" in report.problems[0].reason


def test_the_image_of_an_xml_that_names_another_is_reported(tmp_path: Path) -> None:
    """a.xml says c.jpg, which no XML of its own annotates: the XML is trusted, and a.jpg,
    which it does not annotate, is reported by name instead of left out without a word."""
    source = named_images(tmp_path / "ds", ["a", "c"], a=("c.jpg", "cat"))
    boxes, report = read(source)
    assert list(boxes) == ["c.jpg"]
    assert [(p.kind, p.code, p.file) for p in report.problems] == [
        ("image skipped", "no-annotation", str(source / "JPEGImages" / "a.jpg"))]
    assert "a.xml" in report.problems[0].reason and "'c.jpg'" in report.problems[0].reason


def test_a_filename_outside_the_dataset_is_reported(tmp_path: Path) -> None:
    """The image is then the XML's own name; no image of that name is a skip that says why."""
    source = named_images(tmp_path / "ds", ["a"], a=("../../../../etc/hostname", "cat"),
                          b=("/etc/hostname", "cat"))
    annotations = source / "Annotations"
    boxes, report = read(source)
    assert list(boxes) == ["a.jpg"]
    assert [(p.kind, p.code, p.file) for p in report.problems] == [
        ("image note", "filename-outside-dataset", str(annotations / "a.xml")),
        ("image skipped", "escapes-dataset", str(annotations / "b.xml"))]
    assert all("outside the dataset" in p.reason and "hostname" in p.reason
               for p in report.problems)


def test_a_split_folder_without_xml_is_reported(tmp_path: Path, registry) -> None:
    """Roboflow's VOC export whose valid/ lost its XML files: its images were never mentioned."""
    export = tmp_path / "export"
    for name in ("a", "b"):
        image(export / "train" / f"{name}.jpg")
        write(export / "train" / f"{name}.xml", voc_xml(f"{name}.jpg", [("cat", (1, 2, 30, 40))]))
    image(export / "valid" / "c.jpg")
    result = run(export, tmp_path / "out", registry)
    assert codes(result, "image skipped") == {"no-annotation": [str(export / "valid" / "c.jpg")]}


def test_the_image_of_a_broken_xml_is_named(tmp_path: Path, registry) -> None:
    """The fuzz tests found it: a broken XML was skipped by its own name only, its image never
    mentioned. The image is noted (the skip is counted once, under the XML)."""
    ds = tmp_path / "ds"
    write(ds / "Annotations" / "a.xml", voc_xml("a.jpg", [("cat", (1, 2, 30, 40))]))
    write(ds / "Annotations" / "b.xml", "<annotation><filename>b.jpg")
    for name in ("a", "b"):
        image(ds / "JPEGImages" / f"{name}.jpg")
    result = run(ds, tmp_path / "out", registry)
    [skipped] = codes(result, "image skipped").values()
    assert skipped == [str(ds / "Annotations" / "b.xml")]
    assert codes(result, "image note") == {
        "annotation-skipped": [str(ds / "JPEGImages" / "b.jpg")]}


def test_difficult_truncated_and_size_are_kept(tmp_path: Path) -> None:
    write(tmp_path / "annotations" / "a.xml", voc_xml("a.jpg", size=(640, 480), extra=(
        "<object><name>dog</name><difficult>1</difficult><truncated>1</truncated>"
        "<bndbox><xmin>1.5</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object>")))
    image(tmp_path / "images" / "a.jpg")
    [sample] = IMPORTER.read(tmp_path, Report())
    assert (sample.width, sample.height) == (640, 480)
    assert sample.boxes == [Box("dog", 1.5, 2, 30, 40, difficult=True, truncated=True)]


def test_detects_only_voc(tmp_path: Path) -> None:
    write(tmp_path / "coco" / "annotations" / "instances_train.json", "{}")
    write(tmp_path / "other" / "Annotations" / "a.xml", "<svg/>")
    image(tmp_path / "loose" / "a.jpg")
    write(tmp_path / "loose" / "b.xml", voc_xml("b.jpg"))  # no image of its stem
    write(tmp_path / "deep" / "VOCdevkit" / "VOC2007" / "Annotations" / "a.xml", voc_xml("a.jpg"))
    for name in ("coco", "other", "loose", "missing"):
        assert not IMPORTER.detect(tmp_path / name), name
    assert IMPORTER.detect(tmp_path / "deep")
    with pytest.raises(OdplugError, match="no Pascal VOC annotations"):
        list(IMPORTER.read(tmp_path / "coco", Report()))


# -- bad input -----------------------------------------------------------------------------------


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                  "<annotation><filename>&lol2;</filename></annotation>")


def test_every_bad_annotation_is_reported_by_file(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    bad_files = {
        "notxml": ("this is not <xml", "malformed-annotation"),
        "laughs": (BILLION_LAUGHS, "xml-dtd"),
        "external": ('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;'
                     "</annotation>", "xml-dtd"),
        "svg": ("<svg><object/></svg>", "malformed-annotation"),
        "binary": ("\x00\x01\x02", "malformed-annotation"),
    }
    for stem, (text, _code) in bad_files.items():
        write(source / "Annotations" / f"{stem}.xml", text)
        image(source / "JPEGImages" / f"{stem}.jpg")
    write(source / "Annotations" / "good.xml", voc_xml("good.jpg", [
        ("dog", (1, 2, 30, 40)), ("", (1, 2, 30, 40)), ("dog", ("a", 2, 30, 40)),
        ("dog", ("nan", 2, 30, 40)), ("dog", ("1" * 400, 2, 30, 40)), ("dog", ("", 2, 3, 4)),
    ], extra="<object><name>cat</name></object>"))
    write(source / "Annotations" / "empty.xml", voc_xml("empty.jpg"))  # background
    write(source / "Annotations" / "nosize.xml", voc_xml("nosize.jpg", [("dog", (1, 1, 9, 9))],
                                                         size=None))
    write(source / "Annotations" / "zero.xml", voc_xml("zero.jpg", size=(0, 0)))
    write(source / "Annotations" / "oddsize.xml", voc_xml("oddsize.jpg", size=("wide", 4.5)))
    write(source / "Annotations" / "noimage.xml", voc_xml("noimage.jpg"))
    for stem in ("good", "empty", "nosize", "zero", "oddsize"):
        image(source / "JPEGImages" / f"{stem}.jpg")
    result = run(source, tmp_path / "out", registry)
    annotations = source / "Annotations"
    skipped = codes(result, "image skipped")
    for stem, (_text, code) in bad_files.items():
        assert str(annotations / f"{stem}.xml") in skipped[code], stem
    assert skipped["missing-image"] == [str(annotations / "noimage.xml")]
    assert codes(result, "box skipped") == {"malformed-object": [str(annotations / "good.xml")] * 6}
    notes = codes(result, "image note")
    assert notes.keys() == {"malformed-size", "annotation-skipped"}
    assert notes["malformed-size"] == [str(annotations / "oddsize.xml")]
    assert sorted(notes["annotation-skipped"]) == sorted(
        str(source / "JPEGImages" / f"{stem}.jpg") for stem in bad_files)
    assert sum(result.report.images.values()) == 5 and sum(result.report.boxes.values()) == 2
    reasons = " ".join(p.reason for p in result.report.problems)
    assert "object 1: no <name>" in reasons and "object 6: (cat) has no <bndbox>" in reasons
    assert "xmin='" + "1" * 32 + "...'" in reasons and "Traceback" not in reasons


def test_broken_first_files_hide_the_format_only_from_detection(tmp_path: Path,
                                                                  registry) -> None:
    for stem in "abcde":
        write(tmp_path / "ds" / "Annotations" / f"{stem}.xml", "<annotation>")
    write(tmp_path / "ds" / "Annotations" / "f.xml", voc_xml("f.jpg", [("dog", (1, 2, 30, 40))]))
    image(tmp_path / "ds" / "images" / "f.jpg")
    assert not IMPORTER.detect(tmp_path / "ds")
    result = run(tmp_path / "ds", tmp_path / "out", registry, format="voc")
    assert sum(result.report.images.values()) == 1
    assert len(codes(result, "image skipped")["malformed-annotation"]) == 5


def test_an_unreadable_split_list_is_one_line(tmp_path: Path) -> None:
    year = devkit(tmp_path, ["a"])
    write(year / "ImageSets" / "Main" / "train.txt", "")
    (year / "ImageSets" / "Main" / "train.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(OdplugError, match="train.txt: cannot read the split list"):
        list(IMPORTER.read(tmp_path, Report()))


# -- fuzz ----------------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from([
    "<annotation>", "</annotation>", "<object>", "</object>", "<bndbox>", "</bndbox>",
    "<name>dog</name>", "<name></name>", "<xmin>1</xmin>", "<ymin>2</ymin>", "<xmax>30</xmax>",
    "<ymax>40</ymax>", "<xmin>nan</xmin>", "<xmax>-1e999</xmax>", "<filename>a.jpg</filename>",
    "<filename>../a.jpg</filename>", "<size><width>64</width><height>48</height></size>",
    "<width>0</width>", "<difficult>1</difficult>", "&amp;", "&bogus;", "<!DOCTYPE a>",
    '<?xml version="1.0" encoding="latin-1"?>', "<![CDATA[x]]>", "<!-- c -->", "\x00", "é",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=30),
       valid_shell=st.booleans())
def test_fuzzed_xml_is_read_or_reported_never_raised(pieces: list[str],
                                                     valid_shell: bool) -> None:
    body = "".join(pieces)
    text = f"<annotation>{body}</annotation>" if valid_shell else body
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder)
        image(source / "images" / "a.jpg", (8, 8))
        image(source / "images" / "b.jpg", (8, 8))
        write(source / "annotations" / "a.xml", voc_xml("a.jpg"))  # detection needs one
        (source / "annotations" / "b.xml").write_bytes(text.encode())
        report = Report()
        samples = [s for s in IMPORTER.read(source, report) if s.origin.endswith("b.xml")]
        files = [p.file for p in report.problems]
        if samples:
            boxes = [p.file for p in report.problems if p.kind == "box skipped"]
            assert boxes.count(samples[0].origin) == samples[0].skipped_boxes
            assert all(isinstance(b.xmin, float) and b.label for b in samples[0].boxes)
        else:
            assert any(f.endswith("b.xml") for f in files)
