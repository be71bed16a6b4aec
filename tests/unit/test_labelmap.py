from __future__ import annotations

from pathlib import Path

import pytest

from odplug.data.labelmap import parse_label_map, read_label_map, write_label_map
from odplug.errors import OdplugError
from odplug.labels import LabelMap, LabelMapItem


def test_comments_both_quote_styles_and_unknown_fields() -> None:
    text = """
    # classes of the shapes dataset
    item {
      id: 2  # second
      name: 'square'
      display_name: "Square"
    }
    item { name: "circle" id: 1 keypoints { id: 0 label: "centre" } }
    """
    label_map = parse_label_map(text)
    assert label_map.items == [LabelMapItem(1, "circle"), LabelMapItem(2, "square", "Square")]
    assert label_map.id_of("square") == 2 and label_map.name_of(1) == "circle"


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    label_map = LabelMap([LabelMapItem(1, "raccoon", "Raccoon"), LabelMapItem(3, "it's \"x\"")])
    write_label_map(label_map, tmp_path / "label_map.pbtxt")
    assert read_label_map(tmp_path / "label_map.pbtxt") == label_map


def test_reads_the_raccoon_label_map(raccoon: Path) -> None:
    assert read_label_map(raccoon / "training" / "object-detection.pbtxt").names == ["raccoon"]


@pytest.mark.parametrize("text,message", [
    ("item { id: 0 name: 'a' }", "must be 1 or more"),
    ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "id 1 is used twice"),
    ("item { id: 1 name: 'a' } item { id: 2 name: 'a' }", "'a' is used twice"),
    ("item { name: 'a' }", "has no id"),
    ("item { id: 1 name: 'a' ", "not a valid label map"),
    ("# nothing", "no items"),
])
def test_bad_label_maps_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.pbtxt"
    path.write_text(text)
    with pytest.raises(OdplugError, match=message) as caught:
        read_label_map(path)
    assert str(path) in str(caught.value)


def test_missing_label_map_file(tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match="not found"):
        read_label_map(tmp_path / "nope.pbtxt")


def test_class_columns_are_the_items_in_ascending_id_order() -> None:
    """The one rule: column i is the i-th item by id, whatever gaps the ids have and whatever
    order the file lists them in."""
    label_map = parse_label_map("item { id: 7 name: 'triangle' } item { id: 1 name: 'circle' }"
                                " item { id: 3 name: 'square' }")
    assert label_map.ids == [1, 3, 7]
    assert label_map.names == ["circle", "square", "triangle"]
    assert [label_map.column_of(id_) for id_ in (1, 3, 7)] == [0, 1, 2]
    assert [label_map.id_at(column) for column in range(3)] == [1, 3, 7]
    with pytest.raises(KeyError):
        label_map.column_of(2)
    with pytest.raises(IndexError, match="column 3 of a label map with 3 items"):
        label_map.id_at(3)
