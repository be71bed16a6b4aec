"""The verification table on the console: drawn with rich in a terminal, where a markdown table
is hard to read, and printed as the markdown file holds it everywhere else (logs, CI, pipes,
where a person or a program may copy it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odplug.exports.verify import Row


def show_verification(rows: Sequence[Row], markdown: Path, *,
                      interactive: bool | None = None) -> None:
    """Print the verification of `rows`, whose file is `markdown` (``verification.md``).

    In a terminal (`interactive`, by default whether stdout is one) the table is a rich table
    with the file's other lines (what the intervals mean, the int8 checks) under it; the cells
    are the file's own (`odplug.exports.verify.table_cells`), so the two never disagree.
    """
    text = markdown.read_text()
    if not (sys.stdout.isatty() if interactive is None else interactive):
        print(text, end="")
        return
    from rich.console import Console
    from rich.table import Table

    from odplug.exports.verify import COLUMNS, NUMERIC, table_cells

    table = Table(title="Verification on the test split", title_justify="left")
    for name, numeric in zip(COLUMNS, NUMERIC, strict=True):
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for cells in table_cells(rows):
        table.add_row(*cells)
    console = Console(file=sys.stdout, force_terminal=interactive)
    console.print(table)
    rest = [line for line in text.splitlines() if not line.startswith("|")]
    console.print("\n".join(rest).strip(), markup=False, highlight=False)
