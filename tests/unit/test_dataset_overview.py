"""``data.import`` draws the dataset into its output (``dataset.png``, ``dataset.json``) unless
told ``--no-pictures``, with the skips per split where the split is known; ``data.stats
--pictures`` draws an existing records folder; the numbers drawn are the records' own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from odplug.cli import OdplugProgram
from odplug.cli.tasks import ns
from odplug.data.stats import folder_stats


def odplug(*argv: str) -> int:
    """`argv` through the odplug command line in this process; its exit status."""
    program = OdplugProgram(namespace=ns, name="odplug", binary="odplug")
    try:
        program.run(["odplug", *argv])
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo project with one annotation broken (its image skipped before the split)
    and one image broken (skipped by the writer, in its split)."""
    from odplug.data.demo import write_demo_project

    root = write_demo_project(tmp_path_factory.mktemp("demo") / "project", images=16, size=64)
    sorted(root.rglob("ann/*.json"))[0].write_text("{")
    sorted(root.rglob("img/*"))[1].write_bytes(b"not an image")
    return root


def test_import_draws_the_dataset_with_its_skips(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "records"
    assert odplug("data.import", "-s", str(project), "-o", str(out), "--workers", "1",
                  "--quiet") == 0
    with Image.open(out / "dataset.png") as picture:
        assert picture.size == (1500, 900)
    numbers = json.loads((out / "dataset.json").read_text())
    report = json.loads((out / "report.json").read_text())
    stats = folder_stats(out)["splits"]
    assert numbers["picture"] == "dataset.png"
    assert {split: {k: info[k] for k in ("boxes", "empty_images", "classes")}
            for split, info in stats.items()} == {
        split: {k: info[k] for k in ("boxes", "empty_images", "classes")}
        for split, info in numbers["splits"].items()}
    assert {s: i["records"] for s, i in stats.items()} == {
        s: i["images"] for s, i in numbers["splits"].items()}
    skipped = numbers["skipped"]
    assert skipped["images"] == report["skipped"]["images"]
    assert sum(skipped["images"].values()) == 2
    assert skipped["boxes"] == report["skipped"]["boxes"]
    assert set(skipped["images"]) == {"malformed-annotation", "corrupt-image"}
    known = {split: counts["images"] for split, counts in skipped["splits"].items()}
    assert list(known.values()) == [{"corrupt-image": 1}]  # the annotation's split is unknown
    assert list(known)[0] in numbers["splits"]


def test_no_pictures_leaves_them_out(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "records"
    assert odplug("data.import", "-s", str(project), "-o", str(out), "--workers", "1",
                  "--quiet", "--no-pictures") == 0
    assert (out / "report.json").is_file()
    assert not (out / "dataset.png").exists() and not (out / "dataset.json").exists()


def test_other_writers_are_drawn_from_the_samples(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco"
    assert odplug("data.import", "-s", str(project), "-o", str(out), "--to", "coco",
                  "--workers", "1", "--quiet") == 0
    numbers = json.loads((out / "dataset.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert {s: (i["images"], i["boxes"], i["classes"]) for s, i in numbers["splits"].items()} \
        == {s: (i["images"], i["boxes"], i["classes"]) for s, i in report["splits"].items()}
    assert (out / "dataset.png").stat().st_size > 10_000


def test_stats_pictures_draws_an_existing_folder(project: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "records"
    assert odplug("data.import", "-s", str(project), "-o", str(out), "--workers", "1",
                  "--quiet", "--no-pictures") == 0
    assert odplug("data.stats", "--folder", str(out)) == 0
    assert not (out / "dataset.png").exists()
    capsys.readouterr()
    assert odplug("data.stats", "--folder", str(out), "--pictures", "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["picture"] == str(out / "dataset.png")
    numbers = json.loads((out / "dataset.json").read_text())
    assert {s: i["boxes"] for s, i in numbers["splits"].items()} == {
        s: i["boxes"] for s, i in printed["splits"].items()}
    assert numbers["skipped"] == {"images": json.loads((out / "report.json").read_text())
                                  ["skipped"]["images"], "boxes": {}}
    with Image.open(out / "dataset.png") as picture:
        assert picture.size == (1500, 900)


@pytest.mark.parametrize("to", ["yolo", "coco", "tf_csv"])
def test_an_output_imported_again_does_not_take_its_picture_for_an_image(
        project: Path, tmp_path: Path, to: str) -> None:
    """The dataset picture a YOLO, COCO or CSV output holds is odplug's, not the dataset's:
    importing the output again skips nothing it did not skip the first time."""
    first = tmp_path / to
    assert odplug("data.import", "-s", str(project), "-o", str(first), "--to", to,
                  "--workers", "1", "--quiet") == 0
    assert any(p.name == "dataset.png" for p in first.rglob("*.png"))
    again = tmp_path / "records"
    assert odplug("data.import", "-s", str(first), "-o", str(again), "--workers", "1",
                  "--quiet") == 0
    report = json.loads((again / "report.json").read_text())
    problems = json.dumps(report)
    assert "dataset.png" not in problems, problems
