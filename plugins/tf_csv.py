"""Built-in importer and writer for tf_csv, the original workflow's intermediate format.

``train.csv`` / ``test.csv`` (``val.csv``), one row per box with the header
``filename,width,height,class,xmin,ymin,xmax,ymax`` in pixels, images in ``images/<split>/``,
``images/`` or beside the CSV, and optionally a ``label_map.pbtxt``. Files named like
``train_labels.csv`` (the raccoon dataset) are found too, in the folder given or one level
below it. An image with no boxes is one row with an empty class and empty coordinates: the
writer emits such rows so negatives survive a round trip. An image in the image folder that
no row names is skipped and reported by name (``no-annotation``), never imported as a negative.
The writer leaves out COCO crowd regions, each reported, since a row cannot mark one.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from odplug import hookimpl
from odplug.components import DatasetWriter, Importer, WriteJob
from odplug.data.labelmap import read_label_map
from odplug.data.numbers import finite_number, shown
from odplug.data.parallel import run_jobs, tick
from odplug.data.prepare import copy_image, prepare
from odplug.data.unlisted import report_unlisted
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.labels import LabelMap
from odplug.samples import Box, Sample

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
_SPLIT_FILE = re.compile(r"^(train|val|validation|test)(?:[_-]labels)?$", re.IGNORECASE)


def split_of(csv_path: Path) -> str | None:
    match = _SPLIT_FILE.match(csv_path.stem)
    if not match:
        return None
    name = match.group(1).lower()
    return "val" if name == "validation" else name


def find_csvs(source: Path) -> list[Path]:
    """The split CSV files of a tf_csv dataset: a CSV given directly, or by name in the folder."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise OdplugError(f"{source}: no such file or folder")
    for folder in [source, *sorted(p for p in source.iterdir() if p.is_dir())]:
        found = sorted(p for p in folder.glob("*.csv") if split_of(p))
        if found:
            return found
    every = sorted(source.glob("*.csv"))
    if len(every) == 1:
        return every
    raise OdplugError(
        f"{source}: no train.csv / test.csv (or train_labels.csv ...) here or one folder below"
        + (f"; found {', '.join(p.name for p in every)}: give one of them as the source"
           if every else "")
    )


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise OdplugError(f"{path}: cannot read the CSV: {error}") from None


def _image_folder(csv_path: Path, root: Path, split: str | None, first_file: str | None) -> Path:
    """Where this CSV's images are: the first candidate folder holding its first image."""
    bases = [csv_path.parent] + ([root] if root != csv_path.parent else [])
    candidates = []
    for base in bases:
        if split:
            candidates += [base / "images" / split, base / split]
        candidates += [base / "images", base]
    if first_file:
        for folder in candidates:
            if _is_file(folder / first_file):
                return folder
    return next((folder for folder in candidates if folder.is_dir() and folder != root), root)


def _is_file(path: Path) -> bool:
    """`Path.is_file`, False also for a name the system refuses (ENAMETOOLONG and the like,
    which Path.is_file raises): a CSV cell is any text, and such a row is reported when its
    image is read, not allowed to end the import."""
    try:
        return path.is_file()
    except OSError:
        return False


@dataclass
class _Image:
    filename: str
    origin: str
    width: int | None
    height: int | None
    boxes: list[Box]
    bad_size: bool = False


class TFCsvImporter(Importer):
    name = "tf_csv"
    summary = "tf_csv: train.csv/test.csv rows filename,width,height,class,xmin,ymin,xmax,ymax"

    def detect(self, source: Path) -> bool:
        try:
            csvs = find_csvs(source)
        except OdplugError:
            return False
        return all(c in _header(csvs[0]) for c in COLUMNS)

    def label_map(self, source: Path) -> LabelMap | None:
        root = source if source.is_dir() else source.parent
        csv_folders = [c.parent for c in find_csvs(source)]
        named = [root / "label_map.pbtxt", *(f / "label_map.pbtxt" for f in csv_folders)]
        for path in named:
            if path.is_file():
                return read_label_map(path)
        found = sorted({*root.glob("*.pbtxt"), *root.glob("*/*.pbtxt")})
        return read_label_map(found[0]) if len(found) == 1 else None

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        root = source if source.is_dir() else source.parent
        csvs = find_csvs(source)
        listed: list[Path] = []
        for csv_path in csvs:
            yield from self._read_csv(csv_path, root, report, listed)
        names = ", ".join(c.name for c in csvs)
        report_unlisted(root, [p.parent for p in listed], listed, report,
                        f"no row of {names} names it")

    def _read_csv(self, path: Path, root: Path, report: Report,
                  listed: list[Path]) -> Iterator[Sample]:
        """The samples of one CSV; the image of every row that names one goes to `listed`."""
        header = _header(path)
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise OdplugError(
                f"{path}: missing column(s) {', '.join(missing)}; a tf_csv file has the header "
                f"{','.join(COLUMNS)} (found {','.join(header) or 'an empty file'})"
            )
        images: dict[str, _Image] = {}
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle, strict=True)
                for row in reader:
                    self._add_row(row, f"{path}:{reader.line_num}", images, report)
        except (csv.Error, UnicodeDecodeError) as error:
            raise OdplugError(
                f"{path}: malformed CSV near line {reader.line_num}: {error}"
            ) from None
        split = split_of(path)
        folder = _image_folder(path, root, split, next(iter(images), None))
        listed.extend(folder / name for name in images)
        for image in images.values():
            if image.bad_size:
                report.skip_image(image.origin, "inconsistent-size",
                                  f"rows for {image.filename} give different width/height")
                continue
            yield Sample(
                image=folder / image.filename, key=image.filename, boxes=image.boxes,
                width=image.width, height=image.height, split=split, origin=image.origin,
            )

    @staticmethod
    def _add_row(row: dict[str, str | None], where: str, images: dict[str, _Image],
                 report: Report) -> None:
        filename = (row.get("filename") or "").strip()
        if not filename:
            report.skip_box(where, "malformed-row", "row has no filename")
            return
        if "\x00" in filename:
            report.skip_image(where, "malformed-row",
                              f"filename {filename!r} holds a NUL character, as no file name can")
            return
        width, height = _whole(row.get("width")), _whole(row.get("height"))
        if width is None or height is None:
            width = height = None
        image = images.get(filename)
        if image is None:
            image = images[filename] = _Image(filename, where, width, height, [])
        elif (width, height) != (image.width, image.height):
            image.bad_size = True
        # The class cell is taken exactly as written, outer spaces included: the original
        # generate_tfrecord.py compared it to the label map as is, and odplug's own tf_csv
        # writer writes names such as ' car ' unquoted, so stripping would lose their boxes.
        label = row.get("class") or ""
        if not label.strip():
            label = ""
        coords = [row.get(c) for c in ("xmin", "ymin", "xmax", "ymax")]
        if not label and not any((c or "").strip() for c in coords):
            return
        numbers = [n for n in map(finite_number, coords) if n is not None]
        if len(numbers) < len(coords):
            report.skip_box(where, "malformed-row", f"{filename}: coordinates "
                            f"{list(map(shown, coords))} are not all finite numbers")
            return
        xmin, ymin, xmax, ymax = numbers
        if not label:
            report.skip_box(where, "malformed-row", f"{filename}: box has no class")
            return
        image.boxes.append(Box(label, xmin, ymin, xmax, ymax))


def _whole(text: str | None) -> int | None:
    """A width or height cell as an int (``64.0`` reads as 64), None when it is not a number."""
    value = finite_number(text)
    return None if value is None else int(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _relative_name(sample: Sample) -> str:
    """The CSV filename: the sample key when it is a safe relative path, else the file name."""
    parts = Path(sample.key).parts
    if parts and not Path(sample.key).is_absolute() and ".." not in parts:
        return sample.key
    return sample.file_name


@dataclass
class _SplitJob:
    out: Path
    split: str
    samples: list[Sample]
    verify: str


def _write_split(job: _SplitJob) -> Report:
    """One split's CSV and image copies, straight under their final names: `job.out` is the
    staging folder the core swaps in whole once the import has succeeded."""
    report = Report()
    images = job.out / "images" / job.split
    with (job.out / f"{job.split}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for sample in job.samples:
            prepared = prepare(sample, job.verify, report,  # type: ignore[arg-type]
                               crowd=False)
            if prepared is not None:
                name = copy_image(prepared, images, _relative_name(sample))
                size = [prepared.image.width, prepared.image.height]
                for box in prepared.boxes:
                    writer.writerow([name, *size, box.label,
                                     *map(_number, (box.xmin, box.ymin, box.xmax, box.ymax))])
                if not prepared.boxes:
                    writer.writerow([name, *size, "", "", "", "", ""])
                report.count_image(job.split, [box.label for box in prepared.boxes])
            tick()
    return report


class TFCsvWriter(DatasetWriter):
    name = "tf_csv"
    summary = "tf_csv: <split>.csv + images/<split>/ copies, as the original workflow wrote"

    def write(self, job: WriteJob) -> Report:
        job.out.mkdir(parents=True, exist_ok=True)
        jobs = [_SplitJob(job.out, split, samples, job.verify)
                for split, samples in job.splits.items() if samples]
        return Report.merged(run_jobs(_write_split, jobs, workers=job.workers,
                                      progress=job.progress))


@hookimpl(trylast=True)
def odplug_register_importers(register):  # type: ignore[no-untyped-def]
    register(TFCsvImporter())


@hookimpl(trylast=True)
def odplug_register_writers(register):  # type: ignore[no-untyped-def]
    register(TFCsvWriter())
