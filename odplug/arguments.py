"""The argument checks and defaults that the command line and the Python API share.

``odplug.import_dataset(seed=-1)`` and ``odplug data.import --seed -1`` are the same mistake,
so they get the same check and the same fix; only the way the argument is named differs
(``--seed`` on the command line, ``seed`` in Python), and the caller gives that name. Every
check raises `UsageError`: the command line turns it into exit status 2, the API lets it
through. TensorFlow-free and below every tier, like `odplug.errors`.
"""

from __future__ import annotations

import errno
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import TypeVar

from odplug.errors import UsageError
from odplug.storage.urls import is_file_url, is_url, local_path, url_name

PathArg = str | PathLike[str]
"""A path as a user gives it: text or any path object."""

F = TypeVar("F", bound=Callable[..., object])


def file_urls_as_paths(function: F) -> F:
    """`function` with every text argument given to a parameter of its own (not inside
    ``*args``, ``**kwargs`` or a list) that is written as a ``file://`` URL given as the local
    path it names (`odplug.storage.urls.local_path`), for the command line's tasks and the
    Python API alike.

    fsspec users write local data as ``file:///data/ds``; every other part of odplug takes
    local paths as paths, and such text made a `Path` is the relative ``file:/data/ds``. Only
    paths are text that starts with ``file://``, so the rule needs no list of arguments.
    """
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*given: object, **named: object) -> object:
        try:
            bound = signature.bind_partial(*given, **named)
        except TypeError:  # wrong arguments: Python's own error, which names the function
            return function(*given, **named)
        for name, value in bound.arguments.items():
            if is_file_url(value):
                bound.arguments[name] = local_path(value)  # type: ignore[arg-type]
        return function(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]


def usage(name: str, value: object, fix: str) -> UsageError:
    """``--seed 'abc': fix`` for a flag, ``seed='abc': fix`` for a keyword argument."""
    shown = f"{name} {str(value)!r}" if name.startswith("-") else f"{name}={value!r}"
    return UsageError(f"{shown}: {fix}")


def whole_number(name: str, value: int | float | str, low: int, high: int,
                 note: str = "") -> int:
    """`value` (a whole number, or its text) from `low` to `high`, or an error naming `name`."""
    fix = f"give a whole number from {low} to {high}{note}"
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise usage(name, value, fix)
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise usage(name, value, fix) from None
    if not low <= number <= high:
        raise usage(name, value, fix)
    return number


def fraction(name: str, value: float | str, low: float, high: float) -> float:
    """`value` as a finite number from `low` to `high`, or an error naming `name`."""
    fix = f"give a number from {low} to {high}"
    if isinstance(value, bool):
        raise usage(name, value, fix)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise usage(name, value, fix) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise usage(name, value, fix)
    return number


def choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """One of a fixed set of words (``--split``, ``--verify``)."""
    if value not in allowed:
        raise usage(name, value, f"use {', '.join(allowed[:-1])} or {allowed[-1]}")
    return value


def out_folder(name: str, value: PathArg | None) -> Path | None:
    """An output folder to create or reuse: refused up front when a file is in the way."""
    if value is None or value == "":
        return None
    path = Path(value)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise usage(name, value, f"{part} is a file, not a folder; give a folder")
    return path


def in_file(name: str, value: PathArg | None) -> Path | None:
    """An input file: refused up front when it is a folder or missing."""
    if value is None or value == "":
        return None
    path = Path(value)
    if path.is_dir():
        raise usage(name, value, "is a folder; give a file")
    if not path.exists():
        raise usage(name, value, "no such file")
    return path


def names(value: str | Sequence[str] | None) -> list[str]:
    """A list of names (``--to``, ``--quantize``, ``--classes``), as ``a,b`` text or a list;
    blanks left out."""
    parts = (value or "").split(",") if isinstance(value, str) else list(value or ())
    return [part.strip() for part in parts if part.strip()]


MIN_RATIO_FIX = "give 'targets' or a number from 0 to 1"


def min_ratio(name: str, value: str | float | None) -> tuple[bool, float | None]:
    """``--min-ratio``: (enforce?, one floor for every model, or None for each own target).

    Empty or None reports only; ``targets`` enforces each model's own target."""
    if value is None or value == "":
        return False, None
    if value == "targets":
        return True, None
    try:
        return True, fraction(name, value, 0.0, 1.0)
    except UsageError:
        raise usage(name, value, MIN_RATIO_FIX) from None


def in_folder(name: str, value: PathArg) -> Path:
    """An input folder: refused up front when it is a file or missing."""
    path = Path(value)
    if not path.exists():
        raise usage(name, value, "no such folder")
    if not path.is_dir():
        raise usage(name, value, "is a file; give a folder")
    return path


def in_path(name: str, value: PathArg) -> Path:
    """An input that may be a file or a folder (``model.predict --source``): refused up front
    when missing, so the user hears it before TensorFlow loads, not after."""
    path = Path(value)
    if not path.exists():
        raise usage(name, value, "no such file or folder")
    return path


def with_steps(name: str, overrides: Mapping[str, object], steps: int | str | None
               ) -> dict[str, object]:
    """The config overrides with ``train.steps`` set when `steps` is given (None keeps the
    config's); 0 is refused, as it would train nothing."""
    if steps is None:
        return dict(overrides)
    return {**overrides, "train.steps": whole_number(
        name, steps, 1, 10**9, "; leave it out for the trainer's default")}


def place(value: PathArg) -> Path | str:
    """A path, or a bucket URL (``s3://``, ``gs://``; `odplug.storage`) kept as text: made a
    `Path`, a URL's ``//`` would collapse into a relative folder."""
    return str(value) if is_url(str(value)) else Path(value)


def in_place(name: str, value: PathArg) -> Path | str:
    """An input file or folder, or a bucket URL (``s3://``, ``gs://``; `odplug.storage`),
    given back as text: a URL is looked up when it is read, with its own errors."""
    return place(value) if is_url(str(value)) else in_path(name, value)


def out_place(name: str, value: PathArg | None) -> Path | str | None:
    """An output folder (`out_folder`) or a bucket URL, given back as text."""
    if value is not None and is_url(str(value)):
        return str(value)
    return out_folder(name, value)


def local_only(name: str, value: PathArg | None, instead: str) -> None:
    """Refuse a bucket URL where only a local path works, saying what to do `instead`."""
    if value is not None and is_url(str(value)):
        raise usage(name, value, f"takes a local path, not a URL; {instead}")


def _name(place: Path | str) -> str:
    return url_name(str(place)) if is_url(str(place)) else Path(place).resolve().name


def default_import_out(source: Path | str, to: str) -> Path:
    """Where ``data.import`` writes when not told: ``output/<source name>-<to>`` (a dataset
    in a bucket too: its output is local unless ``--out`` is a URL)."""
    return Path("output") / f"{_name(source)}-{to}"


def default_run_dir(records: Path | str) -> Path:
    """Where ``model.train`` trains when not told: ``runs/<records folder name>``."""
    return Path("runs") / _name(records)


@contextmanager
def writing_to(out: Path) -> Iterator[None]:
    """Name `out` in a full-disk error: ``write()`` reports ENOSPC without a file name."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            error.filename = str(out)
        raise
