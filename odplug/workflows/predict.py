"""``model.predict``: any model odplug trains or exports, on images and videos, drawn and listed.

The model is a run folder or a SavedModel folder (run in TensorFlow), or an exported model
(a ``.tflite`` file, a TF.js folder: whatever exporter claims it, `Exporter.model_at`, runs
it in its own runtime, as the verification does). The source is a file, a folder (recursive)
or a glob (`odplug.data.media`). Out come, in one folder that replaces the previous one whole
(or not at all): each image drawn in its own format at its path below the source, each video
drawn frame by frame at its own rate and frame count, ``detections.json`` in COCO's results
format (pixel [x, y, width, height], one entry per detection, ``image_id`` into
``images.json``) and ``images.json`` (each image or video frame: id, file, frame, size, drawn
copy; the categories; what was skipped and why; the model and the threshold).

The output folder is checked before the model loads: it must not be, or lie inside, a source
folder (a second run would read its own drawings), and it must be new, empty or a previous
``model.predict`` output (with ``images.json``), never a folder of other files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from odplug.atomic import atomic_write_text, folder_lock, recover_folder, replace_folder
from odplug.components import ExportedModel, Exporter
from odplug.data.images import eight_bits
from odplug.data.media import (
    Medium,
    VideoWriter,
    find_media,
    is_glob,
    read_frames,
    video_info,
)
from odplug.errors import OdplugError, UsageError
from odplug.pictures.boxes import draw_detections, name_of
from odplug.plugins import Registry
from odplug.run import RunInfo
from odplug.storage import is_url
from odplug.workflows.buckets import any_url, input_path, local_output, publish_output

IMAGES_FILE = "images.json"
DETECTIONS_FILE = "detections.json"
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
"""Drawn copies keep their input's format; lossy ones at a quality that keeps the labels
legible."""
ANIMATED = frozenset({"GIF", "WEBP", "PNG", "TIFF"})
"""Formats whose frames are an animation (or pages) that is drawn whole; an MPO's second
picture is a phone's thumbnail or depth map, not a frame."""
SAVED_AS = {"MPO": "JPEG"}
"""Formats written as another: a phone's JPEG opens as MPO (a JPEG with a second picture
that the drawing has no use for)."""


def _upright(image: Image.Image) -> Image.Image:
    """An image as the records hold it and the model sees it: 16-bit as 8 by ``>> 8``
    (`odplug.data.images.eight_bits`), EXIF orientation applied, RGB."""
    eight = eight_bits(image)
    return (ImageOps.exif_transpose(eight) or eight).convert("RGB")


@dataclass(frozen=True)
class Detection:
    """One object found in an image."""

    class_id: int
    """Its label-map id."""
    name: str
    """Its class name (the id as text when the model has no label map)."""
    score: float
    box: tuple[float, float, float, float]
    """(ymin, xmin, ymax, xmax), normalised to [0, 1] of the image."""

    def coco_box(self, width: int, height: int) -> list[float]:
        """COCO's [x, y, width, height] in pixels of an image of `width` x `height`."""
        ymin, xmin, ymax, xmax = self.box
        return [round(xmin * width, 2), round(ymin * height, 2),
                round((xmax - xmin) * width, 2), round((ymax - ymin) * height, 2)]


@dataclass
class ImagePrediction:
    """What the model found in one image or one video frame, and where it was drawn."""

    file: Path
    width: int
    height: int
    drawn: Path
    detections: list[Detection]
    frame: int | None = None
    """The frame's index in `file` when it is a video, else None."""


@dataclass
class Predictions:
    """Every image and frame predicted, every input skipped (with why), and the two files."""

    images: list[ImagePrediction]
    skipped: list[dict[str, str]]
    """``{"file": ..., "reason": ...}`` per input that could not be read."""
    json: Path
    """``detections.json`` (COCO results)."""
    index: Path
    """``images.json``."""
    videos: list[Path] = field(default_factory=list)
    """The drawn videos."""


@dataclass
class LoadedModel:
    detector: Callable[[np.ndarray], Any]
    names: dict[int, str]
    description: str
    """What runs, for the first line: "SavedModel <path>", "tflite-int8 (tflite) <path>"."""


def inputs(source: str | Path, out: Path) -> list[Medium]:
    """What `source` names (`odplug.data.media.find_media`), less what a glob finds inside
    `out`: the drawings of an earlier run (``"**/*.jpg"`` with ``--out predictions`` below
    the current folder) are not inputs."""
    media = find_media(source)
    if not is_glob(str(source)):
        return media
    target = out.resolve()
    kept = [m for m in media if target not in m.path.resolve().parents]
    if not kept:
        raise OdplugError(f"{source}: the pattern matches only the output folder {out}")
    return kept


def check_out(out: Path, media: list[Medium], source: str | Path) -> None:
    """Refuse, before any work, an output that would overwrite or re-read an input or
    delete files that are not a previous prediction (module docstring)."""
    target = out.resolve()
    text = str(source)
    root = Path(text) if Path(text).is_dir() else None
    if root is not None and (target == root.resolve() or root.resolve() in target.parents):
        raise UsageError(f"--out {out}: lies inside the source folder {root}: the drawn "
                         "copies would be read as inputs by the next run; give a folder "
                         "outside it")
    inputs = {medium.path.resolve() for medium in media}
    if any(target == path or target in path.parents for path in inputs):
        raise UsageError(f"--out {out}: holds inputs: give another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / IMAGES_FILE).is_file():
        raise UsageError(f"--out {out}: a folder of other files (no {IMAGES_FILE} of an earlier "
                         "model.predict): give a new or empty folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file, not a folder")


def find_model(model: Path, registry: Registry) -> Callable[[], LoadedModel]:
    """What `model` is, told from its files alone (one line when it is nothing odplug runs),
    and how to load it: the caller checks the rest of its request before paying for that."""
    if RunInfo.exists(model) or (model / "saved_model.pb").is_file():
        from odplug.run import resolve_model

        saved_model, run = resolve_model(model)
        return lambda: _saved_model(saved_model, run)
    for exporter in registry.exporters.values():
        exported = exporter.model_at(model)
        if exported is not None:
            return lambda: _exported(exporter, exported)
    if not model.exists():
        raise UsageError(f"--model {model}: no such file or folder")
    raise OdplugError(f"{model}: not a run folder (no run.json) and not a SavedModel folder "
                      "(no saved_model.pb), nor a model an exporter wrote (a .tflite file "
                      "with its manifest .json beside it, a TF.js folder with manifest.json)")


def open_model(model: Path, registry: Registry) -> LoadedModel:
    """A run folder, a SavedModel folder, or an exported model some exporter claims, loaded."""
    return find_model(model, registry)()


def _saved_model(saved_model: Path, run: RunInfo | None) -> LoadedModel:
    from odplug.model.detector import SavedModelDetector

    detector = SavedModelDetector(saved_model)
    label_map = detector.label_map
    if label_map is None and run is not None and run.label_map.is_file():
        from odplug.data.labelmap import read_label_map

        label_map = read_label_map(run.label_map)
    names = {item.id: item.name for item in label_map.items} if label_map else {}
    return LoadedModel(detector, names, f"SavedModel {saved_model}")


def _exported(exporter: Exporter, exported: ExportedModel) -> LoadedModel:
    manifest = json.loads(exported.manifest.read_text())
    names = zip(manifest.get("label_ids", []), manifest.get("labels", []), strict=False)
    return LoadedModel(exporter.detector(exported),  # type: ignore[arg-type]
                       {int(k): str(v) for k, v in names},
                       f"{exported.name} ({exporter.name}) {exported.path}")


ImageEvent = Callable[[ImagePrediction], None]
VideoEvent = Callable[[Path, int], Callable[[int], None]]
"""Called with a video and its frame count (0: unknown) as it starts; returns what hears each
frame's number as it is drawn."""


def predict(model: Path | str, source: str | Path, out: Path | str, threshold: float,
            registry: Registry, *, on_model: Callable[[str], None] = lambda description: None,
            on_image: ImageEvent = lambda image: None,
            on_video: VideoEvent = lambda path, frames: (lambda frame: None),
            note: Callable[[str], None] = lambda text: None) -> Predictions:
    """Detect, draw and list (module docstring); `out` is replaced whole once every input is
    done, or left as it was when anything fails. Unreadable inputs are skipped, counted and
    said (`Predictions.skipped`), never fatal.

    The model, a source file or folder, and `out` may be bucket URLs
    (`odplug.workflows.buckets`): inputs are read from their cached copies, the output is
    written to its local copy and published to its URL whole; the paths returned are local.
    """
    if any_url(model, source, out):
        if is_url(str(source)) and is_glob(str(source)):
            raise UsageError(f"{source}: a glob is matched against this machine's files only; "
                             "give the bucket folder (every image and video in it, its "
                             "sub-folders too) or one file")
        if not is_url(str(model)):
            find_model(Path(model), registry)  # a wrong local model before any download
        local_out, publish_to = local_output(out)  # and a wrong output URL
        model = input_path(model, "model (a run, SavedModel, .tflite file or TF.js folder)",
                           note)
        if is_url(str(source)):
            source = input_path(source, "images or videos to predict on", note)
        found = predict(Path(model), source, local_out, threshold, registry, on_model=on_model,
                        on_image=on_image, on_video=on_video)
        if publish_to is not None:
            publish_output(local_out, publish_to, "model.predict", note)
        return found
    model, out = Path(model), Path(out)
    load = find_model(model, registry)
    media = inputs(source, out)
    check_out(out, media, source)
    loaded = load()
    on_model(loaded.description)
    run = _Run(loaded, threshold, on_image)
    target = out.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(target, "predict"):
        recover_folder(target)
        with replace_folder(target) as staging:
            for medium in media:
                try:
                    if medium.video:
                        run.video(medium, staging, out, on_video)
                    else:
                        run.image(medium, staging, out)
                except _Unreadable as error:
                    run.skipped.append({"file": str(medium.path), "reason": str(error)})
            _write_json(run, staging, model)
    return Predictions(run.images, run.skipped, out / DETECTIONS_FILE, out / IMAGES_FILE,
                       run.videos)


class _Unreadable(Exception):
    """An input that cannot be read: skipped and reported, the others go on."""


class _Run:
    """One prediction's state: what was found so far, what was skipped."""

    def __init__(self, loaded: LoadedModel, threshold: float, on_image: ImageEvent) -> None:
        self.loaded = loaded
        self.threshold = threshold
        self.on_image = on_image
        self.images: list[ImagePrediction] = []
        self.skipped: list[dict[str, str]] = []
        self.videos: list[Path] = []

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        found = self.loaded.detector(pixels).above(self.threshold)
        return [Detection(int(c), name_of(self.loaded.names, int(c)), float(s),
                          (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
                for b, c, s in zip(found.boxes, found.classes, found.scores, strict=True)]

    def draw(self, image: Image.Image, detections: list[Detection]) -> Image.Image:
        return draw_detections(image, np.array([d.box for d in detections]).reshape(-1, 4),
                               np.array([d.class_id for d in detections], np.int64),
                               np.array([d.score for d in detections]), self.loaded.names)

    def image(self, medium: Medium, staging: Path, out: Path) -> None:
        """One image, or every frame of an animated one (GIF, WebP, TIFF pages), drawn back
        in its format; each frame an `ImagePrediction` of its own."""
        try:
            with Image.open(medium.path) as opened:
                kind = SAVED_AS.get(opened.format or "PNG", opened.format or "PNG")
                sequence = ImageSequence.Iterator(opened) if kind in ANIMATED else [opened]
                frames = [(_upright(frame), frame.info.get("duration")) for frame in sequence]
                loop = opened.info.get("loop", 0)
        except (UnidentifiedImageError, OSError) as error:
            raise _Unreadable(f"cannot read the image: {error}") from None
        drawn = staging / medium.relative
        drawn.parent.mkdir(parents=True, exist_ok=True)
        pictures = []
        for number, (image, _duration) in enumerate(frames):
            detections = self.detect(np.asarray(image))
            pictures.append(self.draw(image, detections))
            result = ImagePrediction(medium.path, image.width, image.height,
                                     out / medium.relative, detections,
                                     frame=number if len(frames) > 1 else None)
            self.images.append(result)
            self.on_image(result)
        options: dict[str, Any] = dict(SAVE_OPTIONS.get(kind, {}))
        if len(pictures) > 1:
            options |= {"save_all": True, "append_images": pictures[1:], "loop": loop}
            if all(duration is not None for _image, duration in frames):
                options["duration"] = [duration for _image, duration in frames]
            self.videos.append(out / medium.relative)
        pictures[0].save(drawn, format=kind, **options)

    def video(self, medium: Medium, staging: Path, out: Path, on_video: VideoEvent) -> None:
        try:
            info = video_info(medium.path)
        except OdplugError as error:
            raise _Unreadable(str(error).removeprefix(f"{medium.path}: ")) from None
        drawn = staging / medium.relative
        drawn.parent.mkdir(parents=True, exist_ok=True)
        on_frame = on_video(medium.path, info.frames)
        writer = VideoWriter(drawn, info)
        try:
            for number, pixels in enumerate(read_frames(medium.path)):
                detections = self.detect(pixels)
                writer.write(np.asarray(self.draw(Image.fromarray(pixels), detections)))
                self.images.append(ImagePrediction(medium.path, pixels.shape[1],
                                                   pixels.shape[0], out / medium.relative,
                                                   detections, frame=number))
                on_frame(number + 1)
        finally:
            writer.close()
        self.videos.append(out / medium.relative)


def _write_json(run: _Run, staging: Path, model: Path) -> None:
    """``detections.json`` in COCO's results format and ``images.json`` its image table."""
    results: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for number, image in enumerate(run.images, start=1):
        images.append({"id": number, "file": str(image.file), "frame": image.frame,
                       "width": image.width, "height": image.height,
                       "drawn": str(image.drawn)})
        results += [{"image_id": number, "category_id": d.class_id,
                     "bbox": d.coco_box(image.width, image.height), "score": round(d.score, 4)}
                    for d in image.detections]
    categories = [{"id": i, "name": name} for i, name in sorted(run.loaded.names.items())]
    atomic_write_text(staging / DETECTIONS_FILE, json.dumps(results) + "\n")
    atomic_write_text(staging / IMAGES_FILE, json.dumps(
        {"model": str(model), "runs": run.loaded.description, "threshold": run.threshold,
         "categories": categories, "images": images, "skipped": run.skipped}, indent=1) + "\n")
