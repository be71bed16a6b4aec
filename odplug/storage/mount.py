"""A dataset in a bucket, read by the importer plugins as a local folder, images streamed.

Importers find their files by listing folders and opening annotation files, all on local
paths (the `Importer` contract), and never read pixels: the core's writer workers do, one
image at a time. So `mount` mirrors the bucket's listing in a local folder: every file that
is not an image (annotations, label maps, record files) is downloaded, and every image is an
empty stand-in of its real size (a sparse file: no disk used), so listings, sizes and names
are the bucket's. The core reads an image's bytes through `read_source` and its header
through `open_source`, which fetch it from the bucket when the path is a stand-in.

The mapping from mirror folders to URLs lives in this process and in ``ODPLUG_MOUNTS`` (JSON),
which worker processes inherit however they are started; a Beam worker on another machine
is handed it with its work (`odplug.data.beam`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from odplug.errors import OdplugError
from odplug.storage.publish import Note
from odplug.storage.urls import (
    clean,
    entries,
    filesystem,
    named_by_url,
    reason,
    storage_errors,
)

ENVIRONMENT = "ODPLUG_MOUNTS"
HEADER_BLOCK = 1 << 16
"""Bytes per request when only an image's header is read (`open_source`): Pillow reads a
JPEG's or PNG's size from the first few KB."""


@functools.cache
def image_suffixes() -> frozenset[str]:
    """Every suffix Pillow opens, plus the HEIF/AVIF ones plugins may add."""
    from PIL import Image

    return frozenset({*Image.registered_extensions(), ".heic", ".heif", ".avif", ".jxl"})


@dataclass(frozen=True)
class Mount:
    """A bucket folder (`url`) mirrored at `local`; `source` is what the importer is given
    (`local`, or a file in it when the URL names a file)."""

    url: str
    local: Path
    source: Path
    images: int
    downloaded: int
    folder: str
    """The URL of the folder mirrored at `local` (`url` itself, or the folder of its file)."""

    def show(self, text: str) -> str:
        """`text` with the mirror's paths written as the bucket's URLs, for the user."""
        return named_by_url(text, self.local, self.folder)


def _table() -> dict[str, str]:
    try:
        loaded = json.loads(os.environ.get(ENVIRONMENT) or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def register(table: dict[str, str]) -> None:
    """Add mirror folder -> URL pairs (a Beam worker's, handed over with its work)."""
    merged = {**_table(), **table}
    os.environ[ENVIRONMENT] = json.dumps(merged)


def registered() -> dict[str, str]:
    return _table()


@contextlib.contextmanager
def mount(url: str, *, note: Note = lambda text: None) -> Iterator[Mount]:
    """Mirror the dataset at `url` for the block (module docstring); the mirror is deleted
    after it."""
    fs, root = filesystem(url)
    with storage_errors(url, "reading the dataset"):
        if fs.isfile(root):
            folder_url, _, name = clean(url).rpartition("/")
            fs_root = root.rpartition("/")[0]
        else:
            folder_url, name, fs_root = clean(url), "", root
        listed = entries(fs, fs_root)
    if not listed:
        raise OdplugError(f"{url}: no such file or folder (nothing listed under it)")
    suffixes = image_suffixes()
    local = Path(tempfile.mkdtemp(prefix="odplug-mount-"))
    previous = os.environ.get(ENVIRONMENT)
    try:
        wanted = []
        images = 0
        for relative, info in listed.items():
            path = local / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if Path(relative).suffix.lower() in suffixes:
                with path.open("wb") as stand_in:
                    stand_in.truncate(int(info.get("size") or 0))
                images += 1
            else:
                wanted.append(relative)
        if wanted:
            note(f"Reading {len(wanted)} annotation file(s) from {folder_url}; "
                 f"{images} image(s) are streamed as they are written")
            with storage_errors(url, "downloading the annotations"):
                fs.get([f"{fs_root}/{r}" for r in wanted], [str(local / r) for r in wanted])
        register({str(local): folder_url})
        yield Mount(folder_url if not name else clean(url), local,
                    local / name if name else local, images, len(wanted), folder_url)
    finally:
        if previous is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous
        shutil.rmtree(local, ignore_errors=True)


def _remote(path: Path | str) -> str | None:
    """The URL a mirrored image stands in for, or None for an ordinary local file. A mirrored
    file that is not here at all (a Beam worker on another machine, which has no mirror: a
    record file holding images, say) is read from its URL too."""
    text = os.fspath(path)
    for local, url in _table().items():
        if text.startswith(local + os.sep):
            relative = text[len(local) + 1:]
            if (Path(relative).suffix.lower() in image_suffixes()
                    or not os.path.lexists(text)):
                return f"{url}/{relative.replace(os.sep, '/')}"
    return None


PREFETCH = 32
"""Images fetched at once by `prefetched`, unless ``ODPLUG_PREFETCH`` says otherwise: an
object store answers each request in 5-50 ms whatever its size, so images fetched one after
another leave a worker waiting on the network most of the time; 32 in flight keep it busy at
about 3 MB of memory per worker for 100 KB photos (``bench.convert --bucket --latency``)."""
PREFETCH_ENVIRONMENT = "ODPLUG_PREFETCH"


def prefetch_count() -> int:
    """`PREFETCH`, or the whole number 1 to 1024 in ``ODPLUG_PREFETCH`` (more for a far
    bucket, 1 to fetch one image at a time)."""
    text = os.environ.get(PREFETCH_ENVIRONMENT, "").strip()
    if not text:
        return PREFETCH
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise OdplugError(f"{PREFETCH_ENVIRONMENT}={text!r}: give a whole number of images "
                          "from 1 to 1024 to fetch at once from a bucket")
    return int(text)

_prefetched: dict[str, bytes] = {}
"""This process's images fetched ahead by `prefetched`, by mirror path; each taken once."""


@contextlib.contextmanager
def prefetched(paths: Iterable[Path]) -> Iterator[None]:
    """Fetch the mirrored images among `paths` from their bucket concurrently (one request
    each, all in flight together: fsspec's ``cat`` of a list), for `read_source` to take in
    the block. An image that fails here is left out and read again, alone, by `read_source`,
    which says what is wrong with it; local paths are left alone."""
    urls = {os.fspath(p): url for p in paths if (url := _remote(p)) is not None}
    if urls:
        fs, _ = filesystem(next(iter(urls.values())))
        keys = {local: filesystem(url)[1] for local, url in urls.items()}
        try:
            got = fs.cat(list(keys.values()), on_error="return")
        except Exception:  # the reads one by one report each image's own problem
            got = {}
        for local, key in keys.items():
            value = got.get(key) if isinstance(got, dict) else None
            if isinstance(value, bytes):
                _prefetched[local] = value
    try:
        yield
    finally:
        for local in urls:
            _prefetched.pop(local, None)


def read_source(path: Path) -> bytes:
    """The bytes of the file at `path`, from its bucket when `path` is a mirrored image (taken
    from `prefetched` when it fetched it)."""
    ahead = _prefetched.pop(os.fspath(path), None)
    if ahead is not None:
        return ahead
    url = _remote(path)
    if url is None:
        return path.read_bytes()
    fs, key = filesystem(url)
    with _os_errors(url):
        return bytes(fs.cat_file(key))


def open_source(path: Path) -> BinaryIO:
    """`path` opened for reading; a mirrored image (or a file of the mirror on a machine
    without it) is read from its bucket in blocks of `HEADER_BLOCK` bytes, so reading an
    image's header, or one record of a record file, costs a request or two."""
    url = _remote(path)
    if url is None:
        return path.open("rb")
    fs, key = filesystem(url)
    with _os_errors(url):
        opened: BinaryIO = fs.open(key, "rb", block_size=HEADER_BLOCK, cache_type="readahead")
    return opened


@contextlib.contextmanager
def _os_errors(url: str) -> Iterator[None]:
    """What a backend raises reading `url` as the `OSError` (naming `url`) that the image and
    record readers report as any unreadable file."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such object in the bucket (deleted since it was "
                                "listed?)", url) from None
    except OSError:
        raise
    except Exception as error:  # backends raise their own types
        raise OSError(5, reason(error), url) from None


