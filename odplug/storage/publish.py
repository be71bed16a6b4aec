"""Replace a folder in object storage whole, though object stores cannot rename a folder.

A local folder replaces the folder at a URL in four steps:

1. Every file that differs from the published version (by size and MD5) is uploaded under a
   staging prefix inside the target, ``<url>/.odplug-staging/<id>/``. Nothing a reader uses
   has changed yet; a run killed here leaves the previous output intact (its staged objects
   are deleted by the next publish).
2. The intent is written, ``<url>/.odplug-publishing.json``: the new manifest, the files to
   copy from the staging prefix and the files to remove. From here the publish goes forward.
3. The staged files are copied to their final names (server-side copies, no download), the
   new manifest ``<url>/odplug-manifest.json`` is written, the files the old manifest listed
   and the new one does not are deleted.
4. The staging prefix and the intent are deleted.

The recovery rule, applied by `recover` before any publish to the URL and before any read
from it: an intent present means a publish was killed after step 2, and it is finished from
its staged files (rolled forward). Readers go through the manifest (`read_manifest`, and
`odplug.storage.fetch` checks every file's MD5 against it), so a file outside the manifest is
never read, and a file changed under a reader is noticed.

Objects outside the manifests are never touched: an export published into ``<run>/export``
stays when the run is published again. odplug takes no lock on a bucket (object stores offer
none that every one of them honours): give two concurrent writers different URLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from odplug.errors import Interrupted, OdplugError
from odplug.storage.urls import (
    BUCKET_SCHEMES,
    entries,
    filesystem,
    listed_entry,
    reason,
    storage_errors,
)

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

MANIFEST = "odplug-manifest.json"
INTENT = ".odplug-publishing.json"
STAGING = ".odplug-staging"
HIDDEN = ".odplug-"
"""Local files and folders whose names start with this (locks, temporaries) are not published."""

Note = Callable[[str], None]
log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file below `folder` (relative ``/`` paths) with its size and MD5, hidden
    ``.odplug-*`` names left out; links are followed."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(HIDDEN) for part in relative.parts) or not path.is_file():
            continue
        files[relative.as_posix()] = {"size": path.stat().st_size, "md5": file_digest(path)}
    return files


def read_manifest(url: str) -> dict[str, Any] | None:
    """The manifest of the folder at `url` (after `recover`), or None where odplug published
    nothing."""
    fs, root = filesystem(url)
    with storage_errors(url, "reading the manifest"):
        recover(url)
        return _read_json(fs, f"{root}/{MANIFEST}")


def _read_json(fs: AbstractFileSystem, path: str, *, holds: str = "files",
               what: str = "an odplug manifest") -> dict[str, Any] | None:
    """The JSON object at `path`, None when there is none; refused in one line when it is not
    `what` (a mapping whose `holds` key is a mapping): the intent holds its manifest."""
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        loaded = json.loads(data)
    except ValueError:
        raise OdplugError(f"{fs.unstrip_protocol(path)}: not valid JSON; it is odplug's "
                          "record of this folder: delete it to start the folder over") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get(holds), dict):
        raise OdplugError(f"{fs.unstrip_protocol(path)}: not {what} (no {holds})")
    return loaded


def recover(url: str, note: Note | None = None) -> None:
    """Finish a publish to `url` that was killed after its intent was written (module
    docstring); nothing to do otherwise. Said through `note`, else as a logged warning: the
    many reads that recover first (a manifest, a target's state) have no note to give, and a
    user should know that an earlier upload was finished now."""
    fs, root = filesystem(url)
    with storage_errors(url, "reading"):  # every look at a URL starts here: say only that
        intent = _read_json(fs, f"{root}/{INTENT}", holds="manifest",
                            what="an odplug upload's intent")
    if intent is None:
        return
    said = f"{url}: finishing an upload that was interrupted"
    if note is None:
        log.warning(said)
    else:
        note(said)
    with storage_errors(url, "finishing an interrupted upload"):
        _finish(fs, root, intent)


def new_stage() -> str:
    """A staging prefix's id, for files uploaded before `publish_folder` runs (`stage`)."""
    return uuid.uuid4().hex[:12]


def stage_url(url: str, stage: str) -> str:
    """Where files of the publish `stage` to `url` are uploaded before it."""
    return f"{url.rstrip('/')}/{STAGING}/{stage}"


def publish_folder(local: Path, url: str, *, by: str, note: Note = lambda text: None,
                   foreign: str = "", extra: dict[str, Any] | None = None,
                   stage: str | None = None) -> dict[str, Any]:
    """Make the folder at `url` hold exactly `local`'s files (its previous files removed),
    whole or not at all (module docstring); returns the new manifest.

    `by` says what wrote it (``data.import``), kept in the manifest with `extra` (a run's
    records URL, say). With `foreign`, a URL that holds objects but no odplug manifest is
    refused with that text as the reason: an output that is replaced whole must not swallow
    someone else's files. With `stage` (`new_stage`), the files already uploaded under
    `stage_url` (the shards a Beam pipeline wrote there) are part of the new folder too,
    listed in the manifest by size and ETag (they never were on this machine to take an MD5).
    """
    fs, root = filesystem(url)
    files = local_files(local) if local.is_dir() else {}
    staged = entries(fs, f"{root}/{STAGING}/{stage}") if stage else {}
    if not files and not staged:
        raise OdplugError(f"{local}: nothing to upload to {url}")
    both = sorted(set(files) & set(staged))
    if both:
        raise ValueError(f"{both[0]} is both in {local} and staged for {url}")
    with storage_errors(url, "uploading"):
        recover(url, note)
        old = _read_json(fs, f"{root}/{MANIFEST}")
        present = entries(fs, root)
        if old is None and foreign:
            theirs = sorted(n for n in present if not n.startswith(HIDDEN))
            if theirs:
                raise OdplugError(f"{url}: holds {len(theirs)} object(s) ({theirs[0]}, ...) and "
                                  f"no {MANIFEST}, so odplug did not write it; {foreign}")
        for name in {n.split("/", 2)[1] for n in present if n.startswith(STAGING + "/")}:
            if name != stage:  # killed before their intent
                fs.rm(f"{root}/{STAGING}/{name}", recursive=True)
        before = old["files"] if old else {}
        changed = [name for name, entry in files.items()
                   if before.get(name) != entry or name not in present]
        prefix = f"{STAGING}/{stage or new_stage()}"
        size = sum(files[name]["size"] for name in changed)
        if changed:
            note(f"Uploading {len(changed)} file(s), {size / 1e6:.1f} MB, to {url}")
            fs.put([str(local / name) for name in changed],
                   [f"{root}/{prefix}/{name}" for name in changed])
        files.update({name: listed_entry(info) for name, info in staged.items()})
        manifest = {"format": 1, "by": by, "published": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime()),
                    **(extra or {}), "files": dict(sorted(files.items()))}
        intent = {"stage": prefix, "copy": changed + sorted(staged), "manifest": manifest,
                  "remove": sorted(set(before) - set(files))}
        fs.pipe_file(f"{root}/{INTENT}", json.dumps(intent).encode())
        _go_forward(fs, root, intent, url, note)
    return manifest


def _go_forward(fs: AbstractFileSystem, root: str, intent: dict[str, Any], url: str,
                note: Note) -> None:
    """`_finish` a publish whose intent is written. From there the publish goes forward: a
    Ctrl-C during it is held until it is done (the command's usual line, "nothing was left
    half-written", is then true), and a second Ctrl-C stops at once, saying that the next
    odplug command that reads or writes `url` finishes it (`recover`).

    Held, not caught and retried: a KeyboardInterrupt leaves fsspec's call running on its own
    event-loop thread, and a second `_finish` beside it would race it. Signals reach the main
    thread only; elsewhere there is nothing to hold.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:  # None: a handler not set from Python
        _finish(fs, root, intent)
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if held:
            raise Interrupted(f"odplug: interrupted while publishing {url}: its previous "
                              "files and the new ones are both there; the next odplug "
                              "command that reads or writes it finishes the upload")
        held.append(signum)
        note(f"odplug: finishing the upload to {url} before stopping (Ctrl-C again leaves it "
             "for the next odplug command that reads or writes it)")

    previous = signal.signal(signal.SIGINT, hold)
    try:
        _finish(fs, root, intent)
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _finish(fs: AbstractFileSystem, root: str, intent: dict[str, Any]) -> None:
    """Steps 3 and 4 of the module docstring; safe to run again after a kill."""
    stage = f"{root}/{intent['stage']}"
    for name in intent["copy"]:
        source = f"{stage}/{name}"
        if fs.exists(source):
            fs.copy(source, f"{root}/{name}")
        elif not fs.exists(f"{root}/{name}"):
            raise OdplugError(f"{fs.unstrip_protocol(root)}: an interrupted upload cannot be "
                              f"finished: {name} is missing from its staging prefix; upload "
                              "the folder again")
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(intent["manifest"], indent=1).encode())
    for name in intent["remove"]:
        if fs.exists(f"{root}/{name}"):
            fs.rm_file(f"{root}/{name}")
    if fs.exists(stage):
        fs.rm(stage, recursive=True)
    fs.rm_file(f"{root}/{INTENT}")


def check_target(url: str, why: str) -> None:
    """Refuse, before any work, an output URL that holds objects odplug did not publish
    (`why` says what the output is: replaced whole, a run folder of odplug's own), or that
    is in a bucket that does not exist or cannot be written (`_check_bucket`)."""
    state = target_state(url)
    if state == "foreign":
        raise OdplugError(f"{url}: not empty and not an odplug output (no {MANIFEST}); {why}")
    if state == "empty":
        _check_bucket(url)


def _check_bucket(url: str) -> None:
    """Refuse an output in a bucket that does not exist, or that these credentials cannot
    write: its listing is merely empty, and the upload at the very end (after a whole import,
    training or export) would be the first to fail. Refused on evidence only: the bucket's
    own look-up needs rights that a role limited to a prefix lacks (S3's HeadBucket, GCS's
    storage.buckets.get), so where it says no, a hidden probe object is written and deleted,
    and only its failure refuses. Object stores only: elsewhere (``memory://``, a mounted
    file system) the first part of the path is a folder that the publish creates."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in BUCKET_SCHEMES:
        return
    fs, root = filesystem(url)
    split = getattr(fs, "split_path", None)  # s3fs and gcsfs know their bucket names
    bucket = split(root)[0] if callable(split) else root.split("/", 1)[0]
    with storage_errors(url, "looking for its bucket"):
        if fs.exists(bucket):
            return
    probe = f"{root}/{HIDDEN}probe-{uuid.uuid4().hex[:12]}"
    try:
        fs.pipe_file(probe, b"")
    except FileNotFoundError:
        raise OdplugError(f"{url}: bucket {bucket!r} does not exist; create it first"
                          ) from None
    except Exception as error:  # backends raise their own types (PermissionError, ...)
        raise OdplugError(f"{url}: cannot write there: {reason(error)}") from None
    with contextlib.suppress(Exception):  # the probe's name is hidden: a later publish's too
        fs.rm_file(probe)


def target_state(url: str) -> str:
    """``empty``, ``odplug`` (published by odplug) or ``foreign`` (objects, no manifest)."""
    fs, root = filesystem(url)
    with storage_errors(url, "listing"):
        recover(url)
        if fs.exists(f"{root}/{MANIFEST}"):
            return "odplug"
        present = [n for n in entries(fs, root) if not n.startswith(HIDDEN)]
    return "foreign" if present else "empty"
