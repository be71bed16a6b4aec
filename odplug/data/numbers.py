"""Numbers read from annotation text (CSV cells, YOLO label fields).

No pixel count or coordinate needs more than `MAX_NUMBER_CHARS` characters; longer text is
refused unparsed, so a number with hundreds of digits costs nothing and cannot overflow on the
way to an int.
"""

from __future__ import annotations

import math

MAX_NUMBER_CHARS = 32


def finite_number(text: str | None) -> float | None:
    """`text` as a finite number; None for anything else (empty, words, nan, inf, huge)."""
    text = (text or "").strip()
    if len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
