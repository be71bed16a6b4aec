"""The tfrecord importer: TF Object Detection API records from any tool as a data.import source.

Records are written here by hand, key by key, the way other tools write them (legacy
``generate_tfrecord.py``, Roboflow), or by odplug itself; every bad input is checked to end in
the report with its file, record index and byte offset, never in a traceback.
"""

from __future__ import annotations

import io
import math
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.convert import ImportOptions, import_dataset
from odplug.data.prepare import prepare
from odplug.data.protos import Example
from odplug.data.shards import shard_files
from odplug.data.tfrecord import (
    DamagedRecord,
    iter_framed,
    iter_records,
    masked_crc,
    read_record,
    summarize,
    write_record,
)
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.plugins import load_registry
from odplug.samples import RecordRef, Sample
from odplug_builtins.tfrecord import TFRecordImporter, record_files, split_of
from tests.support.records import problem_files as codes
from tests.support.records import read_records
from tests.support.records import run_import as run

FEATURES = dict[str, Any]


def _jpeg(size: tuple[int, int] = (64, 48), *, noise: bool = False) -> bytes:
    if noise:
        pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", size, (90, 40, 200))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _example(features: FEATURES) -> bytes:
    """A serialized Example; each value's Python type picks its list (bytes, int, float)."""
    example = Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        entry = example.features.feature[key]
        if all(isinstance(v, bytes) for v in values) and values:
            entry.bytes_list.value.extend(values)
        elif all(isinstance(v, int) for v in values) and values:
            entry.int64_list.value.extend(values)
        elif values:
            entry.float_list.value.extend(values)
    return example.SerializeToString()


def _legacy(filename: str, boxes: Sequence[tuple[str, int, float, float, float, float]],
            size: tuple[int, int] = (64, 48), **extra: Any) -> FEATURES:
    """The keys of the TF OD API tutorial's generate_tfrecord.py: no source_id, format b'jpg'."""
    width, height = size
    features: FEATURES = {
        "image/height": height, "image/width": width,
        "image/filename": filename.encode(), "image/encoded": _jpeg(size),
        "image/format": b"jpg",
        "image/object/bbox/xmin": [b[2] / width for b in boxes],
        "image/object/bbox/xmax": [b[4] / width for b in boxes],
        "image/object/bbox/ymin": [b[3] / height for b in boxes],
        "image/object/bbox/ymax": [b[5] / height for b in boxes],
        "image/object/class/text": [b[0].encode() for b in boxes],
        "image/object/class/label": [b[1] for b in boxes],
    }
    features.update(extra)
    return features


def _write(path: Path, records: Sequence[bytes | FEATURES]) -> list[int]:
    """Write records to `path`; returns each record's byte offset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = []
    with path.open("wb") as handle:
        for record in records:
            offsets.append(handle.tell())
            write_record(handle, record if isinstance(record, bytes) else _example(record))
    return offsets


def _where(path: Path, index: int, offset: int) -> str:
    return f"{path}: record {index} (byte offset {offset})"


def _by_id(folder: Path, split: str | None = None) -> dict[str, dict]:
    return {row["source_id"]: row for row in read_records(folder, split)}


# -- the framing reader -------------------------------------------------------------------------


def test_offsets_find_each_record_again(tmp_path: Path) -> None:
    payloads = [b"a" * 5, b"", b"c" * 300]
    offsets = _write(tmp_path / "x.tfrecord", payloads)
    assert list(iter_framed(tmp_path / "x.tfrecord")) == list(zip(offsets, payloads,
                                                                  strict=True))
    assert list(iter_records(tmp_path / "x.tfrecord")) == payloads
    assert read_record(tmp_path / "x.tfrecord", offsets[2]) == payloads[2]
    with pytest.raises(DamagedRecord, match="corrupt record length at byte 3"):
        read_record(tmp_path / "x.tfrecord", 3)
    huge = (2**62).to_bytes(8, "little")  # a whole header claiming 4 EiB: nothing allocated
    (tmp_path / "huge.tfrecord").write_bytes(huge + masked_crc(huge).to_bytes(4, "little"))
    with pytest.raises(DamagedRecord, match="truncated record at byte 0"):
        list(iter_framed(tmp_path / "huge.tfrecord"))


# -- odplug's own output, back in ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project as odplug writes it: train/val/test shards and label_map.pbtxt."""
    from odplug.data.demo import write_demo_project

    base = tmp_path_factory.mktemp("own")
    project = write_demo_project(base / "project", images=30, size=96)
    run(project, base / "records", load_registry(entry_points=False), shards=2)
    return base / "records"


def test_own_output_imports_back_unchanged(own_records: Path, tmp_path: Path, registry) -> None:
    result = run(own_records, tmp_path / "again", registry)
    assert result.importer == "tfrecord"
    assert not result.report.problems
    for split in ("train", "val", "test"):
        before, after = _by_id(own_records, split), _by_id(tmp_path / "again", split)
        assert sorted(before) == sorted(after) and before
        for key, row in before.items():
            assert after[key]["classes"] == row["classes"]
            assert after[key]["filename"] == row["filename"]
            assert after[key]["sha256"] == row["sha256"]
            np.testing.assert_allclose(after[key]["boxes"], row["boxes"], atol=1e-6)
    assert (tmp_path / "again" / "label_map.pbtxt").read_text() == \
        (own_records / "label_map.pbtxt").read_text()


def test_resplit_filter_rename_and_reshard(own_records: Path, tmp_path: Path, registry) -> None:
    before = _by_id(own_records)
    result = run(own_records, tmp_path / "out", registry, split="ratio", ratios=(0.5, 0.5),
                 classes=["circle", "box"], rename={"square": "box"}, shards=3)
    assert set(result.report.images) == {"train", "test"}
    assert sum(result.report.images.values()) == len(before)
    assert [f.name for f in shard_files(tmp_path / "out", "train")] == [
        f"train.record-0000{i}-of-00003" for i in range(3)]
    assert result.label_map.names == ["circle", "box"]
    after = _by_id(tmp_path / "out")
    names = {1: "circle", 2: "square", 3: "triangle"}
    for key, row in before.items():
        kept = [{"square": "box"}.get(names[c], names[c]) for c in row["classes"]
                if names[c] != "triangle"]
        assert [result.label_map.names[c - 1] for c in after[key]["classes"]] == kept


def test_samples_hold_no_image_bytes(tmp_path: Path) -> None:
    """Memory: a sample is a few hundred bytes pickled whatever its image, and holds no bytes
    object at all; the image is read back from its record by offset when it is written."""
    path = tmp_path / "big.tfrecord"
    image = _jpeg((320, 240), noise=True)
    assert len(image) > 50_000
    _write(path, [{**_legacy(f"{i}.jpg", [("cat", 1, 1, 1, 30, 30)], (320, 240)),
                   "image/encoded": image} for i in range(3)])
    samples = list(TFRecordImporter().read(path, Report()))
    assert len(samples) == 3
    for sample in samples:
        assert len(pickle.dumps(sample)) < 1000
        assert pickle.loads(pickle.dumps(sample)) == sample  # it crosses to the workers
        assert not any(isinstance(getattr(sample, name), bytes | bytearray | memoryview)
                       for name in Sample.__slots__)
        assert isinstance(sample.record, RecordRef)
        assert sample.record.size > len(image)
        prepared = prepare(sample, "header", Report())
        assert prepared is not None and prepared.image.data == image


# -- other tools' records ----------------------------------------------------------------------


def test_legacy_generate_tfrecord_records_without_label_map(tmp_path: Path, registry) -> None:
    source = tmp_path / "annotations"
    _write(source / "train.record", [
        _legacy("a.jpg", [("raccoon", 1, 2, 3, 30, 40), ("dog", 3, 10, 10, 20, 20)]),
        _legacy("b.jpg", [("raccoon", 1, 5, 5, 60, 45)]),
    ])
    _write(source / "test.record", [_legacy("c.jpg", [])])
    result = run(source, tmp_path / "out", registry)
    assert result.importer == "tfrecord" and not result.report.problems
    assert [(i.id, i.name) for i in result.label_map.items] == [(1, "raccoon"), (3, "dog")]
    train = _by_id(tmp_path / "out", "train")
    assert sorted(train) == ["a.jpg", "b.jpg"] and train["a.jpg"]["classes"] == [1, 3]
    np.testing.assert_allclose(train["a.jpg"]["boxes"][0], [3 / 48, 2 / 64, 40 / 48, 30 / 64],
                               atol=1e-6)
    assert _by_id(tmp_path / "out", "test")["c.jpg"]["boxes"] == []


def test_label_only_records_use_the_label_map_and_header_size(tmp_path: Path, registry) -> None:
    """Class from the label map by id; no width/height in the record: the image header's."""
    source = tmp_path / "ds"
    features = _legacy("a.jpg", [("", 2, 8, 6, 32, 24)])
    for key in ("image/object/class/text", "image/height", "image/width", "image/filename"):
        del features[key]
    _write(source / "data.tfrecord", [features])
    (source / "label_map.pbtxt").write_text("item { id: 2 name: 'cat' }\n")
    (source / "label_map.pbtxt").rename(tmp_path / "elsewhere.pbtxt")
    report = Report()
    [sample] = TFRecordImporter().read(source, report)
    assert sample.boxes == [] and sample.skipped_boxes == 1
    assert [p.reason for p in report.problems] == [
        "box 0: label 2 has no class text and no label_map.pbtxt is beside the records to name "
        "it"]
    (tmp_path / "elsewhere.pbtxt").rename(source / "label_map.pbtxt")
    result = run(source, tmp_path / "out", registry)
    assert not result.report.problems
    [row] = read_records(tmp_path / "out")
    assert row["source_id"] == "data.tfrecord#0" and row["classes"] == [2]
    np.testing.assert_allclose(row["boxes"], [[6 / 48, 8 / 64, 24 / 48, 32 / 64]], atol=1e-6)


def test_roboflow_layout(tmp_path: Path, registry) -> None:
    source = tmp_path / "export"
    for split, name in (("train", "a"), ("valid", "b"), ("test", "c")):
        _write(source / split / "cells.tfrecord",
               [_legacy(f"{name}.jpg", [("rbc", 1, 1, 1, 9, 9)])])
        (source / split / "cells_label_map.pbtxt").write_text(
            'item {\n    name: "rbc",\n    id: 1,\n    display_name: "rbc"\n}\n')
    assert TFRecordImporter().detect(source)
    result = run(source, tmp_path / "out", registry)
    assert dict(result.report.images) == {"train": 1, "val": 1, "test": 1}
    (source / "test" / "cells_label_map.pbtxt").write_text("item { name: 'wbc' id: 1 }\n")
    with pytest.raises(OdplugError, match="differ; give the right one with --label-map"):
        run(source, tmp_path / "out", registry)


# -- detection and splits ----------------------------------------------------------------------


@pytest.mark.parametrize("name,split", [
    ("train-00000-of-00004.tfrecord", "train"), ("coco_val.record-00000-of-00010", "val"),
    ("data.tfrecords", None), ("TEST.tfrec", "test"), ("validation.record", "val"),
    ("trainval.record", None), ("val2017.tfrecord", "val"),
])
def test_split_from_file_name(tmp_path: Path, name: str, split: str | None) -> None:
    assert split_of(tmp_path / name, tmp_path) == split


def test_split_from_subfolder_not_from_the_folder_given(tmp_path: Path) -> None:
    source = tmp_path / "test_data"
    _write(source / "valid" / "x.tfrecord", [_legacy("a.jpg", [])])
    assert [split_of(p, source) for p in record_files(source)] == ["val"]
    _write(source / "x.tfrecord", [_legacy("a.jpg", [])])
    assert [split_of(p, source) for p in record_files(source)] == [None]


def test_detection(tmp_path: Path, demo_project: Path, own_records: Path) -> None:
    importer = TFRecordImporter()
    _write(tmp_path / "a" / "any.name", [_legacy("a.jpg", [])])
    _write(tmp_path / "b" / "shard.tfrecord-00000-of-00002", [])  # an empty shard is passed
    _write(tmp_path / "b" / "shard.tfrecord-00001-of-00002", [_legacy("a.jpg", [])])
    _write(tmp_path / "c" / "x.tfrecord", [b"not a proto \xff\xff"])
    _write(tmp_path / "d" / "x.tfrecord", [_example({"image/filename": b"a.jpg"})])
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "x.record").write_bytes(b"{\"images\": [], \"annotations\": []}")
    assert importer.detect(tmp_path / "a" / "any.name")
    assert not importer.detect(tmp_path / "a")  # not a record name
    assert importer.detect(own_records) and importer.detect(tmp_path / "b")
    assert not importer.detect(demo_project) and not importer.detect(tmp_path / "missing")
    # named like records but not readable as such: a near miss, its reason raised
    for folder, reason in (("c", "not a tf.train.Example"), ("d", "has no image/encoded"),
                           ("e", "corrupt record length")):
        with pytest.raises(OdplugError, match=f"x.(t?f?record): .*{reason}"):
            importer.detect(tmp_path / folder)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.bin").write_bytes(b"garbage")
    assert not importer.detect(tmp_path / "f" / "notes.bin")  # a file of any name: no claim


def test_a_record_file_given_directly(tmp_path: Path, registry) -> None:
    path = tmp_path / "ds" / "whatever.bin"
    _write(path, [_legacy("a.jpg", [("cat", 1, 1, 1, 9, 9)])])
    result = run(path, tmp_path / "out", registry)
    assert result.importer == "tfrecord" and sum(result.report.images.values()) == 1


# -- bad inputs --------------------------------------------------------------------------------


def test_bad_records_are_reported_with_file_and_offset(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    (source / "label_map.pbtxt").parent.mkdir(parents=True)
    (source / "label_map.pbtxt").write_text("item { id: 1 name: 'cat' }\nitem { id: 2 name: "
                                            "'dog' }\n")
    train = source / "train.tfrecord"
    bad_image = _legacy("corrupt.jpg", [("cat", 1, 1, 1, 9, 9)])
    bad_image["image/encoded"] = _jpeg()[:200]
    no_image = _legacy("noimage.jpg", [])
    del no_image["image/encoded"]
    uneven = _legacy("uneven.jpg", [("cat", 1, 1, 1, 9, 9), ("cat", 1, 2, 2, 9, 9)])
    uneven["image/object/bbox/ymax"] = [0.5]
    wrong_class = _legacy("classes.jpg", [("cat", 2, 1, 1, 9, 9), ("", 7, 1, 1, 9, 9),
                                          ("cat", 1, 1, 1, 9, 9)])
    nan = _legacy("nan.jpg", [("dog", 2, 1, 1, 9, 9)])
    nan["image/object/bbox/xmax"] = [math.nan]
    crc = _legacy("crc.jpg", [("cat", 1, 1, 1, 9, 9)])
    offsets = _write(train, [_legacy("good.jpg", [("cat", 1, 1, 1, 9, 9)]), b"\x08\xff\xff",
                             no_image, bad_image, uneven, wrong_class, nan, crc,
                             _legacy("after.jpg", [("dog", 2, 1, 1, 9, 9)])])
    data = bytearray(train.read_bytes())
    data[offsets[7] + 40] ^= 0xFF  # inside record 7's data: its CRC fails, its length is fine
    train.write_bytes(bytes(data))
    val = source / "val.tfrecord"
    cut = _write(val, [_legacy("v0.jpg", [("cat", 1, 1, 1, 9, 9)]),
                       _legacy("v1.jpg", [("cat", 1, 1, 1, 9, 9)])])
    val.write_bytes(val.read_bytes()[:cut[1] + 30])
    test = source / "test.tfrecord"
    length = _write(test, [_legacy("t0.jpg", []), _legacy("t1.jpg", [])])
    data = bytearray(test.read_bytes())
    data[length[1] + 2] ^= 0x01  # record 1's length: nothing after it can be found
    test.write_bytes(bytes(data))

    result = run(source, tmp_path / "out", registry)
    at = [_where(train, i, o) for i, o in enumerate(offsets)]
    images = codes(result, "image skipped")
    assert images.pop("not-an-example") == [at[1]]
    assert images.pop("missing-image") == [at[2]]
    assert images.pop("corrupt-image") == [at[3]]
    assert images.pop("malformed-record") == [at[4]]
    assert images.pop("corrupt-record") == [at[7]]
    assert sorted(images.pop("damaged-file")) == [_where(test, 1, length[1]),
                                                  _where(val, 1, cut[1])]
    assert images == {}
    boxes = codes(result, "box skipped")
    assert boxes == {"label-mismatch": [at[5]], "unknown-label": [at[5]],
                     "malformed-geometry": [at[6]]}
    reasons = {p.code: p.reason for p in result.report.problems}
    assert "xmin 2, bbox/ymax 1" in reasons["malformed-record"]
    assert "label 7 is not in the label map (ids 1, 2)" in reasons["unknown-label"]
    assert "'cat' has id 1 in the label map but the record's label is 2" in \
        reasons["label-mismatch"]
    assert "truncated record" in reasons["damaged-file"] or "corrupt record length" in \
        reasons["damaged-file"]
    assert sorted(_by_id(tmp_path / "out", "train")) == [
        "after.jpg", "classes.jpg", "good.jpg", "nan.jpg"]
    assert sorted(_by_id(tmp_path / "out", "val")) == ["v0.jpg"]
    assert sorted(_by_id(tmp_path / "out", "test")) == ["t0.jpg"]


def test_a_feature_of_the_wrong_type_is_named(tmp_path: Path, registry) -> None:
    """A bbox stored as bytes is not an object list of another length: say which key and what
    type it holds."""
    bad = _legacy("bytes.jpg", [("cat", 1, 1, 1, 9, 9)])
    bad["image/object/bbox/xmin"] = [b"0.1"]
    offsets = _write(tmp_path / "ds" / "a.tfrecord", [_legacy("good.jpg", [("cat", 1, 1, 1, 9, 9)]),
                                                      bad])
    result = run(tmp_path / "ds", tmp_path / "out", registry)
    [problem] = result.report.problems
    assert (problem.code, problem.file) == (
        "malformed-record", _where(tmp_path / "ds" / "a.tfrecord", 1, offsets[1]))
    assert problem.reason == ("image/object/bbox/xmin holds bytes (bytes_list), the TF Object "
                              "Detection API reads floats (float_list)")


def test_duplicate_keys_and_changed_files_are_reported(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    offsets = _write(source / "a.tfrecord", [_legacy("same.jpg", [("cat", 1, 1, 1, 9, 9)])] * 2)
    result = run(source, tmp_path / "out", registry)
    assert codes(result, "image skipped") == {
        "duplicate-image": [_where(source / "a.tfrecord", 1, offsets[1])]}
    [sample, _] = TFRecordImporter().read(source, Report())
    (source / "a.tfrecord").write_bytes(b"")  # the file changed after it was read
    report = Report()
    assert prepare(sample, "header", report) is None
    assert [(p.file, p.code) for p in report.problems] == [
        (_where(source / "a.tfrecord", 0, 0), "unreadable-record")]


def test_nothing_readable_is_one_line(tmp_path: Path, registry) -> None:
    _write(tmp_path / "ds" / "a.tfrecord", [b"\x08\xff\xff"])
    with pytest.raises(OdplugError, match="no images to import") as caught:
        run(tmp_path / "ds", tmp_path / "out", registry, format="tfrecord")
    assert "\n" not in str(caught.value)


# -- fuzz: every record is in the output or in the report ---------------------------------------


REGISTRY = load_registry(entry_points=False)
KINDS = ["good", "good", "good", "garbage", "no-image", "bad-image", "uneven", "nan",
         "unknown-label", "no-size", "retyped", "retyped"]
RETYPED = st.one_of(st.binary(max_size=8), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=True), st.lists(st.integers(-5, 5), max_size=3),
                    st.lists(st.floats(-2, 2), max_size=3))


@st.composite
def record_sets(draw: st.DrawFn) -> list[tuple[str, FEATURES | bytes]]:
    records: list[tuple[str, FEATURES | bytes]] = []
    for index in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        boxes = draw(st.lists(st.tuples(st.sampled_from([("cat", 1), ("dog", 2), ("", 1)]),
                                        st.integers(0, 40), st.integers(0, 30)), max_size=3))
        features = _legacy("x.jpg", [(c, n, x, y, x + 20, y + 15) for (c, n), x, y in boxes],
                           **{"image/source_id": f"r{index}".encode()})
        if kind == "garbage":
            records.append((kind, draw(st.binary(max_size=20))))
            continue
        if kind == "no-image":
            del features["image/encoded"]
        elif kind == "bad-image":
            features["image/encoded"] = draw(st.binary(max_size=40))
        elif kind == "uneven" and boxes:
            features["image/object/class/label"] = [1] * (len(boxes) + 1)
        elif kind == "nan" and boxes:
            features["image/object/bbox/ymin"] = [draw(st.sampled_from([math.nan, math.inf]))
                                                  ] * len(boxes)
        elif kind == "unknown-label" and boxes:
            features["image/object/class/label"] = [9] * len(boxes)
            features["image/object/class/text"] = [b""] * len(boxes)
        elif kind == "no-size":
            del features["image/width"], features["image/height"]
        elif kind == "retyped":  # any value of any type under one of the schema's keys
            key = draw(st.sampled_from(sorted(set(features) - {"image/source_id"})))
            features[key] = draw(RETYPED)
        records.append((kind, features))
    return records


@given(records=record_sets(), damage=st.sampled_from(["none", "none", "flip", "cut"]),
       where=st.floats(0, 1, exclude_max=True))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_every_record_is_written_or_reported(records: list[tuple[str, Any]], damage: str,
                                                  where: float) -> None:
    """Any record contents, and a byte flipped or the file cut anywhere: each record is in the
    output, or named in the report, or after the point where the report says the file was
    lost; an import of nothing is one OdplugError line."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "ds"
        path = source / "train.tfrecord"
        offsets = _write(path, [r for _k, r in records])
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[int(where * len(data))] ^= 0x5A
        elif damage == "cut":
            data = data[:int(where * len(data))]
        path.write_bytes(bytes(data))
        out = Path(folder) / "out"
        try:
            result = import_dataset(source, out, ImportOptions(workers=1, format="tfrecord"),
                                    REGISTRY)
        except OdplugError as error:
            assert "\n" not in str(error)
            event("refused: " + str(error).split(": ", 1)[-1][:30])
            return
        event("imported")
        written = {summarize(r).source_id for f in shard_files(out) for r in iter_records(f)}
        skipped = [p for p in result.report.problems if p.kind == "image skipped"]
        lost_from = min((offsets.index(o) for p in skipped if p.code == "damaged-file"
                         for o in offsets if p.file.endswith(f"(byte offset {o})")),
                        default=len(offsets))
        for index, offset in enumerate(offsets):
            told = any(p.file == _where(path, index, offset) for p in skipped)
            assert f"r{index}" in written or told or index >= lost_from, (index, records)


def test_a_disk_error_mid_file_is_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import odplug_builtins.tfrecord as plugin

    path = tmp_path / "a.tfrecord"
    _write(path, [_legacy("a.jpg", [("cat", 1, 1, 1, 9, 9)]), _legacy("b.jpg", [])])

    def failing(file: Path, start: int = 0):  # type: ignore[no-untyped-def]
        yield next(iter_framed(file, start))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(plugin, "iter_framed", failing)
    report = Report()
    assert [s.key for s in TFRecordImporter().read(path, report)] == ["a.jpg"]
    assert [(p.file, p.code, p.reason) for p in report.problems] == [
        (str(path), "unreadable-record-file",
         f"{path}: cannot read at record 1: Input/output error")]


def test_flags_are_kept(tmp_path: Path, registry) -> None:
    source = tmp_path / "ds"
    _write(source / "a.tfrecord", [
        _legacy("a.jpg", [("cat", 1, 1, 1, 9, 9), ("cat", 1, 5, 5, 30, 30)],
                **{"image/object/difficult": [1, 0], "image/object/truncated": [0, 1],
                   "image/object/is_crowd": [1, 0]})])
    [sample] = TFRecordImporter().read(source, Report())
    assert [(b.difficult, b.truncated, b.crowd) for b in sample.boxes] == [
        (True, False, True), (False, True, False)]
    run(source, tmp_path / "out", registry)
    [again] = TFRecordImporter().read(tmp_path / "out", Report())
    assert [(b.difficult, b.truncated, b.crowd) for b in again.boxes] == [
        (True, False, True), (False, True, False)]


def test_record_file_names_stay_inside_a_writers_folder(tmp_path: Path, registry) -> None:
    """image/filename and source_id are whatever a tool wrote: a writer that copies images
    (tf_csv) gets only a last part that names a file."""
    source = tmp_path / "ds"
    _write(source / "a.tfrecord", [
        _legacy("..\\..\\evil.jpg", [("cat", 1, 1, 1, 9, 9)],
                **{"image/source_id": b"../../one"}),
        _legacy("..", [("cat", 1, 1, 1, 9, 9)], **{"image/source_id": b"/abs/two.jpg"}),
        _legacy("", [("cat", 1, 1, 1, 9, 9)], **{"image/source_id": b".."}),
    ])
    samples = list(TFRecordImporter().read(source, Report()))
    assert [s.file_name for s in samples] == ["evil.jpg", "two.jpg", "record-2"]
    run(source, tmp_path / "out" / "csv", registry, to="tf_csv")
    images = tmp_path / "out" / "csv" / "images"
    copies = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith(".odplug")
              and p.suffix not in (".csv", ".json", ".pbtxt", ".tfrecord")]
    assert len(copies) == 3 and all(images in p.parents for p in copies), copies


def test_an_exif_rotated_record_image_keeps_the_pixels_its_boxes_were_drawn_on(
        tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    """TensorFlow ignores EXIF, so a record's boxes were drawn on the stored pixels: the image
    keeps them as stored (orientation dropped, so Pillow-based tools see the same) instead of
    being turned upright under boxes that would then be misplaced."""
    pixels = np.zeros((48, 48, 3), np.uint8)
    pixels[:, :24] = 255  # the left half is white, as stored
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    _write(tmp_path / "src" / "train.tfrecord", [_legacy(
        "turned.jpg", [("white", 1, 0, 0, 24, 48)], size=(48, 48),
        **{"image/encoded": buffer.getvalue()})])
    result = run(tmp_path / "src", tmp_path / "out", registry)
    assert sum(result.report.images.values()) == 1
    example = Example()
    example.ParseFromString(next(iter_records(shard_files(tmp_path / "out", "train")[0])))
    stored = example.features.feature["image/encoded"].bytes_list.value[0]
    with Image.open(io.BytesIO(stored)) as written:
        assert written.getexif().get(0x0112, 1) == 1
        seen = np.asarray(written.convert("L"))
    box = [example.features.feature[f"image/object/bbox/{k}"].float_list.value[0]
           for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == pytest.approx([0, 0, 0.5, 1])
    assert seen[:, :22].mean() > 240 and seen[:, 26:].mean() < 15


@pytest.mark.parametrize("to", ["tf_csv", "yolo"])
def test_a_key_with_a_nul_character_is_a_reported_skip(tmp_path: Path, registry,  # type: ignore[no-untyped-def]
                                                       to: str) -> None:
    """A NUL can name no file: writers that copy images by key crashed on one."""
    source = tmp_path / "src" / "train.tfrecord"
    _write(source, [_legacy("a.jpg", [("x", 1, 1, 1, 20, 20)], **{"image/source_id": b"a\x00b"}),
                    _legacy("b.jpg", [("x", 1, 1, 1, 20, 20)])])
    result = run(tmp_path / "src", tmp_path / "out", registry, to=to, split="ratio",
                 ratios=(0.5, 0.5, 0.0))
    assert sum(result.report.images.values()) == 1
    assert codes(result, "image skipped") == {"malformed-key": [_where(source, 0, 0)]}
