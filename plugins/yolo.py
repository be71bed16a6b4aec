"""Built-in importer and writer for YOLO text labels: the Ultralytics and the darknet layouts.

**Ultralytics**: a ``data.yaml`` (or the one top-level ``*.yaml`` with ``names``) holding
``names`` (a list, or a mapping index -> name; ``nc`` alone gives ``class_0`` ...) and
``train``/``val``/``test`` (``validation`` reads as ``val``). Each is a folder of images (read
recursively), a text file listing image paths, or a list of those, relative to the yaml's
``path:`` when it names an existing folder, else to the yaml's own folder (a yaml moved with its
dataset, or one written on another machine). An entry that does not exist and starts with
``../`` is tried without it, as Ultralytics does, so Roboflow's ``../train/images`` finds
``train/images`` beside the yaml. A split entry that resolves outside the folder given as the
source is one reported skip naming the yaml: odplug imports only what lies inside it. A
single image file as an entry is taken as one image (Ultralytics would read it as a list).
The label of ``.../images/x.jpg`` is ``.../labels/x.txt`` (Ultralytics' rule: the last
``images`` folder becomes ``labels`` and the extension ``.txt``; applied below the source
folder only, so a dataset kept inside a folder called ``images`` never reads labels outside).
List lines are tried as ``./x`` beside the list, as written, against the dataset folder, and
as the longest tail of the path found inside it (paths from another machine or relative to
darknet's working folder).

**darknet** (also CVAT's "YOLO 1.1", LabelImg and Label Studio exports): class names one per
line in ``obj.names``, ``classes.txt`` or the one ``*.names`` file (or the file ``obj.data``'s
``names =`` gives), and one ``.txt`` per image, found by Ultralytics' rule or else beside the
image. Image lists ``train.txt``, ``valid.txt`` (or ``val.txt``), ``test.txt`` at the top, or
those ``obj.data`` names, give the splits; every image in the folder that no list names is
imported with no split (the core then asks for ``--split ratio`` if others have one).

**Detection**: a folder is YOLO when it holds ``data.yaml`` (one that does not parse is
claimed, so its error is shown), a top-level yaml with ``names`` or ``nc`` and a split key, or
``obj.data``; or a class-names file as above and an image with a label file by the rules
above, searched among the first 1000 images only. A yaml or ``obj.data`` file given as the
source is read as is.

**Splits**: from the yaml's ``train``/``val``/``test`` and the darknet lists; an image listed
in two splits is imported into the first (train, val, test order) and the second is the
core's reported duplicate (its label file is read once); images without a list have no split.

**Labels**: ``class cx cy w h``, normalised to the image, or a segmentation line ``class x1 y1
... xn yn`` (n >= 3), imported as its polygon's extents, which is the box Ultralytics derives
from it. Each line is read by its own count (Ultralytics reads every line of a file as a
polygon once one is). Class index i becomes label id i + 1 (id 0 is the TF OD API's
background), and the label map lists every name in index order, unused classes included.
Pixels need the image's size: it is read from the image header, one image at a time, with the
EXIF orientation applied, as the writer rotates such images (`upright_size`: JPEG and PNG are
not decoded; the rarer formats are, as the writer decodes them); an image whose header
cannot be read is a reported skip. Values outside [-0.01, 1.01] (Ultralytics' tolerance) are a
skipped box; within it the core clips the box to the image and reports the change. Every
other problem is reported with the label file and line: wrong field counts, non-numeric or
non-finite values, class indices out of range, zero-size boxes, repeated lines (Ultralytics
drops them too), label files that no image uses. An image without a label file is a
background image, as in Ultralytics, and noted so a misnamed labels folder cannot pass unseen;
an empty one is a background image without a note. A UTF-8 BOM and CRLF line ends are
accepted.

**Writer** (``--to yolo``): ``data.yaml``, ``images/<split>/<file>`` and ``labels/<split>/
<stem>.txt`` (empty for a background image), the Ultralytics layout. The yaml has no ``path:``:
Ultralytics then resolves ``train``/``val``/``test`` against the yaml's own folder, wherever the
dataset is moved (``path: .`` would mean the current directory of whoever trains). ``names`` is
the label map in column order, so ids with gaps (COCO's 1, 3, 7) become indices 0, 1, 2, and
ids 1, 2, 3 when read back. Ultralytics requires a ``val`` split: a warning says when there is
none. Coordinates are written as Python's shortest round-trip float text, so a box survives a
round trip to within float32 rounding. A file keeps its name less the folders that every image
of its split shares, other folders joined with ``_`` (an ``images`` folder below
``images/<split>`` would move its labels by Ultralytics' rule); a name whose label file would
collide with another's gets a ``_2`` suffix, and a re-encoded image the suffix of its format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from odplug import hookimpl
from odplug.components import DatasetWriter, Importer, Verify, WriteJob
from odplug.data.dataset import Box, Sample
from odplug.data.images import ImageProblem, upright_size
from odplug.data.labelmap import LabelMap
from odplug.data.numbers import MAX_NUMBER_CHARS, finite_number
from odplug.data.parallel import default_workers, run_jobs, tick
from odplug.data.prepare import prepare
from odplug.data.report import Report
from odplug.errors import OdplugError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp",
                            "pfm", "heic"})
"""Ultralytics' IMG_FORMATS: the files of a folder it takes for images."""
TOLERANCE = 0.01
"""How far outside [0, 1] Ultralytics accepts a normalised value (its 1% check)."""
SPLIT_KEYS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
LIST_FILES = {"train.txt": "train", "valid.txt": "val", "val.txt": "val", "test.txt": "test"}
DARKNET_DATA_KEYS = {"train": "train", "valid": "val", "test": "test"}
NAMES_FILES = ("obj.names", "classes.txt")
DATA_YAML = ("data.yaml", "data.yml")
_MAX_CONFIG_BYTES = 1 << 20
_DETECT_IMAGES = 1000
"""Images looked at, at most, for one that has a label file when detecting a darknet folder."""


# -- finding the dataset's description ---------------------------------------------------------


@dataclass
class _Dataset:
    """What the yaml or the darknet files say: class names and, per split, where the images are."""

    root: Path
    """The folder given as the source (or holding the file given): nothing outside is read."""
    config: Path
    """The yaml, obj.data or names file: what problems about the splits name."""
    names: list[str]
    darknet: bool
    base: Path
    """What relative split entries start from: the yaml's ``path:`` or folder, or `root`."""
    splits: list[tuple[str, list[str]]]
    """(split, entries as written): folders or list files, as the yaml or obj.data has them."""
    reserved: set[Path] = field(default_factory=set)
    """Text files of the dataset that are not labels: the names file and the image lists."""
    warnings: list[str] = field(default_factory=list)
    """What the user should know about the description itself; logged once, by `read`."""


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _load_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise OdplugError(f"{path}: cannot read it: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise OdplugError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None


def _try_yaml(path: Path) -> object:
    try:
        return _load_yaml(path)
    except OdplugError:
        return None


def _describes_yolo(data: object) -> bool:
    return (isinstance(data, dict) and ("names" in data or "nc" in data)
            and any(key in data for key in SPLIT_KEYS))


def _yaml_files(folder: Path) -> list[Path]:
    """``data.yaml`` when it describes a YOLO dataset or does not parse (its error is then what
    users see); else the small top-level yamls that describe one, the one named like the
    folder preferred (as Ultralytics' find_dataset_yaml does)."""
    for name in DATA_YAML:
        path = folder / name
        if path.is_file():
            try:
                if _describes_yolo(_load_yaml(path)):
                    return [path]
            except OdplugError:
                return [path]
    found = sorted(p for pattern in ("*.yaml", "*.yml") for p in folder.glob(pattern)
                   if p.name not in DATA_YAML and p.is_file()
                   and p.stat().st_size <= _MAX_CONFIG_BYTES and _describes_yolo(_try_yaml(p)))
    named = [p for p in found if p.stem == folder.name]
    return named if len(named) == 1 else found


def _darknet_data(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of a darknet ``obj.data`` file."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as error:
        raise OdplugError(f"{path}: cannot read it: {error.strerror}") from None
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip().lower()] = value.strip()
    return values


def _names_file(folder: Path, obj_data: Path | None) -> Path | None:
    """The darknet class-names file: the one obj.data names, else one at the top by its name."""
    if obj_data is not None:
        named = _darknet_data(obj_data).get("names")
        if named:
            return _resolve_entry(named, obj_data, [folder], folder) or folder / named
    for name in NAMES_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.names"))
    return found[0] if len(found) == 1 else None


def _describe(source: Path) -> _Dataset:
    """The dataset at `source`, or one error line saying why it is not a YOLO dataset."""
    if not source.exists():
        raise OdplugError(f"{source}: no such file or folder")
    root = _absolute(source if source.is_dir() else source.parent)
    if source.is_file():
        if source.name == "obj.data":
            return _describe_darknet(root, _absolute(source))
        return _describe_yaml(root, _absolute(source))
    yamls = _yaml_files(root)
    if len(yamls) > 1:
        raise OdplugError(f"{source}: several dataset yaml files "
                          f"({', '.join(p.name for p in yamls)}); give one as the source")
    if yamls:
        return _describe_yaml(root, yamls[0])
    obj_data = root / "obj.data" if (root / "obj.data").is_file() else None
    named = [root / name for name in DATA_YAML if (root / name).is_file()]
    if named and _names_file(root, obj_data) is None:
        return _describe_yaml(root, named[0])  # says what this data.yaml lacks
    return _describe_darknet(root, obj_data)


def _describe_yaml(root: Path, path: Path) -> _Dataset:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise OdplugError(f"{path}: expected a mapping with names and train/val/test")
    names = _yaml_names(data, path)
    base, warnings = path.parent, []
    given = data.get("path")
    if isinstance(given, str) and given.strip():
        candidate = _absolute(path.parent / given.strip())
        if candidate.is_dir():
            base = candidate
        else:
            warnings.append(f"{path}: path: {given} is not a folder here; train/val/test are "
                            f"read relative to the yaml's folder {path.parent} instead")
    splits: list[tuple[str, list[str]]] = []
    for key, split in SPLIT_KEYS.items():
        value = data.get(key)
        if value is None or (key == "validation" and "val" in data):
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(entry, str) for entry in entries):
            raise OdplugError(f"{path}: {key}: expected a path or a list of paths, got "
                              f"{value!r:.80}")
        splits.append((split, entries))
    if not splits:
        raise OdplugError(f"{path}: no train, val or test entry: nothing says where the images "
                          "are")
    return _Dataset(root, path, names, darknet=False, base=base, splits=splits,
                    reserved={path}, warnings=warnings)


def _yaml_names(data: dict[Any, Any], path: Path) -> list[str]:
    """The class names as Ultralytics reads them: a list, or a mapping of indices 0..n-1;
    scalars become text (``yes`` reads as ``True``, as in Ultralytics); ``nc`` alone gives
    ``class_0``..."""
    names = data.get("names")
    count = data.get("nc")
    if names is None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise OdplugError(f"{path}: no names list (and no class count nc): the class names "
                              "are needed")
        return [f"class_{i}" for i in range(count)]
    if isinstance(names, dict):
        try:
            indexed = {int(key): value for key, value in names.items()}
        except (TypeError, ValueError):
            raise OdplugError(f"{path}: names: the keys must be class indices 0, 1, ...") from None
        if sorted(indexed) != list(range(len(indexed))):
            raise OdplugError(f"{path}: names: the indices must be 0 to {len(indexed) - 1}, "
                              f"got {sorted(indexed)!r:.80}")
        names = [indexed[i] for i in range(len(indexed))]
    if not isinstance(names, list) or not names:
        raise OdplugError(f"{path}: names: expected a list of class names or a mapping "
                          "index -> name")
    if count is not None and count != len(names):
        raise OdplugError(f"{path}: nc is {count} but names lists {len(names)} classes")
    return _checked_names(
        ["" if n is None or isinstance(n, (dict, list)) else str(n) for n in names],
        f"{path}: names")


def _checked_names(names: list[str], where: str) -> list[str]:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name.strip():
            raise OdplugError(f"{where}: class {index} has no name")
        if name in seen:
            raise OdplugError(f"{where}: {name!r} is class {seen[name]} and class {index}; "
                              "class names must be unique")
        seen[name] = index
    return names


def _describe_darknet(root: Path, obj_data: Path | None) -> _Dataset:
    names_path = _names_file(root, obj_data)
    if names_path is None:
        raise OdplugError(f"{root}: no data.yaml with names and train/val/test, and no "
                          "obj.names, classes.txt or *.names: not a YOLO dataset")
    names = _read_names(names_path)
    if obj_data is not None:
        data = _darknet_data(obj_data)
        lists = [(split, [data[key]]) for key, split in DARKNET_DATA_KEYS.items()
                 if data.get(key)]
    else:
        lists = [(split, [name]) for name, split in LIST_FILES.items()
                 if (root / name).is_file()]
    reserved = {names_path, *(root / name for name in LIST_FILES)}
    if obj_data is not None:
        reserved.add(obj_data)
    return _Dataset(root, obj_data or names_path, names, darknet=True, base=root, splits=lists,
                    reserved=reserved)


def _read_names(path: Path) -> list[str]:
    """One class name a line; blank lines at the end are ignored, one in the middle is an error
    (darknet would count it as a class without a name)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise OdplugError(f"{path}: class-names file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OdplugError(f"{path}: cannot read the class names: {error}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise OdplugError(f"{path}: no class names")
    for number, line in enumerate(lines, start=1):
        if not line:
            raise OdplugError(f"{path}:{number}: empty line: class {number - 1} has no name")
    return _checked_names(lines, str(path))


# -- paths -------------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    full, top = os.path.abspath(path), os.path.abspath(root)
    return full == top or full.startswith(os.path.join(top, ""))


def _resolve_entry(entry: str, listed_in: Path, bases: Sequence[Path], root: Path) -> Path | None:
    """The existing file or folder an entry of a list or config names (absolute), or None.

    Tried in order: ``./x`` beside the list (Ultralytics' rule); an absolute path as written;
    a relative one against each of `bases`; then, for paths written on another machine or
    relative to darknet's working folder (``data/obj/x.jpg``, ``/content/ds/images/x.jpg``),
    the longest tail of the path that exists under `root`.
    """
    text = entry.strip().replace("\\", "/")
    if not text:
        return None
    path = Path(text)
    if text.startswith("./"):
        candidates = [listed_in.parent / text[2:]]
    elif path.is_absolute():
        candidates = [path]
    else:
        candidates = [base / path for base in bases]
    parts = path.parts[1:] if path.is_absolute() else path.parts
    candidates += [root.joinpath(*parts[i:]) for i in range(1, len(parts))]
    return next((_absolute(c) for c in candidates if c.exists()), None)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1][1:].lower() in IMAGE_SUFFIXES


def _images_under(folder: Path) -> Iterator[Path]:
    """Every image file below `folder`, in name order, as Ultralytics globs ``**/*.*``."""
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if _is_image(name):
                yield Path(parent) / name


def label_path(image: Path, root: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the
    extension ``.txt``; beside the image when the path has no ``images`` folder. Applied below
    `root` only (Ultralytics applies it to the whole path), so that a dataset kept in a folder
    called ``images`` does not look for its labels outside itself."""
    parts = list(image.relative_to(root).parts)
    folders = parts[:-1]
    if "images" in folders:
        parts[len(folders) - 1 - folders[::-1].index("images")] = "labels"
    return root.joinpath(*parts).with_suffix(".txt")


def _label_for(image: Path, root: Path, darknet: bool) -> Path:
    """Ultralytics' rule; for darknet datasets the file beside the image when that rule's
    file does not exist (darknet tools write labels beside the images)."""
    by_rule = label_path(image, root)
    if darknet and not by_rule.is_file():
        return image.with_suffix(".txt")
    return by_rule


# -- the importer ------------------------------------------------------------------------------


@dataclass
class _Entry:
    image: Path
    split: str | None
    where: str
    """The list line that named the image, or the image itself."""


@dataclass
class _Reading:
    """One read's state: the dataset, and the label files looked for and where."""

    dataset: _Dataset
    report: Report
    label_dirs: set[Path] = field(default_factory=set)
    used: set[Path] = field(default_factory=set)
    read_images: set[Path] = field(default_factory=set)


class YoloImporter(Importer):
    name = "yolo"
    summary = "YOLO: data.yaml + images/ + labels/ (Ultralytics), or obj.names + .txt per image"

    def detect(self, source: Path) -> bool:
        if source.is_file():
            return source.name == "obj.data" or (
                source.suffix.lower() in (".yaml", ".yml") and _describes_yolo(_try_yaml(source)))
        if not source.is_dir():
            return False
        if _yaml_files(source) or (source / "obj.data").is_file():
            return True
        if _names_file(source, None) is None:
            return False
        for count, image in enumerate(_images_under(source)):
            if count >= _DETECT_IMAGES:
                return False
            if _label_for(image, source, darknet=True).is_file():
                return True
        return False

    def label_map(self, source: Path) -> LabelMap:
        """Class index i as label id i + 1, every name in index order."""
        return LabelMap.from_names(_describe(source).names)

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        reading = _Reading(_describe(source), report)
        for warning in reading.dataset.warnings:
            log.warning("%s", warning)
        for entry in _entries(reading):
            sample = _sample(reading, entry)
            if sample is not None:
                yield sample
        _report_orphans(reading)


def _entries(reading: _Reading) -> Iterator[_Entry]:
    """Every image the dataset names, with its split, in split order; for darknet, then every
    other image of the folder, without a split."""
    dataset = reading.dataset
    listed: set[Path] = set()
    for split, entries in dataset.splits:
        for entry in entries:
            for item in _split_entry(reading, split, entry):
                listed.add(item.image)
                yield item
    if dataset.darknet:
        for image in _images_under(dataset.root):
            if image not in listed:
                yield _Entry(image, None, str(image))


def _split_entry(reading: _Reading, split: str, entry: str) -> Iterator[_Entry]:
    dataset, report = reading.dataset, reading.report
    key = f"{split}: {entry}"
    found = _split_source(dataset, entry)
    if found is None:
        report.skip_image(dataset.config, "missing-split", f"{key}: no such file or folder "
                          f"under {dataset.base}; this split's images are left out")
        return
    if not _inside(found, dataset.root):
        report.skip_image(dataset.config, "escapes-dataset", f"{key} is {found}, outside "
                          f"{dataset.root}; odplug imports only what is inside the source "
                          "folder: give a folder that holds the yaml and the images")
        return
    if found.is_dir():
        reading.label_dirs.add(label_path(found / "x.jpg", dataset.root).parent)
        for image in _images_under(found):
            yield _Entry(image, split, str(image))
    elif _is_image(found.name):  # one image named directly: Ultralytics lists only folders
        yield _Entry(found, split, str(found))
    else:
        yield from _listed_images(reading, split, found)


def _split_source(dataset: _Dataset, entry: str) -> Path | None:
    """The folder or list file a split entry names: Ultralytics' rule (against the base, then
    without a leading ``../``), an existing one inside the source preferred."""
    if dataset.darknet:
        return _resolve_entry(entry, dataset.config, [dataset.root], dataset.root)
    text = entry.strip()
    candidates = [_absolute(dataset.base / text)]
    if text.startswith("../"):
        candidates.append(_absolute(dataset.base / text[3:]))
    existing = [c for c in candidates if c.exists()]
    inside = [c for c in existing if _inside(c, dataset.root)]
    return next(iter(inside or existing), None)


def _listed_images(reading: _Reading, split: str, listing: Path) -> Iterator[_Entry]:
    dataset, report = reading.dataset, reading.report
    dataset.reserved.add(listing)
    try:
        text = listing.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        report.skip_image(listing, "unreadable-list", f"cannot read this {split} list: {error}")
        return
    bases = [dataset.base, listing.parent, dataset.root]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{listing}:{number}"
        image = _resolve_entry(line, listing, bases, dataset.root)
        if image is None or not image.is_file():
            report.skip_image(where, "missing-image", f"{line.strip()!r:.120} is not a file "
                              f"under {dataset.root}")
            continue
        yield _Entry(image, split, where)


def _sample(reading: _Reading, entry: _Entry) -> Sample | None:
    dataset, report = reading.dataset, reading.report
    if not _inside(entry.image, dataset.root):  # the core reports it: not worth reading
        return Sample(entry.image, str(entry.image), split=entry.split, origin=entry.where)
    key = Path(os.path.relpath(entry.image, dataset.root)).as_posix()
    label = _label_for(entry.image, dataset.root, dataset.darknet)
    if entry.image in reading.read_images:  # in a second split: the core reports the repeat
        origin = str(label) if label in reading.used else entry.where
        return Sample(entry.image, key, split=entry.split, origin=origin)
    reading.read_images.add(entry.image)
    reading.label_dirs.add(label.parent)
    try:
        width, height = upright_size(entry.image)
    except ImageProblem as problem:
        report.skip_image(entry.where, problem.code, problem.reason)
        reading.used.add(label)
        return None
    if not label.is_file():
        report.note_image(entry.image, "no-label-file", f"no label file {label}: kept as a "
                          "background image (Ultralytics' rule)")
        return Sample(entry.image, key, [], width, height, entry.split, entry.where)
    reading.used.add(label)
    parsed = _read_labels(label, dataset.names, width, height, report)
    if parsed is None:
        return None
    boxes, skipped = parsed
    return Sample(entry.image, key, boxes, width, height, entry.split, str(label), skipped)


def _read_labels(path: Path, names: Sequence[str], width: int, height: int,
                 report: Report) -> tuple[list[Box], int] | None:
    """The boxes of one label file in pixels and how many lines were skipped; None when the
    file cannot be read at all (its image is skipped, not kept as a background image)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        report.skip_image(path, "unreadable-label", f"cannot read it: {error.strerror}")
        return None
    except UnicodeDecodeError as error:
        report.skip_image(path, "malformed-label", f"not UTF-8 text: {error.reason} at byte "
                          f"{error.start}")
        return None
    boxes: list[Box] = []
    skipped = 0
    seen: dict[tuple[float, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        parsed = _parse_line(fields, len(names))
        if isinstance(parsed, tuple):
            code, reason = parsed
            report.skip_box(where, code, reason)
            skipped += 1
            continue
        if parsed.values in seen:
            report.skip_box(where, "duplicate-label", f"repeats line {seen[parsed.values]}; "
                            "Ultralytics drops repeated lines too")
            skipped += 1
            continue
        seen[parsed.values] = number
        x0, y0, x1, y1 = parsed.extents
        boxes.append(Box(names[parsed.index], x0 * width, y0 * height, x1 * width, y1 * height))
    return boxes, skipped


@dataclass(frozen=True)
class _Line:
    index: int
    values: tuple[float, ...]
    extents: tuple[float, float, float, float]


def _parse_line(fields: list[str], classes: int) -> _Line | tuple[str, str]:
    """One label line as a class index and normalised corners, or (code, reason)."""
    count = len(fields)
    if count != 5 and (count < 7 or count % 2 == 0):
        return ("malformed-label", f"{count} values: a box line is 'class cx cy w h' (5), a "
                "polygon line 'class x1 y1 x2 y2 x3 y3 ...' (an odd number, 7 or more)")
    numbers = [finite_number(text) for text in fields]
    if any(number is None for number in numbers):
        bad = next(text for text, n in zip(fields, numbers, strict=True) if n is None)
        return ("malformed-label", f"{bad[:MAX_NUMBER_CHARS]!r} is not a finite number")
    values = tuple(n for n in numbers if n is not None)
    index = values[0]
    if not index.is_integer():
        return ("malformed-label", f"class {fields[0]!r} is not a whole number")
    if not 0 <= index < classes:
        return ("unknown-class", f"class {int(index)} is not one of the {classes} classes "
                f"(0 to {classes - 1})")
    coords = values[1:]
    outside = [v for v in coords if not -TOLERANCE <= v <= 1 + TOLERANCE]
    if outside:
        return ("not-normalised", f"value {outside[0]:g} is outside [0, 1] (by more than "
                f"Ultralytics' {TOLERANCE:g}); YOLO coordinates are fractions of the image size")
    if count == 5:
        cx, cy, w, h = coords
        extents = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:
        xs, ys = coords[0::2], coords[1::2]
        extents = (min(xs), min(ys), max(xs), max(ys))
    if not (extents[2] > extents[0] and extents[3] > extents[1]):
        return ("zero-area", "the box has no area (width or height is 0 or less)")
    return _Line(int(index), values, extents)


def _report_orphans(reading: _Reading) -> None:
    """Label files in the folders labels were looked for in that no image used."""
    ignored = reading.used | reading.dataset.reserved
    for folder in sorted(reading.label_dirs):
        try:
            names = sorted(entry.name for entry in os.scandir(folder)
                           if entry.name.endswith(".txt") and entry.is_file())
        except OSError:
            continue
        for name in names:
            if folder / name not in ignored:
                reading.report.skip_image(
                    folder / name, "label-without-image",
                    "no image of the dataset uses this label file (one with its stem and an "
                    f"image suffix is expected: {', '.join(sorted(IMAGE_SUFFIXES))})")


# -- the writer --------------------------------------------------------------------------------

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
        prepared = prepare(sample, job.verify, report)
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


@hookimpl(trylast=True)
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(YoloImporter())


@hookimpl(trylast=True)
def odplug_register_writers(register: Callable[[DatasetWriter], None]) -> None:
    register(YoloWriter())
