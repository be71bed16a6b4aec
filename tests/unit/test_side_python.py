"""The one lookup of a tool's own venv (TF.js converter, TFLite metadata, Apache Beam): the
environment variable first, then the venv in the checkout or the current folder, else None."""

from __future__ import annotations

from pathlib import Path

import pytest

from odplug.components import side_python
from odplug.errors import OdplugError


def test_the_variable_then_the_checkout_then_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout, here = tmp_path / "checkout", tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("ODPLUG_TOOL_PYTHON", raising=False)
    assert side_python("ODPLUG_TOOL_PYTHON", ".venv-tool", checkout, "run setup.sh") is None
    for root in (here, checkout):
        python = root / ".venv-tool" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.touch()
        assert side_python("ODPLUG_TOOL_PYTHON", ".venv-tool", checkout, "run setup.sh") == python
    chosen = tmp_path / "python3"
    chosen.touch()
    monkeypatch.setenv("ODPLUG_TOOL_PYTHON", str(chosen))
    assert side_python("ODPLUG_TOOL_PYTHON", ".venv-tool", checkout, "run setup.sh") == chosen
    monkeypatch.setenv("ODPLUG_TOOL_PYTHON", str(tmp_path / "missing"))
    with pytest.raises(OdplugError, match=r"ODPLUG_TOOL_PYTHON=.*missing: no such Python; run "):
        side_python("ODPLUG_TOOL_PYTHON", ".venv-tool", checkout, "run setup.sh")
