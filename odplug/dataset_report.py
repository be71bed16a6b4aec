"""What an import wrote, what it skipped and why: kept as data, saved as JSON, printed short.

Workers fill their own `Report` and the parent merges them, so every object crosses process
boundaries by pickling; nothing here holds a file handle or a lock.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from odplug.atomic import atomic_write_text

log = logging.getLogger(__name__)

ProblemKind = Literal["image skipped", "box skipped", "box changed", "image note"]
"""An image note is about an image that was kept: what the user should know about it anyway
(left without a box because all of its boxes were skipped, read through a link to outside the
dataset, larger than Pillow's warning limit)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing the user should know about: the file, a short code to group by, the details."""

    kind: ProblemKind
    file: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class WarningEntry:
    """What the import changed or guessed about the whole dataset (not one file): a ratio
    rescaled, a class asked for that the dataset lacks, a split left empty."""

    code: str
    message: str


class Skip(Exception):
    """An image or object that cannot be used: the report code and the reason to show.

    Raised deep inside an importer's parsing and caught where the report entry is written, so
    each check says what is wrong in one line and the caller decides what is skipped."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Report:
    """Counts per split and class, and every problem met on the way."""

    images: Counter[str] = field(default_factory=Counter)
    boxes: Counter[str] = field(default_factory=Counter)
    classes: dict[str, Counter[str]] = field(default_factory=dict)
    filtered_boxes: Counter[str] = field(default_factory=Counter)
    reencoded: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[WarningEntry] = field(default_factory=list)

    def warn(self, code: str, message: str) -> None:
        """Tell the user now (one ``odplug: warning:`` line) and keep it in the report."""
        log.warning("%s", message)
        self.warnings.append(WarningEntry(code, message))

    def skip_image(self, file: str | Path, code: str, reason: str) -> None:
        self.problems.append(Problem("image skipped", str(file), code, reason))

    def skip_box(self, file: str | Path, code: str, reason: str) -> None:
        self.problems.append(Problem("box skipped", str(file), code, reason))

    def change_box(self, file: str | Path, code: str, reason: str) -> None:
        self.problems.append(Problem("box changed", str(file), code, reason))

    def note_image(self, file: str | Path, code: str, reason: str) -> None:
        self.problems.append(Problem("image note", str(file), code, reason))

    def filter_box(self, label: str) -> None:
        """Count a box left out on purpose (class not asked for): not a problem, still told."""
        self.filtered_boxes[label] += 1

    def count_image(self, split: str, labels: list[str]) -> None:
        self.images[split] += 1
        self.boxes[split] += len(labels)
        self.classes.setdefault(split, Counter()).update(labels)

    def merge(self, other: Report) -> None:
        self.images.update(other.images)
        self.boxes.update(other.boxes)
        for split, counts in other.classes.items():
            self.classes.setdefault(split, Counter()).update(counts)
        self.filtered_boxes.update(other.filtered_boxes)
        self.reencoded.update(other.reencoded)
        self.problems.extend(other.problems)
        self.warnings.extend(other.warnings)

    @classmethod
    def merged(cls, parts: Iterable[Report]) -> Report:
        """One report of the parts that workers filled (each writer's last step)."""
        report = cls()
        for part in parts:
            report.merge(part)
        return report

    def count_problems(self, kind: ProblemKind) -> Counter[str]:
        return Counter(p.code for p in self.problems if p.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        splits = sorted(self.images, key=split_order)
        return {
            "splits": {
                s: {
                    "images": self.images[s],
                    "boxes": self.boxes[s],
                    "classes": dict(sorted(self.classes.get(s, Counter()).items())),
                }
                for s in splits
            },
            "total": {"images": sum(self.images.values()), "boxes": sum(self.boxes.values())},
            "filtered_boxes": dict(self.filtered_boxes),
            "reencoded_images": dict(self.reencoded),
            "skipped": {
                "images": dict(self.count_problems("image skipped")),
                "boxes": dict(self.count_problems("box skipped")),
                "changed_boxes": dict(self.count_problems("box changed")),
            },
            "notes": dict(self.count_problems("image note")),
            "problems": [asdict(p) for p in self.problems],
            "warnings": [asdict(w) for w in self.warnings],
        }

    def relocate(self, show: Callable[[str], str]) -> None:
        """Rewrite every file name and reason with `show` (a dataset read from a bucket
        through a local mirror names the bucket's URLs, not the mirror's paths)."""
        self.problems = [Problem(p.kind, show(p.file), p.code, show(p.reason))
                         for p in self.problems]
        self.warnings = [WarningEntry(w.code, show(w.message)) for w in self.warnings]

    def write_json(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(split, 3), split)


def render_summary(report: Report, *, max_problems: int = 10) -> str:
    """The printed summary: a table per split and class, problems grouped by reason."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=100, force_terminal=False, color_system=None)
    data = report.to_dict()
    classes = sorted({c for counts in report.classes.values() for c in counts})
    table = Table(title="Imported", show_footer=True)
    table.add_column("split", footer="total")
    table.add_column("images", justify="right", footer=str(data["total"]["images"]))
    table.add_column("boxes", justify="right", footer=str(data["total"]["boxes"]))
    for name in classes:
        total = sum(report.classes.get(s, Counter())[name] for s in report.classes)
        table.add_column(name, justify="right", footer=str(total))
    for split, info in data["splits"].items():
        row = [split, str(info["images"]), str(info["boxes"])]
        row += [str(info["classes"].get(name, 0)) for name in classes]
        table.add_row(*row)
    console.print(table)
    for kind, title in (
        ("image skipped", "Skipped images"),
        ("box skipped", "Skipped boxes"),
        ("box changed", "Changed boxes"),
        ("image note", "Notes on kept images"),
    ):
        counts = report.count_problems(kind)  # type: ignore[arg-type]
        if counts:
            parts = ", ".join(f"{n} {code}" for code, n in counts.most_common())
            console.print(f"{title}: {sum(counts.values())} ({parts})")
    if report.filtered_boxes:
        parts = ", ".join(f"{n} {c}" for c, n in sorted(report.filtered_boxes.items()))
        console.print(f"Left out by the class filter: {parts}")
    if report.reencoded:
        parts = ", ".join(f"{n} {why}" for why, n in report.reencoded.most_common())
        console.print(f"Re-encoded images (TensorFlow would decode them differently): {parts}")
    groups = _identical([p for p in report.problems if p.kind != "box changed"])
    for (kind, reason), files in groups[:max_problems]:
        console.print(f"  {_group_line(kind, reason, files)}", highlight=False, markup=False)
    hidden = sum(len(files) for _, files in groups[max_problems:])
    if hidden > 0:
        console.print(f"  ... and {hidden} more (see the JSON report)")
    return buffer.getvalue()


def _identical(problems: list[Problem]) -> list[tuple[tuple[str, str], list[str]]]:
    """Problems with the same kind and reason as one group of files, in first-met order: the
    console shows each group once; the JSON report keeps every problem by its file."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.kind, p.reason), []).append(p.file)
    return list(groups.items())


def _group_line(kind: str, reason: str, files: list[str], shown: int = 2) -> str:
    """``kind: file: reason`` for one file; ``kind, N times: reason (a, b and N-2 more)``."""
    if len(files) == 1:
        return f"{kind}: {files[0]}: {reason}"
    rest = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"{kind}, {len(files)} times: {reason} ({', '.join(files[:shown])}{rest})"
