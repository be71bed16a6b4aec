"""Where a YOLO dataset's parts are: its yaml or darknet files, class names, split entries,
images and the label file of each image (Ultralytics' rules)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from odplug.data.overview import is_overview_picture
from odplug.errors import OdplugError

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp",
                            "pfm", "heic"})
"""Ultralytics' IMG_FORMATS: the files of a folder it takes for images."""
SPLIT_KEYS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
LIST_FILES = {"train.txt": "train", "valid.txt": "val", "val.txt": "val", "test.txt": "test"}
DARKNET_DATA_KEYS = {"train": "train", "valid": "val", "test": "test"}
NAMES_FILES = ("obj.names", "classes.txt")
DATA_YAML = ("data.yaml", "data.yml")
_YOLO_KEYS = frozenset({"names", "nc", "path", "kpt_shape", *SPLIT_KEYS})
"""Keys that make a yaml meant for Ultralytics: one that has them but is not valid is said so."""
_MAX_CONFIG_BYTES = 1 << 20
_DETECT_IMAGES = 1000
"""Images looked at, at most, for one that has a label file when detecting a darknet folder."""


# -- finding the dataset's description ---------------------------------------------------------


@dataclass
class Dataset:
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
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(code, message): what the user should know about the description itself; warned once,
    into the report, by `read`."""
    kpt_shape: tuple[int, int] | None = None
    """The yaml's ``kpt_shape`` (keypoints per object, values per keypoint): a pose dataset."""


def absolute(path: Path) -> Path:
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
            return resolve_entry(named, obj_data, [folder], folder) or folder / named
    for name in NAMES_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.names"))
    return found[0] if len(found) == 1 else None


def describe(source: Path) -> Dataset:
    """The dataset at `source`, or one error line saying why it is not a YOLO dataset."""
    if not source.exists():
        raise OdplugError(f"{source}: no such file or folder")
    root = absolute(source if source.is_dir() else source.parent)
    if source.is_file():
        if source.name == "obj.data":
            return _describe_darknet(root, absolute(source))
        return _describe_yaml(root, absolute(source))
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


def _describe_yaml(root: Path, path: Path) -> Dataset:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise OdplugError(f"{path}: expected a mapping with names and train/val/test")
    names = _yaml_names(data, path)
    base, warnings = path.parent, []
    given = data.get("path")
    if isinstance(given, str) and given.strip():
        candidate = absolute(path.parent / given.strip())
        if candidate.is_dir():
            base = candidate
        else:
            warnings.append(("path-not-found", f"{path}: path: {given} is not a folder here; "
                             "train/val/test are read relative to the yaml's folder "
                             f"{path.parent} instead"))
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
    return Dataset(root, path, names, darknet=False, base=base, splits=splits,
                    reserved={path}, warnings=warnings, kpt_shape=_kpt_shape(data, path))


def _kpt_shape(data: dict[Any, Any], path: Path) -> tuple[int, int] | None:
    """Ultralytics' ``kpt_shape: [keypoints, 2 or 3]`` (x, y and, with 3, visibility)."""
    value = data.get("kpt_shape")
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
            and value[0] >= 1 and value[1] in (2, 3)):
        return value[0], value[1]
    raise OdplugError(f"{path}: kpt_shape: expected [keypoints, 2 or 3] (e.g. [17, 3]), got "
                      f"{value!r:.80}")


def _yaml_names(data: dict[Any, Any], path: Path) -> list[str]:
    """The class names as Ultralytics reads them: a list, or a mapping of indices 0..n-1;
    scalars become text (``yes`` reads as ``True``, as in Ultralytics); ``nc`` alone gives
    ``class_0``..."""
    names = data.get("names")
    count = data.get("nc")
    if names is None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise OdplugError(f"{path}: no names list (and no class count nc): add the class "
                              "names in index order, e.g. names: [cat, dog], as Ultralytics' "
                              "data.yaml has them")
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


def _describe_darknet(root: Path, obj_data: Path | None) -> Dataset:
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
    return Dataset(root, obj_data or names_path, names, darknet=True, base=root, splits=lists,
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


def is_inside(path: Path, root: Path) -> bool:
    full, top = os.path.abspath(path), os.path.abspath(root)
    return full == top or full.startswith(os.path.join(top, ""))


def resolve_entry(entry: str, listed_in: Path, bases: Sequence[Path], root: Path) -> Path | None:
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
    return next((absolute(c) for c in candidates if c.exists()), None)


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1][1:].lower() in IMAGE_SUFFIXES


def images_under(folder: Path) -> Iterator[Path]:
    """Every image file below `folder`, in name order, as Ultralytics globs ``**/*.*``; the
    dataset picture an odplug import left there is not one of them."""
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if is_image(name) and not is_overview_picture(Path(parent) / name):
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


def label_for(image: Path, root: Path, darknet: bool) -> Path:
    """Ultralytics' rule; for darknet datasets the file beside the image when that rule's
    file does not exist (darknet tools write labels beside the images)."""
    by_rule = label_path(image, root)
    if darknet and not by_rule.is_file():
        return image.with_suffix(".txt")
    return by_rule


def looks_like_yolo(source: Path) -> bool:
    """Whether `source` is a YOLO dataset (the importer's `detect`): cheap, a few file names
    and at most `_DETECT_IMAGES` image names looked at."""
    if source.is_file():
        if source.suffix.lower() in (".yaml", ".yml"):
            return _claims_yaml(source.parent, source)
        return source.name == "obj.data"
    if not source.is_dir():
        return False
    if _yaml_files(source) or (source / "obj.data").is_file():
        return True
    if _names_file(source, None) is None:
        named = [source / name for name in DATA_YAML if (source / name).is_file()]
        return bool(named) and _claims_yaml(source, named[0])
    for count, image in enumerate(images_under(source)):
        if count >= _DETECT_IMAGES:
            return False
        if label_for(image, source, darknet=True).is_file():
            return True
    return False


def _claims_yaml(root: Path, path: Path) -> bool:
    """Whether the yaml describes a YOLO dataset. One with YOLO's keys that does not is a near
    miss: the `OdplugError` saying what it lacks is raised, for detection to show."""
    data = _try_yaml(path)
    if _describes_yolo(data):
        return True
    if isinstance(data, dict) and any(key in data for key in _YOLO_KEYS):
        _describe_yaml(root, path)  # raises: what this yaml lacks
        return True
    return False
