"""Importing a dataset in the test process, and reading what it wrote back through TensorFlow,
the reader of record."""

from __future__ import annotations

from pathlib import Path


def run_import(source: Path, out: Path, registry, **options):  # type: ignore[no-untyped-def]
    from odplug.data.convert import ImportOptions, import_dataset

    return import_dataset(source, out, ImportOptions(**options), registry)


def problem_files(result, kind: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """The files of each problem code of one kind ("image skipped", "box skipped", ...)."""
    found: dict[str, list[str]] = {}
    for problem in result.report.problems:
        if problem.kind == kind:
            found.setdefault(problem.code, []).append(problem.file)
    return found


def read_records(folder: Path, split: str | None = None) -> list[dict]:
    """Every record of a folder (or one split), decoded by TensorFlow into plain Python."""
    from odplug.data.shards import shard_files
    from odplug.model.tfdata import record_dataset

    files = shard_files(folder, split)
    assert files, f"no shards in {folder}"
    rows = []
    for item in record_dataset(files).as_numpy_iterator():
        rows.append({
            "source_id": item["source_id"].decode(),
            "filename": item["filename"].decode(),
            "boxes": item["boxes"].tolist(),
            "classes": item["classes"].tolist(),
            "height": int(item["height"]),
            "width": int(item["width"]),
            "image_shape": item["image"].shape,
            "format": item["format"].decode(),
            "sha256": item["sha256"].decode(),
        })
    return rows
