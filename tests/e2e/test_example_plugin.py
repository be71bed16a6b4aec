"""The example third-party plugin (tests/plugin_example) pip-installed into a folder and
driven through the real ``inv`` command line, as a user of it would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from odplug import __version__
from odplug.dataset_report import Report
from odplug.plugins import DEFAULT_PLUGINS
from odplug.samples import Box
from tests.support.records import read_records
from tests.support.tools import ROOT, Run, warnings

BUILTINS = {module.rsplit(".", 1)[-1] for module in DEFAULT_PLUGINS}

@pytest.fixture(scope="session")
def labelme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_example pip-installed into a folder, used as an extra site directory.

    It is built from a copy, so the build leaves no ``build/`` or ``.egg-info`` in tests/.
    """
    work = tmp_path_factory.mktemp("labelme")
    source = work / "plugin_example"
    shutil.copytree(ROOT / "tests" / "plugin_example", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-input", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert (target / "odplug_labelme-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def test_installed_plugin_is_listed(labelme_site: Path, run_inv: Run) -> None:
    env = {"PYTHONPATH": str(labelme_site)}
    result = run_inv("plugins", env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^labelme 0\.1\.0 \[odplug-labelme \(entry point odplug_labelme\)\]$",
                     result.stdout, re.MULTILINE)
    assert re.search(r"^\s+importer\s+labelme\s+LabelMe JSON", result.stdout, re.MULTILINE)
    for builtin in BUILTINS:
        assert re.search(rf"^{builtin} {re.escape(__version__)} \[built-in\]$",
                         result.stdout, re.MULTILINE)

    listed = json.loads(run_inv("plugins", "--json", env=env).stdout)
    labelme = next(info for info in listed if info["name"] == "labelme")
    assert labelme["version"] == "0.1.0" and not labelme["builtin"] and labelme["error"] is None
    assert labelme["registered"] == {"importers": ["labelme"]}


def _voc_boxes(xml_path: Path) -> list[tuple[str, list[float]]]:
    """The labels and corners (xmin, ymin, xmax, ymax, in pixels) of one VOC file's objects."""
    root = ElementTree.parse(xml_path).getroot()
    return [(obj.findtext("name") or "",
             [float(obj.findtext(f"bndbox/{key}") or "nan")
              for key in ("xmin", "ymin", "xmax", "ymax")])
            for obj in root.iter("object")]


def _labelme_dataset(raccoon: Path, folder: Path, stems: list[str]) -> dict[str, list]:
    """LabelMe JSON beside copies of some raccoon photos, made from their VOC boxes: the first
    box of each image a rectangle, the others polygons through its corners. Returns the boxes
    the records must hold, by file name: ymin, xmin, ymax, xmax normalised, as TF OD API."""
    folder.mkdir()
    expected = {}
    for stem in stems:
        shutil.copy(raccoon / "images" / f"{stem}.jpg", folder)
        xml_root = ElementTree.parse(raccoon / "annotations" / f"{stem}.xml").getroot()
        width = int(xml_root.findtext("size/width") or 0)
        height = int(xml_root.findtext("size/height") or 0)
        shapes = []
        for index, (label, (x0, y0, x1, y1)) in enumerate(
                _voc_boxes(raccoon / "annotations" / f"{stem}.xml")):
            corners = ([[x0, y0], [x1, y1]] if index == 0
                       else [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            shapes.append({"label": label, "points": corners, "group_id": None, "flags": {},
                           "shape_type": "rectangle" if index == 0 else "polygon"})
        (folder / f"{stem}.json").write_text(json.dumps({
            "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{stem}.jpg",
            "imageData": None, "imageHeight": height, "imageWidth": width}))
        expected[f"{stem}.jpg"] = [[y0 / height, x0 / width, y1 / height, x1 / width]
                                   for _label, (x0, y0, x1, y1) in _voc_boxes(
                                       raccoon / "annotations" / f"{stem}.xml")]
    return expected


def test_installed_plugin_imports_a_labelme_folder(
    labelme_site: Path, raccoon: Path, run_inv: Run, tmp_path: Path
) -> None:
    """Detected without --format, through the entry point only; the boxes are the ones drawn,
    and what LabelMe can hold but odplug cannot use is reported by file."""
    source = tmp_path / "labelme"
    stems = ["raccoon-1", "raccoon-10", "raccoon-100", "raccoon-101", "raccoon-102",
             "raccoon-103", "raccoon-104", "raccoon-105", "raccoon-106", "raccoon-107"]
    expected = _labelme_dataset(raccoon, source, stems)
    embedded = source / "only-embedded.json"
    embedded.write_text(json.dumps({"shapes": [], "imagePath": "gone.jpg",
                                    "imageData": "/9j/4AAQSkZJRgABAQ=="}))
    line = json.loads((source / "raccoon-1.json").read_text())
    line["shapes"].append({"label": "raccoon", "points": [[1, 2], [30, 40]],
                           "shape_type": "line"})
    (source / "raccoon-1.json").write_text(json.dumps(line))

    out = tmp_path / "out"
    result = run_inv("data.import", "--source", str(source), "--out", str(out),
                     env={"PYTHONPATH": str(labelme_site)})
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == []
    assert "(labelme importer)" in result.stdout
    records = {row["filename"]: row for row in read_records(out)}
    assert set(records) == set(expected)
    for name, boxes in expected.items():
        assert len(records[name]["boxes"]) == len(boxes), name
        for got, want in zip(records[name]["boxes"], boxes, strict=True):
            assert got == pytest.approx(want, abs=1e-6), name
        assert records[name]["classes"] == [1] * len(boxes)
    problems = {(p["code"], Path(p["file"]).name)
                for p in json.loads((out / "report.json").read_text())["problems"]}
    assert problems == {("embedded-image-only", "only-embedded.json"),
                        ("malformed-shape", "raccoon-1.json")}


def test_example_plugin_reports_what_labelme_can_hold_and_odplug_cannot_use(
    labelme_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.syspath_prepend(str(labelme_site))
    from odplug_labelme import LabelMeImporter

    (tmp_path / "pics").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "pics" / "a.jpg")
    Image.new("RGB", (64, 48)).save(tmp_path / "b.png")
    shapes = [
        {"label": "ball", "points": [[20, 20], [23, 24]], "shape_type": "circle"},
        {"label": "roof", "points": [[1, 9], [5, 2], [9, 9]]},  # no shape_type: a polygon
        {"label": "", "points": [[1, 2], [3, 4]], "shape_type": "rectangle"},
        {"label": "x", "points": [[1, 2], [10 ** 400, 4]], "shape_type": "rectangle"},
        {"label": "x", "points": [[1, 2], [3, 4]], "shape_type": "polygon"},
        {"label": "x", "points": [[1, 2]], "shape_type": "point"},
        "not a shape",
    ]
    (tmp_path / "a.json").write_text(json.dumps(
        {"imagePath": "pics\\a.jpg", "shapes": shapes, "imageWidth": 64, "imageHeight": 0}))
    (tmp_path / "b.json").write_text(json.dumps({"imagePath": "elsewhere/b.png", "shapes": []}))
    (tmp_path / "c.json").write_text(json.dumps({"imagePath": "c.jpg", "shapes": []}))
    (tmp_path / "d.json").write_text("{not json")
    (tmp_path / "e.json").write_text("[]")
    report = Report()
    samples = list(LabelMeImporter().read(tmp_path, report))
    assert [(s.key, s.width, s.height, s.skipped_boxes) for s in samples] == [
        ("pics/a.jpg", 64, None, 5), ("b.png", None, None, 0)]
    assert samples[0].boxes == [Box("ball", 15, 15, 25, 25), Box("roof", 1, 2, 9, 9)]
    assert [(p.kind, Path(p.file).name, p.code) for p in report.problems] == [
        *[("box skipped", "a.json", "malformed-shape")] * 5,
        ("image skipped", "c.json", "missing-image"),
        ("image skipped", "d.json", "malformed-annotation"),
        ("image skipped", "e.json", "malformed-annotation"),
    ]


def test_installed_plugin_and_a_builtin_both_claiming_a_folder_is_one_line(
    labelme_site: Path, run_inv: Run, tmp_path: Path
) -> None:
    """A folder of images with their VOC XML and their LabelMe JSON beside them: both formats
    detect it, and the user is asked to choose."""
    from PIL import Image

    source = tmp_path / "both"
    source.mkdir()
    Image.new("RGB", (64, 48)).save(source / "a.jpg")
    (source / "a.xml").write_text("<annotation><filename>a.jpg</filename><object><name>cat"
                                  "</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>"
                                  "<ymax>40</ymax></bndbox></object></annotation>")
    (source / "a.json").write_text(json.dumps({"imagePath": "a.jpg", "shapes": [
        {"label": "cat", "points": [[1, 2], [30, 40]], "shape_type": "rectangle"}]}))
    result = run_inv("data.import", "--source", str(source), "--out", str(tmp_path / "out"),
                     env={"PYTHONPATH": str(labelme_site)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("odplug: error: ")
    assert "several formats (labelme, voc)" in lines[0] and "--format" in lines[0]
    assert not (tmp_path / "out").exists()
    chosen = run_inv("data.import", "--source", str(source), "--format", "labelme", "--out",
                     str(tmp_path / "out"), env={"PYTHONPATH": str(labelme_site)})
    assert chosen.returncode == 0 and "(labelme importer)" in chosen.stdout, chosen.stderr
