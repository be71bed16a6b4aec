"""Runs, exports and predictions whose folders are bucket URLs (`odplug.storage`).

Trainers, exporters and runtimes work on local paths (their plugin contracts hand them a
`Path`), so a URL is turned into a local folder at the edge of each workflow, one way for
all of them:

- an input (``--records``, ``--model``, ``--source`` of predict) is downloaded into odplug's
  cache, only what changed since the last time (`odplug.storage.fetch`);
- a run (``--run``) is trained in its local copy in the cache, brought up to date from the
  bucket first (so ``--resume`` continues the bucket's run on any machine), published after
  every validation (only the files that changed), and when training ends, however it ends
  (Ctrl-C and errors included): a machine lost mid-run leaves the bucket the run as of its
  last validation, to resume from anywhere;
- an output (``model.export --out``, ``model.predict --out``) is written locally as ever and
  published to its URL whole once complete.

The manifest of a run trained from records in a bucket keeps their URL (``records``), so an
export of that run on another machine verifies on the same records without ``--records``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from odplug.errors import Interrupted, OdplugError
from odplug.storage import fetched, is_url, local_copy, publish_folder, read_manifest
from odplug.storage.fetch import held_from_url, remember, sync_down, work_copy
from odplug.storage.publish import HIDDEN, check_target, target_state
from odplug.storage.urls import clean, named_by_url

Note = Callable[[str], None]
RUN_FOREIGN = "a run folder is odplug's own: give a new or empty one"
OUTPUT_FOREIGN = "an output folder is replaced whole: give a new or empty one"


def any_url(*values: object) -> bool:
    return any(is_url(str(v)) for v in values if v is not None)


def input_path(value: str | os.PathLike[str], what: str, note: Note) -> Path:
    """`value` as a local path: a URL's cached copy (downloaded as needed), else the path."""
    return fetched(str(value), what, note=note) if is_url(str(value)) else Path(value)


def records_summary(folder: str, note: Note, *, geometry: Any = None) -> dict[str, Any]:
    """`odplug.data.stats.folder_stats` of a records folder given as the user typed it (a
    path, or a bucket URL read through its cached copy), what it says naming the URL:
    the summary's folder and problem files, and its errors."""
    from odplug.data.stats import folder_stats

    records = input_path(folder, "TFRecord folder (data.import's output)", note)
    if not is_url(folder):
        return folder_stats(records, geometry=geometry)
    try:
        summary = folder_stats(records, geometry=geometry)
    except OdplugError as error:  # a damaged record, no records: said of the URL
        error.args = (named_by_url(str(error), records, folder),)
        raise
    summary["folder"] = clean(folder)
    for problem in summary["problems"]:
        problem["file"] = named_by_url(problem["file"], records, folder)
    return summary


def local_output(out: Path | str) -> tuple[Path, str | None]:
    """Where an output is written: `out` itself, or for a URL its local copy (`local_copy`)
    and the URL to publish it to (`publish_output`), refused first when it holds objects
    odplug did not publish."""
    if not is_url(str(out)):
        return Path(out), None
    check_target(str(out), OUTPUT_FOREIGN)
    return local_copy(str(out)), str(out)


def records_of(url: str) -> str | None:
    """The records URL that the run or export published at `url` was trained on, if kept."""
    manifest = read_manifest(url)
    found = manifest.get("records") if manifest else None
    return found if isinstance(found, str) else None


def free_run_url(url: str) -> str:
    """`url` if no run is there, else the first of ``<url>-2``, ``-3``, ... with none (the
    bucket form of `odplug.run.numbered_run_dir`)."""
    if target_state(url) == "empty":
        return url
    number = 2
    while target_state(f"{clean(url)}-{number}") != "empty":
        number += 1
    return f"{clean(url)}-{number}"


@contextlib.contextmanager
def run_folder(url: str, note: Note, *, records: str | None) -> Iterator[Path]:
    """The local copy of the run at `url`, made to match the bucket, for the block to train
    in; published back to `url` when the block ends, whether it succeeds or not."""
    check_target(url, RUN_FOREIGN)
    local = work_copy(url)
    # A copy that once matched files of the bucket, which now holds none, is of a run deleted
    # from the bucket since. One that never matched any holds work never uploaded (every
    # upload failed: no such bucket yet, no write access): that is kept, to be uploaded now.
    recorded = held_from_url(local)
    if not sync_down(url, local, note=note, keep_local=True) and recorded:
        shutil.rmtree(local, ignore_errors=True)
    failed: bool | None = True
    try:
        yield local
        failed = False
    except Interrupted:  # a second Ctrl-C in an upload: stop now, as it said (no publish)
        failed = None
        raise
    finally:
        if failed is not None:
            _publish_run(local, url, note, records=records, failed=failed)


def upload_run(local: Path, url: str, note: Note, *, records: str | None) -> None:
    """Publish the run as it stands now (after a validation), so a machine lost later leaves
    the bucket a run to resume; a failed upload is a warning, and training goes on."""
    _publish_run(local, url, note, records=records, failed=True)


def _publish_run(local: Path, url: str, note: Note, *, records: str | None,
                 failed: bool) -> None:
    if not local.is_dir() or not any(p.is_file() and not p.name.startswith(HIDDEN)
                                     for p in local.rglob("*")):
        return
    extra: dict[str, Any] = {"records": records} if records else {}
    try:
        manifest = publish_folder(local, url, by="model.train", note=note,
                                  foreign=RUN_FOREIGN, extra=extra)
        remember(local, manifest["files"])
    except OdplugError as error:
        kept = (f"the run is kept in its local copy {local}, and the next training of {url} "
                "uploads it (--resume to go on)")
        if not failed:
            error.args = (f"{error}; {kept}",)
            raise
        note(f"odplug: warning: the run could not be uploaded: {error}; {kept}")


def publish_output(local: Path, url: str, by: str, note: Note, *,
                   records: str | None = None) -> None:
    """A finished local output (an export, predictions) published to `url` whole; `local`
    is `url`'s local copy (`local_copy`), which then counts as up to date."""
    manifest = publish_folder(local, url, by=by, note=note, foreign=OUTPUT_FOREIGN,
                              extra={"records": records} if records else {})
    remember(local, manifest["files"])
