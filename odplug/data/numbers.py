"""Numbers written as text in annotation files (CSV cells, XML elements), read defensively.

Annotation files come from many tools and from hand edits: a coordinate may be empty, a word,
``nan``, ``inf`` or hundreds of digits long. Each importer that reads numbers from text uses
these, so all of them refuse the same things and show the same shortened text in the report.
"""

from __future__ import annotations

import math

MAX_NUMBER_CHARS = 32
"""No pixel count or coordinate needs more characters; longer text is refused unparsed, so a
number with hundreds of digits costs nothing and cannot overflow on the way to an int."""


def finite_number(text: str | None) -> float | None:
    """`text` (outer spaces ignored) as a finite float; None for anything else (empty, words,
    nan, inf, longer than `MAX_NUMBER_CHARS`)."""
    text = (text or "").strip()
    if len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def shown(text: str | None) -> str | None:
    """`text` cut to `MAX_NUMBER_CHARS` (then ``...``), for a report line about a bad number."""
    if text is None or len(text) <= MAX_NUMBER_CHARS:
        return text
    return text[:MAX_NUMBER_CHARS] + "..."
