"""The verification table: its rows, their targets, and the one way their cells are written.

Each row is one exported model: its COCO mAP@.5 and mAP@[.5:.95] on the same records as the
SavedModel it came from, both as a share of the SavedModel's with a 95% interval, whether it
meets its target, its file size, and its median latency per image on this machine.

Targets: a float export (float32, float16) keeps >= 99.5% of the SavedModel's mAP@.5 and
mAP@[.5:.95], an 8-bit one (int8, uint8) >= 98%. A row meets its target when both point
estimates (the ratios on every test image) reach it; the intervals (`odplug.exports.verify`)
say how far the point estimates can be trusted.

No TensorFlow here: the rows are read back and shown by the terminal, ``verification.md`` and
the HTML report (`odplug.report`), which must not import it; `odplug.exports.verify` runs the
models and re-exports these names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from odplug.atomic import atomic_write_text
from odplug.model.bootstrap import RESAMPLES

FLOAT_TARGET = 0.995
EIGHT_BIT_TARGET = 0.98
EIGHT_BIT = ("int8", "uint8")


def target_for(variant: str) -> float:
    """The share of the SavedModel's mAP a model of `variant` must keep."""
    return EIGHT_BIT_TARGET if variant in EIGHT_BIT else FLOAT_TARGET


@dataclass
class Row:
    """One model's line of the table; `to_json` and `from_json` are its one stored form, in
    ``verification.json`` and in the pipeline's state alike."""

    name: str
    path: str
    size_mb: float
    map50: float
    map: float
    map50_vs_reference: float
    """This model's mAP@.5 as a fraction of the SavedModel's."""
    latency_ms: float
    images: int
    note: str = ""
    """The exporter's remark on this model (`Exporter.note`), e.g. the Edge TPU prediction."""
    map_vs_reference: float = 1.0
    """This model's mAP@[.5:.95] as a fraction of the SavedModel's."""
    map50_low: float = 1.0
    map50_high: float = 1.0
    """The 95% paired bootstrap interval of `map50_vs_reference`."""
    map_low: float = 1.0
    map_high: float = 1.0
    """The 95% paired bootstrap interval of `map_vs_reference`."""
    target: float | None = None
    """The share both ratios must reach (None for the SavedModel itself)."""
    exporter: str | None = None
    variant: str | None = None
    """The exported model's `ExportedModel.exporter` and `.variant` (None for the SavedModel)."""
    runtime: str | None = None
    """The runtime besides the exporter's own that ran the model (`Exporter.other_runtimes`,
    e.g. ``MediaPipe Tasks``), None for the exporter's own."""
    held_to: str | None = None
    """For a `runtime` row: the row of the same model in its own runtime, whose mAP@.5 this
    row's must keep (`held_ratio` >= `target`); its mAP@[.5:.95] is shown, not held (MediaPipe
    returns whole-pixel boxes, which cost a few percent of it on small images)."""
    held_ratio: float = 1.0
    """This row's mAP@.5 as a fraction of the `held_to` row's."""

    def to_json(self) -> dict[str, Any]:
        """Every field, and whether the row met its target (`met`), for readers of the file."""
        return {**asdict(self), "met": self.met}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        """The row `to_json` wrote: `met` is worked out again, a field an older file lacks gets
        its default, and a document that is not a row is a `ValueError`."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except (AttributeError, TypeError) as error:  # not a mapping, or a field missing
            raise ValueError(f"not a verification row: {error}") from None

    @property
    def met(self) -> bool:
        """Both point estimates reach `target` (the SavedModel always meets its own); a
        `runtime` row's mAP@.5 against its `held_to` row."""
        return self.target is None or self.lowest_ratio >= self.target

    @property
    def lowest_ratio(self) -> float:
        """The ratio its target is checked on: the lower of the two against the SavedModel,
        or a `runtime` row's mAP@.5 against its `held_to` row (NaN stays NaN: not met)."""
        if self.held_to is not None:
            return self.held_ratio
        return min(self.map50_vs_reference, self.map_vs_reference)

    def shortfall(self, target: float) -> str:
        """One line naming this model, its ratios with intervals and the `target` missed."""
        if self.held_to is not None:
            return (f"{self.name}: mAP@.5 {self.held_ratio:.1%} of {self.held_to}'s on "
                    f"{self.images} test images, target >= {target:.1%}")
        return (f"{self.name}: mAP@.5 {self.map50_vs_reference:.1%} "
                f"({self.map50_low:.1%}-{self.map50_high:.1%}), mAP@[.5:.95] "
                f"{self.map_vs_reference:.1%} ({self.map_low:.1%}-{self.map_high:.1%}) of the "
                f"SavedModel's on {self.images} test images, target >= {target:.1%}")


def _cell(ratio: float, low: float, high: float, reference: bool) -> str:
    return f"{ratio:.1%}" if reference else f"{ratio:.1%} ({low:.1%}-{high:.1%})"


def _verdict(row: Row) -> str:
    if row.target is None:
        return "reference"
    if row.held_to is not None:
        return (f"{'met' if row.met else 'NOT met'} (mAP@.5 {row.held_ratio:.1%} of "
                f"{row.held_to}'s, >= {row.target:.1%})")
    return f"{'met' if row.met else 'NOT met'} (>= {row.target:.1%})"


COLUMNS = ("model", "size (MB)", "mAP@.5", "mAP@[.5:.95]", "mAP@.5 vs SavedModel (95% CI)",
           "mAP@[.5:.95] vs SavedModel (95% CI)", "target", "latency (ms)", "notes")
"""The verification table's columns; those that hold numbers are right-aligned (`NUMERIC`)."""
NUMERIC = (False, True, True, True, True, True, False, True, False)


def table_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """Each row's cells, as text, in `COLUMNS` order: the one place they are formatted, for
    the markdown file (`to_markdown`) and the terminal (`odplug.cli` draws them with rich)."""
    return [(row.name, f"{row.size_mb:.2f}", f"{row.map50:.3f}", f"{row.map:.3f}",
             _cell(row.map50_vs_reference, row.map50_low, row.map50_high, row.target is None),
             _cell(row.map_vs_reference, row.map_low, row.map_high, row.target is None),
             _verdict(row), f"{row.latency_ms:.1f}", row.note) for row in rows]


def intervals_note(rows: Sequence[Row]) -> str:
    """What the intervals and the verdicts mean, said under the table."""
    images = rows[0].images if rows else 0
    return (f"Intervals: paired bootstrap over the {images} test images ({RESAMPLES} draws). "
            "Met: both ratios reach the target; an upper bound under it means below target "
            "with 95% confidence, an interval across it that the test split cannot tell.")


def to_markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if numeric else "---" for numeric in NUMERIC) + "|"]
    for cells in table_cells(rows):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines.append(f"\n{intervals_note(rows)}")
    return "\n".join(lines) + "\n"


def missed(rows: Sequence[Row], min_ratio: float | None = None) -> list[str]:
    """One line per exported model whose mAP@.5 or mAP@[.5:.95] ratio (point estimate) is
    under `min_ratio`, or under its own target (`Row.target`) when `min_ratio` is None."""
    lines = []
    for row in rows:
        if row.target is None:
            continue
        target = row.target if min_ratio is None else min_ratio
        ratios = ((row.held_ratio,) if row.held_to is not None
                  else (row.map50_vs_reference, row.map_vs_reference))
        if min(ratios) < target or any(np.isnan(ratio) for ratio in ratios):
            lines.append(row.shortfall(target))
    return lines


def quantization_checks(rows: Sequence[Row]) -> list[str]:
    """Each int8 model against the float32 one of the same exporter: mAP@.5 kept
    (target: >= 99%: quantization alone costs little) and file size (target: <= 0.35x)."""
    by_model = {(row.exporter, row.variant): row for row in rows
                 if row.exporter and row.runtime is None}
    lines = []
    for row in rows:
        if not row.exporter or row.runtime is not None or row.variant != "int8":
            continue
        float_row = by_model.get((row.exporter, "float32"))
        if float_row is None or not float_row.map50:
            continue
        kept = row.map50 / float_row.map50
        size = row.size_mb / float_row.size_mb if float_row.size_mb else float("nan")
        lines.append(
            f"{row.name}: {kept:.1%} of {float_row.name}'s mAP@.5 (target >= 99%: "
            f"{'met' if kept >= 0.99 else 'NOT met'}), "
            f"{size:.2f}x the size (<= 0.35x: {'met' if size <= 0.35 else 'NOT met'})")
    return lines


def write_table(rows: Sequence[Row], folder: Path) -> tuple[Path, Path]:
    markdown, data = folder / "verification.md", folder / "verification.json"
    checks = quantization_checks(rows)
    atomic_write_text(markdown, to_markdown(rows) + "".join(f"\n- {c}" for c in checks)
                      + ("\n" if checks else ""))
    atomic_write_text(data, json.dumps([row.to_json() for row in rows], indent=2) + "\n")
    return markdown, data
