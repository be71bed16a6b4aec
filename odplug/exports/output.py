"""The export folder: which folders an export may replace whole, and where its files end up.

An export is written into a staging folder beside its output and swapped in whole
(`odplug.atomic.replace_folder`), so the previous export is either kept byte for byte or
replaced entirely, never mixed with the new one. Replacing whole deletes what the folder held,
so only a folder that holds nothing but an export is replaced: one sub-folder per exporter
(named for any registered exporter), the verification table, the detections and the report it
shows, and odplug's hidden temporaries.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from odplug.errors import OdplugError

REPORT_FILE = "report.html"
"""The page `odplug.report` writes into every export folder."""
DETECTIONS_FILE = "verification-detections.json"
"""Every model's detections on the test images the report draws (`odplug.exports.verify`)."""
VERIFICATION_FILES = ("verification.md", "verification.json", DETECTIONS_FILE, REPORT_FILE)
"""The files an export writes beside its models' folders (`odplug.exports.table`)."""
HIDDEN_PREFIX = ".odplug-"


def check_output(out: Path, formats: Collection[str]) -> None:
    """Refuse `out` unless an export may replace it whole: a folder that does not exist yet,
    or one holding only what an export writes (`formats` are the registered exporters'
    names); never the current folder or one holding it, and never a file."""
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise OdplugError(f"{out}: is the current folder or holds it, and an export replaces "
                          "its output folder whole; give a folder of its own")
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise OdplugError(f"{out}: is a file, not a folder; give an output folder")
    foreign = sorted(entry.name for entry in target.iterdir()
                     if not _exported(entry, formats))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more"
                                          if len(foreign) > 3 else "")
        raise OdplugError(f"{out}: holds {shown}, which no export wrote, and an export replaces "
                          "its output folder whole; give a folder of its own (or empty it)")


def _exported(entry: Path, formats: Collection[str]) -> bool:
    if entry.name.startswith(HIDDEN_PREFIX):
        return True
    if entry.name in VERIFICATION_FILES:
        return entry.is_file()
    return entry.name in formats and entry.is_dir() and not entry.is_symlink()


def moved(path: Path, staging: Path, out: Path) -> Path:
    """Where `path`, written under `staging`, is once `staging` has become `out`; any other
    path (the SavedModel's) as it is."""
    try:
        return out / path.relative_to(staging)
    except ValueError:
        return path


def unchanged_line(out: Path, error: OSError, staging: Path | None) -> str:
    """A file-system error while exporting (a full disk, say) as one line naming the output
    and the file (where the export will have put it), and that the output is unchanged."""
    reason = error.strerror or str(error) or type(error).__name__
    where = ""
    if error.filename is not None:
        name = Path(os.fsdecode(error.filename))
        where = f" ({moved(name, staging, out) if staging else name})"
    return f"{out}: {reason}{where}; the export failed and the folder is unchanged"
