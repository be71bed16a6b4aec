"""The Beam pipeline of ``data.import --engine beam``; runs in the Beam environment only.

Shape: the job's sample files (`odplug.data.beam._write_chunks`) are read in parallel and
reshuffled so that the samples spread over the workers; each worker reads, checks and encodes
its samples with the functions the local engine's workers call (`prepare`, `encode_example`),
keeping one report per bundle; every split goes to Beam's TFRecord sink with the shard count
the driver chose and odplug's shard names (``train.record-00000-of-00004``); the reports are
merged into one by a CombineFn and written beside the job for the driver to read.

Everything a worker runs is a module-level function or class of this module, pickled by
reference: a worker needs odplug installed (its TensorFlow-free part: ``--no-deps``), which is
what a Dataflow or Flink deployment must provide (docs/guide/import.md, "On Apache Beam").
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import WriteToTFRecord
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from odplug.data.beam import PROGRESS, BeamJob
from odplug.data.example import encode_example
from odplug.data.prepare import prepare
from odplug.dataset_report import Report
from odplug.samples import Sample
from odplug.storage.mount import register

SHARD_TEMPLATE = ".record-SSSSS-of-NNNNN"
"""After the split's name: ``train.record-00000-of-00004``, `odplug.data.shards.shard_name`."""
REPORTS = "reports"
PROGRESS_EVERY = 20
"""Images a worker reads between two lines of progress (`say_progress`)."""


def say_progress(images: int) -> None:
    """One line on the worker's standard output that the driver turns into its progress bar
    (`odplug.data.beam.PROGRESS`): the DirectRunner's and a local Flink's workers write into
    the pipeline's log, which the driver follows; a remote runner's go to its own logs, and
    the bar then fills when the pipeline is done."""
    print(f"{PROGRESS} {images}", flush=True)


def read_chunk(path: str) -> Iterator[tuple[str, Sample]]:
    """The (split, sample) pairs of one job file, read through Beam's file systems."""
    with FileSystems.open(path) as handle:
        yield from pickle.loads(handle.read())


class Encode(beam.DoFn):
    """One sample in, its serialized Example out (tagged by split); the problems met go into
    a report per bundle, emitted on the `REPORTS` output when the bundle ends."""

    def __init__(self, job: BeamJob) -> None:
        self.job = job
        self.report = Report()

    def setup(self) -> None:
        register(self.job.mounts)  # a dataset in a bucket: its images are read from there

    def start_bundle(self) -> None:
        self.report = Report()
        self.done = 0

    def process(self, element: tuple[str, Sample]) -> Iterator[Any]:
        split, sample = element
        prepared = prepare(sample, self.job.verify, self.report)
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            say_progress(PROGRESS_EVERY)
        if prepared is None:
            return
        parts = encode_example(prepared.image, filename=sample.file_name, source_id=sample.key,
                               boxes=prepared.boxes, label_map=self.job.label_map)
        self.report.count_image(split, [box.label for box in prepared.boxes])
        yield beam.pvalue.TaggedOutput(split, b"".join(parts))

    def finish_bundle(self) -> Iterator[Any]:
        if self.done % PROGRESS_EVERY:
            say_progress(self.done % PROGRESS_EVERY)
        yield beam.pvalue.TaggedOutput(
            REPORTS, WindowedValue(self.report, MIN_TIMESTAMP, [GlobalWindow()]))


class MergeReports(beam.CombineFn):
    """Every worker's reports as one; its problems in a fixed order (by file, then kind and
    code), since the order workers finish in is the runner's."""

    def create_accumulator(self) -> Report:
        return Report()

    def add_input(self, merged: Report, report: Report) -> Report:
        merged.merge(report)
        return merged

    def merge_accumulators(self, accumulators: Iterable[Report]) -> Report:
        return Report.merged(accumulators)

    def extract_output(self, merged: Report) -> Report:
        merged.problems.sort(key=lambda p: (p.file, p.kind, p.code, p.reason))
        return merged


def write_report(report: Report, path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(pickle.dumps(report))


def build(pipeline: beam.Pipeline, job: BeamJob) -> None:
    """The import's transforms on `pipeline`."""
    splits = sorted(job.shards)
    encoded = (
        pipeline
        | "job files" >> beam.Create(job.chunks)
        | "spread files" >> beam.Reshuffle()
        | "samples" >> beam.FlatMap(read_chunk)
        | "spread samples" >> beam.Reshuffle()
        | "read, check, encode" >> beam.ParDo(Encode(job)).with_outputs(REPORTS, *splits)
    )
    for split in splits:
        _ = encoded[split] | f"write {split}" >> WriteToTFRecord(
            FileSystems.join(job.out, split), num_shards=job.shards[split],
            shard_name_template=SHARD_TEMPLATE, compression_type=CompressionTypes.UNCOMPRESSED)
    _ = (encoded[REPORTS]
         | "merge reports" >> beam.CombineGlobally(MergeReports())
         | "write report" >> beam.Map(write_report, job.report))


def main(folder: str, flags: Sequence[str]) -> None:
    """Run the job in `folder` with the pipeline options `flags`; returns once it is done."""
    options = PipelineOptions(list(flags))
    FileSystems.set_options(options)  # the job may be in a bucket (s3:// needs the options)
    with FileSystems.open(FileSystems.join(folder, "job.pickle")) as handle:
        job: BeamJob = pickle.loads(handle.read())
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, job)
