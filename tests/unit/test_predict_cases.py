"""model.predict as a user with phone photos and clips runs it: 16-bit PNGs, portrait videos,
a recursive glob run twice, animated GIFs, phone JPEGs (MPO), EXIF-rotated photos; a clip's
sound is not kept yet (xfail, strict: a fix turns it into a pass to unmark). A stand-in
detector records what the model is given (no TensorFlow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odplug.workflows import predict as predicting
from odplug.workflows.predict import LoadedModel, predict


class _Found:
    def __init__(self, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> None:
        self.boxes, self.classes, self.scores = boxes, classes, scores

    def above(self, threshold: float) -> _Found:
        return self


SEEN: list[np.ndarray] = []


def _detector(image: np.ndarray) -> _Found:
    SEEN.append(image.copy())
    return _Found(np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([1]), np.array([0.9]))


@pytest.fixture(autouse=True)
def stand_in_model(monkeypatch: pytest.MonkeyPatch) -> None:
    SEEN.clear()
    monkeypatch.setattr(predicting, "find_model", lambda model, registry: lambda: LoadedModel(
        _detector, {1: "cat"}, "stand-in"))


def _predict(source: str | Path, out: Path):  # type: ignore[no-untyped-def]
    return predict(Path("model"), source, out, 0.3, registry=None)  # type: ignore[arg-type]


def test_a_16_bit_png_is_seen_as_the_records_see_it(tmp_path: Path) -> None:
    grey = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode == "I;16"
    _predict(tmp_path / "depth.png", tmp_path / "out")
    expected = (grey >> 8).astype(np.uint8)
    assert np.array_equal(SEEN[0][..., 0], expected), (
        f"mean seen {SEEN[0].mean():.1f}, as the records would hold it {expected.mean():.1f}")


def _rotated_clip(path: Path, frames: int = 3) -> Path:
    """A phone's portrait clip: stored 64 wide and 48 high with a display rotation of 90
    degrees, so every player shows it 48 wide and 64 high."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for number in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), number * 40, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_portrait_phone_video_is_predicted_upright(tmp_path: Path) -> None:
    import av

    clip = _rotated_clip(tmp_path / "portrait.mp4")
    result = _predict(clip, tmp_path / "out")
    assert SEEN[0].shape[:2] == (64, 48), f"the model saw {SEEN[0].shape[:2]} (height, width)"
    assert (result.images[0].width, result.images[0].height) == (48, 64)
    with av.open(str(tmp_path / "out" / "portrait.mp4")) as drawn:
        frame = next(drawn.decode(drawn.streams.video[0]))
        shown = (frame.height, frame.width) if frame.rotation in (90, -90, 270) \
            else (frame.width, frame.height)
    assert shown == (48, 64), "the drawn clip plays as the input does"


def test_a_recursive_glob_can_be_run_twice_with_the_default_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.jpg", "day2/b.jpg"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 24), "grey").save(name)
    first = _predict("**/*.jpg", Path("predictions"))
    second = _predict("**/*.jpg", Path("predictions"))
    assert len(first.images) == len(second.images) == 2, "the drawings are not inputs"


def test_an_animated_gif_is_drawn_whole_or_said(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 30), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "wave.gif", save_all=True, append_images=frames[1:])
    result = _predict(tmp_path / "wave.gif", tmp_path / "out")
    with Image.open(tmp_path / "out" / "wave.gif") as drawn:
        kept = getattr(drawn, "n_frames", 1) == 3
    said = any("frame" in skipped["reason"] for skipped in result.skipped)
    assert kept or said


def test_a_phone_jpeg_is_drawn_at_the_stated_quality(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    photo = Image.fromarray(noise)
    photo.save(tmp_path / "phone.jpg", format="MPO", save_all=True,
               append_images=[photo.resize((80, 60))])
    photo.save(tmp_path / "plain.jpg", quality=95)
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    _predict(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    out = tmp_path.parent / f"{tmp_path.name}-out"
    tables = {name: getattr(Image.open(out / name), "quantization", None)
              for name in ("phone.jpg", "plain.jpg")}
    assert tables["phone.jpg"] == tables["plain.jpg"]


@pytest.mark.xfail(strict=True, reason="review: the drawn video keeps the frames, rate and "
                   "count but drops the audio stream: a clip annotated for sharing loses its "
                   "sound (PyAV can copy the audio packets unchanged)")
def test_a_video_with_sound_keeps_its_sound(tmp_path: Path) -> None:
    import av

    clip = tmp_path / "talk.mp4"
    with av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=8000)
        for number in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), number * 20, np.uint8),
                                               format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            sound.sample_rate, sound.pts = 8000, number * 1024
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    _predict(clip, tmp_path / "out")
    assert len(SEEN) == 10
    with av.open(str(tmp_path / "out" / "talk.mp4")) as drawn:
        assert len(drawn.streams.audio) == 1


def test_an_exif_rotated_photo_is_drawn_and_measured_upright(tmp_path: Path) -> None:
    """Checked in review and right: the box is drawn on the upright image and the COCO
    pixels are relative to its upright size (kept as a guard)."""
    stored = Image.new("RGB", (60, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    stored.save(tmp_path / "phone.jpg", exif=exif)
    result = _predict(tmp_path / "phone.jpg", tmp_path / "out")
    assert SEEN[0].shape[:2] == (60, 20)
    assert (result.images[0].width, result.images[0].height) == (20, 60)
    assert Image.open(tmp_path / "out" / "phone.jpg").size == (20, 60)
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert detections[0]["bbox"] == [0.0, 0.0, 10.0, 30.0]
    assert os.path.getsize(tmp_path / "phone.jpg") > 0
