"""model.predict's sources, outputs and JSON, with a stand-in model (no TensorFlow): every
image and video found, drawn in its own format at its own path, never over an input or
another drawing, the output replaced whole."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.data.media import VideoInfo, VideoWriter, find_media, video_info
from odplug.errors import OdplugError, UsageError
from odplug.workflows import predict as predicting
from odplug.workflows.predict import LoadedModel, predict


class _Found:
    def __init__(self, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> None:
        self.boxes, self.classes, self.scores = boxes, classes, scores

    def above(self, threshold: float) -> _Found:
        keep = self.scores >= threshold
        return _Found(self.boxes[keep], self.classes[keep], self.scores[keep])


def _detector(image: np.ndarray) -> _Found:
    """One cat in the top-left quarter, one low-scoring dog: a threshold keeps the cat."""
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return _Found(np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]), np.array([1, 2]),
                  np.array([0.9, 0.1]))


@pytest.fixture(autouse=True)
def stand_in_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predicting, "find_model", lambda model, registry: lambda: LoadedModel(
        _detector, {1: "cat", 2: "dog"}, f"stand-in {model}"))


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 200, 200)).save(path)
    return path


def _video(path: Path, frames: int = 7, rate: int = 12, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(path, VideoInfo(frames, Fraction(rate), *size))
    for number in range(frames):
        writer.write(np.full((size[1], size[0], 3), number * 30, np.uint8))
    writer.close()
    return path


def test_a_folder_recursively_with_same_stems_keeps_every_image_and_format(
        tmp_path: Path) -> None:
    source = tmp_path / "photos"
    _image(source / "a.jpg"), _image(source / "a.png"), _image(source / "day2" / "a.jpg")
    (source / "notes.txt").write_text("not an image")
    _image(source / ".hidden" / "b.jpg")
    out = tmp_path / "predictions"
    result = predict(Path("model"), source, out, 0.3, registry=None)  # type: ignore[arg-type]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")
                  if p.suffix in (".jpg", ".png")) == ["a.jpg", "a.png", "day2/a.jpg"]
    assert Image.open(out / "a.jpg").format == "JPEG" and Image.open(out / "a.png").format == "PNG"
    assert len(result.images) == 3 and all(len(i.detections) == 1 for i in result.images)
    assert (source / "a.jpg").stat().st_size > 0  # the input untouched


def test_detections_are_coco_results_in_pixels(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "x.png", size=(40, 30))
    out = tmp_path / "out"
    predict(Path("model"), tmp_path / "in" / "x.png", out, 0.3, registry=None)  # type: ignore[arg-type]
    results = json.loads((out / "detections.json").read_text())
    assert results == [{"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 20.0, 15.0],
                        "score": 0.9}]
    index = json.loads((out / "images.json").read_text())
    assert index["images"][0] | {"file": "", "drawn": ""} == {
        "id": 1, "file": "", "frame": None, "width": 40, "height": 30, "drawn": ""}
    assert index["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert index["threshold"] == 0.3


def test_a_glob_finds_images_below_its_fixed_part(tmp_path: Path) -> None:
    _image(tmp_path / "set" / "one" / "a.jpg"), _image(tmp_path / "set" / "two" / "a.jpg")
    _image(tmp_path / "set" / "two" / "b.png")
    media = find_media(f"{tmp_path}/set/*/a.jpg")
    assert [str(m.relative) for m in media] == ["one/a.jpg", "two/a.jpg"]
    with pytest.raises(OdplugError, match="matches no image"):
        find_media(f"{tmp_path}/set/*/c.jpg")


def test_a_video_is_drawn_at_its_rate_with_every_frame(tmp_path: Path) -> None:
    clip = _video(tmp_path / "clips" / "clip.mp4", frames=7, rate=12)
    out = tmp_path / "out"
    heard: list[tuple[str, int]] = []

    def on_video(path: Path, frames: int):  # type: ignore[no-untyped-def]
        heard.append((path.name, frames))
        return lambda number: heard.append(("frame", number))

    result = predict(Path("model"), clip, out, 0.3, registry=None,  # type: ignore[arg-type]
                     on_video=on_video)
    drawn = video_info(out / "clip.mp4")
    assert (drawn.frames, drawn.rate, drawn.width, drawn.height) == (7, Fraction(12), 64, 48)
    assert heard[0] == ("clip.mp4", 7) and heard[-1] == ("frame", 7)
    assert [i.frame for i in result.images] == list(range(7))
    assert result.videos == [out / "clip.mp4"]


def test_an_odd_sized_video_is_padded_not_cropped(tmp_path: Path) -> None:
    clip = _video(tmp_path / "odd.mkv", frames=3, size=(63, 47))
    assert video_info(clip).width == 64  # 4:2:0 wants even sides


def test_unreadable_inputs_are_skipped_and_said(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "good.jpg")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video")
    result = predict(Path("model"), tmp_path / "in", tmp_path / "out", 0.3,  # type: ignore[arg-type]
                     registry=None)
    assert len(result.images) == 1
    assert sorted(Path(s["file"]).name for s in result.skipped) == ["broken.jpg", "broken.mp4"]
    index = json.loads((tmp_path / "out" / "images.json").read_text())
    assert len(index["skipped"]) == 2


@pytest.mark.parametrize("out", ["in", "in/predictions"])
def test_an_output_inside_the_source_is_refused(tmp_path: Path, out: str) -> None:
    _image(tmp_path / "in" / "a.jpg")
    with pytest.raises(UsageError, match="inside the source folder"):
        predict(Path("model"), tmp_path / "in", tmp_path / out, 0.3, registry=None)  # type: ignore[arg-type]


def test_a_folder_of_other_files_is_not_replaced(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.jpg")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="a folder of other files"):
        predict(Path("model"), tmp_path / "in", tmp_path / "docs", 0.3, registry=None)  # type: ignore[arg-type]
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"


def test_a_previous_prediction_is_replaced_whole_or_kept(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _image(tmp_path / "in" / "a.jpg"), _image(tmp_path / "in" / "b.jpg")
    out = tmp_path / "out"
    predict(Path("model"), tmp_path / "in", out, 0.3, registry=None)  # type: ignore[arg-type]
    (tmp_path / "in" / "b.jpg").unlink()
    predict(Path("model"), tmp_path / "in", out, 0.3, registry=None)  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "detections.json", "images.json"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing(image: np.ndarray) -> _Found:
        raise RuntimeError("the model broke")

    monkeypatch.setattr(predicting, "find_model", lambda model, registry: lambda: LoadedModel(
        failing, {}, "broken"))
    with pytest.raises(RuntimeError):
        predict(Path("model"), tmp_path / "in", out, 0.0, registry=None)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
