"""Pascal VOC: one ``<annotation>`` XML file per image, as labelImg, CVAT, Label Studio and
Roboflow write it and as the VOC devkit ships.

Layouts, all detected:

- the devkit: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/{train,val,test}.txt``,
  given as the year folder or as a folder holding it (``VOC2012/``, ``VOCdevkit/VOC2007/``;
  several years under one folder are imported together, keys prefixed by the year folder);
- ``annotations/`` + ``images/`` (the raccoon dataset), ``Annotations/`` + ``images/`` (Label
  Studio's export, MediaPipe Model Maker's test data);
- one folder holding each image with its XML beside it (``img.jpg`` + ``img.xml``), or split
  folders of those (Roboflow's export: ``train/``, ``valid/``, ``test/``).

**Detection**: the folder (or a child, or a ``VOCdevkit*`` grandchild) has ``Annotations/`` or
``annotations/`` with an ``.xml`` file whose root element is ``<annotation>``; or the folder
itself, or a ``train``/``valid``/``val``/``test`` folder in it, holds an ``.xml`` file with such
a root beside an image of the same stem.

**Splits**: ``ImageSets/Main/train.txt``, ``val.txt`` and ``test.txt`` name the image ids (XML
stems) of each split; ``trainval.txt`` counts as train only where neither train.txt nor
val.txt exists. Per-class lists (``dog_train.txt``) are not split lists. An id in two lists is
skipped and reported, so is an id with no XML, and an XML in no list is reported by the core as
having no split while others have one. Split folders of images with their XML name the split
of what they hold. No split list or folder at all: the core's ratio split.

The image of an XML is found from its ``<folder>``, ``<filename>`` and ``<path>`` (only the file
name of an absolute path: it was the annotator's machine), in that folder, ``JPEGImages/``,
``images/``, beside the XML and the dataset folder; then as the XML's stem with a common image
extension in the same folders. Never outside the dataset: a ``<filename>`` that leads out
(``../../etc/hostname``) is not followed, and reported. An XML whose ``<filename>`` names the
image of another XML (``a.xml`` saying ``b.jpg`` beside ``b.xml``: copied, or its image
renamed) annotates the image of its own name, with a note; without one it is skipped, naming
both. Images in the image folders that no XML annotates (the image of ``a.xml`` included, when
``a.xml`` names another image) are skipped and reported once each, and so are the images of a
split folder without any XML: in VOC an image without its annotation file is not annotated,
which is not the same as annotated with nothing (an XML without ``<object>`` is such a
background image, and kept).

**Coordinates** are taken as written, as pixel edges, like tf_csv. The devkit's numbers are
1-based pixel indices (``xmin=1`` is the first column); the TF Object Detection API's
``create_pascal_tf_record.py`` and MediaPipe Model Maker also divide them by the image size as
they are, and the raccoon dataset's XML and its CSV hold the same numbers, so VOC and tf_csv
give the same boxes for it. The difference is at most one pixel per side. ``difficult`` and
``truncated`` are kept on each box; ``<size>`` goes to the sample and is checked against the
real image by the core (a size of 0, as some tools write when they do not know it, counts as
none).

The XML is parsed with expat into an ElementTree, refusing any document with a DTD: entity
declarations are how an XML file expands to gigabytes (the billion laughs) or reads other files,
and a VOC annotation never needs one. Each file is read, turned into a sample and let go, so
memory holds file names, never a dataset's annotations or images.
"""

from __future__ import annotations

import os
import xml.parsers.expat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from xml.etree.ElementTree import Element, TreeBuilder

from odplug import hookimpl
from odplug.components import Importer
from odplug.data.images import IMAGE_SUFFIXES
from odplug.data.numbers import finite_number, shown
from odplug.data.unlisted import NO_ANNOTATION, image_files, report_unlisted
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from odplug.samples import Box, Sample

ANNOTATION_FOLDERS = ("Annotations", "annotations")
IMAGE_FOLDERS = ("JPEGImages", "images")
SPLIT_LISTS = ("train", "val", "test")
FOLDER_SPLITS = {"train": "train", "valid": "val", "val": "val", "validation": "val",
                 "test": "test"}
"""Split folders of images with their XML beside them, as Roboflow exports VOC."""
CORNERS = ("xmin", "ymin", "xmax", "ymax")
_DETECT_FILES = 5
"""How many XML files detection parses, at most, to find one VOC annotation."""


@dataclass
class _Root:
    """One VOC dataset folder: where its XML files are, where its images are, its key prefix."""

    folder: Path
    annotations: Path
    images: Path
    prefix: str
    split: str | None = None
    """The split a folder's name gives (Roboflow's ``train/``, ``valid/``, ``test/``), used for
    every XML that no ``ImageSets`` list places."""


class VocImporter(Importer):
    name = "voc"
    summary = ("Pascal VOC XML: Annotations/ + JPEGImages/ (+ ImageSets/Main splits), "
               "annotations/ + images/, or XML beside each image")

    def detect(self, source: Path) -> bool:
        return source.is_dir() and bool(_roots(source, sniff=True))

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        if not source.is_dir():
            raise OdplugError(f"{source}: not a folder; a Pascal VOC dataset is a folder with "
                              "Annotations/*.xml, or images with their .xml beside them")
        roots = _roots(source, sniff=False)
        if not roots:
            raise OdplugError(
                f"{source}: no Pascal VOC annotations: expected Annotations/ or annotations/ "
                "with <annotation> .xml files (here, in VOC20xx/ or VOCdevkit/VOC20xx/), or "
                "images with an .xml of the same name beside each"
            )
        base = os.path.join(os.path.abspath(source), "")
        for root in roots:
            yield from _read_root(root, base, report)
        if roots[0].split is not None:
            _report_bare_split_folders(source, roots, report)


@hookimpl(trylast=True)
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(VocImporter())


def _roots(source: Path, *, sniff: bool) -> list[_Root]:
    """The VOC dataset folders of `source`: itself, else its children and the years of a
    ``VOCdevkit*`` child; a folder of images with XML beside them when none of those.

    With `sniff` (detection) an annotation folder counts only when one of its first XML files
    is a VOC annotation; without (the user said ``--format voc``) any XML file will do, so a
    dataset whose first files are broken is read and each broken file reported."""
    own = _annotated_root(source, "", sniff)
    if own is not None:
        return [own]
    found = []
    for child in _subfolders(source):
        root = _annotated_root(child, child.name + "/", sniff)
        if root is not None:
            found.append(root)
        elif child.name.lower().startswith("vocdevkit"):
            for year in _subfolders(child):
                root = _annotated_root(year, f"{child.name}/{year.name}/", sniff)
                if root is not None:
                    found.append(root)
    if found:
        return found
    if _has_voc_xml(source, sniff, beside_images=True):
        return [_Root(source, source, source, "")]
    return [_Root(child, child, child, child.name + "/", FOLDER_SPLITS[child.name.lower()])
            for child in _subfolders(source) if child.name.lower() in FOLDER_SPLITS
            and _has_voc_xml(child, sniff, beside_images=True)]


def _report_bare_split_folders(source: Path, roots: list[_Root], report: Report) -> None:
    """The images of a split folder (``valid/``) that holds no XML, beside split folders that
    do: each is reported, not left out without a word."""
    read = {root.folder for root in roots}
    for child in _subfolders(source):
        if child.name.lower() in FOLDER_SPLITS and child not in read:
            report_unlisted(source, [child], [], report,
                            f"split folder {child.name}/ holds no VOC XML beside its images, "
                            "unlike the others; an image without its annotation file is not "
                            "annotated")


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(folder / e.name for e in entries
                          if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _annotated_root(folder: Path, prefix: str, sniff: bool) -> _Root | None:
    for name in ANNOTATION_FOLDERS:
        annotations = folder / name
        if annotations.is_dir() and _has_voc_xml(annotations, sniff):
            images = next((folder / n for n in IMAGE_FOLDERS if (folder / n).is_dir()), folder)
            return _Root(folder, annotations, images, prefix)
    return None


def _has_voc_xml(folder: Path, sniff: bool, *, beside_images: bool = False) -> bool:
    """Whether `folder` holds ``.xml`` files, and with `sniff` whether one of the first few
    (by name) has the root ``<annotation>``; with `beside_images`, only files with an image of
    the same stem count. A few, not one: a stray broken file must not hide a dataset, nor must
    detection read every file of a large one."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
    except OSError:
        return False
    stems = {os.path.splitext(n)[0] for n in names if _is_image(n)}
    candidates = [n for n in names if n.lower().endswith(".xml")
                  and (not beside_images or n[: -len(".xml")] in stems)]
    if not sniff:
        return bool(candidates)
    for name in candidates[:_DETECT_FILES]:
        try:
            if _parse(folder / name).tag == "annotation":
                return True
        except (_BadXml, OSError):
            continue
    return False


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _xml_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".")
                          and e.name.lower().endswith(".xml") and e.is_file())
    except OSError as error:
        raise OdplugError(f"{folder}: cannot list the annotation files: {error}") from None


def _read_root(root: _Root, base: str, report: Report) -> Iterator[Sample]:
    xml_names = _xml_files(root.annotations)
    stems = {name[: -len(".xml")] for name in xml_names}
    splits = _split_lists(root, stems, report)
    finder = _ImageFinder(root, base, stems)
    used: set[str] = set()
    elsewhere: dict[str, str] = {}
    for name in xml_names:
        path = root.annotations / name
        stem = name[: -len(".xml")]
        if stem in splits.conflicts:
            continue
        sample = _read_annotation(path, finder, report)
        if sample is not None:
            used.add(str(sample.image))
            if sample.image.stem != stem:
                elsewhere[stem] = sample.image.name
            sample.split = splits.of.get(stem, root.split)
            yield sample
    for folder in dict.fromkeys([root.images, *(root.folder / n for n in IMAGE_FOLDERS)]):
        _report_unannotated(folder, root, stems, used, elsewhere, report)


@dataclass
class _Splits:
    of: dict[str, str] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)


def _split_lists(root: _Root, stems: set[str], report: Report) -> _Splits:
    """The split of each id from ``ImageSets/Main``; ids in two lists and ids without an XML
    reported here, once each."""
    main = root.folder / "ImageSets" / "Main"
    lists = {name: main / f"{name}.txt" for name in SPLIT_LISTS if (main / f"{name}.txt").is_file()}
    if not ({"train", "val"} & lists.keys()) and (main / "trainval.txt").is_file():
        lists["train"] = main / "trainval.txt"
    splits = _Splits()
    where: dict[str, str] = {}
    for split, path in lists.items():
        for number, line in enumerate(_lines(path), start=1):
            words = line.split()
            if not words:
                continue
            image_id = words[0]
            here = f"{path}:{number}"
            if image_id in splits.conflicts:
                continue
            if image_id not in stems:
                report.skip_image(here, "missing-annotation",
                                  f"{split} id {image_id!r} has no {root.annotations.name}/"
                                  f"{image_id}.xml")
            elif image_id in splits.of and splits.of[image_id] != split:
                splits.conflicts.add(image_id)
                report.skip_image(root.annotations / f"{image_id}.xml", "conflicting-split",
                                  f"listed for {splits.of[image_id]} ({where[image_id]}) and "
                                  f"for {split} ({here}); keep it in one list")
            else:
                splits.of[image_id] = split
                where[image_id] = here
    return splits


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise OdplugError(f"{path}: cannot read the split list: {error}") from None


ANNOTATION_SKIPPED = "annotation-skipped"
"""The note on an image whose XML was skipped: the skip is counted once, under the XML."""


def _report_unannotated(folder: Path, root: _Root, stems: set[str], used: set[str],
                        elsewhere: dict[str, str], report: Report) -> None:
    """Each image of `folder` that no XML annotates, reported by name; `elsewhere` holds the
    XML stems whose ``<filename>`` named an image of another name (stem to that name)."""
    for image in image_files(folder):
        stem = image.stem
        xml = f"{root.annotations.name}/{stem}.xml"
        if str(image) in used:
            continue
        if stem in elsewhere:
            report.skip_image(image, NO_ANNOTATION,
                              f"no VOC XML annotates this image: {xml} annotates "
                              f"{elsewhere[stem]!r}, which its <filename> names")
        elif stem not in stems:
            report.skip_image(image, NO_ANNOTATION,
                              f"no VOC XML annotates this image (looked for {xml}); an image "
                              "without its annotation file is not annotated")
        else:  # its XML was skipped (and counted) under the XML's name: name the image too
            report.note_image(image, ANNOTATION_SKIPPED,
                              f"left out with its annotation {xml}, which was skipped (see "
                              "that file's entry)")


class _ImageFinder:
    """Resolves the image of an XML from its hints, listing each candidate folder once.

    `stems` are the stems of the root's XML files: an image named by one XML that has an XML
    of its own is that other XML's image."""

    def __init__(self, root: _Root, base: str, stems: set[str]) -> None:
        self.root = root
        self.base = base
        self.stems = stems
        self.listings: dict[Path, set[str]] = {}

    def _folders(self, xml_path: Path, folder_hint: str) -> list[Path]:
        folders = [self.root.images, *(self.root.folder / n for n in IMAGE_FOLDERS),
                   xml_path.parent, self.root.folder]
        if folder_hint:
            folders.insert(0, self.root.folder / folder_hint)
        return [folder for folder in dict.fromkeys(folders) if self._inside(folder)]

    def find(self, xml_path: Path, names: list[str], folder_hint: str) -> Path | None:
        """The first of `names` found in the XML's candidate folders, folder by folder."""
        for folder in self._folders(xml_path, folder_hint):
            for name in names:
                image = folder / name
                if self._inside(image) and self._exists(folder, name):
                    return image
        return None

    def outside(self, xml_path: Path, hints: list[str], folder_hint: str) -> list[str]:
        """The `hints` that lead outside the dataset from every folder they are looked up in
        (``../../etc/hostname``, ``/etc/hostname``): never followed, always reported."""
        folders = self._folders(xml_path, folder_hint)
        return [hint for hint in hints if not any(self._inside(f / hint) for f in folders)]

    def _inside(self, path: Path) -> bool:
        return os.path.join(os.path.abspath(path), "").startswith(self.base)

    def _exists(self, folder: Path, name: str) -> bool:
        if "/" in name or "\\" in name:
            return (folder / name).is_file()
        if folder not in self.listings:
            try:
                with os.scandir(folder) as entries:
                    self.listings[folder] = {e.name for e in entries}
            except OSError:
                self.listings[folder] = set()
        return name in self.listings[folder] and (folder / name).is_file()

    def key(self, image: Path) -> str:
        for folder in (self.root.images, self.root.folder):
            try:
                return self.root.prefix + image.relative_to(folder).as_posix()
            except ValueError:
                continue
        return image.as_posix()


def _read_annotation(path: Path, finder: _ImageFinder, report: Report) -> Sample | None:
    """The sample of one XML file, or None when the whole image is skipped (reported)."""
    try:
        root = _parse(path)
    except _BadXml as error:
        report.skip_image(path, error.code, str(error))
        return None
    except OSError as error:
        report.skip_image(path, "unreadable-annotation", f"cannot read it: {error}")
        return None
    if root.tag != "annotation":
        report.skip_image(path, "malformed-annotation",
                          f"root element is <{root.tag}>, not <annotation>: not a VOC file")
        return None
    image = _image_of(path, root, finder, report)
    if image is None:
        return None
    width, height = _size(root, path, report)
    boxes: list[Box] = []
    objects = root.findall("object")
    for index, obj in enumerate(objects):
        try:
            boxes.append(_box(obj))
        except _BadObject as error:
            report.skip_box(path, "malformed-object", f"object {index}: {error}")
    return Sample(image=image, key=finder.key(image), boxes=boxes, width=width, height=height,
                  origin=str(path), skipped_boxes=len(objects) - len(boxes))


def _image_of(path: Path, root: Element, finder: _ImageFinder, report: Report) -> Path | None:
    """The image the XML `path` annotates, each doubt about it reported; None when the XML is
    skipped (reported).

    The image its ``<filename>`` (or ``<path>``) names, unless another XML of the dataset is
    named after that image: then the XML was copied from that one, or its image renamed, and
    the image of its own name is taken (a note says so); without one the XML is skipped, since
    its boxes would land on the other XML's image. A name that leads outside the dataset is
    never followed, and reported."""
    hints = _image_hints(root)
    folder_hint = _text(root, "folder")
    outside = finder.outside(path, hints, folder_hint)
    named = finder.find(path, [h for h in hints if h not in outside], folder_hint)
    own = finder.find(path, [path.stem + e for e in (*IMAGE_SUFFIXES,
                                                       *map(str.upper, IMAGE_SUFFIXES))],
                      folder_hint)
    own_name = f"{path.stem}.<jpg|png|...>"
    if named is not None and named.stem != path.stem and named.stem in finder.stems:
        other = f"{finder.root.annotations.name}/{named.stem}.xml"
        if own is None:
            report.skip_image(path, "filename-conflict",
                              f"names its image {named.name!r}, which {other} annotates, and "
                              f"there is no image {own_name} of its own name; correct its "
                              "<filename>")
            return None
        report.note_image(path, "filename-mismatch",
                          f"names its image {named.name!r}, which {other} annotates; taken as "
                          f"the annotation of {own.name}, the image of its own name")
        return own
    image = named or own
    if outside:
        escape = f"<filename> {outside[0]!r} points outside the dataset"
        if image is None:
            report.skip_image(path, "escapes-dataset",
                              f"{escape}, and there is no image {own_name} of its own name")
            return None
        report.note_image(path, "filename-outside-dataset",
                          f"{escape}; not followed: its image is {finder.key(image)}")
    if image is None:
        named_text = f"{hints[0]!r}" if hints else own_name
        report.skip_image(path, "missing-image",
                          f"image {named_text} not found in its <folder>, "
                          f"{', '.join(IMAGE_FOLDERS)}, beside the XML or the dataset folder")
    return image


def _image_hints(root: Element) -> list[str]:
    """Names to look the image up by: ``<filename>``, then the file name of ``<path>``."""
    hints = []
    filename = _text(root, "filename")
    if filename and "\x00" not in filename:
        hints.append(filename)
    path = _text(root, "path")
    if path and "\x00" not in path:
        windows = PureWindowsPath(path)
        name = windows.name if windows.drive or "\\" in path else PurePosixPath(path).name
        if name and name not in hints:
            hints.append(name)
    return hints


def _text(element: Element, path: str) -> str:
    return (element.findtext(path) or "").strip()


def _size(root: Element, path: Path, report: Report) -> tuple[int | None, int | None]:
    """``<size>``'s width and height; None for none, 0, or (with a note) anything else."""
    width, height = _text(root, "size/width"), _text(root, "size/height")
    if not width and not height:
        return None, None
    numbers = [finite_number(width), finite_number(height)]
    if numbers == [0, 0]:
        return None, None
    if all(n is not None and n > 0 and n == int(n) for n in numbers):
        return int(numbers[0]), int(numbers[1])  # type: ignore[arg-type]
    report.note_image(path, "malformed-size",
                      f"<size> says width {shown(width)!r}, height {shown(height)!r}, not "
                      "two whole numbers of pixels; the image's own size is used")
    return None, None


class _BadObject(Exception):
    """An ``<object>`` without a usable class or box; the message says which part."""


def _box(obj: Element) -> Box:
    label = _text(obj, "name")
    if not label:
        raise _BadObject("no <name>, so no class")
    box = obj.find("bndbox")
    if box is None:
        raise _BadObject(f"({label}) has no <bndbox>")
    texts = [_text(box, corner) for corner in CORNERS]
    numbers = [finite_number(text) for text in texts]
    if None in numbers:
        values = ", ".join(f"{c}={shown(t)!r}" for c, t in zip(CORNERS, texts, strict=True))
        raise _BadObject(f"({label}) <bndbox> {values}: not four finite numbers")
    xmin, ymin, xmax, ymax = numbers
    return Box(label, xmin, ymin, xmax, ymax,  # type: ignore[arg-type]
               difficult=_flag(obj, "difficult"), truncated=_flag(obj, "truncated"))


def _flag(obj: Element, name: str) -> bool:
    return _text(obj, name).lower() in ("1", "true", "yes")


class _BadXml(Exception):
    """A file odplug does not parse; `code` groups it in the report."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _refuse_dtd(*_args: object) -> None:
    raise _BadXml("xml-dtd", "holds a DTD (<!DOCTYPE ...>), refused: entities can expand "
                             "without bound or read other files, and VOC needs none")


def _parse(path: Path) -> Element:
    """The file's root element, parsed by expat into an ElementTree; `_BadXml` for a file that
    is not well-formed XML, or that declares a DTD."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with path.open("rb") as handle:
            parser.ParseFile(handle)
        return builder.close()
    except xml.parsers.expat.ExpatError as error:
        raise _BadXml("malformed-annotation",
                      f"not well-formed XML: {xml.parsers.expat.ErrorString(error.code)} at "
                      f"line {error.lineno} column {error.offset}") from None
    except RecursionError:
        raise _BadXml("malformed-annotation", "elements nested too deeply") from None
