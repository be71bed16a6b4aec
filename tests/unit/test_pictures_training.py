"""What a training run draws from its numbers (`odplug.pictures.training`): ``results.csv``
written and read back exactly, the curves drawn from tiny and awkward tables (one row, no val
split, a column of NaN, no rows at all), and the tiles of judged and labelled images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.errors import OdplugError
from odplug.pictures.matching import Boxes
from odplug.pictures.training import (
    READABLE,
    SHEET_IMAGES,
    boxes_sheet,
    judged_sheet,
    legend,
    plot_curves,
    read_results,
    save_jpeg,
    score_columns,
    to_uint8,
    write_results,
)

ROWS = [{"step": 10, "seconds": 3.25, "images": 40, "loss": 2.0, "classification": 1.5,
         "box": 0.5, "learning_rate": 0.012, "val_map50": 0.1, "val_map": 0.05},
        {"step": 20, "seconds": 6.5, "images": 80, "loss": 1.0 / 3, "classification": 0.25,
         "box": 1.0 / 12, "learning_rate": 1e-5, "val_map50": 0.3, "val_map": 0.15}]
NAMES = {1: "circle", 2: "square"}


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_results_read_back_exactly_with_step_first(tmp_path: Path) -> None:
    path = write_results(tmp_path / "run" / "results.csv", ROWS)
    lines = path.read_text().splitlines()
    assert lines[0] == ("step,seconds,images,loss,classification,box,learning_rate,val_map50,"
                        "val_map")
    assert lines[1].startswith("10,3.25,40,2,1.5,0.5,")  # whole numbers written as integers
    assert read_results(path) == ROWS


def test_a_column_a_row_lacks_or_nan_is_an_empty_cell_read_as_nan(tmp_path: Path) -> None:
    rows = [{"loss": 1.0, "step": 1}, {"step": 2, "loss": math.nan, "train_map50": 0.5}]
    path = write_results(tmp_path / "results.csv", rows)
    assert path.read_text().splitlines() == ["step,loss,train_map50", "1,1,", "2,,0.5"]
    back = read_results(path)
    assert back[0]["step"] == 1 and math.isnan(back[0]["train_map50"])
    assert math.isnan(back[1]["loss"]) and back[1]["train_map50"] == 0.5


@pytest.mark.parametrize(("text", "message"), [
    ("loss,step\n1,2\n", "first column should be 'step', found 'loss'"),
    ("", "found 'nothing'"),
    ("step,loss\n1\n", "line 2: 1 cells, the header has 2"),
    ("step,loss\n1,abc\n", "line 2: loss = 'abc' is not a number"),
])
def test_a_file_that_is_no_results_table_is_one_line(tmp_path: Path, text: str,
                                                     message: str) -> None:
    path = tmp_path / "results.csv"
    path.write_text(text)
    with pytest.raises(OdplugError, match=message) as error:
        read_results(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_missing_results_file_says_who_writes_it(tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match="no such file .*at each validation"):
        read_results(tmp_path / "results.csv")


def test_score_columns_put_val_first() -> None:
    rows = [{"step": 1, "train_map50": 0.1, "val_map50": 0.2, "val_map": 0.1, "map": 3.0,
             "loss": 1.0}]
    assert score_columns(rows) == ["val_map50", "val_map", "train_map50"]


@pytest.mark.parametrize("rows", [
    ROWS,
    ROWS[:1],
    [{"step": 5, "seconds": 1.0, "loss": 3.0, "classification": 2.0, "box": 1.0}],  # no val
    [{"step": 5, "seconds": math.nan, "loss": math.nan, "val_map50": math.nan}],
    [{**row, "test_map50": 0.2, "test_map": 0.1} for row in ROWS],
    [],
], ids=["two rows", "one row", "no val split", "all nan", "a curve split", "no rows"])
def test_the_curves_draw_whatever_the_table_holds(tmp_path: Path, rows: list) -> None:
    path = plot_curves(rows, tmp_path / "pictures" / "curves.png", title="run: training")
    width, height = _png(path)
    assert 900 <= width <= 1300 and 600 <= height <= 900
    assert path.stat().st_size > 10_000


def test_judged_sheet_tiles_sixteen_images_at_most_scaled_up_to_be_readable() -> None:
    truth = Boxes.of([[0.1, 0.1, 0.5, 0.5]], [1])
    found = Boxes.of([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [1, 2], [0.9, 0.3])
    image = Image.new("RGB", (96, 96), "grey")
    sheet = judged_sheet([image] * 20, [(truth, found)] * 20, NAMES, 0.25,
                         title="validation at step 10", why="the threshold of best F1")
    cell = min(256, READABLE)
    assert sheet.width >= 4 * cell  # four columns of cells the size of the upscaled images
    assert sheet.height >= 4 * cell  # four rows: 16 images, not 20
    one = judged_sheet([image], [(truth, found)], NAMES, 0.25, title="t", why="w")
    assert one.height < sheet.height / 2


@pytest.mark.parametrize(("truth", "found"), [
    (Boxes.of(np.zeros((0, 4)), []), Boxes.of(np.zeros((0, 4)), [], [])),
    (Boxes.of([[0.1, 0.1, 0.5, 0.5]], [1]), Boxes.of(np.zeros((0, 4)), [], [])),
    (Boxes.of(np.zeros((0, 4)), []), Boxes.of([[0.1, 0.1, 0.5, 0.5]], [2], [0.4])),
], ids=["nothing", "no detections", "no ground truth"])
def test_judged_sheet_draws_images_with_nothing_to_judge(truth: Boxes, found: Boxes) -> None:
    sheet = judged_sheet([Image.new("RGB", (200, 200))], [(truth, found)], NAMES, 0.5,
                         title="test split", why="the threshold of best F1")
    assert sheet.width >= 200 and sheet.height > 200


def test_sheets_refuse_images_and_boxes_that_do_not_pair_up() -> None:
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="2 images but 1"):
        judged_sheet([image, image], [(Boxes.of([], []), Boxes.of([], [], []))], NAMES, 0.5,
                     title="t", why="w")
    with pytest.raises(ValueError, match="1 images but 0 sets"):
        boxes_sheet([image], [], NAMES, title="t")


def test_the_title_band_is_as_wide_as_its_longest_line() -> None:
    image = Image.new("RGB", (64, 64))
    narrow = boxes_sheet([image], [Boxes.of([], [])], NAMES, title="b")
    wide = boxes_sheet([image], [Boxes.of([], [])], NAMES, title="a long title " * 10)
    assert wide.width > narrow.width + 400


def test_boxes_sheet_shows_sixteen_of_a_larger_batch() -> None:
    images = [Image.new("RGB", (192, 192))] * (SHEET_IMAGES + 4)
    boxes = [Boxes.of([[0.2, 0.2, 0.6, 0.6]], [1])] * (SHEET_IMAGES + 4)
    sheet = boxes_sheet(images, boxes, NAMES, title="one batch", columns=4)
    row = 192 + 4 + 16  # a cell, its gap and its caption
    assert 4 * row < sheet.height < 5 * row  # four rows of four: sixteen images, not twenty


def test_the_legend_names_each_verdict_by_colour() -> None:
    lines = legend("hit", "false", "missed")
    assert lines[0].startswith("green - true positive")
    assert lines[2].startswith("yellow dashed - missed")


def test_to_uint8_rounds_and_clips_the_model_input_back_to_pixels() -> None:
    pixels = np.arange(12, dtype=np.float32).reshape(2, 2, 3) * 20.0 + 0.4
    pixels[0, 0, 0], pixels[1, 1, 2] = -3.0, 300.0
    image = to_uint8(pixels)
    array = np.asarray(image)
    assert image.mode == "RGB" and array.dtype == np.uint8
    assert array[0, 0, 0] == 0 and array[1, 1, 2] == 255 and array[0, 1, 0] == 60
    with pytest.raises(ValueError, match="expected an .H, W, 3. image"):
        to_uint8(np.zeros((4, 4)))


def test_save_jpeg_writes_a_whole_jpeg(tmp_path: Path) -> None:
    path = save_jpeg(Image.new("RGB", (50, 40), "red"), tmp_path / "pictures" / "a.jpg")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (50, 40)
    assert not [p for p in path.parent.iterdir() if p != path]
