"""The demo project is the dataset every other test and the README rely on: it must be
reproducible, a valid Supervisely project, and annotated exactly where the shapes are drawn."""

from __future__ import annotations

import base64
import io
import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.data.demo import IMAGES, write_demo_project
from odplug.errors import OdplugError


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _annotations(project: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(project.glob("*/ann/*.json"))}


def _mask(obj: dict) -> np.ndarray:
    png = zlib.decompress(base64.b64decode(obj["bitmap"]["data"]))
    return np.asarray(Image.open(io.BytesIO(png))) > 0


def _box(obj: dict) -> tuple[int, int, int, int]:
    """Inclusive pixel box (left, top, right, bottom) of any of the three geometries."""
    if obj["geometryType"] == "bitmap":
        rows, cols = np.nonzero(_mask(obj))
        x, y = obj["bitmap"]["origin"]
        return x + cols.min(), y + rows.min(), x + cols.max(), y + rows.max()
    xs, ys = zip(*obj["points"]["exterior"], strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first = write_demo_project(tmp_path / "a", images=6, size=64, seed=3)
    second = write_demo_project(tmp_path / "b", images=6, size=64, seed=3)
    other = write_demo_project(tmp_path / "c", images=6, size=64, seed=4)
    assert _files(first) == _files(second)
    assert _files(first).keys() == _files(other).keys()
    assert _files(first) != _files(other)


def test_structure_classes_splits_and_pairs(tmp_path: Path) -> None:
    calls: list[int] = []
    project = write_demo_project(tmp_path / "demo", images=30, size=64, progress=calls.append)
    assert calls == [1] * 30
    meta = json.loads((project / "meta.json").read_text())
    assert {(c["title"], c["shape"]) for c in meta["classes"]} == {
        ("circle", "bitmap"), ("square", "rectangle"), ("triangle", "polygon")}
    assert [t["name"] for t in meta["tags"]] == ["train", "val", "test"]

    images = sorted(p.relative_to(project) for p in project.glob("*/img/*.jpg"))
    annotations = sorted(p.relative_to(project) for p in project.glob("*/ann/*.json"))
    assert {p.parts[0] for p in images} == {"shapes-a", "shapes-b"}
    assert len({p.name for p in images}) == 30
    assert [p.parent.parent / "ann" / f"{p.name}.json" for p in images] == annotations

    splits: Counter[str] = Counter()
    classes: Counter[str] = Counter()
    for path, ann in _annotations(project).items():
        assert ann["size"] == {"height": 64, "width": 64}
        assert Image.open(project / path.parent.parent / "img" / path.name[:-5]).size == (64, 64)
        [tag] = ann["tags"]
        splits[tag["name"]] += 1
        classes.update(obj["classTitle"] for obj in ann["objects"])
        assert len(ann["objects"]) <= 4
    assert splits == {"train": 12, "val": 1, "test": 17}
    assert set(classes) == {"circle", "square", "triangle"}


def test_the_default_test_split_can_resolve_one_percent(tmp_path: Path) -> None:
    """The verification table needs hundreds of test images (see `RANK_BOUNDS`); training
    keeps its 240 images and validation its 30. The command line and the pipeline make the
    same default project as the library."""
    import inspect

    from odplug.cli.tasks import demo_dataset
    from odplug.workflows.pipeline import PipelineOptions

    project = write_demo_project(tmp_path / "demo", images=IMAGES, size=32)
    splits = Counter(ann["tags"][0]["name"] for ann in _annotations(project).values())
    assert splits == {"train": 240, "val": 30, "test": 330}
    assert sum(len(ann["objects"]) for path, ann in _annotations(project).items()
               if ann["tags"][0]["name"] == "test") > 700
    assert inspect.signature(demo_dataset.body).parameters["images"].default == IMAGES
    assert PipelineOptions().demo_images == IMAGES


def test_a_dozen_images_still_have_every_split(tmp_path: Path) -> None:
    project = write_demo_project(tmp_path / "demo", images=12, size=32)
    splits = Counter(ann["tags"][0]["name"] for ann in _annotations(project).values())
    assert splits == {"train": 4, "val": 1, "test": 7}


def test_a_few_images_are_negatives(tmp_path: Path) -> None:
    project = write_demo_project(tmp_path / "demo", images=100, size=32)
    empty = sum(not ann["objects"] for ann in _annotations(project).values())
    assert 0 < empty < 10


def test_bitmaps_are_tight_circles_inside_the_image(tmp_path: Path) -> None:
    project = write_demo_project(tmp_path / "demo", images=30, size=96)
    circles = [obj for ann in _annotations(project).values() for obj in ann["objects"]
               if obj["classTitle"] == "circle"]
    assert circles
    for obj in circles:
        assert obj["geometryType"] == "bitmap"
        mask = _mask(obj)
        x, y = obj["bitmap"]["origin"]
        height, width = mask.shape
        assert height == width >= 9  # 10% of the side at least
        assert _box(obj) == (x, y, x + width - 1, y + height - 1)  # cropped to the circle
        assert 0 <= x and 0 <= y and x + width <= 96 and y + height <= 96
        assert mask.mean() == pytest.approx(np.pi / 4, abs=0.06)
        assert mask[height // 2, width // 2] and not mask[0, 0]


def test_rectangles_and_polygons_are_inside_the_image(tmp_path: Path) -> None:
    project = write_demo_project(tmp_path / "demo", images=30, size=64)
    for ann in _annotations(project).values():
        for obj in ann["objects"]:
            if obj["geometryType"] == "bitmap":
                continue
            exterior = obj["points"]["exterior"]
            assert all(0 <= v < 64 and isinstance(v, int) for point in exterior for v in point)
            if obj["geometryType"] == "rectangle":
                [left, top], [right, bottom] = exterior
                assert obj["classTitle"] == "square" and right - left == bottom - top > 0
            else:
                assert obj["classTitle"] == "triangle" and len(exterior) == 3
                (ax, ay), (bx, by), (cx, cy) = exterior
                assert abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) > 0


def test_annotated_box_is_where_the_shape_is_drawn(tmp_path: Path) -> None:
    """Shapes are saturated, backgrounds muted: the saturated pixels of a one-object image
    must span the annotated box (JPEG blurs edges and thin triangle tips by a pixel or two)."""
    project = write_demo_project(tmp_path / "demo", images=100, size=64)
    checked: set[str] = set()
    for path, ann in _annotations(project).items():
        if len(ann["objects"]) != 1:
            continue
        [obj] = ann["objects"]
        rgb = np.asarray(Image.open(path.parent.parent / "img" / path.name[:-5]), dtype=int)
        rows, cols = np.nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 80)
        drawn = (cols.min(), rows.min(), cols.max(), rows.max())
        assert np.abs(np.subtract(drawn, _box(obj))).max() <= 2, (path.name, drawn, _box(obj))
        checked.add(obj["classTitle"])
    assert checked == {"circle", "square", "triangle"}


def test_refuses_a_folder_that_is_not_a_demo_project(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(OdplugError, match="not an odplug demo project"):
        write_demo_project(tmp_path, images=2, size=32)
    (tmp_path / "meta.json").write_text('{"classes": [], "tags": []}')
    with pytest.raises(OdplugError, match="not an odplug demo project"):
        write_demo_project(tmp_path, images=2, size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "notes.txt"]


def test_overwrites_an_earlier_demo_project(tmp_path: Path) -> None:
    write_demo_project(tmp_path / "demo", images=8, size=32, seed=1)
    project = write_demo_project(tmp_path / "demo", images=4, size=32)
    assert _files(project) == _files(write_demo_project(tmp_path / "fresh", images=4, size=32))


def test_rectangle_corners_are_the_first_and_last_painted_pixel(tmp_path: Path) -> None:
    """Supervisely's rectangle corners are inclusive pixels (the SDK: width = right - left + 1),
    so the demo writes a square painted on pixels 10..19 as [[10, ...], [19, ...]]. JPEG moves
    a saturated edge by a pixel now and then, so the typical offset is what must be zero."""
    project = write_demo_project(tmp_path / "demo", images=300, size=64)
    offsets = []
    for path, ann in _annotations(project).items():
        if [obj["geometryType"] for obj in ann["objects"]] != ["rectangle"]:
            continue
        rgb = np.asarray(Image.open(path.parent.parent / "img" / path.name[:-5]), dtype=int)
        rows, cols = np.nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 80)
        drawn = (cols.min(), rows.min(), cols.max(), rows.max())
        offsets.append(np.subtract(drawn, _box(ann["objects"][0])))
    assert len(offsets) >= 10
    assert np.median(offsets, axis=0).tolist() == [0, 0, 0, 0]
