"""The Supervisely importer on small projects built in tmp_path, one format variation each."""

from __future__ import annotations

import base64
import inspect
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
from PIL import Image

from odplug import hookspecs
from odplug.dataset_report import Problem, Report
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.samples import Box, Sample
from odplug_builtins import supervisely
from odplug_builtins.supervisely import SuperviselyImporter

IMPORTER = SuperviselyImporter()


def write_meta(project: Path, classes: tuple[str, ...] = ("car", "person"), **extra: Any) -> None:
    project.mkdir(parents=True, exist_ok=True)
    meta = {
        "classes": [
            {"title": c, "shape": "any_shape", "color": "#F6FF00", "geometry_config": {}, "id": i}
            for i, c in enumerate(classes, start=1)
        ],
        "projectType": "images",
        **extra,
    }
    (project / "meta.json").write_text(json.dumps(meta))


def write_ann(
    project: Path,
    dataset: str,
    image: str,
    objects: list[Any] | None = None,
    *,
    size: tuple[int, int] | None = (64, 48),
    tags: list[Any] | None = None,
    raw: str | None = None,
    with_image: bool = True,
) -> Path:
    """One annotation file (and a tiny image unless told not to); `raw` replaces the JSON."""
    ann = project / dataset / "ann" / f"{image}.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    if raw is None:
        data: dict[str, Any] = {"description": "", "objects": objects or []}
        if size is not None:
            data["size"] = {"height": size[1], "width": size[0]}
        if tags is not None:
            data["tags"] = tags
        raw = json.dumps(data)
    ann.write_text(raw)
    if with_image:
        write_image(project / dataset / "img" / image)
    return ann


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48)).save(path, format="PNG")


def rect(label: str, left: float, top: float, right: float, bottom: float) -> dict[str, Any]:
    return shape(label, "rectangle", [[left, top], [right, bottom]])


def shape(label: str, geometry: str, exterior: list[Any]) -> dict[str, Any]:
    return {
        "id": 1,
        "classId": 7,
        "classTitle": label,
        "geometryType": geometry,
        "tags": [],
        "points": {"exterior": exterior, "interior": []},
    }


def bitmap(label: str, png: bytes, origin: list[int], geometry: str = "bitmap") -> dict[str, Any]:
    data = base64.b64encode(zlib.compress(png)).decode()
    return {
        "classTitle": label,
        "geometryType": geometry,
        "bitmap": {"data": data, "origin": origin},
    }


def png_bytes(image: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def read(project: Path) -> tuple[list[Sample], Report]:
    report = Report()
    return list(IMPORTER.read(project, report)), report


def problems(report: Report) -> list[tuple[str, str, str]]:
    return [(p.kind, Path(p.file).name, p.code) for p in report.problems]


# A 10x8 mask with pixels set in columns 2..6 and rows 1..4: box [ox+2, oy+1, ox+7, oy+5].
MASK = np.zeros((8, 10), dtype=bool)
MASK[1, 3] = MASK[4, 2] = MASK[2, 6] = True


def _mask_l() -> bytes:
    return png_bytes(Image.fromarray(MASK.astype(np.uint8) * 17, mode="L"))


def _mask_1bit() -> bytes:
    image = Image.fromarray(MASK.astype(np.uint8) * 255).convert("1")
    assert image.mode == "1"
    return png_bytes(image)


def _mask_palette() -> bytes:
    """As Supervisely writes masks: palette black/white with index 0 transparent."""
    image = Image.fromarray(MASK.astype(np.uint8)).convert("P")
    image.putpalette([0, 0, 0, 255, 255, 255])
    return png_bytes(image, transparency=0)


def _mask_palette_opaque_zero() -> bytes:
    """Palette transparency on index 1: the mask is alpha, not the non-zero indices."""
    indices = np.where(MASK, 0, 1).astype(np.uint8)
    image = Image.fromarray(indices).convert("P")
    image.putpalette([255, 0, 0, 0, 0, 0])
    return png_bytes(image, transparency=1)


def _mask_rgba() -> bytes:
    """Colour everywhere, partial alpha on the mask only: alpha decides."""
    pixels = np.full((8, 10, 4), 200, dtype=np.uint8)
    pixels[..., 3] = np.where(MASK, 90, 0)
    return png_bytes(Image.fromarray(pixels, mode="RGBA"))


def _mask_rgb() -> bytes:
    pixels = np.zeros((8, 10, 3), dtype=np.uint8)
    pixels[MASK, 1] = 255
    return png_bytes(Image.fromarray(pixels, mode="RGB"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    write_meta(path)
    return path


def test_point_geometries_become_boxes(project: Path) -> None:
    ann = write_ann(
        project,
        "ds",
        "one.jpg",
        [
            rect("car", 40, 30, 10, 5),  # swapped corners
            shape("person", "polygon", [[5, 9], [20, 2], [12, 30], [3, 14]]),
            shape("car", "line", [[1, 2], [7, 2]]),
            shape("car", "polyline", [[8, 9], [3, 1], [6, 4]]),
        ],
    )
    samples, report = read(project)
    assert samples == [
        Sample(
            image=project / "ds" / "img" / "one.jpg",
            key="ds/one.jpg",
            boxes=[
                Box("car", 10, 5, 41, 31),  # pixels 10..40 and 5..30
                Box("person", 3, 2, 21, 31),
                Box("car", 1, 2, 8, 3),  # a line one pixel high
                Box("car", 3, 1, 9, 10),
            ],
            width=64,
            height=48,
            split=None,
            origin=str(ann),
        )
    ]
    assert report.problems == []


@pytest.mark.parametrize(
    "png",
    [_mask_1bit, _mask_l, _mask_palette, _mask_palette_opaque_zero, _mask_rgba, _mask_rgb],
    ids=["1-bit", "L", "palette-transparent", "palette-transparent-index-1", "RGBA", "RGB"],
)
@pytest.mark.parametrize("geometry", ["bitmap", "alpha_mask"])
def test_mask_box_covers_the_mask_pixels(project: Path, png: Any, geometry: str) -> None:
    write_ann(project, "ds", "m.png", [bitmap("person", png(), [30, 20], geometry)])
    samples, report = read(project)
    assert samples[0].boxes == [Box("person", 32, 21, 37, 25)]
    assert report.problems == []


def test_empty_mask_is_reported(project: Path) -> None:
    empty = png_bytes(Image.new("L", (5, 5)))
    ann = write_ann(
        project, "ds", "m.png", [bitmap("person", empty, [0, 0]), rect("car", 1, 1, 2, 2)]
    )
    samples, report = read(project)
    assert samples[0].boxes == [Box("car", 1, 1, 3, 3)]
    assert report.problems == [
        Problem(
            "box skipped",
            str(ann),
            "empty-mask",
            "object 0 (person): the bitmap mask has no pixels set",
        )
    ]


@pytest.mark.parametrize("geometry", ["point", "graph", "cuboid_2d", "cuboid", "spline"])
def test_geometries_without_a_box_are_counted(project: Path, geometry: str) -> None:
    obj = {"classTitle": "car", "geometryType": geometry, "points": {"exterior": [[1, 2]]}}
    ann = write_ann(project, "ds", "a.jpg", [rect("car", 0, 0, 5, 5), obj])
    samples, report = read(project)
    assert len(samples[0].boxes) == 1
    assert report.problems == [
        Problem(
            "box skipped",
            str(ann),
            "no-box-geometry",
            f"object 1 (car): geometry {geometry!r} has no box",
        )
    ]


def test_real_world_variations(tmp_path: Path) -> None:
    project = tmp_path / "export"
    write_meta(project)  # no "tags" in meta.json
    raw = {
        "description": "",
        "size": {"height": 4000, "width": 6000},
        "objects": [
            {
                "id": 123,
                "classId": "8812",
                "labelerLogin": "someone",
                "createdAt": "2021-01-01T00:00:00.000Z",
                "description": "",
                "classTitle": "car",
                "geometryType": "rectangle",
                "tags": [],
                "points": {"exterior": [[3114.0004175999998, 12.5], [3200.25, 99]], "interior": []},
            }
        ],
    }  # no image-level "tags"
    write_ann(project, "my data", "a.b (77).jpeg", raw=json.dumps(raw))
    samples, report = read(project)
    assert report.problems == []
    [sample] = samples
    assert sample.key == "my data/a.b (77).jpeg"
    assert sample.image == project / "my data" / "img" / "a.b (77).jpeg"
    assert sample.boxes == [Box("car", 3114, 12, 3201, 100)]  # rounded as the SDK does
    assert (sample.width, sample.height, sample.split) == (6000, 4000, None)


def test_missing_size_gives_no_size(project: Path) -> None:
    write_ann(project, "ds", "a.jpg", [], size=None)
    samples, _ = read(project)
    assert (samples[0].width, samples[0].height) == (None, None)


def test_nested_datasets_sorted_and_deterministic(project: Path) -> None:
    write_ann(project, "b", "2.jpg")
    write_ann(project, "b", "1.jpg")
    write_ann(project, "a/datasets/inner", "x.jpg")
    write_ann(project, "a", "y.jpg")
    write_ann(project, "b/datasets/z", "1.jpg")
    (project / "a" / "meta").mkdir()  # per-image metadata folder: not a dataset, not searched
    samples, report = read(project)
    assert [s.key for s in samples] == [
        "a/y.jpg",
        "a/datasets/inner/x.jpg",
        "b/1.jpg",
        "b/2.jpg",
        "b/datasets/z/1.jpg",
    ]
    assert report.problems == []


def test_annotation_only_export_reads_without_img_folder(project: Path) -> None:
    write_ann(project, "ds", "a.jpg", [rect("car", 0, 0, 1, 1)], with_image=False)
    samples, report = read(project)
    assert samples[0].image == project / "ds" / "img" / "a.jpg"
    assert report.problems == []


@pytest.mark.parametrize(
    "tags, split",
    [
        ([{"name": "train"}], "train"),
        ([{"name": "VAL", "value": None}], "val"),
        (["test"], "test"),
        ([{"name": "sunny"}, {"name": "Train"}, {"name": "train"}], "train"),
        ([{"name": "sunny"}, {"value": 3}, 5], None),
        ([], None),
        (None, None),
    ],
)
def test_split_from_image_tags(project: Path, tags: Any, split: str | None) -> None:
    write_ann(project, "ds", "a.jpg", tags=tags)
    samples, report = read(project)
    assert samples[0].split == split
    assert report.problems == []


def test_conflicting_split_tags_skip_the_image(project: Path) -> None:
    ann = write_ann(project, "ds", "a.jpg", tags=[{"name": "val"}, "train"])
    write_ann(project, "ds", "b.jpg", tags=["train"])
    samples, report = read(project)
    assert [s.key for s in samples] == ["ds/b.jpg"]
    assert report.problems == [
        Problem(
            "image skipped",
            str(ann),
            "conflicting-split-tags",
            "tags 'train' and 'val' both mark a split; keep one of them",
        )
    ]


@pytest.mark.parametrize(
    "raw, detail",
    [
        ('{"objects": [', "line 1 column 14"),
        ('{\n  "objects": []\n  "size": {}\n}', "line 3 column 3"),
        ("[]", "expected a JSON object, got list"),
        ('{"objects": {}}', "'objects' is not a list"),
        ('{"objects": [], "tags": "train"}', "'tags' is not a list"),
        ('{"objects": [], "size": {"height": 10}}', "'size' is"),
        ('{"objects": [], "size": {"height": "10", "width": 5}}', "'size' is"),
        ('{"objects": [], "size": {"height": 0, "width": 5}}', "'size' is"),
        ('{"objects": [], "size": [10, 5]}', "'size' is"),
    ],
)
def test_malformed_annotation_skips_the_image(project: Path, raw: str, detail: str) -> None:
    bad = write_ann(project, "ds", "bad.jpg", raw=raw)
    write_ann(project, "ds", "good.jpg")
    samples, report = read(project)
    assert [s.key for s in samples] == ["ds/good.jpg"]
    [problem] = report.problems
    assert (problem.kind, problem.file, problem.code) == (
        "image skipped",
        str(bad),
        "malformed-annotation",
    )
    assert detail in problem.reason


def test_not_utf8_annotation_is_reported(project: Path) -> None:
    bad = write_ann(project, "ds", "bad.jpg")
    bad.write_bytes(b'{"objects": [], "description": "\xff\xfe"}')
    samples, report = read(project)
    assert samples == []
    assert problems(report) == [("image skipped", "bad.jpg.json", "malformed-annotation")]


def _bad_bitmap(data: Any = None, origin: Any = (0, 0)) -> dict[str, Any]:
    good = bitmap("car", _mask_l(), [0, 0])["bitmap"]["data"]
    return {
        "classTitle": "car",
        "geometryType": "bitmap",
        "bitmap": {"data": good if data is None else data, "origin": origin},
    }


@pytest.mark.parametrize(
    "obj, reason",
    [
        ("car", "object 1: not a JSON object"),
        (
            {"geometryType": "rectangle", "points": {"exterior": [[0, 0], [1, 1]]}},
            "object 1: no classTitle",
        ),
        (
            {"classTitle": "car", "points": {"exterior": [[0, 0], [1, 1]]}},
            "object 1 (car): no geometryType",
        ),
        (
            {"classTitle": "car", "geometryType": "rectangle"},
            "object 1 (car): rectangle has no points.exterior",
        ),
        (shape("car", "polygon", []), "object 1 (car): polygon has no points.exterior"),
        (shape("car", "rectangle", [[0, 0], [1, 1], [2, 2]]), "rectangle needs 2 points"),
        (
            shape("car", "polygon", [[0, 0], [1, "2"]]),
            "object 1 (car): point [1, '2'] is not a pair",
        ),
        (shape("car", "polygon", [[0, 0], [1, None]]), "point [1, None] is not a pair"),
        (shape("car", "polygon", [[0, 0], [1]]), "point [1] is not a pair"),
        (shape("car", "polygon", [[0, 0], [True, 1]]), "is not a pair"),
        ({"classTitle": "car", "geometryType": "bitmap"}, "object 1 (car): bitmap has no 'bitmap'"),
        (_bad_bitmap(data="@@not base64@@"), "object 1 (car): bitmap.data is not base64"),
        (_bad_bitmap(data=base64.b64encode(b"not zlib").decode()), "bitmap.data is not base64"),
        (
            _bad_bitmap(data=base64.b64encode(zlib.compress(b"not a png")).decode()),
            "bitmap.data is not base64",
        ),
        (_bad_bitmap(data=12), "bitmap.data is not a string"),
        (_bad_bitmap(origin=None), "bitmap.origin None is not a pair"),
        (_bad_bitmap(origin=["0", 0]), "bitmap.origin ['0', 0] is not a pair"),
    ],
)
def test_malformed_object_skips_only_that_box(project: Path, obj: Any, reason: str) -> None:
    ann = write_ann(
        project, "ds", "a.jpg", [rect("car", 0, 0, 5, 5), obj, rect("person", 1, 1, 2, 2)]
    )
    samples, report = read(project)
    assert samples[0].boxes == [Box("car", 0, 0, 6, 6), Box("person", 1, 1, 3, 3)]
    [problem] = report.problems
    assert (problem.kind, problem.file, problem.code) == (
        "box skipped",
        str(ann),
        "malformed-geometry",
    )
    assert reason in problem.reason


def test_non_finite_coordinates_are_malformed(project: Path) -> None:
    write_ann(
        project,
        "ds",
        "a.jpg",
        raw='{"objects": [{"classTitle": "car", "geometryType": '
        '"rectangle", "points": {"exterior": [[0, NaN], [1, Infinity]]}}]}',
    )
    samples, report = read(project)
    assert samples[0].boxes == []
    assert problems(report) == [("box skipped", "a.jpg.json", "malformed-geometry")]


def test_image_without_annotation_is_reported(project: Path) -> None:
    write_ann(project, "ds", "a.jpg")
    write_image(project / "ds" / "img" / "lonely (2).png")
    (project / "ds" / "img" / ".DS_Store").write_bytes(b"\0")
    samples, report = read(project)
    assert [s.key for s in samples] == ["ds/a.jpg"]
    assert report.problems == [
        Problem(
            "image skipped",
            str(project / "ds" / "img" / "lonely (2).png"),
            "missing-annotation",
            "no annotation file ds/ann/lonely (2).png.json for this image",
        )
    ]


def test_read_streams(project: Path) -> None:
    write_ann(project, "a", "1.jpg")
    write_ann(project, "b", "1.jpg", raw="not json")
    report = Report()
    assert inspect.isgeneratorfunction(SuperviselyImporter.read)
    samples = IMPORTER.read(project, report)
    assert next(samples).key == "a/1.jpg"
    assert report.problems == []  # dataset b not read yet
    assert list(samples) == []
    assert problems(report) == [("image skipped", "1.jpg.json", "malformed-annotation")]


def meta_text(text: str) -> Callable[[Path], None]:
    def make(project: Path) -> None:
        project.mkdir()
        (project / "meta.json").write_text(text)
        write_ann(project, "ds", "a.jpg")

    return make


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is not a folder"),
        (lambda p: write_ann(p, "ds", "a.jpg"), "meta.json: not found"),
        (meta_text("{\n,"), r"meta.json: not valid JSON: .* line 2 column 1"),
        (meta_text("[]"), "a 'classes' list"),
        (meta_text('{"classes": [{}]}'), "class 0 has no 'title'"),
        (lambda p: write_meta(p, ("car", "car")), "class 'car' is listed twice"),
    ],
)
def test_project_level_errors(tmp_path: Path, make: Any, message: str) -> None:
    project = tmp_path / "project"
    make(project)
    for call in (lambda: read(project), lambda: IMPORTER.label_map(project)):
        with pytest.raises(OdplugError, match=message) as error:
            call()
        assert str(project) in str(error.value)


def test_project_without_dataset_is_an_error(project: Path) -> None:
    (project / "ds" / "img").mkdir(parents=True)
    with pytest.raises(OdplugError, match=r"no dataset found.*ann/"):
        read(project)


def test_detect(tmp_path: Path, project: Path) -> None:
    assert not IMPORTER.detect(project)  # meta.json only
    write_ann(project, "outer/datasets/inner", "a.jpg")
    assert IMPORTER.detect(project)
    assert not IMPORTER.detect(project / "meta.json")
    assert not IMPORTER.detect(tmp_path / "missing")
    (project / "meta.json").unlink()
    assert not IMPORTER.detect(project)


def test_label_map_in_meta_order(tmp_path: Path) -> None:
    write_meta(
        tmp_path, ("zebra", "apple", "Mango"), tags=[{"name": "train", "value_type": "none"}]
    )
    assert IMPORTER.label_map(tmp_path) == LabelMap.from_names(["zebra", "apple", "Mango"])


def test_registered_through_the_hook() -> None:
    found: list[Any] = []
    supervisely.odplug_register_importers(register=found.append)
    assert [type(i) for i in found] == [SuperviselyImporter]
    assert found[0].name == "supervisely" and found[0].summary

    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(supervisely)
    pm.check_pending()
    registered: list[Any] = []
    pm.hook.odplug_register_importers(register=registered.append)
    assert [i.name for i in registered] == ["supervisely"]


def test_sdk_is_not_used() -> None:
    source = Path(supervisely.__file__).read_text()
    assert "import supervisely" not in source and "from supervisely" not in source


def test_rectangle_corners_are_inclusive_pixels_as_in_the_sdk(tmp_path: Path, registry) -> None:
    """The SDK's rule (Rectangle.width = right - left + 1): on a 10x10 image the rectangle with
    corners (2, 3) and (5, 7) covers pixels x 2..5 and y 3..7, so its record box runs from the
    left edge of pixel 2 to the right edge of pixel 5: xmin 0.2, xmax 0.6, ymin 0.3, ymax 0.8."""
    from tests.support.records import read_records, run_import

    project = tmp_path / "project"
    write_meta(project)
    write_ann(project, "ds", "a.png", [rect("car", 2, 3, 5, 7)], size=(10, 10))
    Image.new("RGB", (10, 10)).save(project / "ds" / "img" / "a.png")  # replaces the 64x48 one
    assert read(project)[0][0].boxes == [Box("car", 2, 3, 6, 8)]
    run_import(project, tmp_path / "out", registry)
    [record] = read_records(tmp_path / "out")
    assert record["boxes"] == [pytest.approx([0.3, 0.2, 0.8, 0.6])]  # ymin, xmin, ymax, xmax


def test_polygon_and_line_boxes_include_their_last_pixel(project: Path) -> None:
    """Polygons and lines follow the same rule (the SDK's to_bbox), and fractional coordinates
    are rounded as the SDK's PointLocation rounds them."""
    write_ann(project, "ds", "a.jpg", [
        shape("person", "polygon", [[5, 9], [20, 2], [12, 30], [3, 14]]),
        shape("car", "line", [[1, 2], [7, 2]]),
        rect("car", 3.4, 2.6, 9.5, 10.5),
    ])
    samples, report = read(project)
    assert samples[0].boxes == [
        Box("person", 3, 2, 21, 31), Box("car", 1, 2, 8, 3), Box("car", 3, 3, 11, 11)]
    assert report.problems == []


HUGE = int("9" * 400)  # a JSON integer no float can hold


@pytest.mark.parametrize("exterior", [
    [[0, 0], [HUGE, 5]],
    [[0, 0.5], [HUGE, 5]],  # ints and floats mixed
    [[-HUGE, 0], [3, 5]],
], ids=["huge", "huge-mixed", "huge-negative"])
def test_coordinates_too_large_for_a_float_skip_the_box(project: Path, exterior: Any) -> None:
    objects = [shape("car", "rectangle", exterior), rect("car", 1, 1, 2, 2)]
    ann = write_ann(project, "ds", "a.jpg", objects)
    samples, report = read(project)
    assert samples[0].boxes == [Box("car", 1, 1, 3, 3)]
    [problem] = report.problems
    assert (problem.kind, problem.file) == ("box skipped", str(ann))
    assert problem.code == "malformed-geometry"
    assert "object 0 (car)" in problem.reason and len(problem.reason) < 200


@pytest.mark.parametrize("raw, kind, reason", [
    ('{"objects": [{"classTitle": "car", "geometryType": "rectangle", "points": {"exterior": '
     '[[0, 0], [1e400, 5]]}}]}', "box skipped", "not a pair of finite numbers"),
    ('{"objects": [{"classTitle": "car", "geometryType": "bitmap", "bitmap": {"data": "", '
     f'"origin": [{HUGE}, 0]}}}}]}}', "box skipped", "bitmap.origin"),
    ('{"objects": [{"classTitle": "car", "geometryType": "bitmap", "bitmap": {"data": "", '
     '"origin": [true, 0]}}]}', "box skipped", "bitmap.origin"),
    (f'{{"objects": [], "size": {{"height": 10, "width": {HUGE}}}}}', "image skipped", "'size'"),
    ('{"objects": [], "size": {"height": 10, "width": 1e400}}', "image skipped", "'size'"),
    ('{"objects": [], "size": {"height": true, "width": 5}}', "image skipped", "'size'"),
    ('{"objects": [[0, ' + "1" * 5000 + ']]}', "image skipped", "more than 4300 digits"),
    ('{"objects": ' + "[" * 100_000 + "]" * 100_000 + "}", "image skipped", "nested too deeply"),
], ids=["1e400", "huge-origin", "bool-origin", "huge-size", "inf-size", "bool-size",
        "5000-digits", "deep-nesting"])
def test_numbers_json_cannot_hold_are_reported_not_raised(
    project: Path, raw: str, kind: str, reason: str
) -> None:
    ann = write_ann(project, "ds", "a.jpg", raw=raw)
    _, report = read(project)
    [problem] = report.problems
    assert (problem.kind, problem.file) == (kind, str(ann))
    assert reason in problem.reason and len(problem.reason) < 300


def test_meta_json_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    meta_text('{"classes": ' + "[" * 100_000 + "]" * 100_000 + "}")(project)
    with pytest.raises(OdplugError, match="meta.json: .*nested too deeply"):
        read(project)


def test_annotation_without_objects_is_reported_not_a_background(project: Path) -> None:
    """Supervisely always writes 'objects' (empty for a background image); a file without it
    is something else, and training on its image as a background would teach wrong negatives."""
    ann = write_ann(project, "ds", "a.jpg", raw='{"description": "", "size": '
                                               '{"height": 48, "width": 64}, "tags": []}')
    write_ann(project, "ds", "b.jpg")  # "objects": [] is a background image: nothing to say
    samples, report = read(project)
    assert [s.key for s in samples] == ["ds/b.jpg"]
    [problem] = report.problems
    assert (problem.kind, problem.file, problem.code) == ("image skipped", str(ann),
                                                          "missing-objects")
    assert "no 'objects'" in problem.reason


def test_an_image_whose_every_box_was_skipped_is_reported_as_kept_background(
    project: Path, tmp_path: Path, registry
) -> None:
    from tests.support.records import run_import

    ann = write_ann(project, "ds", "a.jpg", [
        shape("car", "polygon", [[1, "x"]]),  # skipped by the importer
        rect("car", 500, 500, 600, 600),  # skipped by the core: outside the 64x48 image
    ])
    write_ann(project, "ds", "b.jpg", [rect("person", 1, 1, 5, 5)])
    write_ann(project, "ds", "c.jpg", [rect("car", 500, 500, 600, 600), rect("car", 1, 1, 5, 5)])
    result = run_import(project, tmp_path / "out", registry, split="ratio", ratios=(1, 0, 0))
    assert sum(result.report.images.values()) == 3
    notes = [p for p in result.report.problems if p.kind == "image note"]
    assert [(n.file, n.code, n.reason) for n in notes] == [
        (str(ann), "all-boxes-skipped", "kept as background: all 2 boxes skipped")]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["notes"] == {"all-boxes-skipped": 1}


def test_a_link_to_an_image_outside_the_project_is_followed_and_said(
    project: Path, tmp_path: Path, registry
) -> None:
    """Followed, because DVC caches and shared image pools store images that way on purpose;
    said, because the records then hold a file the dataset folder does not."""
    from tests.support.records import run_import

    elsewhere = tmp_path / "pool" / "a.jpg"
    write_image(elsewhere)
    write_ann(project, "ds", "a.jpg", [rect("car", 1, 1, 5, 5)], with_image=False)
    (project / "ds" / "img").mkdir()
    (project / "ds" / "img" / "a.jpg").symlink_to(elsewhere)
    write_ann(project, "ds", "b.jpg", [rect("car", 1, 1, 5, 5)])
    result = run_import(project, tmp_path / "out", registry, split="ratio", ratios=(1, 0, 0))
    assert sum(result.report.images.values()) == 2
    [note] = [p for p in result.report.problems if p.kind == "image note"]
    assert note.code == "link-outside-dataset"
    assert str(elsewhere) in note.reason and "followed" in note.reason


def test_large_masks_give_a_reason_and_no_raw_warning(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over Pillow's warning limit a mask still gives its box (the warning is not printed);
    over its decompression-bomb limit, or inflating past any plausible mask, the box is
    skipped as too large."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    bomb = zlib.compress(bytes(64 * 1024 * 1024))  # 64 KiB that inflate to 64 MiB
    monkeypatch.setattr(supervisely, "_MAX_MASK_BYTES", 1024 * 1024)
    ann = write_ann(project, "ds", "m.png", [
        bitmap("person", _mask_l(), [30, 20]),  # 80 pixels: over 50, under 100
        bitmap("person", png_bytes(Image.new("L", (20, 20), 1)), [0, 0]),  # 400 pixels
        {"classTitle": "car", "geometryType": "bitmap",
         "bitmap": {"data": base64.b64encode(bomb).decode(), "origin": [0, 0]}},
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples, report = read(project)
    assert samples[0].boxes == [Box("person", 32, 21, 37, 25)]
    assert [(p.kind, p.file, p.code) for p in report.problems] == [
        ("box skipped", str(ann), "too-large"), ("box skipped", str(ann), "too-large")]
    assert "20x20" in report.problems[0].reason
    assert "1048576 bytes" in report.problems[1].reason
