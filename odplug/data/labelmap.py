"""``label_map.pbtxt``: the file format of a label map (`odplug.labels.LabelMap`).

Read and written in the Object Detection API's ``label_map.pbtxt`` text format through
protobuf's own text parser, so comments, either quote style and fields we do not use
(keypoints, frequency) are handled the way the API handles them.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from odplug.atomic import atomic_write_text
from odplug.data.protos import StringIntLabelMap
from odplug.errors import OdplugError
from odplug.labels import LabelMap, LabelMapItem


def parse_label_map(text: str, *, origin: str = "label map") -> LabelMap:
    message = StringIntLabelMap()
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except text_format.ParseError as error:
        raise OdplugError(f"{origin}: not a valid label map: {error}") from None
    if not message.item:
        raise OdplugError(f"{origin}: the label map has no items")
    items = []
    for entry in message.item:
        if not entry.HasField("id"):
            raise OdplugError(f"{origin}: item {entry.name!r} has no id")
        items.append(LabelMapItem(entry.id, entry.name, entry.display_name))
    return LabelMap(items, origin=origin)


def read_label_map(path: Path) -> LabelMap:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OdplugError(f"{path}: label map not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OdplugError(f"{path}: cannot read the label map: {error}") from None
    return parse_label_map(text, origin=str(path))


def label_map_text(label_map: LabelMap) -> str:
    """`label_map` in the ``label_map.pbtxt`` text format."""
    message = StringIntLabelMap()
    for item in label_map.items:
        entry = message.item.add(id=item.id, name=item.name)
        if item.display_name:
            entry.display_name = item.display_name
    return text_format.MessageToString(message)


def write_label_map(label_map: LabelMap, path: Path) -> None:
    atomic_write_text(path, label_map_text(label_map))
