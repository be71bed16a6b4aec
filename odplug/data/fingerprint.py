"""A cheap digest of a folder's files, to tell whether a dataset changed without reading it.

The pipeline uses it to decide whether an import can be reused, the ssd trainer whether an
interrupted run may continue on the records it was started on. A stat walk costs milliseconds
per thousand files; a rewritten file shows through its size or modification time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fingerprint(source: Path, *, exclude: Path | None = None) -> str:
    """A digest of the name, size and modification time of every file under `source`.

    A file source (a CSV) stands for its whole folder, where its images are; `exclude` (for
    example an output folder inside the dataset) is left out.
    """
    root = source if source.is_dir() else source.parent
    skip = os.path.abspath(exclude) if exclude is not None else None
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.abspath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: the import reports it, the digest notes it
                stat = None
            size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
            digest.update(f"{os.path.relpath(path, root)}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()
