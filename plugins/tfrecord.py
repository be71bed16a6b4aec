"""Built-in TFRecords in the TF Object Detection API's schema: the default writer, and an importer.

The writer shards records as ``<split>.record-00000-of-00004`` (see `odplug.data.shards`).

The importer reads records made by any tool (legacy ``generate_tfrecord.py`` output, Roboflow
and Datumaro exports, odplug's own output), so they can be validated, re-split, filtered,
renamed and re-sharded by ``data.import`` like any other dataset. Its samples keep no image
bytes: each remembers the byte offset of its record (`odplug.samples.RecordRef`), and the
writer's workers read the records back one at a time.

**Detection.** A file given directly, or the files of the folder given named ``*.tfrecord``,
``*.tfrecords``, ``*.tfrec`` or ``*.record``, sharded or not (``*.record-00000-of-00010``),
and where the folder has none, those of its immediate subfolders (Roboflow's ``train/``,
``valid/``, ``test/``). It is confirmed by reading the first record's framing (its length CRC)
and parsing it as a ``tf.train.Example`` that has ``image/encoded``. A file named like records
that fails this is a near miss: when no format claims the folder, its reason is the error.

**Splits.** ``train``, ``val``, ``valid``, ``validation`` or ``test`` as a word in a record
file's name (``train-00000-of-00004.tfrecord``, ``coco_val.record-00000-of-00010``), else in
the name of the subfolder below the given folder that holds it (``train/foo.tfrecord``); a
word counts when no letter touches it, so ``trainval`` is none. Otherwise no split, and the
core splits by ratio.

**Boxes and classes.** Normalised ``image/object/bbox/*`` times ``image/width``/``height``
(from the image header where the record leaves them out or at their default of 1) give pixels.
The class is ``image/object/class/text``, else the label map's name for
``image/object/class/label``. ``difficult``, ``truncated`` and ``is_crowd`` are kept. A key
holding another type than the schema's (a bbox stored as bytes) skips its record, naming both. The
boxes belong to the pixels as stored (TensorFlow ignores EXIF), so an image with an EXIF
orientation is re-encoded as stored, orientation dropped, never turned upright under them.

**Label map.** ``label_map.pbtxt`` beside the records or one folder up, else a
``*label_map*.pbtxt`` there (Roboflow's, one per split folder, which must agree), else a
``*.pbtxt`` beside them; without one it is built from the (label, text) pairs of the records,
keeping their ids (a scan of every record). A label-only record (no class text) needs a label
map file beside it: ``--label-map`` names the output's classes, not the records' ids.
The key is ``image/source_id``, else ``image/filename``, else ``<file>#<index>``.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from odplug import hookimpl
from odplug.components import DatasetWriter, Importer, WriteJob
from odplug.data.labelmap import read_label_map
from odplug.data.shards import write_tfrecords
from odplug.data.tfrecord import DamagedRecord, iter_framed, parse_example
from odplug.dataset_report import Report, Skip
from odplug.errors import OdplugError
from odplug.labels import LabelMap, LabelMapItem
from odplug.samples import Box, RecordRef, Sample

RECORD_NAME = re.compile(r"\.(tfrecords?|tfrec|record)(-\d+-of-\d+)?$", re.IGNORECASE)
_SPLIT_WORD = re.compile(r"(?<![a-z])(train|val|valid|validation|test)(?![a-z])",
                         re.IGNORECASE)
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_BBOX = ("xmin", "ymin", "xmax", "ymax")
_FLAGS = {"difficult": "difficult", "truncated": "truncated", "is_crowd": "crowd"}
"""Per-object int64 flags of the record and the `Box` field each becomes."""


class TFRecordWriter(DatasetWriter):
    name = "tfrecord"
    summary = "sharded TFRecords (tf.train.Example, TF Object Detection API keys)"

    def write(self, job: WriteJob) -> Report:
        return write_tfrecords(job)


def record_files(source: Path) -> list[Path]:
    """The record files of `source`: itself if a file, else those named like records in the
    folder, else those in its immediate subfolders; sorted."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        return []
    found = sorted(p for p in source.iterdir() if p.is_file() and RECORD_NAME.search(p.name))
    if found:
        return found
    return sorted(p for folder in source.iterdir() if folder.is_dir()
                  for p in folder.iterdir() if p.is_file() and RECORD_NAME.search(p.name))


def split_of(path: Path, source: Path) -> str | None:
    """The split a record file's name says, else the name of its subfolder below `source`.

    The folder given itself does not count: its name is the user's (or a temporary folder's,
    ``test_something0``), not the dataset's.
    """
    names = [path.name]
    if source.is_dir() and path.parent != source:
        names.append(path.parent.name)
    for name in names:
        match = _SPLIT_WORD.search(name)
        if match:
            return _SPLITS[match.group(1).lower()]
    return None


def _root(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def _location(path: Path, index: int, offset: int) -> str:
    return f"{path}: record {index} (byte offset {offset})"


def _records(path: Path, report: Report | None) -> Iterator[tuple[int, int, bytes]]:
    """(index, byte offset, record) of every readable record of one file.

    Damage is a skip in the report, not an error, so one damaged file of a sharded set leaves
    the rest of the dataset importable and the report says exactly what was lost. A record
    whose data fails its CRC but whose length is intact is skipped alone (the next record's
    start is known); a damaged length or a file cut short loses the rest of that file, as it
    does for TensorFlow's reader.
    """
    index, start = 0, 0
    while True:
        try:
            for offset, record in iter_framed(path, start):
                yield index, offset, record
                index += 1
            return
        except DamagedRecord as damage:
            if report is not None:
                where = _location(path, index, damage.offset)
                if damage.resume_at is not None:
                    report.skip_image(where, "corrupt-record", f"{damage.why}; skipped alone")
                else:
                    rest = _stamp(path)[0] - damage.offset
                    report.skip_image(where, "damaged-file",
                                      f"{damage.why}: the rest of the file ({rest} bytes) "
                                      "cannot be read and is skipped")
            if damage.resume_at is None:
                return
            index, start = index + 1, damage.resume_at
        except (OdplugError, OSError) as error:  # cannot be opened, or a disk error
            if report is not None:
                reason = str(error) if isinstance(error, OdplugError) else \
                    f"{path}: cannot read at record {index}: {error.strerror or error}"
                report.skip_image(path, "unreadable-record-file", reason)
            return


_KINDS = {"bytes_list": "bytes", "float_list": "floats", "int64_list": "integers"}


def _values(feature: Any, key: str, kind: str) -> list[Any]:
    """A feature's values; empty when the key is absent (a protobuf map would add it) or holds
    an empty list. Raises `Skip` naming the key when it holds values of another type."""
    if key not in feature:
        return []
    held = feature[key].WhichOneof("kind")
    values = list(getattr(feature[key], held).value) if held else []
    if held != kind and values:
        raise Skip("malformed-record", f"{key} holds {_KINDS[held]} ({held}), the TF Object "
                   f"Detection API reads {_KINDS[kind]} ({kind})")
    return values


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


class TFRecordImporter(Importer):
    name = "tfrecord"
    summary = ("TFRecords of tf.train.Example in the TF Object Detection API schema "
               "(*.tfrecord, *.record, *.record-00000-of-00010)")

    def __init__(self) -> None:
        self._derived: tuple[tuple[tuple[Any, ...], ...], LabelMap | None] | None = None

    def detect(self, source: Path) -> bool:
        """Cheap: the first record of the first non-empty file, framing and Example parsed.

        A file named like records (``*.tfrecord``, ``*.record``...) that fails is a near miss:
        the `OdplugError` raised says what is wrong with its first record."""
        for path in record_files(source):
            named = RECORD_NAME.search(path.name) is not None
            try:
                first = next(iter_framed(path), None)
                if first is None:
                    continue
                example = parse_example(first[1], origin=f"{path}: record 0")
            except OSError:
                return False
            except OdplugError:
                if named:
                    raise
                return False
            if "image/encoded" in example.features.feature:
                return True
            if named:
                raise OdplugError(f"{path}: record 0 has no image/encoded: not the TF Object "
                                  "Detection API's tf.train.Example")
            return False
        return False

    def label_map(self, source: Path) -> LabelMap | None:
        """The label map beside the records or one folder up; without one, the one built from
        the records' (label id, class text) pairs, which costs a scan of every record (CRCs
        checked, Examples parsed; one record in memory at a time), remembered for `read`."""
        files = record_files(source)
        found = _label_map_file(files)
        if found is not None:
            return found
        key = tuple((str(p), *_stamp(p)) for p in files)
        if self._derived is None or self._derived[0] != key:
            self._derived = (key, _label_map_from_records(files))
        return self._derived[1]

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        files = record_files(source)
        if not files:
            raise OdplugError(f"{source}: no record files (*.tfrecord, *.record, "
                              "*.record-00000-of-00001) here or one folder below")
        label_map = self.label_map(source)
        names = {item.id: item.name for item in label_map.items} if label_map else {}
        root = _root(source)
        for path in files:
            split = split_of(path, source)
            relative = path.relative_to(root).as_posix() if root in path.parents else path.name
            for index, offset, record in _records(path, report):
                place = RecordRef(offset, index, len(record) + 16)
                try:
                    yield _sample(record, path, place, f"{relative}#{index}", split, label_map,
                                  names, report)
                except Skip as skip:
                    report.skip_image(_location(path, index, offset), skip.code, skip.reason)


def _stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: a derived label map is remembered while these hold."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_size, stat.st_mtime_ns


def _sample(record: bytes, path: Path, place: RecordRef, fallback_key: str, split: str | None,
            label_map: LabelMap | None, names: dict[int, str], report: Report) -> Sample:
    """The sample of the record at `place` of `path`; raises `Skip` for one to leave out."""
    where = _location(path, place.index, place.offset)
    try:
        example = parse_example(record)
    except OdplugError as error:
        raise Skip("not-an-example", str(error).removeprefix("record: ")) from None
    feature = example.features.feature
    encoded = _values(feature, "image/encoded", "bytes_list")
    if not encoded or not encoded[0]:
        raise Skip("missing-image", "the record has no image/encoded bytes")
    width, height = _declared_size(feature)
    if width is None or height is None:
        width, height = _header_size(encoded[0])
    coords = [_values(feature, f"image/object/bbox/{c}", "float_list") for c in _BBOX]
    texts = [_text(v) for v in _values(feature, "image/object/class/text", "bytes_list")]
    labels = _values(feature, "image/object/class/label", "int64_list")
    flags = {key: _values(feature, f"image/object/{key}", "int64_list") for key in _FLAGS}
    count = len(coords[0])
    lists = {f"bbox/{c}": v for c, v in zip(_BBOX, coords, strict=True)}
    lists.update({"class/text": texts, "class/label": labels, **flags})
    uneven = {key: len(v) for key, v in lists.items()
              if len(v) != count and (v or key.startswith("bbox/"))}
    if uneven:
        shown = ", ".join(f"{key} {n}" for key, n in {"bbox/xmin": count, **uneven}.items())
        raise Skip("malformed-record", f"object lists of different lengths ({shown}); which "
                    "value belongs to which box cannot be told")
    source_id = _first_text(feature, "image/source_id")
    filename = _first_text(feature, "image/filename")
    sample = Sample(image=path, key=source_id or filename or fallback_key, width=width,
                    height=height, split=split,
                    record=RecordRef(place.offset, place.index, place.size, filename))
    for index in range(count):
        box = _box(index, [c[index] for c in coords], texts, labels, flags, width, height,
                   label_map, names)
        if isinstance(box, Box):
            sample.boxes.append(box)
        else:
            sample.skipped_boxes += 1
            report.skip_box(where, box[0], box[1])
    return sample


def _box(index: int, corners: list[float], texts: list[str], labels: list[int],
         flags: dict[str, list[int]], width: int, height: int, label_map: LabelMap | None,
         names: dict[int, str]) -> Box | tuple[str, str]:
    """Box `index` of a record in pixels, or the (code, reason) it is skipped for."""
    text = texts[index] if texts else ""
    label = labels[index] if labels else None
    if not all(math.isfinite(c) for c in corners):
        return "malformed-geometry", f"box {index}: coordinates {corners} are not all finite"
    if text:
        if label is not None and label_map is not None and text in label_map \
                and label_map.id_of(text) != label:
            return "label-mismatch", (f"box {index}: class {text!r} has id "
                                      f"{label_map.id_of(text)} in the label map but the "
                                      f"record's label is {label}")
        name = text
    elif label is None:
        return "no-class", f"box {index}: neither class text nor label"
    elif label in names:
        name = names[label]
    elif names:
        known = ", ".join(map(str, sorted(names)))
        return "unknown-label", (f"box {index}: label {label} is not in the label map (ids "
                                 f"{known}) and the record has no class text")
    else:
        return "unknown-label", (f"box {index}: label {label} has no class text and no "
                                 "label_map.pbtxt is beside the records to name it")
    extra = {field: bool(flags[key][index]) for key, field in _FLAGS.items() if flags[key]}
    xmin, ymin, xmax, ymax = corners
    return Box(name, xmin * width, ymin * height, xmax * width, ymax * height, **extra)


def _first_text(feature: Any, key: str) -> str:
    values = _values(feature, key, "bytes_list")
    return _text(values[0]) if values else ""


def _declared_size(feature: Any) -> tuple[int | None, int | None]:
    """The record's ``image/width`` and ``image/height``; None where absent, not integers, or
    at the OD API decoder's default of 1, which tools that leave the size out are read as."""
    try:
        width = _values(feature, "image/width", "int64_list")
        height = _values(feature, "image/height", "int64_list")
    except Skip:  # a size of another type: the image header says it
        return None, None
    if not width or not height or width[0] <= 1 or height[0] <= 1:
        return None, None
    return int(width[0]), int(height[0])


def _header_size(encoded: bytes) -> tuple[int, int]:
    """The image's size from its header (no pixels decoded), for records that give none."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge image is reported when it is written
            with Image.open(io.BytesIO(encoded)) as image:
                return image.size
    except Exception as error:  # no format Pillow knows, a broken header: many types
        text = " ".join(str(error).split())[:120]
        raise Skip("corrupt-image", "the record gives no image size and image/encoded is not "
                    f"a readable image ({type(error).__name__}: {text})") from None


def _label_map_file(files: list[Path]) -> LabelMap | None:
    """The label map file of these records: ``label_map.pbtxt`` beside them, else one folder up,
    else a ``*label_map*.pbtxt`` at either level, else any ``*.pbtxt`` beside them. The nearest
    kind found wins; several of one kind must hold the same map (Roboflow writes one per split
    folder), or the user is asked to choose."""
    beside = list(dict.fromkeys(p.parent for p in files))
    above = list(dict.fromkeys(folder.parent for folder in beside))
    for pattern, folders in (("label_map.pbtxt", beside), ("label_map.pbtxt", above),
                             ("*label_map*.pbtxt", beside + above), ("*.pbtxt", beside)):
        found = sorted({p for folder in folders for p in folder.glob(pattern) if p.is_file()})
        if not found:
            continue
        maps = [read_label_map(p) for p in found]
        if any(other != maps[0] for other in maps[1:]):
            raise OdplugError(f"{found[0].parent}: label maps {', '.join(map(str, found))} "
                              "differ; give the right one with --label-map")
        return maps[0]
    return None


def _label_map_from_records(files: list[Path]) -> LabelMap | None:
    """The classes of the records with the ids they carry; None when they carry no text.

    The first id seen for a text (and text for an id) wins; boxes that disagree with it are
    reported by `read` as label mismatches. A text never seen with a usable id (1 or more)
    gets the next free id, in name order.
    """
    ids: dict[str, int] = {}
    taken: set[int] = set()
    unnumbered: set[str] = set()
    for path in files:
        for _index, _offset, record in _records(path, None):
            try:
                feature = parse_example(record).features.feature
                texts = [_text(v) for v in _values(feature, "image/object/class/text",
                                                   "bytes_list")]
                labels = _values(feature, "image/object/class/label", "int64_list")
            except (OdplugError, Skip):  # `read` reports the record
                continue
            paired = labels if len(labels) == len(texts) else [0] * len(texts)
            for text, label in zip(texts, paired, strict=True):
                if not text or text in ids:
                    continue
                if label >= 1 and label not in taken:
                    ids[text] = label
                    taken.add(label)
                    unnumbered.discard(text)
                else:
                    unnumbered.add(text)
    if not ids and not unnumbered:
        return None
    next_id = max(taken, default=0)
    for text in sorted(unnumbered):
        next_id += 1
        ids[text] = next_id
    return LabelMap(LabelMapItem(i, text) for text, i in ids.items())


@hookimpl(trylast=True)
def odplug_register_importers(register):  # type: ignore[no-untyped-def]
    register(TFRecordImporter())


@hookimpl(trylast=True)
def odplug_register_writers(register):  # type: ignore[no-untyped-def]
    register(TFRecordWriter())
