"""docs/python-api.md runs as written: its Python blocks in one namespace, in an empty folder,
each block's printed output matching the text block shown after it.

The doc trains its own 30-step detector rather than the session's `tiny_run`, so that what a
reader copies is what runs here. Numbers in the shown output are examples (a run on another
machine scores differently) and match any number; ``...`` matches anything; every word and
path must be what the block prints.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.support.tools import ROOT

DOC = ROOT / "docs" / "python-api.md"
BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.DOTALL)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def blocks() -> list[tuple[str, str | None]]:
    """Each Python block of the doc with the text block right after it, if any."""
    found = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    pairs: list[tuple[str, str | None]] = []
    for index, (kind, body) in enumerate(found):
        if kind == "python":
            after = found[index + 1] if index + 1 < len(found) else None
            pairs.append((body, after[1] if after and after[0] == "text" else None))
    return pairs


def pattern(shown: str) -> re.Pattern[str]:
    """The shown output as a pattern: numbers match any number, ``...`` anything."""
    parts = []
    for piece in re.split(r"(\.\.\.|\d+(?:\.\d+)?)", shown.strip()):
        if piece == "...":
            parts.append(".*?")
        elif NUMBER.fullmatch(piece):
            parts.append(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.DOTALL)


def test_the_doc_has_an_output_for_every_step() -> None:
    pairs = blocks()
    assert len(pairs) >= 6
    assert all(shown is not None for code, shown in pairs if "print(render_summary" not in code)


def test_the_python_api_doc_runs_as_written(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc__"}
    for number, (code, shown) in enumerate(blocks(), 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"<{DOC.name}, block {number}>", "exec"), namespace)
        if shown is not None:
            assert pattern(shown).fullmatch(printed.getvalue().strip()), (
                f"{DOC.name}: the block\n{code}\nprinted\n{printed.getvalue()}\nnot\n{shown}")
    assert (tmp_path / "runs" / "demo" / "export" / "tflite" / "tflite-float32.tflite").is_file()
    assert (tmp_path / "predictions" / "detections.json").is_file()
