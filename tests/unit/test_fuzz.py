"""Property-based fuzzing of the built-in importers: malformed CSV, JSON and image bytes.

Whatever a dataset folder holds, an import either ends in one `OdplugError` line (nothing
importable, a CSV that is not CSV, a meta.json that is not one) or finishes, and then every
image it was given is accounted for: written to the records or named in the report. No other
exception may escape.

Each example is a whole import of a handful of tiny files in a fresh folder, with one worker
process, so the examples stay fast enough to run in CI (seconds per test).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.support.fuzz import (
    FUZZ,
    IMAGE_NAMES,
    assert_accounted,
    class_text,
    image_files,
    imported,
    json_leaves,
    json_values,
    numeric_text,
)

# -- tf_csv ------------------------------------------------------------------------------------


sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@st.composite
def csv_rows(draw: st.DrawFn, sizes: dict[str, tuple[int, int]]) -> list[list[str]]:
    names = sorted(sizes)
    filename = st.one_of(st.sampled_from(names), st.sampled_from(["", " ", "ghost.png",
                                                                  "../out.png", "img0.png "]))
    row = st.tuples(filename, numeric_text, numeric_text, class_text,
                    numeric_text, numeric_text, numeric_text, numeric_text)
    good = st.builds(lambda n, x, y, c: [n, *map(str, sizes[n]), c, str(x), str(y),
                                         str(x + 5), str(y + 5)],
                     st.sampled_from(names), st.integers(0, 6), st.integers(0, 6),
                     st.sampled_from(["cat", "dog"]))
    rows = draw(st.lists(st.one_of(good, good, row.map(list)), max_size=8))
    for cells in rows:
        if draw(st.integers(0, 9)) == 0:  # a row that lost cells
            del cells[draw(st.integers(1, len(cells) - 1)):]
    return rows


@given(data=st.data())
@FUZZ
def test_tf_csv_import_survives_any_csv(data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(IMAGE_NAMES), min_size=1, max_size=4,
                               unique=True))
    splits = data.draw(st.lists(st.sampled_from(["train", "test", "val"]), min_size=1,
                                max_size=2, unique=True))
    header_kind = data.draw(st.sampled_from(["right", "right", "right", "shuffled", "missing"]))
    header = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    if header_kind == "shuffled":
        header = data.draw(st.permutations(header))
    elif header_kind == "missing":
        header = header[:-1]
    image_sizes = {name: data.draw(sizes) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "ds", Path(tmp) / "out"
        (source / "images").mkdir(parents=True)
        for name, size in image_sizes.items():
            (source / "images" / name).write_bytes(data.draw(image_files(size)))
        origins: dict[str, str] = {}
        for split in splits:
            rows = data.draw(csv_rows(image_sizes))
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
            path = source / f"{split}.csv"
            path.write_text(buffer.getvalue() + data.draw(
                st.sampled_from([""] * 8 + ["\n", 'bad,"quote\n', "\x00\n"])))
            for line, cells in enumerate(rows, start=2):
                if cells and cells[0].strip():
                    origins.setdefault(cells[0].strip(), f"{path}:{line}")
        result = imported(source, out)
        if result is not None:
            given_names = {n for n in origins if n in names}
            assert_accounted(result, out, given_names, origins)


points = st.lists(st.one_of(st.lists(st.integers(-20, 40), min_size=2, max_size=2),
                            st.lists(json_leaves, max_size=3)), max_size=4)


def _bitmap(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, "PNG")
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode()


bitmaps = st.one_of(
    st.builds(lambda h, w, fill: _bitmap(np.full((h, w), fill)), st.integers(1, 6),
              st.integers(1, 6), st.booleans()),
    st.text(max_size=12),
    st.binary(max_size=16).map(lambda b: base64.b64encode(zlib.compress(b)).decode()),
)
objects = st.fixed_dictionaries(
    {"geometryType": st.one_of(st.sampled_from(["rectangle", "polygon", "bitmap", "point",
                                                "line", "bogus"]), json_leaves),
     "classTitle": st.one_of(st.sampled_from(["car", "person", "nope"]), json_leaves)},
    optional={"points": st.one_of(st.fixed_dictionaries({"exterior": points,
                                                        "interior": st.just([])}),
                                  json_values),
              "bitmap": st.one_of(st.fixed_dictionaries({"data": bitmaps, "origin": points}),
                                  json_values),
              "tags": json_values},
)


@st.composite
def good_annotations(draw: st.DrawFn, size: tuple[int, int]) -> dict[str, Any]:
    """An annotation a user would export: the image's size and rectangles of known classes."""
    width, height = size
    boxes = draw(st.lists(st.tuples(st.integers(0, width - 1), st.integers(0, height - 1),
                                    st.integers(0, width - 1), st.integers(0, height - 1)),
                          max_size=3))
    return {"size": {"width": width, "height": height}, "objects": [
        {"geometryType": "rectangle", "classTitle": "car",
         "points": {"exterior": [[x1, y1], [x2, y2]], "interior": []}}
        for x1, y1, x2, y2 in boxes]}


broken_annotations = st.one_of(
    st.fixed_dictionaries(
        {"size": st.one_of(st.fixed_dictionaries({"height": st.one_of(st.integers(-2, 14),
                                                                      json_leaves),
                                                  "width": st.one_of(st.integers(-2, 14),
                                                                     json_leaves)}),
                           json_values)},
        optional={"objects": st.one_of(st.lists(objects, max_size=3), json_values),
                  "tags": json_values, "description": json_values},
    ),
    json_values,
)
broken_annotation_files = st.one_of(
    broken_annotations.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"", b"{", b"not json", b"\xff\xfe{}", b'{"objects": [}',
                     b'{"objects": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                     b'{"size": {"height": 1' + b"0" * 5000 + b', "width": 4}, "objects": []}']),
)


def annotation_files(size: tuple[int, int]) -> st.SearchStrategy[bytes]:
    good = good_annotations(size).map(lambda value: json.dumps(value).encode())
    return st.one_of(good, good, broken_annotation_files)
GOOD_META = json.dumps({"classes": [{"title": "car", "shape": "rectangle"},
                                    {"title": "person", "shape": "bitmap"}]}).encode()
meta_files = st.one_of(
    json_values.map(lambda value: json.dumps({"classes": value}).encode()),
    st.sampled_from([b"", b"[]", b"{"]),
)


def _write_supervisely(root: Path, files: dict[str, Any]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@given(data=st.data())
@FUZZ
def test_supervisely_import_survives_any_annotation(data: st.DataObject) -> None:
    meta: bytes | None = GOOD_META
    if data.draw(st.integers(0, 9)) == 0:  # mostly a good meta.json, so the rest is reached
        meta = data.draw(st.one_of(st.none(), meta_files))
    names = data.draw(st.lists(st.sampled_from(IMAGE_NAMES), min_size=1, max_size=4,
                               unique=True))
    files: dict[str, Any] = {} if meta is None else {"meta.json": meta}
    for name in names:
        size = data.draw(sizes)
        files[f"ds/img/{name}"] = data.draw(image_files(size))
        if data.draw(st.integers(0, 5)) > 0:
            files[f"ds/ann/{name}.json"] = data.draw(annotation_files(size))
    if data.draw(st.booleans()):  # an annotation whose image is missing
        files["ds/ann/ghost.png.json"] = data.draw(annotation_files((8, 8)))
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "project", Path(tmp) / "out"
        source.mkdir()
        _write_supervisely(source, files)
        result = imported(source, out)
        if result is not None:
            assert_accounted(result, out, names, {})


# -- YOLO, COCO, VOC ----------------------------------------------------------------------------
# Fewer examples than above: each still imports a whole folder, and four formats share the
# file's minute.

FEW = FUZZ.__class__(FUZZ, max_examples=15)

yolo_numbers = st.one_of(st.floats(-0.05, 1.05).map(repr), numeric_text)
yolo_lines = st.one_of(
    st.builds(lambda c, v: " ".join([str(c), *v]), st.integers(0, 2),
              st.lists(st.floats(0.05, 0.95).map(repr), min_size=4, max_size=11)),
    st.lists(yolo_numbers, max_size=12).map(" ".join),
    st.text(max_size=10),
)
image_name_lists = st.lists(st.sampled_from(IMAGE_NAMES), min_size=1, max_size=4, unique=True)


@contextmanager
def dataset_folders() -> Iterator[tuple[Path, Path]]:
    """A fresh dataset folder and output folder for one example: hypothesis runs every example
    of a test in the same ``tmp_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "ds", Path(tmp) / "out"


yolo_yamls = st.one_of(
    st.builds(lambda extra: f"train: images/train\nval: images/val\nnames: [cat, dog]\n{extra}",
              st.sampled_from(["", "kpt_shape: [3, 2]\n", "kpt_shape: [2, 3]\n",
                               "kpt_shape: [0, 5]\n", "path: ../elsewhere\n", "nc: 3\n",
                               "test: [images/test, gone.txt]\n"])),
    st.sampled_from(["", "names: [cat\n", "train: images/train\n", "- a\n", "names: {}\n"]),
    json_values.map(json.dumps),
)


@given(data=st.data())
@FEW
def test_yolo_import_survives_any_labels(data: st.DataObject) -> None:
    names = data.draw(image_name_lists)
    with dataset_folders() as (source, out):
        (source / "labels" / "train").mkdir(parents=True)
        (source / "data.yaml").write_text(data.draw(yolo_yamls), encoding="utf-8")
        for name in names:
            split = data.draw(st.sampled_from(["train", "train", "val", "extra"]))
            image = source / "images" / split / name
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(data.draw(image_files(data.draw(sizes))))
            if data.draw(st.integers(0, 4)) > 0:
                label = source / "labels" / split / f"{Path(name).stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("\n".join(data.draw(st.lists(yolo_lines, max_size=4))),
                                 encoding="utf-8", errors="surrogatepass")
        result = imported(source, out)
        if result is not None:
            assert_accounted(result, out, names, {})


coco_boxes = st.one_of(st.lists(st.integers(-5, 15), min_size=4, max_size=4),
                       st.lists(json_leaves, max_size=5), json_values)


@given(data=st.data())
@FEW
def test_coco_import_survives_any_annotations(data: st.DataObject) -> None:
    names = data.draw(image_name_lists)
    images, annotations = [], []
    with dataset_folders() as (source, out):
        (source / "images").mkdir(parents=True)
        for index, name in enumerate(names, start=1):
            width, height = data.draw(sizes)
            (source / "images" / name).write_bytes(data.draw(image_files((width, height))))
            if data.draw(st.integers(0, 5)) > 0:
                images.append({"id": data.draw(st.one_of(st.just(index), json_leaves)),
                               "file_name": name, "width": width, "height": height})
            for _ in range(data.draw(st.integers(0, 2))):
                annotations.append({"id": len(annotations) + 1, "image_id": index,
                                    "category_id": data.draw(st.sampled_from([1, 2, 9])),
                                    "bbox": data.draw(coco_boxes),
                                    "iscrowd": data.draw(st.sampled_from([0, 0, 1]))})
        document: Any = {"images": images, "annotations": annotations, "categories": [
            {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
        if data.draw(st.integers(0, 9)) == 0:
            document = data.draw(json_values)
        (source / "annotations.json").write_text(json.dumps(document))
        result = imported(source, out)
        if result is not None:
            assert_accounted(result, out, names, {})


voc_numbers = st.one_of(st.integers(-3, 15).map(str), numeric_text)


@st.composite
def voc_xml(draw: st.DrawFn, name: str, size: tuple[int, int]) -> str:
    objects = "".join(
        f"<object><name>{draw(st.sampled_from(['cat', 'dog', '', 'a&amp;b']))}</name>"
        f"<difficult>{draw(st.sampled_from(['0', '1', 'x']))}</difficult><bndbox>"
        + "".join(f"<{k}>{draw(voc_numbers)}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax"))
        + "</bndbox></object>" for _ in range(draw(st.integers(0, 3))))
    width, height = draw(st.one_of(st.just(size), st.tuples(voc_numbers, voc_numbers)))
    text = (f"<annotation><filename>{draw(st.sampled_from([name, 'other.jpg', '']))}"
            f"</filename><size><width>{width}</width><height>{height}</height><depth>3"
            f"</depth></size>{objects}</annotation>")
    return draw(st.sampled_from([text] * 6 + [text[: len(text) // 2], "", "<annotation/>"]))


@given(data=st.data())
@FEW
def test_voc_import_survives_any_xml(data: st.DataObject) -> None:
    names = data.draw(image_name_lists)
    with dataset_folders() as (source, out):
        (source / "Annotations").mkdir(parents=True)
        (source / "JPEGImages").mkdir()
        origins: dict[str, str] = {}
        for name in names:
            size = data.draw(sizes)
            (source / "JPEGImages" / name).write_bytes(data.draw(image_files(size)))
            if data.draw(st.integers(0, 5)) > 0:
                xml = source / "Annotations" / f"{Path(name).stem}.xml"
                xml.write_text(data.draw(voc_xml(name, size)), encoding="utf-8")
                origins[name] = str(xml)  # a broken XML's skip names the XML
        result = imported(source, out)
        if result is not None:
            assert_accounted(result, out, names, origins)
