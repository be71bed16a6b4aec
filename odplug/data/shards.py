"""Sharded TFRecord output: ``train.record-00000-of-00004`` and friends, written in parallel.

Each shard is one job for one worker, written straight under its final name: the folder is a
fresh staging folder that the core swaps in whole once the import has succeeded
(`odplug.data.convert`), so a crash or Ctrl-C leaves the previous output whole and no reader
ever sees a partial shard.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from odplug.components import Verify, WriteJob
from odplug.data.example import encode_example
from odplug.data.labelmap import read_label_map
from odplug.data.parallel import default_workers, run_jobs, tick
from odplug.data.prepare import prepare
from odplug.data.tfrecord import write_record
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.samples import Sample
from odplug.storage.mount import PREFETCH, prefetch_count, prefetched

SHARD_PATTERN = re.compile(r"^(?P<split>.+)\.record-(?P<index>\d{5})-of-(?P<count>\d{5})$")
TARGET_SHARD_BYTES = 128 * 1024 * 1024
MIN_IMAGES_PER_PARALLEL_SHARD = 64


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}.record-{index:05d}-of-{count:05d}"


def shard_files(folder: Path, split: str | None = None) -> list[Path]:
    """The shard files in `folder` (of one split, or all), sorted."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = SHARD_PATTERN.match(path.name)
        if match and (split is None or match["split"] == split):
            found.append(path)
    return sorted(found)


def training_inputs(records: Path) -> tuple[LabelMap, list[Path]]:
    """The label map and train shards of a data.import folder: what every trainer reads first.

    One line naming what is missing when `records` is not such a folder, so each trainer (the
    built-in one, a third party's) fails the same clear way.
    """
    label_map_path = records / "label_map.pbtxt"
    if not label_map_path.is_file():
        raise OdplugError(f"{records}: no label_map.pbtxt; give a folder written by data.import")
    train_files = shard_files(records, "train")
    if not train_files:
        raise OdplugError(f"{records}: no train.record-* shards to train on")
    return read_label_map(label_map_path), train_files


def auto_shard_count(samples: Sequence[Sample], workers: int) -> int:
    """Shards of about 128 MiB, and at least one per worker once a split is big enough.

    A record-held image counts its record's size, not its record file's."""
    total = 0
    for sample in samples:
        if sample.record is not None:
            total += sample.record.size
            continue
        with contextlib.suppress(OSError):
            total += os.stat(sample.image).st_size
    by_size = math.ceil(total / TARGET_SHARD_BYTES)
    by_workers = min(workers, math.ceil(len(samples) / MIN_IMAGES_PER_PARALLEL_SHARD))
    return max(1, by_size, by_workers)


@dataclass
class ShardJob:
    path: Path
    split: str
    samples: list[Sample]
    label_map: LabelMap
    verify: Verify
    prefetch: int = PREFETCH
    """Images read at once from a bucket (`odplug.storage.mount.prefetched`)."""


def write_shard(job: ShardJob) -> Report:
    report = Report()
    with job.path.open("wb") as handle:
        for start in range(0, len(job.samples), job.prefetch):
            batch = job.samples[start:start + job.prefetch]
            # a dataset in a bucket: the batch's images are fetched together (a no-op here)
            with prefetched(s.image for s in batch if s.record is None):
                for sample in batch:
                    _write_sample(handle, sample, job, report)
                    tick()
    return report


def _write_sample(handle: BinaryIO, sample: Sample, job: ShardJob, report: Report) -> None:
    prepared = prepare(sample, job.verify, report)
    if prepared is not None:
        parts = encode_example(
            prepared.image,
            filename=sample.file_name,
            source_id=sample.key,
            boxes=prepared.boxes,
            label_map=job.label_map,
        )
        write_record(handle, *parts)
        report.count_image(job.split, [box.label for box in prepared.boxes])


def write_tfrecords(job: WriteJob) -> Report:
    """Write every split of `job` as shards into `job.out`; returns what was written."""
    job.out.mkdir(parents=True, exist_ok=True)
    workers = job.workers or default_workers()
    prefetch = prefetch_count()
    jobs: list[ShardJob] = []
    for split, samples in job.splits.items():
        if not samples:
            continue
        count = job.shards or auto_shard_count(samples, workers)
        count = min(count, len(samples))
        for index in range(count):
            jobs.append(ShardJob(
                path=job.out / shard_name(split, index, count),
                split=split,
                samples=samples[index::count],
                label_map=job.label_map,
                verify=job.verify,
                prefetch=prefetch,
            ))
    jobs.sort(key=lambda shard: len(shard.samples), reverse=True)
    return Report.merged(run_jobs(write_shard, jobs, workers=workers, progress=job.progress))
