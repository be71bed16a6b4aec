"""``data.stats``: what a TFRecord folder holds, read without TensorFlow.

Every record's CRCs are checked, every Example parsed with the same keys the Object
Detection API decoder reads and every image's header read, so a folder that passes here has no
damaged record. Records whose image is empty, unreadable or not the declared size are listed
in ``problems`` (file and record index) and make ``data.stats`` fail.

The same pass can fill a `DatasetGeometry` (box centres and sizes, image sizes, per split),
from which ``data.stats --pictures`` and ``data.import`` draw the dataset.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from odplug.data.geometry import DatasetGeometry
from odplug.data.labelmap import read_label_map
from odplug.data.shards import SHARD_PATTERN, shard_files
from odplug.data.tfrecord import iter_records, summarize
from odplug.dataset_report import split_order
from odplug.errors import OdplugError, UsageError


def folder_stats(folder: Path, *, geometry: DatasetGeometry | None = None,
                 check_images: bool = True) -> dict[str, Any]:
    """Per split counts of a records folder, and every record whose image a trainer cannot use.

    `geometry`, when given, is filled with every record's boxes and size in the same pass.
    ``check_images=False`` skips reading each image's header (an import that has just checked
    every image): nothing is then listed in ``problems``.
    """
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    files = shard_files(folder) or sorted(
        p for p in folder.iterdir() if p.suffix in (".record", ".tfrecord")
    )
    if not files:
        raise OdplugError(f"{folder}: no TFRecord files (expected names like "
                          "train.record-00000-of-00001)")
    label_map = None
    if (folder / "label_map.pbtxt").is_file():
        label_map = read_label_map(folder / "label_map.pbtxt")
    splits: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    for path in files:
        match = SHARD_PATTERN.match(path.name)
        split = match["split"] if match else path.stem
        info = splits.setdefault(split, {"shards": 0, "records": 0, "boxes": 0,
                                         "empty_images": 0, "megabytes": 0.0,
                                         "classes": Counter()})
        info["shards"] += 1
        info["megabytes"] += path.stat().st_size / 1e6
        for index, record in enumerate(iter_records(path)):
            summary = summarize(record, origin=f"{path} record {index}",
                                check_image=check_images)
            if summary.image_problem:
                problems.append({"file": str(path), "record": index,
                                 "reason": summary.image_problem})
            info["records"] += 1
            count = max(len(summary.labels), len(summary.texts))
            info["boxes"] += count
            info["empty_images"] += count == 0
            names = summary.texts or tuple(
                _name(label_map, label) for label in summary.labels
            )
            info["classes"].update(names)
            if geometry is not None:
                geometry.add_image(split, summary.width, summary.height, names, summary.corners)
    for info in splits.values():
        info["classes"] = dict(sorted(info["classes"].items()))
        info["megabytes"] = round(info["megabytes"], 2)
    splits = dict(sorted(splits.items(), key=lambda item: split_order(item[0])))
    return {"folder": str(folder), "splits": splits,
            "label_map": label_map.names if label_map else None, "problems": problems}


def _name(label_map: Any, label: int) -> str:
    if label_map is None:
        return f"id {label}"
    try:
        return str(label_map.name_of(label))
    except KeyError:
        return f"id {label} (not in label map)"


def render_stats(summary: dict[str, Any]) -> str:
    lines = [f"{summary['folder']}:"]
    for split, info in summary["splits"].items():
        lines.append(
            f"  {split}: {info['records']} images ({info['empty_images']} without boxes), "
            f"{info['boxes']} boxes, {info['shards']} shard(s), {info['megabytes']} MB"
        )
        for name, count in info["classes"].items():
            lines.append(f"    {name}: {count}")
    problems = summary.get("problems", [])
    if problems:
        lines.append(f"  {len(problems)} record(s) a trainer cannot use:")
        lines += [f"    {p['file']} record {p['record']}: {p['reason']}" for p in problems]
    return "\n".join(lines)
