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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.convert import ImportOptions, ImportResult, import_dataset
from odplug.data.shards import shard_files
from odplug.data.tfrecord import iter_records, summarize
from odplug.errors import OdplugError
from odplug.plugins import Registry, load_registry

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REGISTRY: Registry = load_registry(entry_points=False)
IMAGE_NAMES = [f"img{i}.{ext}" for i, ext in enumerate(("png", "jpg", "png", "jpeg", "png"))]


# -- images: real ones of a few pixels, and every way bytes can fail to be one ------------------


def _encoded(size: tuple[int, int], colour: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (colour, 255 - colour, colour // 2)).save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def image_files(draw: st.DrawFn, size: tuple[int, int]) -> bytes:
    """Mostly a good image of `size` (so imports get as far as writing), else broken bytes."""
    colour = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["png", "jpeg"] * 3 + ["truncated", "garbage", "empty",
                                                        "header-only"]))
    if kind in ("png", "jpeg"):
        return _encoded(size, colour, kind.upper())
    whole = _encoded(size, colour, draw(st.sampled_from(["PNG", "JPEG"])))
    if kind == "truncated":
        return whole[: draw(st.integers(1, len(whole) - 1))]
    if kind == "header-only":
        return whole[:32]
    return b"" if kind == "empty" else draw(st.binary(max_size=64))


# -- numbers and text as they appear in broken files ------------------------------------------

numeric_text = st.one_of(
    st.integers(-40, 60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "abc", "1e999", "-1e999", "9" * 300, "0." + "1" * 300, "-0",
                     " 3 ", "0x10", "1_000", "nan", "inf", "NaN", "3.5", "1e-320"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5),
)
class_text = st.one_of(st.sampled_from(["cat", "dog", "", " cat ", "Cat", "a,b", 'q"t']),
                       st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6))


# -- what an import must leave: records or report lines for every image -----------------------


def _imported(source: Path, out: Path) -> ImportResult | None:
    """The import's result; None when it stopped with one clear `OdplugError` line."""
    try:
        result = import_dataset(source, out, ImportOptions(workers=1), REGISTRY)
    except OdplugError as error:
        assert "\n" not in str(error), str(error)
        event("refused: " + str(error).split(": ", 1)[-1][:40])
        return None
    event("imported")
    return result


def _record_filenames(out: Path) -> list[str]:
    return [summarize(record).filename
            for path in shard_files(out) for record in iter_records(path)]


def _assert_accounted(result: ImportResult, out: Path, images: Iterable[str],
                      origins: dict[str, str]) -> None:
    """Every image name is in a record or in a problem line (by name, or by the row that gave
    it, `origins`)."""
    written = _record_filenames(out)
    told = [(problem.file, problem.reason) for problem in result.report.problems
            if problem.kind == "image skipped"]
    for name in images:
        in_records = any(f == name or f.endswith("/" + name) for f in written)
        in_report = any(name in file or name in reason or file == origins.get(name)
                        for file, reason in told)
        assert in_records or in_report, (name, written, told)


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
        result = _imported(source, out)
        if result is not None:
            given_names = {n for n in origins if n in names}
            _assert_accounted(result, out, given_names, origins)


# -- Supervisely ------------------------------------------------------------------------------
# Numbers include integers of hundreds of digits and NaN/infinity (json.dumps writes them as
# NaN/Infinity literals, which Python's reader accepts), and a few files nest thousands deep.

json_numbers = st.one_of(st.integers(-10**6, 10**6), st.integers(-10**400, 10**400),
                         st.floats(allow_nan=True, allow_infinity=True))
json_leaves = st.one_of(st.none(), st.booleans(), json_numbers,
                        st.text(st.characters(blacklist_categories=("Cs",)), max_size=5))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
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
        result = _imported(source, out)
        if result is not None:
            _assert_accounted(result, out, names, {})
