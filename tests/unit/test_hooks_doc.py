"""docs/hooks.md keeps one section per hook: none missing, none for a hook that is gone; the
plugin walkthrough's code runs."""

from __future__ import annotations

import inspect
import json
import re
import types
from pathlib import Path

from PIL import Image

from odplug import hookspecs
from odplug.data.convert import ImportOptions, import_dataset
from odplug.plugins import PluginInfo, collect, get_plugin_manager
from tests.support.tools import ROOT


def test_every_hook_has_a_section_and_every_section_a_hook() -> None:
    specs = {name for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("odplug_")}
    text = (ROOT / "docs" / "hooks.md").read_text()
    sections = set(re.findall(r"^## (odplug_\w+)$", text, flags=re.MULTILINE))
    assert specs, "no hook specs found"
    assert sections == specs


def test_the_plugin_walkthrough_importer_works(tmp_path: Path) -> None:
    """docs/writing-plugins.md's importer, run as written, imports a small LabelMe folder
    through the real registry and converter: a guide whose code fails would teach the wrong
    thing."""
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    code = re.search(r"```python\n(# odplug_labelme/__init__\.py\n.*?)```", text, re.S)
    assert code, "the walkthrough's importer block is missing"
    module = types.ModuleType("odplug_labelme_walkthrough")
    exec(compile(code.group(1), "writing-plugins.md", "exec"), module.__dict__)
    source = tmp_path / "ds"
    source.mkdir()
    for index in range(3):
        Image.new("RGB", (40, 30), (60 * index, 90, 120)).save(source / f"img{index}.jpg")
        shapes = [{"label": "cat", "shape_type": "rectangle", "points": [[2, 3], [20, 25]]},
                  {"label": "dog", "shape_type": "polygon",
                   "points": [[5, 5], [30, 8], [12, 28]]},
                  {"label": "dot", "shape_type": "point", "points": [[4, 4]]}]
        (source / f"img{index}.json").write_text(json.dumps({
            "version": "5.4.1", "shapes": shapes, "imagePath": f"img{index}.jpg",
            "imageWidth": 40, "imageHeight": 30}))
    pm, infos = get_plugin_manager(entry_points=False)
    pm.register(module, name="labelme")
    infos["labelme"] = PluginInfo("labelme", "0.1.0", "docs", builtin=False)
    registry = collect(pm, infos)
    assert registry.errors == []
    result = import_dataset(source, tmp_path / "out", ImportOptions(split="ratio",
                                                                    ratios=(1.0, 0.0)),
                            registry)
    assert result.importer == "labelme"
    assert sum(result.report.images.values()) == 3
    assert dict(result.report.classes["train"]) == {"cat": 3, "dog": 3}
    assert [p.code for p in result.report.problems] == ["no-box"] * 3
