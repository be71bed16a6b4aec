"""Built-in importer and writer for COCO object detection JSON.

**Detection.** The source is a ``.json`` file, or a folder holding one: ``annotations/
instances_*.json`` (every COCO JSON in ``annotations/`` when there is no ``instances_*``
file), any COCO JSON directly in the folder, and Roboflow's ``<split>/_annotations.coco.json``
with the images beside it. A JSON counts as COCO when its top level holds ``images``,
``annotations`` and ``categories``; a cheap look at the name and first bytes comes first, and
each file is parsed once however often detection, the label map and reading ask for it.

**Splits.** Each file is one split, named by a word of its file name (``instances_train2017``
is train; ``val``, ``valid``, ``validation`` are val; ``test`` is test) or, for Roboflow's
``_annotations.coco.json``, by its folder's name. A file without a split word gives samples
without a split, so the core's ratio split applies.

**Images.** ``file_name`` is looked up in ``images/<tag>``, ``<tag>`` (``train2017`` for
``instances_train2017.json``), ``images/<split>``, ``<split>``, ``images/`` and the folder
itself, beside the JSON, above an ``annotations/`` folder and at the dataset root. A
``width``/``height`` in the JSON is checked by the core against the real image; without one the
header alone decides. Images listed without annotations are kept as background images. An
image that no file lists, in a folder of listed images or in a split folder without its
annotation file (Roboflow's ``valid/`` without ``_annotations.coco.json``, COCO's
``test2017/``), is skipped and reported by name (``no-annotation``): not annotated is not the
same as annotated with nothing.

**Classes.** Category ids are kept as label ids, gaps included, and every category is a class
even when no box uses it. The TF Object Detection API reserves id 0 for the background, so a
category with id 0 is taken as follows: named ``background`` (any case), its boxes are left out,
each reported as ``background-class``, and it is no class; any other name gets the first free
id (the largest id plus 1), said once as a note on the JSON file.

**Boxes.** ``bbox`` is ``[x, y, width, height]`` in pixels. An annotation without a bbox (or an
empty one) gets the box around its segmentation: a polygon's extents, or an RLE mask's box
through pycocotools. ``iscrowd: 1`` regions become crowd boxes (`Box.crowd`), which the records
keep as ``image/object/is_crowd`` and evaluation ignores, as pycocotools does; the COCO
writer keeps them as ``iscrowd: 1``, while YOLO and tf_csv, which cannot mark a crowd, leave
them out, each reported (``crowd-region``, see `odplug.data.prepare`). Every annotation
that cannot be used (unknown image or category, malformed bbox) is reported with its file and
index; a file that is not COCO JSON at all is one error line naming it.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from odplug import hookimpl
from odplug.components import DatasetWriter, Importer, WriteJob
from odplug.data.parallel import run_jobs, tick
from odplug.data.prepare import copy_image, prepare
from odplug.data.unlisted import report_unlisted
from odplug.dataset_report import Report, Skip
from odplug.errors import OdplugError
from odplug.labels import LabelMap, LabelMapItem
from odplug.samples import Box, Sample

KEYS = ("images", "annotations", "categories")
ROBOFLOW_FILE = "_annotations.coco.json"
_SNIFF_BYTES = 4096
_KEY_PATTERN = re.compile(rb'"(?:images|annotations|categories|info|licenses)"\s*:')
_SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}
_MAX_ID = 2**31 - 1
Bounds = tuple[float, float, float, float]


def split_of(path: Path, *, use_folder: bool = False) -> str | None:
    """The split a COCO file holds, from a word of its name (or its folder's, for Roboflow)."""
    names = [path.name.removesuffix(".json")] + ([path.parent.name] if use_folder else [])
    for name in names:
        for word in re.split(r"[^a-z]+", name.lower()):
            if word in _SPLIT_WORDS:
                return _SPLIT_WORDS[word]
    return None


def _named(path: Path) -> bool:
    """Whether the file name alone says COCO: ``instances_*.json`` or Roboflow's file."""
    return path.name.startswith("instances_") and path.suffix == ".json" or \
        path.name == ROBOFLOW_FILE


def _sniff(path: Path) -> bool:
    """Whether the first bytes look like a JSON object with a COCO top-level key."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and bool(
        _KEY_PATTERN.search(head))


@dataclass
class _Source:
    """One COCO file of a dataset and what its name says."""

    path: Path
    split: str | None


class _Cache:
    """Parsed JSON files by path, modification time and size, each parsed at most once.

    Detection, the label map and reading all need the same files, and a COCO file of the
    full dataset is hundreds of megabytes; `take` hands a file over to the reader and forgets
    it, so nothing is held once it is read.
    """

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int, int], Any] = {}

    @staticmethod
    def _key(path: Path) -> tuple[str, int, int]:
        stat = path.stat()
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)

    def get(self, path: Path) -> Any:
        """The parsed file; an `OdplugError` naming it when it cannot be read as JSON."""
        try:
            key = self._key(path)
        except OSError as error:
            raise OdplugError(f"{path}: cannot read it: {error.strerror or error}") from None
        if key not in self._parsed:
            for old in [k for k in self._parsed if k[0] == key[0]]:
                del self._parsed[old]
            self._parsed[key] = _parse(path)
        found = self._parsed[key]
        if isinstance(found, OdplugError):
            raise OdplugError(str(found))
        return found

    def take(self, path: Path) -> Any:
        found = self.get(path)
        self._parsed.pop(self._key(path), None)
        return found


def _parse(path: Path) -> Any:
    """The JSON value of `path`, or the `OdplugError` saying why there is none (kept in the
    cache, so a broken file is not parsed again for the next question)."""
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        return OdplugError(f"{path}: cannot read it: {error.strerror or error}")
    except (ValueError, RecursionError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        return OdplugError(f"{path}: not valid JSON: {text}")


def _is_coco(value: Any) -> bool:
    return isinstance(value, dict) and all(key in value for key in KEYS)


class CocoImporter(Importer):
    name = "coco"
    summary = "COCO JSON: annotations/instances_<split>.json, any images+annotations+categories " \
              "file, Roboflow's <split>/_annotations.coco.json"

    def __init__(self) -> None:
        self._cache = _Cache()

    def detect(self, source: Path) -> bool:
        try:
            return bool(self._sources(source))
        except OdplugError:
            return False

    def label_map(self, source: Path) -> LabelMap:
        return self._classes(self._sources(source, required=True)).label_map

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        sources = self._sources(source, required=True)
        root = source if source.is_dir() else source.parent
        classes = self._classes(sources)
        listed: list[Path] = []
        for item in sources:
            data = self._coco(item.path, take=True)
            if classes.renamed and classes.renamed[0] == item.path:
                report.note_image(item.path, "category-id-0", classes.renamed[1])
            yield from _read_file(item, data, root, classes, report, listed)
        _report_unlisted(root, sources, listed, report, split_folders=source.is_dir())

    def _sources(self, source: Path, *, required: bool = False) -> list[_Source]:
        """The COCO files of `source`, in split order; none (or an error if `required`).

        Files named as COCO are `required` whatever their first bytes, so that reading one that
        is broken says why instead of finding no dataset; any other JSON must hold COCO.
        """
        if source.is_file():
            if required or _sniff(source) and (_named(source) or self._generic([source])):
                return [_Source(source, split_of(source))]
            return []
        if not source.is_dir():
            raise OdplugError(f"{source}: no such file or folder")
        found: list[_Source] = []
        annotations = source / "annotations"
        if annotations.is_dir():
            instances = sorted(annotations.glob("instances_*.json"))
            found += [_Source(p, split_of(p)) for p in instances if required or _sniff(p)]
            if not instances:
                found += self._generic(sorted(annotations.glob("*.json")))
        found += self._generic(sorted(source.glob("*.json")))
        for path in sorted(source.glob(f"*/{ROBOFLOW_FILE}")):
            if required or _sniff(path):
                found.append(_Source(path, split_of(path, use_folder=True)))
        if required and not found:
            raise OdplugError(
                f"{source}: no COCO JSON found (annotations/instances_*.json, a *.json with "
                f"images, annotations and categories, or <split>/{ROBOFLOW_FILE})")
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(found, key=lambda s: order.get(s.split or "", 3))

    def _generic(self, paths: list[Path]) -> list[_Source]:
        """The files among `paths` whose content is COCO (parsed, and kept for reading)."""
        found = []
        for path in paths:
            if not _sniff(path):
                continue
            try:
                if _is_coco(self._cache.get(path)):
                    found.append(_Source(path, split_of(path)))
            except OdplugError:
                continue
        return found

    def _coco(self, path: Path, *, take: bool = False) -> dict[str, Any]:
        """The parsed file with its top level checked; one error line when it is not COCO."""
        data = self._cache.take(path) if take else self._cache.get(path)
        if not isinstance(data, dict):
            raise OdplugError(f"{path}: not COCO JSON: the top level is a "
                              f"{type(data).__name__}, not an object with {', '.join(KEYS)}")
        for key in KEYS:
            if not isinstance(data.get(key), list):
                what = "missing" if key not in data else f"a {type(data[key]).__name__}"
                raise OdplugError(f"{path}: not COCO JSON: {key!r} is {what}, not a list")
        return data

    def _classes(self, sources: list[_Source]) -> _Classes:
        """The categories of every file, checked to agree, with the id-0 rule applied."""
        ids: dict[str, tuple[int, Path]] = {}
        names: dict[int, tuple[str, Path]] = {}
        for item in sources:
            for id_, name in _categories(self._coco(item.path), item.path).items():
                if name in ids and ids[name][0] != id_:
                    raise OdplugError(f"{item.path}: category {name!r} has id {id_} here but "
                                      f"id {ids[name][0]} in {ids[name][1]}; give each class "
                                      "one id in every split file")
                if id_ in names and names[id_][0] != name:
                    raise OdplugError(f"{item.path}: category id {id_} is {name!r} here but "
                                      f"{names[id_][0]!r} in {names[id_][1]}; give each class "
                                      "one id in every split file")
                ids.setdefault(name, (id_, item.path))
                names.setdefault(id_, (name, item.path))
        classes = _Classes({id_: name for id_, (name, _) in names.items()})
        if 0 in names:
            name, path = names[0]
            if name.lower() == "background":
                classes.background = name
                del classes.ids[0]
            else:
                new = max(names) + 1
                classes.ids[new] = classes.ids.pop(0)
                classes.renamed = (path, (
                    f"category {name!r} has id 0, which TF Object Detection API label maps "
                    f"keep for the background; it gets the first free id, {new}"))
        return classes


@dataclass
class _Classes:
    ids: dict[int, str]
    """Label id to class name, as the label map will have them (id 0 moved or dropped)."""
    background: str | None = None
    """The name of the id-0 background category whose boxes are left out, if there is one."""
    renamed: tuple[Path, str] | None = None
    """The file that gave id 0 to a real class, and the note saying which id it got."""

    @property
    def label_map(self) -> LabelMap:
        return LabelMap((LabelMapItem(i, n) for i, n in self.ids.items()), origin="COCO")


def _report_unlisted(root: Path, sources: list[_Source], listed: list[Path], report: Report,
                     *, split_folders: bool) -> None:
    """Report the images of the dataset folder `root` that no COCO file lists: beside listed
    ones, and with `split_folders` in a split folder (``valid/``, ``test2017/``,
    ``images/test/``) without its annotation file (Roboflow's ``valid/`` that lost its
    ``_annotations.coco.json``)."""
    files = ", ".join(_shown(s.path, root) for s in sources)
    report_unlisted(root, [p.parent for p in listed], listed, report,
                    f"no COCO file lists it ({files})")
    if not split_folders:
        return
    folders = {os.path.normpath(p.parent) for p in listed}
    for base in (root, root / "images"):
        children = sorted(p for p in base.iterdir() if p.is_dir()
                          and not p.name.startswith(".")) if base.is_dir() else []
        for child in children:
            if split_of(child) and os.path.normpath(child) not in folders:
                report_unlisted(root, [child], [], report,
                                f"split folder {_shown(child, root)}/ without its annotation "
                                f"file: none of {files} lists its images")


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if root in path.parents else str(path)


def _categories(data: dict[str, Any], path: Path) -> dict[int, str]:
    """Category id to name of one file; one error line for a category that cannot be a class."""
    found: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for index, item in enumerate(data["categories"]):
        where = f"{path}: categories[{index}]"
        if not isinstance(item, dict):
            raise OdplugError(f"{where} is a {type(item).__name__}, not an object with id, name")
        id_, name = item.get("id"), item.get("name")
        if not _is_int(id_) or not 0 <= id_ <= _MAX_ID:
            raise OdplugError(f"{where}: id {reprlib.repr(id_)} is not a whole number from 0 "
                              f"to {_MAX_ID}")
        if not isinstance(name, str) or not name.strip():
            raise OdplugError(f"{where}: name {reprlib.repr(name)} is not a class name")
        if found.get(id_, name) != name:
            raise OdplugError(f"{where}: id {id_} is {found[id_]!r} and {name!r}")
        if by_name.get(name, id_) != id_:
            raise OdplugError(f"{where}: categories {by_name[name]} and {id_} are both named "
                              f"{name!r}")
        found[id_] = name
        by_name[name] = id_
    return found


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _numbers(values: object, count: int | None = None) -> list[float] | None:
    """A JSON list of finite numbers (of `count` items if given) as floats; None otherwise."""
    if not isinstance(values, list) or count is not None and len(values) != count:
        return None
    numbers = [_number(value) for value in values]
    return None if None in numbers else numbers  # type: ignore[return-value]


def _size(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 1 and number.is_integer() else None


@dataclass
class _Image:
    file_name: str
    origin: str
    width: int | None
    height: int | None
    boxes: list[Box] = field(default_factory=list)
    skipped: int = 0


def _read_file(item: _Source, data: dict[str, Any], root: Path, classes: _Classes,
               report: Report, listed: list[Path]) -> Iterator[Sample]:
    """The samples of one COCO file; the path of every image it lists goes to `listed`."""
    path = item.path
    names = _categories(data, path)
    repeated: list[str] = []
    images = _images(data["images"], path, report, repeated)
    for index, ann in enumerate(data["annotations"]):
        where = f"{path}:annotations[{index}]"
        if not isinstance(ann, dict):
            report.skip_box(where, "malformed-annotation",
                            f"a {type(ann).__name__}, not an object with image_id and bbox")
            continue
        image_id = ann.get("image_id")
        image = images.get(image_id) if isinstance(image_id, (int, str)) else None
        if image is None or isinstance(image_id, bool):
            report.skip_box(where, "unknown-image",
                            f"image_id {reprlib.repr(image_id)} is not the id of an image")
            continue
        category = ann.get("category_id")
        name = names.get(category) if _is_int(category) else None
        try:
            if name is None:
                raise Skip("unknown-category", f"category_id {reprlib.repr(category)} is not "
                            "the id of a category")
            if category == 0 and classes.background is not None:
                raise Skip("background-class", f"category 0 {name!r}: id 0 is the "
                           "background, not a class")
            xmin, ymin, xmax, ymax = _bounds(ann)
        except Skip as skip:
            report.skip_box(where, skip.code, f"{image.file_name}: {skip.reason}")
            image.skipped += 1
            continue
        image.boxes.append(Box(name, xmin, ymin, xmax, ymax, crowd=ann.get("iscrowd") in (1, True)))
    folders = _image_folders(path, root, item.split)
    chosen = _first_folder(folders, next(iter(images.values()), None))
    listed.extend(chosen / name for name in repeated)
    for image in images.values():
        found = chosen / image.file_name
        if not found.is_file():
            found = next((f / image.file_name for f in folders if (f / image.file_name).is_file()),
                         found)
        listed.append(found)
        yield Sample(image=found, key=_key(found, root), boxes=image.boxes, width=image.width,
                     height=image.height, split=item.split, origin=image.origin,
                     skipped_boxes=image.skipped)


def _images(items: list[Any], path: Path, report: Report,
            repeated: list[str]) -> dict[int | str, _Image]:
    """The images of one file by id, in the order listed; bad entries reported and left out,
    the file names of those whose id is taken added to `repeated` (they are listed, and
    reported as such, not as images no file lists)."""
    images: dict[int | str, _Image] = {}
    first: dict[int | str, int] = {}
    for index, item in enumerate(items):
        where = f"{path}:images[{index}]"
        if not isinstance(item, dict):
            report.skip_image(where, "malformed-image",
                              f"a {type(item).__name__}, not an object with id and file_name")
            continue
        id_, file_name = item.get("id"), item.get("file_name")
        if not isinstance(id_, (int, str)) or isinstance(id_, bool):
            report.skip_image(where, "malformed-image", f"id {reprlib.repr(id_)} is not a "
                              "number or text")
            continue
        if not isinstance(file_name, str) or not file_name.strip() or "\x00" in file_name:
            report.skip_image(where, "malformed-image",
                              f"file_name {reprlib.repr(file_name)} is not a file name")
            continue
        if id_ in images:
            repeated.append(file_name)
            report.skip_image(where, "duplicate-image-id", f"id {id_!r} ({file_name}) is already "
                              f"images[{first[id_]}] ({images[id_].file_name}), which keeps "
                              "its annotations")
            continue
        width, height = _size(item.get("width")), _size(item.get("height"))
        if width is None or height is None:
            width = height = None
        images[id_] = _Image(file_name, where, width, height)
        first[id_] = index
    return images


def _bounds(ann: dict[str, Any]) -> Bounds:
    """The box of one annotation as corners: its bbox, or its segmentation's extents."""
    bbox = ann.get("bbox")
    if bbox is None or bbox == []:
        return _segmentation_bounds(ann.get("segmentation"))
    numbers = _numbers(bbox, 4)
    if numbers is None:
        raise Skip("malformed-bbox", f"bbox {reprlib.repr(bbox)} is not four finite numbers "
                    "[x, y, width, height]")
    x, y, w, h = numbers
    if w <= 0 or h <= 0:
        raise Skip("malformed-bbox", f"bbox {reprlib.repr(bbox)} has no area (width and "
                    "height must be above 0)")
    return (x, y, x + w, y + h)


def _segmentation_bounds(segmentation: object) -> Bounds:
    if segmentation is None or segmentation == []:
        raise Skip("no-bbox", "has neither a bbox nor a segmentation to take one from")
    if isinstance(segmentation, dict):
        return _rle_bounds(segmentation)
    if not isinstance(segmentation, list) or not all(isinstance(p, list) for p in segmentation):
        raise Skip("malformed-segmentation", f"segmentation {reprlib.repr(segmentation)} is "
                    "neither polygons [[x, y, ...]] nor an RLE object")
    xs: list[float] = []
    ys: list[float] = []
    for polygon in segmentation:
        numbers = _numbers(polygon)
        if numbers is None or len(numbers) < 6 or len(numbers) % 2:
            raise Skip("malformed-segmentation", f"polygon {reprlib.repr(polygon)} is not "
                        "3 or more x, y pairs of finite numbers")
        xs += numbers[0::2]
        ys += numbers[1::2]
    return _nonempty((min(xs), min(ys), max(xs), max(ys)))


def _rle_bounds(rle: dict[str, Any]) -> Bounds:
    """The box of an RLE mask, through pycocotools (which odplug's [tf] extra installs)."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_size(v) for v in size)
            and (isinstance(counts, str) and counts.isascii()
                 or isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts))):
        raise Skip("malformed-segmentation", f"RLE {reprlib.repr(rle)} has no size [h, w] and "
                    "counts")
    try:
        from pycocotools import mask
    except ImportError:
        raise Skip("rle-needs-pycocotools", "its box is in an RLE mask, which needs the "
                    "pycocotools package (pip install odplug[tf])") from None
    height, width = (int(v) for v in size)
    try:
        if isinstance(counts, list):
            encoded = mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        else:
            encoded = {"size": [height, width], "counts": counts.encode()}
        x, y, w, h = (float(v) for v in mask.toBbox(encoded))
    except Exception as error:  # pycocotools raises what its C code meets, untyped
        raise Skip("malformed-segmentation", f"RLE mask cannot be decoded: {error}") from None
    return _nonempty((x, y, x + w, y + h))


def _nonempty(bounds: Bounds) -> Bounds:
    if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
        raise Skip("empty-segmentation", "its segmentation covers no area")
    return bounds


def _image_folders(path: Path, root: Path, split: str | None) -> list[Path]:
    """Where the images of the COCO file `path` may be, most specific first."""
    bases = [path.parent]
    if path.parent.name == "annotations":
        bases.append(path.parent.parent)
    bases.append(root)
    tags = [t for t in (path.name.removesuffix(".json").removeprefix("instances_"), split)
            if t and t != ROBOFLOW_FILE.removesuffix(".json")]
    folders: list[Path] = []
    for base in bases:
        for tag in tags:
            folders += [base / "images" / tag, base / tag]
        folders += [base / "images", base]
    return list(dict.fromkeys(folders))


def _first_folder(folders: list[Path], first: _Image | None) -> Path:
    """The folder holding the first image (the others are most likely there too)."""
    if first is not None:
        for folder in folders:
            if (folder / first.file_name).is_file():
                return folder
    return next((f for f in folders if f.is_dir() and f.name == "images"), folders[0])


def _key(image: Path, root: Path) -> str:
    """The image path below the dataset root: unique, and a stable `image/source_id`."""
    relative = Path(os.path.relpath(image, root))
    return str(image) if relative.parts[:1] == ("..",) else relative.as_posix()


# -- the writer ----------------------------------------------------------------------------------


@dataclass
class _SplitJob:
    out: Path
    split: str
    samples: list[Sample]
    verify: str
    categories: list[tuple[int, str]]


def _file_name(sample: Sample, names: Counter[str], used: set[str]) -> str:
    """The image's name in ``images/<split>/``: its own name, or its key where two images of
    the split share a name, or, where even that is taken or unsafe, a numbered name."""
    name = sample.file_name
    if names[name] > 1:
        parts = Path(sample.key).parts
        if parts and not Path(sample.key).is_absolute() and ".." not in parts:
            name = sample.key
    number = len(used)
    while name in used:
        name, number = f"{number}_{sample.file_name}", number + 1
    used.add(name)
    return name


def _write_split(job: _SplitJob) -> Report:
    """One split's JSON and image copies, straight under their final names: `job.out` is the
    staging folder the core swaps in whole once the import has succeeded."""
    report = Report()
    ids = {name: id_ for id_, name in job.categories}
    folder = job.out / "images" / job.split
    names = Counter(sample.file_name for sample in job.samples)
    used: set[str] = set()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for sample in job.samples:
        prepared = prepare(sample, job.verify, report)  # type: ignore[arg-type]
        if prepared is not None:
            name = copy_image(prepared, folder, _file_name(sample, names, used))
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": name, "width": prepared.image.width,
                           "height": prepared.image.height})
            for box in prepared.boxes:
                w, h = float(box.xmax - box.xmin), float(box.ymax - box.ymin)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id,
                    "category_id": ids[box.label],
                    "bbox": [float(box.xmin), float(box.ymin), w, h], "area": w * h,
                    "iscrowd": int(box.crowd), "segmentation": [],
                })
            report.count_image(job.split, [box.label for box in prepared.boxes])
        tick()
    document = {
        "info": {"description": f"{job.split} split written by odplug"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": id_, "name": name, "supercategory": ""}
                       for id_, name in job.categories],
    }
    (job.out / "annotations").mkdir(parents=True, exist_ok=True)
    with (job.out / "annotations" / f"instances_{job.split}.json").open(
            "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False)
    return report


class CocoWriter(DatasetWriter):
    name = "coco"
    summary = "COCO detection JSON: annotations/instances_<split>.json + images/<split>/ copies"

    def write(self, job: WriteJob) -> Report:
        job.out.mkdir(parents=True, exist_ok=True)
        categories = [(item.id, item.name) for item in job.label_map.items]
        jobs = [_SplitJob(job.out, split, samples, job.verify, categories)
                for split, samples in job.splits.items() if samples]
        return Report.merged(run_jobs(_write_split, jobs, workers=job.workers,
                                      progress=job.progress))


@hookimpl(trylast=True)
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(CocoImporter())


@hookimpl(trylast=True)
def odplug_register_writers(register: Callable[[DatasetWriter], None]) -> None:
    register(CocoWriter())
