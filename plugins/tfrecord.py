"""Built-in writer: TFRecords in the TF Object Detection API's schema (the default output)."""

from __future__ import annotations

from odplug import hookimpl
from odplug.components import DatasetWriter, WriteJob
from odplug.data.report import Report
from odplug.data.shards import write_tfrecords


class TFRecordWriter(DatasetWriter):
    name = "tfrecord"
    summary = "sharded TFRecords (tf.train.Example, TF Object Detection API keys)"

    def write(self, job: WriteJob) -> Report:
        return write_tfrecords(job)


@hookimpl(trylast=True)
def odplug_register_writers(register):  # type: ignore[no-untyped-def]
    register(TFRecordWriter())
