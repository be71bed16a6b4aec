"""The "did you mean" of every error about a name the user typed: one wording everywhere.

A typo in ``--to``, ``--format``, ``--quantize`` or a config key gets the closest known name,
so the fix is in the error line itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of `choices`, or ``""`` when none is close.

    The leading space lets callers append it to a sentence: ``f"unknown {word!r}.{hint}"``.
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown(what: str, word: str, choices: Iterable[str]) -> str:
    """The whole error line: ``unknown WHAT 'word'. Did you mean 'x'? Available: a, b.``"""
    names = sorted(choices)
    available = ", ".join(names) or "none"
    return f"unknown {what} {word!r}.{did_you_mean(word, names)} Available: {available}."
