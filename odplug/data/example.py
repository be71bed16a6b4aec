"""One image and its boxes as a `tf.train.Example` in the TF Object Detection API's schema.

The keys are exactly those its ``tf_example_decoder`` reads (see FORMATS.md); boxes are
normalised to [0, 1] by the image size, and every class text written is in the label map, since
the decoder silently turns unknown text into class -1.

The encoded image is most of every record, and serializing it through protobuf would copy it
once more than needed, a large share of the conversion time (docs/formats.md,
"Measurements"). So protobuf serializes every feature but the image, and the image's map entry
is framed around the untouched bytes here: a protobuf message is the concatenation of its
fields, so ``prefix + image + rest`` is the same Example that protobuf would write with the
entries in another order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from odplug.data.images import ImageData
from odplug.data.protos import Features
from odplug.labels import LabelMap
from odplug.samples import Box

ENCODED_KEY = b"image/encoded"
_LEN_FIELD_1 = b"\x0a"  # field number 1, wire type 2 (length-delimited)
_LEN_FIELD_2 = b"\x12"  # field number 2, wire type 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: bytes, length: int) -> bytes:
    return tag + _varint(length)


def encode_example(
    image: ImageData, *, filename: str, source_id: str, boxes: Sequence[Box], label_map: LabelMap
) -> tuple[bytes, bytes, bytes]:
    """The serialized Example as three parts to write one after the other: prefix, image, rest."""
    features = Features()
    feature = features.feature
    feature["image/format"].bytes_list.value.append(image.format.encode())
    feature["image/filename"].bytes_list.value.append(filename.encode())
    feature["image/source_id"].bytes_list.value.append(source_id.encode())
    feature["image/key/sha256"].bytes_list.value.append(
        hashlib.sha256(image.data).hexdigest().encode()
    )
    feature["image/height"].int64_list.value.append(image.height)
    feature["image/width"].int64_list.value.append(image.width)
    w, h = float(image.width), float(image.height)
    feature["image/object/bbox/xmin"].float_list.value.extend([b.xmin / w for b in boxes])
    feature["image/object/bbox/xmax"].float_list.value.extend([b.xmax / w for b in boxes])
    feature["image/object/bbox/ymin"].float_list.value.extend([b.ymin / h for b in boxes])
    feature["image/object/bbox/ymax"].float_list.value.extend([b.ymax / h for b in boxes])
    feature["image/object/class/text"].bytes_list.value.extend([b.label.encode() for b in boxes])
    feature["image/object/class/label"].int64_list.value.extend(
        [label_map.id_of(b.label) for b in boxes]
    )
    feature["image/object/difficult"].int64_list.value.extend([int(b.difficult) for b in boxes])
    feature["image/object/truncated"].int64_list.value.extend([int(b.truncated) for b in boxes])
    feature["image/object/is_crowd"].int64_list.value.extend([int(b.crowd) for b in boxes])
    # deterministic: map entries sorted by key, so the same sample is the same bytes whatever
    # PYTHONHASHSEED (measured: four hash seeds gave four different records without it)
    rest = features.SerializeToString(deterministic=True)

    # Features.feature[ENCODED_KEY] = Feature(bytes_list=BytesList(value=[image.data])),
    # framed from the inside out: BytesList, Feature, map entry, then Example.features.
    size = len(image.data)
    bytes_list = _length_delimited(_LEN_FIELD_1, size)
    feature_msg = _length_delimited(_LEN_FIELD_1, len(bytes_list) + size)
    value_size = len(feature_msg) + len(bytes_list) + size
    key = _length_delimited(_LEN_FIELD_1, len(ENCODED_KEY)) + ENCODED_KEY
    entry_body = len(key) + len(_LEN_FIELD_2) + len(_varint(value_size)) + value_size
    entry = _length_delimited(_LEN_FIELD_1, entry_body)
    features_size = len(entry) + entry_body + len(rest)
    prefix = b"".join([
        _length_delimited(_LEN_FIELD_1, features_size), entry, key,
        _length_delimited(_LEN_FIELD_2, value_size), feature_msg, bytes_list,
    ])
    return prefix, image.data, rest
