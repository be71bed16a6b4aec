"""The dataset picture from tiny and odd inputs: one class, one split, a split without boxes,
images of unknown size, nothing skipped, skips not known, and a split of many thousand boxes
that is sampled down; the geometry collected on the way, and the skips counted per split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.data.geometry import DatasetGeometry, Reservoir, from_samples
from odplug.data.overview import folder_skips, skipped_by_split, write_overview
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.pictures.dataset import POINTS_PER_SPLIT, SplitPoints, draw_dataset
from odplug.samples import Box, Sample


def opens(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def test_one_class_one_split_nothing_skipped(tmp_path: Path) -> None:
    geometry = DatasetGeometry()
    geometry.add_image("train", 640, 480, ["cat"], [(0.1, 0.2, 0.5, 0.6)])
    path = write_overview(tmp_path, geometry, {"images": {}, "boxes": {}, "splits": {}})
    assert opens(path) == (1500, 900)
    numbers = json.loads((tmp_path / "dataset.json").read_text())
    assert numbers == {"splits": {"train": {"images": 1, "boxes": 1, "empty_images": 0,
                                            "classes": {"cat": 1}}},
                       "skipped": {"images": {}, "boxes": {}, "splits": {}},
                       "picture": "dataset.png"}


def test_empty_splits_unknown_sizes_and_unknown_skips_still_draw(tmp_path: Path) -> None:
    splits = {
        "train": SplitPoints(images=3, boxes=0, classes={}),
        "val": SplitPoints(images=0, boxes=0, classes={}),
        "qa": SplitPoints(images=2, boxes=2, classes={"a": 2}),  # boxes whose place is unknown
    }
    assert opens(draw_dataset(splits, None, tmp_path / "a.png")) == (1500, 900)
    assert opens(draw_dataset({}, None, tmp_path / "b.png")) == (1500, 900)


def test_skips_per_split_and_before_the_split_draw(tmp_path: Path) -> None:
    skipped = {"images": {"missing-image": 3, "size-mismatch": 1},
               "boxes": {"zero-area": 4},
               "splits": {"train": {"images": {"size-mismatch": 1}, "boxes": {"zero-area": 1}},
                          "holdout": {"images": {}, "boxes": {"zero-area": 2}}}}
    points = {"train": SplitPoints(images=1, boxes=1, classes={"a": 1},
                                   boxes_xywh=np.array([[0.5, 0.5, 0.2, 0.1]]),
                                   image_sizes=np.array([[64, 48]]))}
    assert opens(draw_dataset(points, skipped, tmp_path / "s.png")) == (1500, 900)


def test_many_boxes_are_sampled_and_drawn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    geometry = DatasetGeometry()
    corners = rng.uniform(0, 0.5, (24_000, 2))
    for index, (x, y) in enumerate(corners):
        geometry.add_image("train" if index % 8 else "test", 100 + index % 50, 80,
                           [f"class {index % 90}"], [(x, y, x + 0.3, y + 0.2)])
    train = geometry.splits["train"]
    assert train.boxes == 21_000 and len(train.box_points.items) == POINTS_PER_SPLIT
    assert len(geometry.splits["test"].box_points.items) == 3_000
    points = geometry.points()["train"]
    assert points.boxes_xywh.shape == (POINTS_PER_SPLIT, 4)
    assert np.allclose(points.boxes_xywh[:, 2:], [0.3, 0.2])
    assert opens(write_overview(tmp_path, geometry, None)) == (1500, 900)
    assert json.loads((tmp_path / "dataset.json").read_text())["skipped"] is None


def test_the_reservoir_keeps_a_fair_sample_of_a_fixed_size() -> None:
    reservoir: Reservoir[int] = Reservoir(limit=100, seed=1)
    for item in range(10_000):
        reservoir.add(item)
    assert reservoir.seen == 10_000 and len(reservoir.items) == 100
    assert len(set(reservoir.items)) == 100
    assert 3000 < float(np.mean(reservoir.items)) < 7000  # not the first hundred
    again: Reservoir[int] = Reservoir(limit=100, seed=1)
    for item in range(10_000):
        again.add(item)
    assert again.items == reservoir.items


def test_from_samples_leaves_out_skipped_images_and_fits_boxes() -> None:
    kept = Sample(Path("/d/a.jpg"), "a", [Box("cat", -10, 0, 50, 40), Box("dog", 5, 5, 5, 9)],
                  width=100, height=80)
    skipped = Sample(Path("/d/b.jpg"), "b", [Box("cat", 0, 0, 10, 10)], width=100, height=80)
    unsized = Sample(Path("/d/c.jpg"), "c", [Box("dog", 0, 0, 10, 10)])
    report = Report()
    report.skip_image(skipped.location, "corrupt-image", "broken")
    geometry = from_samples({"train": [kept, skipped], "val": [unsized]}, report)
    train, val = geometry.splits["train"], geometry.splits["val"]
    assert (train.images, train.boxes, dict(train.classes)) == (1, 1, {"cat": 1})
    assert train.box_points.items == [(0.25, 0.25, 0.5, 0.5)]  # clipped to x 0..50
    assert train.image_sizes.items == [(100, 80)]
    assert (val.images, val.boxes, val.box_points.items, val.image_sizes.items) == (1, 1, [], [])


def test_skips_are_counted_per_split_where_the_file_says_which() -> None:
    a = Sample(Path("/d/a.jpg"), "a", origin="/d/ann/train.json", split="train")
    b = Sample(Path("/d/b.jpg"), "b", origin="/d/ann/both.json")
    c = Sample(Path("/d/c.jpg"), "c", origin="/d/ann/both.json")
    report = Report()
    report.skip_image(a.location, "corrupt-image", "x")          # the writer's: train
    report.skip_box("/d/ann/train.json", "zero-area", "x")       # train's annotation file
    report.skip_box("/d/ann/both.json", "zero-area", "x")        # shared by two splits
    report.skip_image("/d/missing.jpg", "missing-image", "x")    # before the split
    report.change_box(a.location, "clipped", "x")                # a change, not a skip
    counts = skipped_by_split(report, {"train": [a, b], "val": [c]})
    assert counts == {"images": {"corrupt-image": 1, "missing-image": 1},
                      "boxes": {"zero-area": 2},
                      "splits": {"train": {"images": {"corrupt-image": 1},
                                           "boxes": {"zero-area": 1}}}}


def test_a_folders_skips_come_from_its_import(tmp_path: Path) -> None:
    assert folder_skips(tmp_path) is None
    (tmp_path / "report.json").write_text(json.dumps(
        {"skipped": {"images": {"missing-image": 2}, "boxes": {}, "changed_boxes": {"c": 1}}}))
    assert folder_skips(tmp_path) == {"images": {"missing-image": 2}, "boxes": {}}
    per_split = {"images": {"missing-image": 2}, "boxes": {},
                 "splits": {"train": {"images": {"missing-image": 1}, "boxes": {}}}}
    (tmp_path / "dataset.json").write_text(json.dumps({"skipped": per_split}))
    assert folder_skips(tmp_path) == per_split
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(OdplugError, match="dataset.json: not readable"):
        folder_skips(tmp_path)


def test_a_split_is_set_up_once_not_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `SplitGeometry` seeds two random generators: one per image cost a third of the
    collection's time on a 6000-image dataset."""
    from odplug.data import geometry as module

    made: list[object] = []

    class Counted(module.SplitGeometry):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(module, "SplitGeometry", Counted)
    geometry = DatasetGeometry()
    for _ in range(5):
        geometry.add_image("train", 10, 10, [])
        geometry.add_image("val", 10, 10, [])
    assert len(made) == 2


def test_a_records_boxes_are_read_as_its_normalised_corners() -> None:
    from odplug.data.protos import Example
    from odplug.data.tfrecord import summarize

    example = Example()
    feature = example.features.feature
    for key, values in (("xmin", [0.1, 0.5]), ("ymin", [0.2, 0.6]), ("xmax", [0.3, 0.9]),
                        ("ymax", [0.4, 1.0])):
        feature[f"image/object/bbox/{key}"].float_list.value.extend(values)
    feature["image/width"].int64_list.value.append(64)
    summary = summarize(example.SerializeToString(), check_image=False)
    assert np.allclose(summary.corners, [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.9, 1.0)])
    assert summary.image_problem is None  # not looked at, though the record has no image
    assert summarize(example.SerializeToString()).image_problem == "image/encoded is empty"
    assert summarize(Example().SerializeToString(), check_image=False).corners == ()
