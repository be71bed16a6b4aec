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
    Case is ignored in the comparison (``TFLite`` finds ``tflite``: difflib alone scores the
    two as unrelated), and the suggestion is the name as it is spelled in `choices`.
    """
    by_folded = {name.casefold(): name for name in choices}
    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1)
    return f" Did you mean {by_folded[close[0]]!r}?" if close else ""


def unknown(what: str, word: str, choices: Iterable[str]) -> str:
    """The whole error line: ``unknown WHAT 'word'. Did you mean 'x'? Available: a, b.``"""
    names = sorted(choices)
    available = ", ".join(names) or "none"
    return f"unknown {what} {word!r}.{did_you_mean(word, names)} Available: {available}."
