"""``data.import`` says what it changed or guessed: one ``odplug: warning:`` line each, kept in
report.json too; or it refuses when the result would be wrong (a folder holding two datasets,
``--classes`` that match nothing)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from odplug.data.convert import choose_importer
from odplug.data.demo import write_demo_project
from odplug.data.splits import parse_ratios
from odplug.dataset_report import Report, render_summary
from odplug.errors import OdplugError, UsageError
from tests.support.records import run_import as run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images of circles, squares and triangles; 1 marked val, 5 train, 6 test."""
    return write_demo_project(tmp_path_factory.mktemp("warnings") / "project", images=12,
                              size=64)


def warned(caplog: pytest.LogCaptureFixture, out: Path) -> dict[str, list[str]]:
    """The warnings of the import into `out` by code, checked to be the same as those logged."""
    saved = json.loads((out / "report.json").read_text())["warnings"]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == [w["message"] for w in saved]
    found: dict[str, list[str]] = {}
    for warning in saved:
        found.setdefault(warning["code"], []).append(warning["message"])
    return found


def test_a_plain_import_warns_of_nothing(project: Path, tmp_path: Path, registry,
                                         caplog: pytest.LogCaptureFixture) -> None:
    run(project, tmp_path / "out", registry, workers=1)
    assert warned(caplog, tmp_path / "out") == {}


def test_unknown_classes_are_named_with_the_closest(project: Path, tmp_path: Path, registry,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    result = run(project, tmp_path / "out", registry, workers=1,
                 classes=["square", "cirle"], rename={"trinagle": "tri"})
    found = warned(caplog, tmp_path / "out")
    [rename, classes] = found["unknown-class"]
    assert classes.startswith("--classes cirle: no class 'cirle' in ")
    assert "its classes: circle, square, triangle" in classes
    assert classes.endswith("did you mean 'circle'?")
    assert rename.startswith("--rename trinagle=tri: no class 'trinagle'")
    assert "nothing renamed" in rename and rename.endswith("did you mean 'triangle'?")
    assert result.label_map.names == ["square"]


def test_classes_that_match_nothing_are_refused(project: Path, tmp_path: Path,
                                                registry) -> None:
    with pytest.raises(UsageError, match=r"--classes sqare: no such class in .*, so nothing "
                                         r"would be imported .*did you mean 'square'\?"):
        run(project, tmp_path / "out", registry, classes=["sqare"])
    assert not (tmp_path / "out").exists()


def test_a_renamed_class_is_asked_for_by_its_new_name(project: Path, tmp_path: Path, registry,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    result = run(project, tmp_path / "out", registry, workers=1,
                 rename={"square": "box"}, classes=["box"])
    assert warned(caplog, tmp_path / "out") == {}
    assert result.label_map.names == ["box"]


def test_ratios_that_do_not_add_up_are_rescaled_with_a_warning(
        project: Path, tmp_path: Path, registry, caplog: pytest.LogCaptureFixture) -> None:
    assert parse_ratios("0.5,0.5,0.5") == (0.5, 0.5, 0.5)
    result = run(project, tmp_path / "out", registry, workers=1, split="ratio",
                 ratios=parse_ratios("0.5,0.5,0.5"))
    assert warned(caplog, tmp_path / "out") == {"ratios-rescaled": [
        "ratios 0.5,0.5,0.5 add up to 1.5, not 1; used as train 0.333, val 0.333, test 0.333"]}
    assert dict(result.report.images) == {"train": 4, "val": 4, "test": 4}


@pytest.mark.parametrize("ratios", ["0.8,0.1,0.1", "50,25,25", "0.7,0.3"])
def test_ratios_of_one_or_of_a_hundred_are_taken_as_meant(
        ratios: str, project: Path, tmp_path: Path, registry,
        caplog: pytest.LogCaptureFixture) -> None:
    run(project, tmp_path / "out", registry, workers=1, split="ratio",
        ratios=parse_ratios(ratios))
    assert warned(caplog, tmp_path / "out") == {}


def test_ratios_are_said_unused_where_the_dataset_marks_its_splits(
        project: Path, tmp_path: Path, registry, caplog: pytest.LogCaptureFixture) -> None:
    run(project, tmp_path / "out", registry, workers=1, ratios=(0.5, 0.5))
    [unused] = warned(caplog, tmp_path / "out")["ratios-unused"]
    assert "ratios 0.5,0.5 are not used; give --split ratio" in unused


def test_a_split_left_without_images_is_said(project: Path, tmp_path: Path, registry,
                                             caplog: pytest.LogCaptureFixture) -> None:
    result = run(project, tmp_path / "out", registry, workers=1, split="ratio",
                 ratios=(0.96, 0.01, 0.03))
    assert set(result.report.images) == {"train"}
    assert warned(caplog, tmp_path / "out")["empty-split"] == [
        "split 'val' is empty (12 images split 0.96,0.01,0.03 leave it none); training will "
        "run without validation",
        "split 'test' is empty (12 images split 0.96,0.01,0.03 leave it none); the trained "
        "model will have no test score",
    ]


def test_a_split_whose_images_were_all_skipped_is_said(tmp_path: Path, registry,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    project = write_demo_project(tmp_path / "project", images=12, size=64)
    [val] = [ann for ann in project.glob("*/ann/*.json") if '"val"' in ann.read_text()]
    (val.parent.parent / "img" / val.name[:-5]).write_bytes(b"not a jpeg")
    result = run(project, tmp_path / "out", registry, workers=1)
    assert "val" not in result.report.images
    assert warned(caplog, tmp_path / "out") == {"empty-split": [
        "split 'val' is empty (its only image was skipped); training will run without "
        "validation"]}


def test_a_folder_with_datasets_of_two_formats_is_refused_with_both(
        project: Path, tmp_path: Path, registry) -> None:
    """As the raccoon folder (tf_csv and VOC side by side) was; mediapipe's folder, with a VOC
    in one subfolder and a COCO in another, was imported as VOC without a word."""
    both = tmp_path / "both"
    (both / "csv").mkdir(parents=True)
    (both / "csv" / "train.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    (both / "project").symlink_to(project)
    with pytest.raises(OdplugError) as raised:
        choose_importer(registry, both, None)
    assert str(raised.value) == (
        f"{both}: looks like several formats (tf_csv, supervisely in project/); give "
        f"--format tf_csv or --source {both / 'project'}")
    assert choose_importer(registry, both, "tf_csv").name == "tf_csv"


def test_a_folder_holding_one_dataset_below_names_it(project: Path, tmp_path: Path,
                                                     registry) -> None:
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "project").symlink_to(project)
    with pytest.raises(OdplugError, match=r"holder: not a dataset itself, but holds supervisely "
                                          r"in project/; give --source .*holder/project$"):
        choose_importer(registry, holder, None)


def test_identical_skips_print_once_with_a_count() -> None:
    report = Report()
    for index in range(15):
        report.skip_box(f"labels.json:annotations[{index}]", "background-class",
                        "category 0 'background': id 0 is the background")
    report.skip_image("b.jpg", "truncated", "the file ends early")
    summary = " ".join(render_summary(report).split())  # as if the console were wide
    assert ("box skipped, 15 times: category 0 'background': id 0 is the background "
            "(labels.json:annotations[0], labels.json:annotations[1] and 13 more)") in summary
    assert "image skipped: b.jpg: the file ends early" in summary
    assert summary.count("annotations[") == 2 and "see the JSON report" not in summary
    assert len(report.to_dict()["problems"]) == 16
