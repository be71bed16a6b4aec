"""What a section of the report is made of: sentences, tables, pictures and grids of pictures.

The sections (`odplug.report.sections`, `odplug.report.compare`) turn what the stages left
into these plain values and the template only lays them out, each by its `kind`: so every
decision about what to show, and what to say when something is missing, is Python that a test
can call, and the template holds no logic beyond loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from odplug.pictures.boxes import STYLES
from odplug.report.embed import Shown


@dataclass(frozen=True)
class Note:
    """A sentence of the page: what a part shows, or why it is missing and how to get it."""

    kind: ClassVar[str] = "note"
    text: str
    command: str = ""
    """A command that draws what is missing, shown as code after the sentence."""


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: Sequence[bool] = ()
    """Per column: right-aligned (numbers)."""
    marked: Sequence[bool] = ()
    """Per row: drawn as one to look at (a model that missed its target)."""

    def align(self, column: int) -> str:
        return "num" if column < len(self.numeric) and self.numeric[column] else ""


@dataclass(frozen=True)
class Picture:
    kind: ClassVar[str] = "picture"
    shown: Shown


@dataclass(frozen=True)
class Legend:
    """Which colour and line means what, in the words of `odplug.pictures.boxes.STYLES`."""

    kind: ClassVar[str] = "legend"
    entries: tuple[tuple[str, bool, str], ...]
    """(CSS colour, dashed, meaning) per style."""

    @classmethod
    def of(cls, *names: str) -> Legend:
        return cls(tuple(("#{:02x}{:02x}{:02x}".format(*STYLES[name].colour),
                          STYLES[name].dashed, STYLES[name].meaning) for name in names))


@dataclass(frozen=True)
class Cell:
    uri: str | None
    caption: str
    differs: bool = False
    """Drawn as a difference to look at (a model that finds what the reference does not)."""


@dataclass
class Grid:
    """Rows of small pictures under column headings: one test image per row."""

    kind: ClassVar[str] = "grid"
    columns: Sequence[str]
    rows: list[tuple[str, list[Cell]]]
    """(the row's heading, one cell per column)."""


Block = Note | Table | Picture | Legend | Grid


@dataclass
class Section:
    key: str
    """The HTML id: the table of contents links to it."""
    title: str
    blocks: list[Block] = field(default_factory=list)
