"""``data.import``: any registered format in, any registered writer out, with one report.

Two phases. First the importer streams sample metadata (no pixels) through the checks that
need no image: class rename and filter, the label map, file names that escape the dataset
folder, duplicate images; then the split is decided. Second, the writer reads, checks and
writes the images in parallel, and the label map and the JSON report are written beside them.

The output folder is one unit: everything is written into a fresh staging folder beside it,
which replaces the folder whole only once every file is written and at least one image made
it (`odplug.atomic.replace_folder`, under a lock that refuses a second import into the same
folder). A failed, interrupted or killed import leaves the previous output byte-identical.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from odplug.atomic import folder_lock, recover_folder, replace_folder
from odplug.components import DatasetWriter, Importer, Verify, WriteJob
from odplug.data.beam import check_engine, write_on_beam
from odplug.data.labelmap import read_label_map, write_label_map
from odplug.data.splits import CONSEQUENCE, DEFAULT_RATIOS, SplitMode, assign_splits
from odplug.dataset_report import Report
from odplug.errors import OdplugError, UsageError
from odplug.labels import LabelMap, LabelMapItem
from odplug.plugins import BUILTIN_DEFAULTS, IMPORTERS, WRITERS, Registry
from odplug.samples import Sample
from odplug.storage import is_url

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
LABEL_MAP_NAME = "label_map.pbtxt"
FAILED_REPORT_SUFFIX = ".failed-report.json"
"""A failed import's report goes beside its output folder, as ``<out>.failed-report.json``."""


@dataclass
class ImportOptions:
    format: str | None = None
    to: str = BUILTIN_DEFAULTS.writer
    split: SplitMode = "auto"
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    seed: int = 0
    classes: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)
    label_map: Path | None = None
    shards: int = 0
    workers: int = 0
    verify: Verify = "header"
    pictures: bool = False
    """Write ``dataset.png`` and ``dataset.json`` (`odplug.data.overview`) beside the records.
    Off here, on in ``data.import``, ``odplug.import_dataset`` and ``pipeline``: the tests and
    fuzzers that import thousands of tiny datasets through this function would pay the
    drawing (about half a second) each time."""
    engine: str = "local"
    """``local`` (the process pool of `odplug.data.shards`) or ``beam`` (`odplug.data.beam`:
    the same samples written by an Apache Beam pipeline, TFRecords only)."""
    beam_options: list[str] = field(default_factory=list)
    """Beam pipeline options as flags (``--runner=DataflowRunner``), `beam.beam_flags`."""


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
            raise UsageError(f"--rename {part!r}: write it as old=new")
        mapping[old.strip()] = new.strip()
    return mapping


SUBFOLDERS_SCANNED = 64
"""Detection looks into at most this many subfolders for datasets of other formats (a folder of
thousands of image folders would otherwise cost a detection each)."""


def choose_importer(registry: Registry, source: Path, name: str | None) -> Importer:
    """The importer `name`, else the one format detected, else an error naming what was found.

    A folder that holds a dataset of one format and, in a subfolder, one of another (a VOC and a
    COCO side by side) is refused like a folder that looks like two formats: importing one of
    them without a word would be a guess.
    """
    if source.is_dir():  # an unreadable folder is said as such, not as "not a dataset"
        with os.scandir(source):
            pass
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    if name:
        return registry.get(IMPORTERS, name)
    near: dict[str, str] = {}
    detected = {imp.name: _detects(registry, imp, source, near)
                for imp in registry.importers.values()}
    here = [registry.importers[n] for n, found in detected.items() if found]
    others = [registry.importers[n] for n, found in detected.items() if found is False]
    below = _datasets_below(registry, source, others) if source.is_dir() else []
    if len(here) == 1 and not below:
        return here[0]
    if not here and not below and near:
        raise OdplugError("; ".join(f"{source}: looks like a {n} dataset, but {why}"
                                    for n, why in sorted(near.items())))
    if not here and not below:
        names = ", ".join(sorted(registry.importers))
        raise OdplugError(f"{source}: not a dataset format odplug recognises; "
                          f"give --format (one of: {names})")
    raise OdplugError(_several(source, sorted(i.name for i in here), below))


def _datasets_below(registry: Registry, source: Path,
                    importers: list[Importer]) -> list[tuple[str, Path]]:
    """(format, subfolder) of each subfolder that `importers` claim, though not `source`."""
    try:
        with os.scandir(source) as entries:
            subfolders = sorted(source / e.name for e in entries
                                if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []
    return [(importer.name, sub) for sub in subfolders[:SUBFOLDERS_SCANNED]
            for importer in importers if _detects(registry, importer, sub)]


def _several(source: Path, here: list[str], below: list[tuple[str, Path]]) -> str:
    """The refusal of a folder that holds more than one dataset: what is where, how to choose."""
    found = here + [f"{name} in {sub.name}/" for name, sub in below]
    choices = [f"--format {name}" for name in here] + [f"--source {sub}" for _, sub in below]
    what = (f"looks like several formats ({', '.join(found)})" if here
            else f"not a dataset itself, but holds {' and '.join(found)}")
    return f"{source}: {what}; give {' or '.join(choices)}"


def _detects(registry: Registry, importer: Importer, source: Path,
             near: dict[str, str] | None = None) -> bool | None:
    """Whether `importer` claims `source`; None when it raised. An `OdplugError` is a near
    miss, `source` almost this format (a data.yaml without names): not claimed, its reason kept
    in `near` to be said if no format claims `source`. Anything else raised is named in a
    warning and left out of this detection, so one plugin's bug cannot break the detection of
    every format."""
    try:
        return bool(importer.detect(source))
    except OdplugError as error:
        if near is not None:
            near[importer.name] = " ".join(str(error).split())
        return False
    except (Exception, SystemExit) as error:
        plugin = registry.owner(IMPORTERS.key, importer.name)
        text = " ".join(str(error).split())
        log.warning("importer %r of plugin %r failed to detect %s (%s%s); it is left out of "
                    "format detection (give --format %s to use it)", importer.name, plugin,
                    source, type(error).__name__, f": {text}" if text else "", importer.name)
        return None


def import_dataset(
    source: Path | str,
    out: Path | str,
    options: ImportOptions,
    registry: Registry,
    *,
    on_total: Callable[[int], None] = lambda total: None,
    progress: Callable[[int], None] = lambda n: None,
    note: Callable[[str], None] = lambda text: None,
) -> ImportResult:
    """Import `source` into the folder `out`, which is replaced whole or not at all.

    Raises `OdplugError` (and leaves `out` as it was) when `out` overlaps the dataset, is not a
    folder an import may replace, is being written by another import, or when no image could be
    imported; the report of an import that imported nothing is ``<out>.failed-report.json``.

    Either may be a bucket URL (``s3://``, ``gs://``; `odplug.storage`): the dataset is then
    mirrored locally with its images streamed, the output built in a local temporary folder
    and published to the URL whole. `note` hears what is downloaded and uploaded.
    """
    if not is_url(str(source)) and not is_url(str(out)):
        return import_here(Path(source), Path(out), options, registry, on_total=on_total,
                           progress=progress)
    from odplug.data.bucket_import import import_with_urls  # fsspec and its backends

    return import_with_urls(source, out, options, registry, on_total=on_total,
                            progress=progress, note=note)


def import_here(
    source: Path,
    out: Path,
    options: ImportOptions,
    registry: Registry,
    *,
    on_total: Callable[[int], None],
    progress: Callable[[int], None],
    beam_remote: str | None = None,
) -> ImportResult:
    """`import_dataset` between local folders (a bucket's mirrored as local,
    `odplug.data.bucket_import`); on Beam, with `beam_remote`, the shards go to that bucket
    prefix (`write_on_beam`)."""
    writer = registry.get(WRITERS, options.to)
    importer = choose_importer(registry, source, options.format)
    for component in (importer, writer):
        component.check()
    check_engine(options.engine, writer.name, options.beam_options)
    target = _output_folder(source, out)
    with folder_lock(target):
        recover_folder(target)
        _refuse_foreign(target)
        report = Report()
        shipped = importer.label_map(source) if options.label_map is None else None
        label_map = _label_map(shipped, source, options)
        classes = set(shipped.names) if shipped is not None else set()
        samples = list(_checked(importer.read(source, report), source, label_map, options,
                                report, classes))
        _check_class_options(options, classes, source, report)
        splits = assign_splits(samples, options.split, options.ratios, options.seed, report)
        total = sum(len(items) for items in splits.values())
        if label_map is None:
            label_map = LabelMap.from_names(
                sorted({b.label for items in splits.values() for s in items for b in s.boxes})
            )
        failed = target.with_name(target.name + FAILED_REPORT_SUFFIX)
        if total == 0:
            report.write_json(failed)
            why = f"all were skipped, see {failed}" if report.problems else "none found"
            raise OdplugError(f"{source}: no images to import ({why})")
        if not len(label_map):
            raise OdplugError(f"{source}: no boxes in any image, so there are no classes to "
                              "learn")
        on_total(total)
        job = WriteJob(splits=splits, label_map=label_map, out=target, shards=options.shards,
                       workers=options.workers, verify=options.verify, progress=progress)
        write = (writer.write if options.engine == "local"
                 else partial(write_on_beam, flags=options.beam_options, remote=beam_remote))
        _write_whole(writer, write, job, report, failed, pictures=options.pictures)
        failed.unlink(missing_ok=True)
    return ImportResult(report, label_map, out, importer.name, writer.name)


def _write_whole(writer: DatasetWriter, write: Callable[[WriteJob], Report], job: WriteJob,
                 report: Report, failed: Path, *, pictures: bool) -> None:
    """Everything into a staging folder, swapped in for `job.out` once complete and non-empty;
    with `pictures`, the dataset drawn (``dataset.png``, ``dataset.json``) is part of it.
    `write` is the writer's own, or the Beam engine's, which fills the same staging folder.

    A file system error (a full disk, say) is one line naming the output, which is unchanged.
    """
    target = job.out
    try:
        with replace_folder(target) as staging:
            report.merge(write(replace(job, out=staging)))
            if not report.images:
                report.write_json(failed)
                why = ("every image was skipped" if report.problems
                       else f"writer {writer.name!r} wrote no image")
                raise OdplugError(f"{target}: nothing imported, the folder is unchanged: "
                                  f"{why}; see {failed}")
            _warn_emptied(job.splits, report)
            write_label_map(job.label_map, staging / LABEL_MAP_NAME)
            if pictures:
                from odplug.data.overview import import_overview  # numpy and matplotlib

                import_overview(staging, job.splits, report)
            report.write_json(staging / REPORT_NAME)
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename else ""
        raise OdplugError(f"{target}: {reason}{where}; the import failed and the folder is "
                          "unchanged") from None


def _warn_emptied(splits: dict[str, list[Sample]], report: Report) -> None:
    """A split whose every image the writer skipped is empty: say so, as for one left empty."""
    for name, samples in splits.items():
        if samples and not report.images[name]:
            cost = CONSEQUENCE.get(name, "it is not written")
            lost = ("its only image was" if len(samples) == 1
                    else f"all {len(samples)} of its images were")
            report.warn("empty-split", f"split {name!r} is empty ({lost} skipped); {cost}")


def _output_folder(source: Path, out: Path) -> Path:
    """`out` resolved, once it is known to be a folder that an import may replace whole.

    Refused before anything is written: the dataset folder itself, a folder inside it (the
    output would change the dataset, and be read as part of it next time), a folder that holds
    the dataset, the current folder or one that holds it, and a file.
    """
    target = out.resolve()
    root = (source if source.is_dir() else source.parent).resolve()
    if target == root or root in target.parents:
        where = "is the dataset folder" if target == root else "is inside the dataset folder"
        raise OdplugError(f"{out}: {where} {root}; give an output folder outside the dataset, "
                          "which an import never changes")
    if target in root.parents:
        raise OdplugError(f"{out}: holds the dataset {root}, and an import replaces its output "
                          "folder whole; give a folder of its own")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise OdplugError(f"{out}: is the current folder or holds it, and an import replaces "
                          "its output folder whole; give a folder of its own")
    if target.exists() and not target.is_dir():
        raise OdplugError(f"{out}: is a file, not a folder; give an output folder")
    return target


def _refuse_foreign(target: Path) -> None:
    """An import replaces its output folder whole: refuse one that holds something else.

    Hidden ``.odplug-*`` temporaries do not count: earlier versions left them in a folder
    whose first import was killed.
    """
    if not target.is_dir() or all(p.name.startswith(".odplug-") for p in target.iterdir()):
        return
    if not any((target / name).is_file() for name in (REPORT_NAME, LABEL_MAP_NAME)):
        raise OdplugError(f"{target}: not empty and not an odplug import (no {REPORT_NAME} or "
                          f"{LABEL_MAP_NAME}), and an import replaces its output folder whole; "
                          "give a new or empty folder")


def _label_map(shipped: LabelMap | None, source: Path, options: ImportOptions
               ) -> LabelMap | None:
    """The user's label map, else the dataset's own (`shipped`) with rename and filter applied,
    else None (then the classes found decide, sorted by name).

    Rename and filter keep the dataset's ids (a COCO-derived model keeps COCO's category ids,
    and its predictions stay comparable with the dataset's); classes merged into one by a
    rename take the lowest id among them.
    """
    if options.label_map is not None:
        return read_label_map(options.label_map)
    if shipped is None:
        return None
    if not options.rename and not options.classes:
        return shipped
    items: dict[str, LabelMapItem] = {}
    for item in shipped.items:  # ascending ids: the first of merged classes has the lowest
        name = options.rename.get(item.name, item.name)
        if name not in items and (not options.classes or name in options.classes):
            display = item.display_name if name == item.name else ""
            items[name] = LabelMapItem(item.id, name, display)
    return LabelMap(items.values(), origin=f"{source} (after --rename/--classes)")


def _checked(
    samples: Iterable[Sample], source: Path, label_map: LabelMap | None,
    options: ImportOptions, report: Report, labels: set[str],
) -> Iterable[Sample]:
    """Apply rename and filter, and drop what cannot be right whatever the image holds; the
    class of every box, as the dataset names it, is added to `labels`."""
    root = os.path.join(os.path.abspath(source if source.is_dir() else source.parent), "")
    real_root = os.path.join(os.path.realpath(root), "")
    seen: dict[str, str] = {}
    for sample in samples:
        where = sample.origin or sample.location
        # A record-held image is checked by its record file: that file must be in the dataset.
        kind = "image" if sample.record is None else "record file"
        if not os.path.abspath(sample.image).startswith(root):
            report.skip_image(where, "escapes-dataset",
                              f"{kind} path {sample.image} points outside {source}")
            continue
        real = os.path.realpath(sample.image)  # links are followed (DVC, shared image pools)
        if not real.startswith(real_root):
            report.note_image(where, "link-outside-dataset", f"{kind} {sample.image} is a link "
                              f"to {real}, outside {source}; followed")
        if "\x00" in sample.key:
            report.skip_image(where, "malformed-key", f"image key {sample.key!r} holds a NUL "
                              "character, which no file name can")
            continue
        if sample.key in seen:
            report.skip_image(where, "duplicate-image",
                              f"image {sample.key!r} was already imported from {seen[sample.key]}")
            continue
        seen[sample.key] = where
        boxes = []
        for index, box in enumerate(sample.boxes):
            labels.add(box.label)
            label = options.rename.get(box.label, box.label)
            if options.classes and label not in options.classes:
                report.filter_box(label)
                continue
            if label_map is not None and label not in label_map:
                sample.skipped_boxes += 1
                report.skip_box(where, "unknown-class",
                                f"box {index}: class {label!r} is not in the label map "
                                f"({', '.join(label_map.names)})")
                continue
            boxes.append(box if label == box.label else replace(box, label=label))
        sample.boxes = boxes
        yield sample


def _check_class_options(options: ImportOptions, seen: set[str], source: Path,
                         report: Report) -> None:
    """A ``--rename`` or ``--classes`` name that is no class of the dataset (`seen`: its label
    map's names and its boxes' classes) is a warning, with the closest name; ``--classes`` of
    which no name is a class is refused, since nothing would be left to import."""
    for old, new in options.rename.items():
        if old not in seen:
            report.warn("unknown-class", f"--rename {old}={new}: no class {old!r} in {source}, "
                        f"nothing renamed ({_listed(seen)}){_closest(old, seen)}")
    names = {options.rename.get(name, name) for name in seen}
    unknown = [name for name in options.classes if name not in names]
    if unknown and len(unknown) == len(options.classes):
        raise UsageError(f"--classes {','.join(unknown)}: no such class in {source}, so nothing "
                         f"would be imported ({_listed(names)}){_closest(unknown[0], names)}")
    for name in unknown:
        report.warn("unknown-class", f"--classes {name}: no class {name!r} in {source} "
                    f"({_listed(names)}){_closest(name, names)}")


def _closest(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listed(names: set[str], most: int = 12) -> str:
    """``its classes: a, b, c`` sorted, the first `most` of many."""
    ordered = sorted(names)
    more = f" ... ({len(ordered)} in all)" if len(ordered) > most else ""
    return f"its classes: {', '.join(ordered[:most])}{more}" if ordered else "it has no classes"
