"""A matplotlib figure made and saved the one way every picture of odplug is.

`matplotlib.figure.Figure` directly, never pyplot: no global figure registry that a long
training run would fill, no GUI backend to pick on a headless machine, safe in threads. The
file is written whole (`odplug.atomic`), so a report or a reader never sees half a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from odplug.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """An empty figure `width` x `height` inches at `DPI`, laid out to keep labels inside."""
    from matplotlib.figure import Figure  # imported here: ~0.3 s that the CLI need not pay

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(figure: Figure, path: Path) -> Path:
    """`figure` as a PNG at `path`, written whole; returns `path`."""
    atomic_write_bytes(path, png_bytes(figure))
    return path


def no_data(axes: object, text: str) -> None:
    """Say in an empty panel why it is empty, rather than leaving blank axes."""
    axes.text(0.5, 0.5, text, ha="center", va="center",  # type: ignore[attr-defined]
              transform=axes.transAxes, color="0.4", wrap=True)  # type: ignore[attr-defined]
