"""``data.import``: any registered format in, any registered writer out, with one report.

Two phases. First the importer streams sample metadata (no pixels) through the checks that
need no image: class rename and filter, the label map, file names that escape the dataset
folder, duplicate images; then the split is decided. Second, the writer reads, checks and
writes the images in parallel. The label map and the JSON report are written last, atomically,
beside the output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from odplug.components import Importer, Verify, WriteJob
from odplug.data.dataset import Sample
from odplug.data.labelmap import LabelMap, read_label_map, write_label_map
from odplug.data.report import Report
from odplug.data.splits import SplitMode, assign_splits
from odplug.errors import OdplugError
from odplug.plugins import IMPORTERS, WRITERS, Registry

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
LABEL_MAP_NAME = "label_map.pbtxt"


@dataclass
class ImportOptions:
    format: str | None = None
    to: str = "tfrecord"
    split: SplitMode = "auto"
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0
    classes: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)
    label_map: Path | None = None
    shards: int = 0
    workers: int = 0
    verify: Verify = "header"


@dataclass
class ImportResult:
    report: Report
    label_map: LabelMap
    out: Path
    importer: str
    writer: str


def parse_rename(text: str) -> dict[str, str]:
    """``old=new,other=new`` into a mapping; several old names may merge into one."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise OdplugError(f"--rename {part!r}: write it as old=new")
        mapping[old.strip()] = new.strip()
    return mapping


def choose_importer(registry: Registry, source: Path, name: str | None) -> Importer:
    if source.is_dir():  # an unreadable folder is said as such, not as "not a dataset"
        with os.scandir(source):
            pass
    if name:
        return registry.get(IMPORTERS, name)
    if not source.exists():
        raise OdplugError(f"{source}: no such file or folder")
    found = [imp for imp in registry.importers.values() if _detects(registry, imp, source)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(sorted(registry.importers))
    if not found:
        raise OdplugError(f"{source}: not a dataset format odplug recognises; "
                          f"give --format (one of: {names})")
    several = ", ".join(sorted(importer.name for importer in found))
    raise OdplugError(f"{source}: looks like several formats ({several}); give --format")


def _detects(registry: Registry, importer: Importer, source: Path) -> bool:
    """Whether `importer` claims `source`. One that raises is named in a warning and left out
    of this detection, so one plugin's bug cannot break the detection of every format."""
    try:
        return bool(importer.detect(source))
    except (Exception, SystemExit) as error:
        plugin = registry.owner(IMPORTERS.key, importer.name)
        text = " ".join(str(error).split())
        log.warning("importer %r of plugin %r failed to detect %s (%s%s); it is left out of "
                    "format detection (give --format %s to use it)", importer.name, plugin,
                    source, type(error).__name__, f": {text}" if text else "", importer.name)
        return False


def import_dataset(
    source: Path,
    out: Path,
    options: ImportOptions,
    registry: Registry,
    *,
    on_total: Callable[[int], None] = lambda total: None,
    progress: Callable[[int], None] = lambda n: None,
) -> ImportResult:
    writer = registry.get(WRITERS, options.to)
    importer = choose_importer(registry, source, options.format)
    for component in (importer, writer):
        component.check()
    report = Report()
    label_map = _label_map(importer, source, options)
    samples = list(_checked(importer.read(source, report), source, label_map, options, report))
    splits = assign_splits(samples, options.split, options.ratios, options.seed, report)
    total = sum(len(items) for items in splits.values())
    if label_map is None:
        label_map = LabelMap.from_names(
            sorted({b.label for items in splits.values() for s in items for b in s.boxes})
        )
    if total == 0:
        out.mkdir(parents=True, exist_ok=True)
        report.write_json(out / REPORT_NAME)
        why = f"all were skipped, see {out / REPORT_NAME}" if report.problems else "none found"
        raise OdplugError(f"{source}: no images to import ({why})")
    if not len(label_map):
        raise OdplugError(f"{source}: no boxes in any image, so there are no classes to learn")
    on_total(total)
    written = writer.write(WriteJob(  # type: ignore[attr-defined]
        splits=splits, label_map=label_map, out=out, shards=options.shards,
        workers=options.workers, verify=options.verify, progress=progress,
    ))
    report.merge(written)
    write_label_map(label_map, out / LABEL_MAP_NAME)
    report.write_json(out / REPORT_NAME)
    if not report.images:
        raise OdplugError(f"{source}: every image was skipped; see {out / REPORT_NAME}")
    return ImportResult(report, label_map, out, importer.name, writer.name)


def _label_map(importer: Importer, source: Path, options: ImportOptions) -> LabelMap | None:
    """The user's label map, else the dataset's own with rename and filter applied, else None
    (then the classes found decide, sorted by name)."""
    if options.label_map is not None:
        return read_label_map(options.label_map)
    shipped = importer.label_map(source)
    if shipped is None:
        return None
    if not options.rename and not options.classes:
        return shipped
    names: list[str] = []
    for name in (options.rename.get(n, n) for n in shipped.names):
        if name not in names and (not options.classes or name in options.classes):
            names.append(name)
    return LabelMap.from_names(names)


def _checked(
    samples: Iterable[Sample], source: Path, label_map: LabelMap | None,
    options: ImportOptions, report: Report,
) -> Iterable[Sample]:
    """Apply rename and filter, and drop what cannot be right whatever the image holds."""
    root = os.path.join(os.path.abspath(source if source.is_dir() else source.parent), "")
    seen: dict[str, str] = {}
    for sample in samples:
        where = sample.origin or str(sample.image)
        if not os.path.abspath(sample.image).startswith(root):
            report.skip_image(where, "escapes-dataset",
                              f"image path {sample.image} points outside {source}")
            continue
        if sample.key in seen:
            report.skip_image(where, "duplicate-image",
                              f"image {sample.key!r} was already imported from {seen[sample.key]}")
            continue
        seen[sample.key] = where
        boxes = []
        for index, box in enumerate(sample.boxes):
            label = options.rename.get(box.label, box.label)
            if options.classes and label not in options.classes:
                report.filter_box(label)
                continue
            if label_map is not None and label not in label_map:
                report.skip_box(where, "unknown-class",
                                f"box {index}: class {label!r} is not in the label map "
                                f"({', '.join(label_map.names)})")
                continue
            boxes.append(box if label == box.label else replace(box, label=label))
        sample.boxes = boxes
        yield sample
