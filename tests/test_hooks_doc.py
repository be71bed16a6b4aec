"""docs/hooks.md keeps one section per hook: none missing, none for a hook that is gone."""

from __future__ import annotations

import inspect
import re

from odplug import hookspecs
from tests.conftest import ROOT


def test_every_hook_has_a_section_and_every_section_a_hook() -> None:
    specs = {name for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("odplug_")}
    text = (ROOT / "docs" / "hooks.md").read_text()
    sections = set(re.findall(r"^## (odplug_\w+)$", text, flags=re.MULTILINE))
    assert specs, "no hook specs found"
    assert sections == specs
