"""The confusion matrix as drawn (`odplug.pictures.confusion`): it draws tiny and awkward
matrices (one class, no detections, a class never predicted, many classes) and refuses
matrices that are not one of counts over the classes plus background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.pictures.confusion import column_shares, plot_confusion
from odplug.pictures.matching import Boxes, confusion_matrix


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def _counts(pairs: list, ids: list[int], threshold: float = 0.3) -> np.ndarray:
    return confusion_matrix(pairs, ids, threshold)


BOX = [[0.1, 0.1, 0.5, 0.5]]


@pytest.mark.parametrize(("pairs", "ids"), [
    ([(Boxes.of(BOX, [1]), Boxes.of(BOX, [1], [0.9]))], [1]),
    ([(Boxes.of(BOX, [1]), Boxes.of(np.zeros((0, 4)), [], []))], [1, 2]),
    ([(Boxes.of(BOX, [2]), Boxes.of(BOX, [1], [0.9]))], [1, 2, 3]),
    ([], [1, 2]),
], ids=["one class", "no detections", "a class never predicted", "no images"])
def test_small_matrices_draw(tmp_path: Path, pairs: list, ids: list[int]) -> None:
    names = [f"class {i}" for i in ids]
    path = plot_confusion(_counts(pairs, ids), names, tmp_path / "m" / "confusion.png",
                          threshold=0.43, title="run: test split")
    width, height = _png(path)
    assert 500 <= width <= 2500 and 450 <= height <= 2500


def test_many_classes_draw_without_cell_numbers(tmp_path: Path) -> None:
    side = 40
    counts = np.diag(np.arange(side + 1))
    path = plot_confusion(counts, [f"c{i}" for i in range(side)], tmp_path / "c.png",
                          threshold=0.5)
    width, height = _png(path)
    assert width > 1500 and height > 1300  # the figure grows with the classes


def test_the_picture_depends_on_the_counts(tmp_path: Path) -> None:
    names = ["a", "b"]
    one = plot_confusion(np.array([[5, 0, 1], [0, 3, 0], [1, 0, 0]]), names,
                         tmp_path / "one.png", threshold=0.4)
    two = plot_confusion(np.array([[0, 5, 1], [3, 0, 0], [1, 0, 0]]), names,
                         tmp_path / "two.png", threshold=0.4)
    assert one.read_bytes() != two.read_bytes()


@pytest.mark.parametrize(("counts", "names", "message"), [
    (np.zeros((2, 3)), ["a"], r"square, this one has shape \(2, 3\)"),
    (np.zeros((3,)), ["a", "b"], "square"),
    (np.zeros((2, 2)), ["a", "b"], "of 2 classes has 3 rows .background last., this one has 2"),
    (np.array([[1, -1], [0, 0]]), ["a"], "whole numbers, none negative"),
    (np.array([[1.5, 0], [0, 0]]), ["a"], "whole numbers, none negative"),
])
def test_a_matrix_that_is_not_one_is_refused(tmp_path: Path, counts: np.ndarray,
                                             names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_confusion(counts, names, tmp_path / "x.png", threshold=0.5)
    assert not (tmp_path / "x.png").exists()


def test_shares_are_of_each_true_column_and_nan_where_it_is_empty() -> None:
    shares = column_shares(np.array([[3, 0, 1], [1, 0, 0], [0, 0, 1]]))
    np.testing.assert_allclose(shares[:, 0], [0.75, 0.25, 0.0])
    assert np.isnan(shares[:, 1]).all()
    np.testing.assert_allclose(shares[:, 2], [0.5, 0.0, 0.5])
