"""Writing the Ultralytics layout: data.yaml, images/<split>/ and labels/<split>/."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from odplug.components import DatasetWriter, Verify, WriteJob
from odplug.data.parallel import default_workers, run_jobs, tick
from odplug.data.prepare import prepare
from odplug.dataset_report import Report
from odplug.labels import LabelMap
from odplug.samples import Sample

log = logging.getLogger(__name__)


_FORMAT_SUFFIXES = {"jpeg": ("jpg", "jpeg", "jpe"), "png": ("png",)}


def file_names(samples: Sequence[Sample]) -> list[str]:
    """Each sample's file name under ``images/<split>/``: its key less the folders all keys of
    the split share, other folders joined by ``_``, unique by label stem."""
    parts = []
    for sample in samples:
        key = Path(sample.key)
        safe = sample.key and not key.is_absolute() and ".." not in key.parts
        parts.append(key.parts if safe else (sample.image.name,))
    common = len(os.path.commonprefix([list(p[:-1]) for p in parts])) if parts else 0
    taken: set[str] = set()
    names = []
    for part in parts:
        name = "_".join(part[common:])
        stem, suffix = os.path.splitext(name)
        unique, number = stem, 1
        while unique in taken:
            number += 1
            unique = f"{stem}_{number}"
        taken.add(unique)
        names.append(unique + suffix)
    return names


def _final_name(name: str, image_format: str) -> str:
    """`name` with the suffix of the format the image is written in, when it has another."""
    stem, suffix = os.path.splitext(name)
    allowed = _FORMAT_SUFFIXES.get(image_format, (image_format,))
    return name if suffix[1:].lower() in allowed else f"{stem}.{allowed[0]}"


def _number(value: float) -> str:
    return repr(float(value))


@dataclass
class _WriteChunk:
    out: Path
    split: str
    samples: list[Sample]
    names: list[str]
    label_map: LabelMap
    verify: Verify


def _write_chunk(job: _WriteChunk) -> Report:
    """Images and label files of some samples of one split, straight into the staging folder."""
    report = Report()
    images = job.out / "images" / job.split
    labels = job.out / "labels" / job.split
    for sample, planned in zip(job.samples, job.names, strict=True):
        prepared = prepare(sample, job.verify, report, crowd=False)
        if prepared is not None:
            name = _final_name(planned, prepared.image.format)
            (images / name).write_bytes(prepared.image.data)
            width, height = prepared.image.width, prepared.image.height
            lines = []
            for box in prepared.boxes:
                index = job.label_map.column_of(job.label_map.id_of(box.label))
                cx, cy = (box.xmin + box.xmax) / 2 / width, (box.ymin + box.ymax) / 2 / height
                w, h = (box.xmax - box.xmin) / width, (box.ymax - box.ymin) / height
                lines.append(" ".join([str(index), *map(_number, (cx, cy, w, h))]) + "\n")
            (labels / name).with_suffix(".txt").write_text("".join(lines), encoding="utf-8")
            report.count_image(job.split, [box.label for box in prepared.boxes])
        tick()
    return report


def data_yaml(splits: Sequence[str], names: Sequence[str]) -> str:
    """The Ultralytics dataset yaml of the written layout (see the module docstring)."""
    head = ("# Ultralytics YOLO detection dataset written by odplug. No `path:` key: Ultralytics\n"
            "# then reads train/val/test relative to this file's folder, wherever it is moved.\n")
    body: dict[str, object] = {split: f"images/{split}" for split in splits}
    body["nc"] = len(names)
    body["names"] = list(names)
    return head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


class YoloWriter(DatasetWriter):
    name = "yolo"
    summary = "YOLO (Ultralytics): data.yaml, images/<split>/ and labels/<split>/*.txt"

    def write(self, job: WriteJob) -> Report:
        job.out.mkdir(parents=True, exist_ok=True)
        splits = [split for split, samples in job.splits.items() if samples]
        workers = job.workers or default_workers()
        chunks = []
        for split in splits:
            samples = job.splits[split]
            names = file_names(samples)
            for folder in ("images", "labels"):
                (job.out / folder / split).mkdir(parents=True, exist_ok=True)
            count = max(1, min(workers, len(samples) // 16))
            for index in range(count):
                chunks.append(_WriteChunk(job.out, split, samples[index::count],
                                          names[index::count], job.label_map, job.verify))
        (job.out / "data.yaml").write_text(data_yaml(splits, job.label_map.names),
                                           encoding="utf-8")
        if "val" not in splits:
            log.warning("%s: no val split, which Ultralytics requires to train; import with "
                        "--split ratio to make one", job.out / "data.yaml")
        return Report.merged(run_jobs(_write_chunk, chunks, workers=workers, progress=job.progress))


