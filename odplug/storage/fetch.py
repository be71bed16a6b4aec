"""Inputs at a URL (records, runs, models) as local folders, kept in odplug's cache.

TensorFlow reads records only from local files and ``gs://`` (its S3 file system left the core
in 2.6), and a trainer or exporter plugin is handed a local `Path` by its contract: so a
folder at a URL is downloaded once into ``$ODPLUG_CACHE_DIR`` (default ``~/.cache/odplug``),
under a path that repeats the URL's (``s3/bucket/data/ds``), and reused while it matches the
published manifest; a later run downloads only the files that changed, and checks each
downloaded file's MD5 against the manifest. A folder odplug did not publish (a SavedModel
copied up with ``aws s3 sync``) is taken as listed, checked by size.

The cache folder belongs to odplug: files the URL no longer holds are deleted from it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_path, atomic_write_text, folder_lock
from odplug.errors import OdplugError
from odplug.storage.publish import HIDDEN, INTENT, MANIFEST, Note, file_digest, read_manifest
from odplug.storage.urls import clean, entries, filesystem, listed_entry, storage_errors

FETCHED = ".odplug-fetched.json"
"""In a cache folder: the file list it was last made to match."""


def cache_dir() -> Path:
    """Where fetched inputs and the local copies of runs in buckets live."""
    configured = os.environ.get("ODPLUG_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "odplug"


def local_copy(url: str) -> Path:
    """The cache folder that mirrors `url` (``<cache>/s3/bucket/key/path``): inputs, and
    outputs published from it."""
    return cache_dir().joinpath(*_parts(url))


def work_copy(url: str) -> Path:
    """The folder a run at `url` is trained in (``<cache>/work/s3/bucket/...``): apart from
    the inputs' `local_copy`, so reading the run (an export of it) never replaces work not
    uploaded yet."""
    return cache_dir().joinpath("work", *_parts(url))


def _parts(url: str) -> list[str]:
    scheme, _, rest = clean(url).partition("://")
    return [scheme.lower(), *(p for p in rest.split("/") if p not in ("", ".", ".."))]


def remote_files(url: str) -> dict[str, dict[str, Any]]:
    """What the folder at `url` holds (relative name -> size and MD5 or ETag): its odplug
    manifest's files, else its listing, hidden ``.odplug-*`` names left out."""
    manifest = read_manifest(url)
    if manifest is not None:
        return dict(manifest["files"])
    fs, root = filesystem(url)
    with storage_errors(url, "listing"):
        listed = entries(fs, root)
    return {name: listed_entry(info) for name, info in listed.items()
            if not name.startswith(HIDDEN) and name not in (MANIFEST, INTENT)}


def sync_down(url: str, local: Path, *, note: Note = lambda text: None,
              only: set[str] | None = None, keep_local: bool = False) -> bool:
    """Make `local` hold what `url` holds (only the names in `only`, if given, and then
    nothing is deleted); returns whether `url` holds anything.

    Only changed files are downloaded, each under a temporary name renamed into place once
    its size (and MD5, where a manifest gives it) is checked. A cached file changed on this
    machine since it was downloaded is downloaded again, unless `keep_local` (a run's
    working copy, `work_copy`): then what this machine wrote and has not uploaded yet (a
    training whose upload failed) is kept, files the bucket changed since excepted."""
    files = remote_files(url)
    if only is not None:
        files = {name: entry for name, entry in files.items() if name in only}
    fs, root = filesystem(url)
    local.mkdir(parents=True, exist_ok=True)
    with folder_lock(local, "download"):
        marker = local / FETCHED
        before = _read_marker(marker)
        stale = [name for name, entry in files.items()
                 if not _holds(local / name, before.get(name), entry, keep_local=keep_local)]
        if stale:
            size = sum(int(files[name]["size"]) for name in stale)
            note(f"Downloading {len(stale)} file(s), {size / 1e6:.1f} MB, from {url}")
        for name in stale:
            target = local / name
            with storage_errors(url, f"downloading {name}"), atomic_path(target) as temporary:
                fs.get_file(f"{root}/{name}", str(temporary))
                _check(url, name, files[name], temporary)
        if only is None:  # a run's new local files stay; those the bucket deleted go
            new_here = set(_listed(local)) - set(before) if keep_local else set()
            _delete_others(local, set(files) | new_here)
        changed_here = {name for name in files if keep_local and name not in stale
                        and not _holds(local / name, before.get(name), files[name])}
        kept = {**(before if only is not None else {}),
                **_stamped(local, {n: e for n, e in files.items() if n not in changed_here}),
                **{name: before[name] for name in changed_here}}
        atomic_write_text(marker, json.dumps(kept))
    return bool(files)


LOCAL = "local"
"""In `FETCHED`'s entries: the size and modification time (ns) the file had when it was
downloaded or published, so a file changed on this machine since is downloaded again."""


def _stamped(local: Path, files: dict[str, Any]) -> dict[str, Any]:
    """`files`' entries with each local file's size and modification time added."""
    stamped = {}
    for name, entry in files.items():
        try:
            status = (local / name).stat()
        except OSError:
            continue  # not here: downloaded again next time
        stamped[name] = {**entry, LOCAL: [status.st_size, status.st_mtime_ns]}
    return stamped


def _holds(path: Path, recorded: dict[str, Any] | None, entry: dict[str, Any], *,
           keep_local: bool = False) -> bool:
    """Whether the cached `path` may stand for the remote file `entry`: recorded as that
    version, and unchanged on this machine since (same size and modification time), or
    changed here when `keep_local` keeps this machine's changes."""
    if recorded is None or {k: v for k, v in recorded.items() if k != LOCAL} != entry:
        return False
    try:
        status = path.stat()
    except OSError:
        return False
    return keep_local or recorded.get(LOCAL) == [status.st_size, status.st_mtime_ns]


def _listed(local: Path) -> list[str]:
    return [p.relative_to(local).as_posix() for p in local.rglob("*")
            if p.is_file() and not any(part.startswith(HIDDEN)
                                       for part in p.relative_to(local).parts)]


def remember(local: Path, files: dict[str, Any]) -> None:
    """Note that `local` now holds `files` as published from it (`publish_folder`'s manifest
    files): the next `sync_down` of its URL then downloads nothing it already has."""
    with folder_lock(local, "download"):
        atomic_write_text(local / FETCHED, json.dumps(_stamped(local, files)))


def _check(url: str, name: str, entry: dict[str, Any], path: Path) -> None:
    size = path.stat().st_size
    changed = size != int(entry["size"]) or ("md5" in entry and file_digest(path) != entry["md5"])
    if changed:
        raise OdplugError(f"{url}/{name}: changed while it was downloaded (it does not match "
                          f"the folder's {MANIFEST}); run again once the upload to it is done")


def held_from_url(local: Path) -> bool:
    """Whether the cache folder `local` was last made to match files its URL held (downloaded
    or published from it): False for one that never matched any, such as a run's working copy
    whose every upload failed, which holds nothing but this machine's work."""
    return bool(_read_marker(local / FETCHED))


def _read_marker(marker: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(marker.read_text())
        if isinstance(loaded, dict):
            return loaded
    return {}


def _delete_others(local: Path, keep: set[str]) -> None:
    for path in sorted(local.rglob("*"), reverse=True):
        relative = path.relative_to(local)
        if any(part.startswith(HIDDEN) for part in relative.parts):
            continue
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only once empty
        elif relative.as_posix() not in keep:
            path.unlink()


def fetched(url: str, what: str, *, note: Note = lambda text: None) -> Path:
    """The local copy of the folder, or of the file, at `url`; refused in one line naming
    `what` it was meant to be when the URL holds nothing.

    A file comes with the files beside it that share its stem (``tflite-int8.tflite`` and
    its manifest ``tflite-int8.json``), which is how exporters name a model's parts."""
    fs, root = filesystem(url)
    with storage_errors(url, "looking it up"):
        is_file = fs.isfile(root)
    if not is_file:
        if not sync_down(url, local_copy(url), note=note):
            raise OdplugError(f"{url}: nothing there; give the {what}")
        return local_copy(url)
    parent, _, name = clean(url).rpartition("/")
    stem = name.split(".", 1)[0]
    files = remote_files(parent)
    wanted = {n for n in files if "/" not in n and n.split(".", 1)[0] == stem} | {name}
    sync_down(parent, local_copy(parent), note=note, only=wanted)
    if not (local_copy(parent) / name).is_file():
        raise OdplugError(f"{url}: not listed in {parent}/{MANIFEST}, the folder's record of "
                          "its files; give a file that its upload wrote")
    return local_copy(parent) / name

