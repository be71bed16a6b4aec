"""TFRecord framing and the Example schema, checked against TensorFlow as the reader of record."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import odplug.data.tfrecord as tfrecord
from odplug.components import WriteJob
from odplug.data.shards import shard_files, write_tfrecords
from odplug.data.tfrecord import (
    DamagedRecord,
    iter_records,
    record_offsets,
    spread_sample,
    summarize,
    write_record,
)
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.model.tfdata import record_dataset
from odplug.samples import Box, Sample
from tests.support.records import read_records


def test_our_framing_reads_in_tensorflow_and_theirs_in_ours(tmp_path: Path) -> None:
    ours = tmp_path / "ours.record"
    payloads = [b"", b"x", bytes(range(256)) * 300]
    with ours.open("wb") as handle:
        for payload in payloads:
            write_record(handle, payload)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == payloads
    theirs = tmp_path / "theirs.record"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for payload in payloads:
            writer.write(payload)
    assert list(iter_records(theirs)) == payloads
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_an_error_naming_file_and_offset(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "train.record-00000-of-00001"
    with path.open("wb") as handle:
        write_record(handle, b"first")
        write_record(handle, b"second record")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-3]
    else:
        data[-6] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(OdplugError, match=rf"{path.name}.*byte 21"):
        list(iter_records(path))


def _records_with_bad_payloads(path: Path, count: int, intact: set[int]) -> list[bytes]:
    """`count` records, every one not in `intact` with its bytes damaged (length intact)."""
    payloads = [f"record {i}".encode() * (i + 1) for i in range(count)]
    with path.open("wb") as handle:
        for i, payload in enumerate(payloads):
            start = handle.tell()
            write_record(handle, payload)
            if i not in intact:  # flip the first byte of the data: its CRC fails when read
                handle.seek(start + 12)
                handle.write(bytes([payload[0] ^ 0xFF]))
                handle.seek(0, io.SEEK_END)
    return payloads


def test_a_spread_sample_reads_only_the_records_it_takes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 + 5 records; 4 of 12 spread evenly are records 0, 3, 6 (first file) and 9 (second)
    first = _records_with_bad_payloads(tmp_path / "a.record", 7, intact={0, 3, 6})
    second = _records_with_bad_payloads(tmp_path / "b.record", 5, intact={2})
    files = [tmp_path / "a.record", tmp_path / "b.record"]
    with pytest.raises(DamagedRecord, match="fails its CRC"):  # the others cannot be read
        list(iter_records(files[0]))
    reads: list[tuple[Path, int]] = []
    real = tfrecord.read_record

    def counting(path: Path, offset: int) -> bytes:
        reads.append((path, offset))
        return real(path, offset)

    monkeypatch.setattr(tfrecord, "read_record", counting)
    assert spread_sample(files, 4) == [first[0], first[3], first[6], second[2]]
    assert len(reads) == 4
    assert spread_sample(files, 4) == [first[0], first[3], first[6], second[2]]  # the same again


def test_a_spread_sample_of_a_small_split_is_all_of_it(tmp_path: Path) -> None:
    payloads = _records_with_bad_payloads(tmp_path / "a.record", 3, intact={0, 1, 2})
    assert spread_sample([tmp_path / "a.record"], 200) == payloads
    assert spread_sample([tmp_path / "a.record"], 0) == []
    assert record_offsets(tmp_path / "a.record") == [0, 8 + 16, 8 + 16 + 16 + 16]


def test_record_offsets_fail_on_a_damaged_header(tmp_path: Path) -> None:
    path = tmp_path / "a.record"
    _records_with_bad_payloads(path, 2, intact={0, 1})
    data = bytearray(path.read_bytes())
    data[24] ^= 0xFF  # the second record's length
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedRecord, match=r"a.record: corrupt record length at byte 24"):
        record_offsets(path)


def _foreign_example(**features: tf.train.Feature) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _jpeg(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_records_from_other_tools_parse(tmp_path: Path) -> None:
    """Missing source_id and sha256, format 'jpg', class text only, no object keys at all."""
    path = tmp_path / "other.record"
    encoded = tf.train.Feature(bytes_list=tf.train.BytesList(value=[_jpeg()]))
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(_foreign_example(**{
            "image/encoded": encoded,
            "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpg"])),
            "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1])),
            "image/object/bbox/xmax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5])),
            "image/object/bbox/ymin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.2])),
            "image/object/bbox/ymax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.6])),
            "image/object/class/text": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[b"dog"])),
        }))
        writer.write(_foreign_example(**{"image/encoded": encoded}))
    label_map = LabelMap.from_names(["cat", "dog"])
    first, second = list(record_dataset([path], label_map).as_numpy_iterator())
    assert first["format"] == b"jpg" and first["source_id"] == b"" and first["sha256"] == b""
    assert first["classes"].tolist() == [2]
    assert first["boxes"].tolist()[0] == pytest.approx([0.2, 0.1, 0.6, 0.5])
    assert first["image"].shape == (6, 8, 3)
    assert second["boxes"].shape == (0, 4) and second["classes"].tolist() == []
    summaries = [summarize(r) for r in iter_records(path)]
    assert summaries[0].texts == ("dog",) and summaries[1].labels == ()


# -- property: whatever valid dataset goes in comes back out through TensorFlow --------------

_CLASSES = ["cat", "dog", "red panda", "ünï"]


@st.composite
def datasets(draw: st.DrawFn) -> list[tuple[int, int, str, list[Box]]]:
    images = []
    for _ in range(draw(st.integers(1, 6))):
        width, height = draw(st.integers(4, 40)), draw(st.integers(4, 40))
        fmt = draw(st.sampled_from(["JPEG", "PNG"]))
        boxes = []
        for _ in range(draw(st.integers(0, 4))):
            x0 = draw(st.floats(0, width - 1, allow_nan=False))
            y0 = draw(st.floats(0, height - 1, allow_nan=False))
            x1 = draw(st.floats(x0 + 0.5, width, allow_nan=False))
            y1 = draw(st.floats(y0 + 0.5, height, allow_nan=False))
            boxes.append(Box(draw(st.sampled_from(_CLASSES)), x0, y0, x1, y1))
        images.append((width, height, fmt, boxes))
    return images


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets(), shards=st.integers(1, 3))
def test_write_read_round_trip(tmp_path_factory: pytest.TempPathFactory,
                               data: list[tuple[int, int, str, list[Box]]], shards: int) -> None:
    folder = tmp_path_factory.mktemp("round")
    samples = []
    for index, (width, height, fmt, boxes) in enumerate(data):
        path = folder / f"img {index}.{fmt.lower()}"
        Image.new("RGB", (width, height), (index * 30 % 255, 80, 160)).save(path, fmt)
        samples.append(Sample(image=path, key=f"set/{path.name}", boxes=boxes,
                              width=width, height=height))
    label_map = LabelMap.from_names(_CLASSES)
    out = folder / "out"
    report = write_tfrecords(WriteJob(splits={"train": samples}, label_map=label_map, out=out,
                                      shards=shards, workers=1))
    assert report.images["train"] == len(samples) and not report.problems
    assert len(shard_files(out)) == min(shards, len(samples))
    decoded = {row["source_id"]: row for row in read_records(out)}
    assert len(decoded) == len(samples)
    for sample in samples:
        row = decoded[sample.key]
        data_bytes = sample.image.read_bytes()
        assert row["sha256"] == hashlib.sha256(data_bytes).hexdigest()
        assert (row["width"], row["height"]) == (sample.width, sample.height)
        assert row["image_shape"] == (sample.height, sample.width, 3)
        assert row["classes"] == [label_map.id_of(b.label) for b in sample.boxes]
        expected = [[b.ymin / sample.height, b.xmin / sample.width,
                     b.ymax / sample.height, b.xmax / sample.width] for b in sample.boxes]
        for got, want in zip(row["boxes"], expected, strict=True):
            assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 300_000])
def test_example_parts_are_the_example_protobuf_would_write(size: int) -> None:
    """The image entry framed by hand parses to exactly the message built through protobuf."""
    from odplug.data.example import encode_example
    from odplug.data.images import ImageData
    from odplug.data.protos import Example

    image = ImageData(bytes(range(256)) * (size // 256) + bytes(size % 256), "png", 7, 5)
    boxes = [Box("dog", 1, 1, 3, 4, difficult=True)]
    parts = encode_example(image, filename="a.png", source_id="s/a.png", boxes=boxes,
                           label_map=LabelMap.from_names(["cat", "dog"]))
    assert parts[1] is image.data
    parsed = Example.FromString(b"".join(parts))
    feature = parsed.features.feature
    assert feature["image/encoded"].bytes_list.value == [image.data]
    assert feature["image/object/class/label"].int64_list.value == [2]
    assert feature["image/object/difficult"].int64_list.value == [1]
    assert feature["image/source_id"].bytes_list.value == [b"s/a.png"]
    assert len(feature) == 16
    assert tf.train.Example.FromString(b"".join(parts)) == tf.train.Example.FromString(
        parsed.SerializeToString())


ENCODE_ONE = """
import hashlib
from odplug.samples import Box
from odplug.data.example import encode_example
from odplug.data.images import ImageData
from odplug.labels import LabelMap
parts = encode_example(ImageData(b"x", "png", 7, 5), filename="a.png", source_id="a",
                       boxes=[Box("cat", 1, 1, 3, 4)], label_map=LabelMap.from_names(["cat"]))
print(hashlib.sha256(b"".join(parts)).hexdigest())
"""


def test_the_same_sample_is_the_same_bytes_whatever_the_hash_seed() -> None:
    """Two imports of one dataset write identical records (the Features map's order used to
    follow PYTHONHASHSEED), so a record file's hash says whether the data changed."""
    digests = {subprocess.run([sys.executable, "-c", ENCODE_ONE], check=True, text=True,
                              capture_output=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(digests) == 1
