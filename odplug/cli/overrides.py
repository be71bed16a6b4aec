"""``--set section.key=value,...`` on the command line, values typed as TOML literals; the flag
may be repeated (``--set a.b=1 --set c.d=2``), each one holding one or more.

So ``train.steps=500`` is an integer, ``model.fpn=true`` a boolean, ``model.levels=[3,4,5]``
a list, and a bare word a string, exactly as they would be written in the config file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from odplug.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def parse_overrides(texts: str | Iterable[str]) -> dict[str, object]:
    """The overrides of one ``--set`` value, or of several; a key given twice keeps the last."""
    values: dict[str, object] = {}
    for part in [part for text in _one_or_many(texts) for part in _split(text)]:
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise UsageError(
                f"--set {part!r}: write it as section.key=value, e.g. train.steps=500"
            )
        try:
            values[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            values[key] = raw.strip()
        except RecursionError:
            raise UsageError(f"--set {part!r}: the value is nested too deeply") from None
    return values


def _one_or_many(texts: str | Iterable[str]) -> Iterable[str]:
    return [texts] if isinstance(texts, str) else texts


def _split(text: str) -> list[str]:
    """Split on commas that are not inside [brackets], so lists survive."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]
