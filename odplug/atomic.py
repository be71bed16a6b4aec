"""Writes that either complete or leave nothing under the final name.

Every file odplug produces goes through here: written beside its destination under a hidden
temporary name and renamed into place, so a crash or Ctrl-C never leaves a truncated record
file or report that a later step would trust. A folder that must change as one unit (an
import's output, an export's) is filled under a hidden staging name beside it and swapped in
whole by `replace_folder`, under `folder_lock`.

The names beside a folder ``out``, all hidden so no reader of ``out`` ever sees them:

- ``.odplug-lock-out``: the lock file; it stays, empty, between runs.
- ``.odplug-stage-out-<pid>-<id>``: a run's new output while it is written.
- ``.odplug-old-out-<pid>-<id>``: the previous output during the swap, until it is deleted.

The swap is two renames (``out`` to the old name, the staging folder to ``out``) and then the
deletion of the old folder. The recovery rule, applied by `recover_folder` at the start of the
next run: if ``out`` is missing while an old folder and a staging folder of the same run are
present, that run died between its two renames and the old folder is renamed back to ``out``;
every other leftover belongs to a run that died before its swap or after it, and is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from odplug.errors import OdplugError

TEMP_PREFIX = ".odplug-tmp-"
LOCK_PREFIX = ".odplug-lock-"
STAGE_PREFIX = ".odplug-stage-"
ASIDE_PREFIX = ".odplug-old-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path`; rename it to `path` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        yield handle


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that wants a name, not a handle (h5py,
    Keras' ``save_weights``); renamed to `path` only if the block succeeds, deleted otherwise.

    The temporary name ends with `path`'s own suffixes (``.weights.h5``), which such writers
    check; a process killed in the block leaves it behind, hidden (`remove_temporaries`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=suffix,
                                dir=path.parent)
    os.close(fd)
    try:
        yield Path(name)
        os.chmod(name, _FILE_MODE)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files that killed writers left in `folder` (not below it).

    Only while no writer works in `folder`: a live writer's file would go too."""
    for path in folder.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


_held: set[Path] = set()
"""Lock files this process holds: POSIX locks never conflict within one process."""


@contextlib.contextmanager
def folder_lock(target: Path, what: str = "import") -> Iterator[None]:
    """Hold the lock of the folder `target` (which may not exist yet) for the block, or refuse,
    naming `what` holds it (an ``import``, an ``export``).

    A POSIX record lock on a hidden file beside `target`: the kernel drops it when the process
    ends, however it ends, and unlike ``flock`` a forked worker does not inherit it, so workers
    orphaned by a kill -9 of their parent cannot keep the folder locked.
    """
    path = target.parent / f"{LOCK_PREFIX}{target.name}"
    busy = OdplugError(f"{target}: another odplug {what} is writing this folder now; wait "
                       "for it to finish or give another output folder")
    if path in _held:
        raise busy
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise OdplugError(f"{target}: cannot write beside it: {error}") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise busy from None
            raise
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
    finally:
        os.close(fd)


def _leftovers(target: Path, prefix: str) -> dict[str, Path]:
    """The folders named `prefix` + `target`'s name + ``-<pid>-<id>`` beside it, by run."""
    found = {}
    start = f"{prefix}{target.name}-"
    for path in target.parent.iterdir():
        name, _, run = path.name.rpartition("-")
        name, _, pid = name.rpartition("-")
        if f"{name}-" == start and pid.isdigit() and run:
            found[f"{pid}-{run}"] = path
    return found


def recover_folder(target: Path) -> None:
    """Apply the recovery rule (module docstring) to what killed runs left beside `target`.

    Call it holding `folder_lock(target)`: then no leftover belongs to a live run.
    """
    staged = _leftovers(target, STAGE_PREFIX)
    aside = _leftovers(target, ASIDE_PREFIX)
    cut = next((run for run in aside if run in staged), None)
    if cut is not None and not os.path.lexists(target):
        os.rename(aside.pop(cut), target)
    for leftover in [*staged.values(), *aside.values()]:
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def replace_folder(target: Path) -> Iterator[Path]:
    """A fresh empty folder beside `target` for the block to fill; it becomes `target` only if
    the block succeeds, and is deleted otherwise. Hold `folder_lock(target)` around it.

    Beside, so that the swap is two renames on one file system, with no byte copied.
    """
    run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = target.parent / f"{STAGE_PREFIX}{target.name}-{run}"
    staging.mkdir()
    try:
        yield staging
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        old = target.parent / f"{ASIDE_PREFIX}{target.name}-{run}"
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
