"""What ``model.predict`` reads: images and videos from a file, a folder (recursive) or a glob.

Each input gets the path its drawn copy will have under the output folder (`Medium.relative`):
its path below the folder or the glob's fixed prefix, so ``a.jpg`` and ``a.png``, or
``day1/a.jpg`` and ``day2/a.jpg``, never land on one file, and every copy keeps its format.
Videos are read and written with PyAV (FFmpeg's libraries in a wheel: no system FFmpeg to
install, every common container and codec, frame rate and count kept exactly); OpenCV's writer
would need a codec per platform and rounds frame rates. No TensorFlow here.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from odplug.data.images import IMAGE_SUFFIXES
from odplug.errors import OdplugError, UsageError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                ".avi": "mpeg4", ".webm": "libvpx-vp9"}
"""The codec a drawn video is written with, by its container (the input's suffix)."""
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Medium:
    """One input: an image or a video, and where its drawn copy goes below the output."""

    path: Path
    relative: Path
    video: bool


def is_glob(text: str) -> bool:
    return any(character in text for character in GLOB_CHARACTERS)


def find_media(source: str | Path) -> list[Medium]:
    """Every image and video `source` names: a file, a folder and its sub-folders (hidden ones
    left out), or a glob (``photos/*.jpg``, ``clips/**/*.mp4``); sorted. A usage error when
    `source` names nothing, an `OdplugError` when it holds no image or video."""
    text = str(source)
    path = Path(text)
    if path.is_file():
        if _kind(path) is None:
            raise UsageError(f"{path}: not an image or a video (images: "
                             f"{', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)})")
        return [Medium(path, Path(path.name), _kind(path) == "video")]
    if path.is_dir():
        found = [p for p in sorted(path.rglob("*")) if p.is_file() and _kind(p)
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        root = path
    elif is_glob(text):
        found = [Path(p) for p in sorted(glob.glob(text, recursive=True))
                 if Path(p).is_file() and _kind(Path(p))]
        root = _fixed_prefix(text)
        if not found:
            raise OdplugError(f"{text}: the pattern matches no image or video")
    else:
        raise UsageError(f"{text}: no such file or folder")
    if not found:
        raise OdplugError(f"{text}: no images or videos here or below (images: "
                          f"{', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)})")
    return [Medium(p, p.relative_to(root), _kind(p) == "video") for p in found]


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _fixed_prefix(pattern: str) -> Path:
    """The folder a glob's matches lie below: its parts before the first wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if is_glob(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    """The frame count the container states (0 when it does not say)."""
    rate: Fraction
    width: int
    height: int


def video_info(path: Path) -> VideoInfo:
    """Frame count, rate and upright size of the first video stream (a phone's portrait clip
    is stored lying down with a display rotation: its size here is the one it plays at); one
    line when it has none."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            first = next(container.decode(stream), None)
            turns = _turns(first.rotation if first is not None else 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            if turns % 2:
                width, height = height, width
            return VideoInfo(int(stream.frames or 0), Fraction(rate), width, height)
    except av.FFmpegError as error:
        raise OdplugError(f"{path}: cannot read the video: {error}") from None


def _turns(rotation: float) -> int:
    """Quarter turns counterclockwise that put a frame upright (PyAV's `VideoFrame.rotation`
    is the counterclockwise angle its display matrix turns the frame by)."""
    return round(rotation / 90) % 4


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of the first video stream as uint8 RGB [H, W, 3], upright, in order."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                pixels = frame.to_ndarray(format="rgb24")
                turns = _turns(frame.rotation)
                yield np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels
    except av.FFmpegError as error:
        raise OdplugError(f"{path}: cannot read the video: {error}") from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise OdplugError(f"{path}: no video stream in the file")
    return container.streams.video[0]


class VideoWriter:
    """A video written frame by frame at the input's rate, in the input's container; the
    codec by `VIDEO_CODECS` (H.264 for MP4, MOV and MKV, VP9 for WebM, MPEG-4 for AVI). The
    frames are upright (`read_frames`): no display rotation is written. Sound is not copied:
    the drawn video is for looking at the detections."""

    def __init__(self, path: Path, info: VideoInfo) -> None:
        import av

        self.path = path
        self._container: Any = av.open(str(path), mode="w")
        codec = VIDEO_CODECS.get(path.suffix.lower(), "libx264")
        stream: Any = self._container.add_stream(codec, rate=info.rate)
        self._stream = stream
        # 4:2:0 needs even sides: an odd one is padded by a pixel, never cropped
        self._stream.width, self._stream.height = info.width + info.width % 2, \
            info.height + info.height % 2
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        height, width = self._stream.height, self._stream.width
        if frame.shape[:2] != (height, width):
            padded = np.zeros((height, width, 3), np.uint8)
            padded[:frame.shape[0], :frame.shape[1]] = frame
            frame = padded
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
