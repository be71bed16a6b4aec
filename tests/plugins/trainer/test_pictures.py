"""What a training run draws (issue 25), checked on the session's shared tiny run (three
validations, a val and a test split): ``results.csv`` with a row per validation whose losses
are the means since the last, every picture written and listed in ``run.json`` with the run's
summary, and the validation images in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from odplug.pictures.training import read_results
from odplug.run import PICTURES, RunInfo
from odplug_builtins.trainer.config import Config
from tests.support.detectors import TINY_RUN, TinyRun

COLUMNS = ["step", "seconds", "images", "loss", "classification", "box", "learning_rate",
           "val_map50", "val_map"]


@pytest.fixture(scope="module")
def run(tiny_run: TinyRun) -> TinyRun:
    return tiny_run


def test_results_has_a_row_per_validation_with_the_mean_losses_since_the_last(
        run: TinyRun) -> None:
    rows = read_results(run.run / "results.csv")
    assert [row["step"] for row in rows] == [10, 20, 30]
    header = (run.run / "results.csv").read_text().splitlines()[0].split(",")
    assert [name for name in header if name in COLUMNS] == COLUMNS
    history = {entry["step"]: entry for entry in run.history}  # log_every 1: every step
    for row, first in zip(rows, (1, 11, 21), strict=True):
        for term in ("loss", "classification", "box"):
            steps = [history[step][term] for step in range(first, first + 10)]
            assert row[term] == pytest.approx(np.mean(steps), rel=1e-5), (row["step"], term)
            assert row[term] != pytest.approx(steps[-1], rel=1e-6)  # not the last step's
        assert row["images"] == row["step"] * TINY_RUN["train.batch_size"]
        assert row["learning_rate"] == pytest.approx(history[row["step"]]["learning_rate"])
        assert 0.0 <= row["val_map"] <= row["val_map50"] <= 1.0
    seconds = [row["seconds"] for row in rows]
    assert 0 < seconds[0] < seconds[1] < seconds[2]
    curve = json.loads((run.run / "metrics" / "curve.json").read_text())["points"]
    assert seconds == pytest.approx([point["seconds"] for point in curve], abs=1.0)


def test_every_picture_is_written_listed_and_opens(run: TinyRun) -> None:
    info = RunInfo.read(run.run)
    assert info == run.returned
    assert set(info.pictures) == set(PICTURES)
    for name, path in info.pictures.items():
        assert path.is_file() and path.is_relative_to(run.run), name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert min(image.size) >= 200, (name, image.size)
    assert info.pictures["confusion"] == run.run / "metrics" / "test-confusion.png"
    assert info.results == run.run / "results.csv"
    assert json.loads(info.path.read_text())["pictures"]["curves"] == "pictures/curves.png"


def test_the_summary_says_how_training_went_and_what_was_changed(run: TinyRun) -> None:
    summary = RunInfo.read(run.run).summary
    defaults = Config().to_dict()
    changed = {key: value for key, value in TINY_RUN.items()
               if defaults[key.split(".")[0]][key.split(".")[1]] != value}
    assert summary["changed"] == changed and "train.assigner" not in changed
    assert summary["steps"] == 30
    rates = [entry["images_per_second"] for entry in run.history if "images_per_second" in entry]
    assert summary["images_per_second"] == pytest.approx(float(np.median(rates)))
    last = read_results(run.run / "results.csv")[-1]["seconds"]
    assert last - 2.0 <= summary["seconds"] <= last + 2.0
    drawing = summary["drawing_seconds"]
    assert set(drawing) == {"batch", "results.csv", "curves", "val_predictions", "confusion",
                            "test_predictions"}
    assert all(0.0 <= seconds < 30.0 for seconds in drawing.values())


def test_tensorboard_holds_the_validation_images_at_each_validation(run: TinyRun) -> None:
    steps = []
    for events in sorted((run.run / "logs").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == "val/predictions":
                    assert value.metadata.plugin_data.plugin_name == "images"
                    width, height = (int(x) for x in tf.make_ndarray(value.tensor)[:2])
                    assert width >= 192 and height >= 192
                    steps.append(event.step)
    assert steps == [10, 20, 30]


def test_the_batch_picture_is_the_augmented_input_not_a_blank(run: TinyRun) -> None:
    with Image.open(run.run / "pictures" / "batch.jpg") as image:
        pixels = np.asarray(image.convert("L"), np.float64)
    assert pixels.std() > 20  # images drawn, not an empty sheet
    assert not math.isnan(pixels.mean())


def test_pictures_of_a_killed_write_are_tidied(tmp_path: Path) -> None:
    from odplug.atomic import TEMP_PREFIX
    from odplug_builtins.trainer.runfolder import RunFolder, tidy

    folder = RunFolder(tmp_path / "run")
    folder.pictures.mkdir(parents=True)
    (folder.pictures / "curves.png").write_bytes(b"png")
    left = folder.pictures / f"{TEMP_PREFIX}curves.png.1234.png"
    left.write_bytes(b"half")
    tidy(folder)
    assert not left.exists() and (folder.pictures / "curves.png").is_file()
