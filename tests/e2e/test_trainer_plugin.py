"""The trainer contract proven from outside: a third-party trainer package (tests/trainer_example,
registered through the ``odplug`` entry point, importing only odplug's public API) trains on the
demo records (imported with label ids 1, 3, 7), and its run goes through ``model.export --to
tflite,tfjs`` and the verification table unchanged, all through the installed ``odplug``
command."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.support.tools import ROOT, fresh_venv, needs_tfjs_toolchain, tool_runner

PACKAGE = ROOT / "tests" / "trainer_example"


def test_the_example_trainer_imports_only_odplug_s_public_api() -> None:
    imported = set()
    for source in (PACKAGE / "odplug_gridtrainer").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    odplug_modules = {name for name in imported if name.split(".")[0].startswith("odplug")}
    assert odplug_modules, "the example should use odplug"
    private = {name for name in odplug_modules
               if name.startswith("odplug_builtins") or name == "plugins"
               or name.startswith("plugins.") or any(part.startswith("_")
                                                      for part in name.split("."))}
    assert not private, private


@pytest.mark.slow
def test_a_third_party_trainer_trains_exports_and_verifies(tmp_path: Path) -> None:
    needs_tfjs_toolchain()
    venv = fresh_venv(tmp_path / "env", ROOT, PACKAGE)
    work = tmp_path / "work"
    work.mkdir()
    odplug = tool_runner(venv, work)

    listing = odplug("plugins")
    assert re.search(r"^gridtrainer 0\.1\.0 .*odplug-gridtrainer", listing, re.M), listing
    assert re.search(r"trainer\s+grid\b", listing), listing
    odplug("demo.dataset", "--out", "demo", "--images", "60", "--size", "96")
    (work / "label_map.pbtxt").write_text(  # COCO-like ids with gaps
        "item { id: 1 name: 'circle' } item { id: 3 name: 'square' } "
        "item { id: 7 name: 'triangle' }")
    odplug("data.import", "--source", "demo", "--out", "records", "--label-map",
           "label_map.pbtxt", "--quiet")
    trained = odplug("model.train", "--trainer", "grid", "--records", "records", "--run", "run",
                     "--steps", "80")
    run = json.loads((work / "run" / "run.json").read_text())
    assert run["trainer"] == "grid" and run["complete"] is True, run
    assert "Test split: mAP@.5" in trained, trained
    table = odplug("model.export", "--model", "run", "--to", "tflite,tfjs",
                   "--quantize", "float32,int8")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| model")}
    assert {"saved_model", "tflite-float32", "tflite-int8", "tfjs-float32"} <= set(rows), table
    scores = {row["name"]: row["map50"] for row in
              json.loads((work / "run" / "export" / "verification.json").read_text())}
    assert scores["saved_model"] > 0, scores
    for name in ("tflite-float32", "tfjs-float32"):  # a column read as the wrong id scores less
        assert abs(scores[name] - scores["saved_model"]) <= 0.05, scores
