"""The run description (``run.json``): written and read back exactly, and every way it can be
wrong is one line naming the file and what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from odplug.components import Trainer
from odplug.errors import OdplugError
from odplug.run import RUN_FILE, SCHEMA, RunInfo, resolve_model
from tests.support.tools import ROOT


def _run(tmp_path: Path) -> RunInfo:
    run_dir = tmp_path / "run"
    return RunInfo(
        run_dir=run_dir, trainer="ssd", records=tmp_path / "records",
        label_map=run_dir / "label_map.pbtxt", saved_model=run_dir / "saved_model",
        complete=True, resumable=True, metrics={"test": {"map50": 0.5, "map": 0.25}},
        metrics_dir=run_dir / "metrics", logs=None, results=run_dir / "results.csv",
        pictures={"curves": run_dir / "pictures" / "curves.png"},
        summary={"seconds": 12.5, "steps": 30, "changed": {"train.steps": 30}})


def _document(tmp_path: Path) -> dict:
    _run(tmp_path).write()
    return json.loads((tmp_path / "run" / RUN_FILE).read_text())


def _rewrite(tmp_path: Path, document: object) -> None:
    (tmp_path / "run" / RUN_FILE).write_text(json.dumps(document))


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    written = _run(tmp_path).write()
    assert RunInfo.read(tmp_path / "run") == written
    unfinished = replace(written, complete=False, resumable=False, metrics={},
                         metrics_dir=None, logs=written.run_dir / "logs", results=None,
                         pictures={}, summary={})
    assert RunInfo.read(unfinished.write().run_dir) == unfinished


def test_paths_inside_the_run_are_relative_so_the_folder_can_move(tmp_path: Path) -> None:
    document = _document(tmp_path)
    assert document["schema"] == SCHEMA
    assert document["saved_model"] == "saved_model" and document["metrics_dir"] == "metrics"
    assert document["pictures"] == {"curves": "pictures/curves.png"}
    assert document["records"] == str((tmp_path / "records").absolute())
    (tmp_path / "run").rename(tmp_path / "moved")
    moved = RunInfo.read(tmp_path / "moved")
    assert moved.saved_model == tmp_path / "moved" / "saved_model"
    assert moved.records == tmp_path / "records"


def test_a_run_of_an_older_odplug_without_the_report_keys_reads(tmp_path: Path) -> None:
    document = _document(tmp_path)
    _rewrite(tmp_path, {k: v for k, v in document.items()
                        if k not in ("results", "pictures", "summary")})
    assert RunInfo.read(tmp_path / "run") == replace(_run(tmp_path), results=None, pictures={},
                                                     summary={})


def test_unknown_keys_are_ignored_for_later_optional_fields(tmp_path: Path) -> None:
    document = _document(tmp_path)
    _rewrite(tmp_path, {**document, "added_later": [1, 2]})
    assert RunInfo.read(tmp_path / "run") == _run(tmp_path)


@pytest.mark.parametrize("change,message", [
    (lambda d: {k: v for k, v in d.items() if k != "schema"}, "no \"schema\" key"),
    (lambda d: {**d, "schema": 2}, "schema 2 is not one this odplug reads"),
    (lambda d: {k: v for k, v in d.items() if k not in ("records", "complete")},
     "missing records, complete$"),
    (lambda d: {**d, "complete": "yes"}, "'complete' should be true or false"),
    (lambda d: {**d, "trainer": ""}, "'trainer' should be a non-empty string"),
    (lambda d: {**d, "saved_model": 3}, "'saved_model' should be a non-empty string"),
    (lambda d: {**d, "metrics": [0.5]}, "'metrics' should map a split"),
    (lambda d: {**d, "metrics": {"test": {"map50": "high"}}}, "metrics of 'test'"),
    (lambda d: [d], "expected a JSON object, found list"),
    (lambda d: {**d, "pictures": ["curves.png"]}, "'pictures' should map a name"),
    (lambda d: {**d, "pictures": {"curves": 3}}, "'pictures' should map a name"),
    (lambda d: {**d, "summary": 3}, "'summary' should be an object"),
])
def test_a_wrong_run_description_is_one_clear_line(tmp_path: Path, change, message: str  # type: ignore[no-untyped-def]
                                                   ) -> None:
    _rewrite(tmp_path, change(_document(tmp_path)))
    with pytest.raises(OdplugError, match=message) as raised:
        RunInfo.read(tmp_path / "run")
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(str(tmp_path / "run" / RUN_FILE))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match=r"not a run folder \(no run.json\)"):
        RunInfo.read(tmp_path)
    (tmp_path / RUN_FILE).write_text("{not json")
    with pytest.raises(OdplugError, match="not valid JSON"):
        RunInfo.read(tmp_path)


def test_resolve_model_takes_a_run_or_a_bare_saved_model(tmp_path: Path) -> None:
    run = _run(tmp_path).write()
    assert resolve_model(run.run_dir) == (run.saved_model, run)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "saved_model.pb").write_bytes(b"")
    assert resolve_model(bare) == (bare, None)
    with pytest.raises(OdplugError, match="not a run folder .* and not a SavedModel folder"):
        resolve_model(tmp_path)
    replace(run, complete=False, resumable=True).write()
    with pytest.raises(OdplugError, match="not complete .*continue it with model.train --resume"):
        resolve_model(run.run_dir)
    replace(run, complete=False, resumable=False).write()
    with pytest.raises(OdplugError, match="not complete .*train it again"):
        resolve_model(run.run_dir)


def test_the_default_describe_reads_the_run_description(tmp_path: Path) -> None:
    trainer = Trainer()
    assert trainer.describe(tmp_path / "run") is None
    assert trainer.describe(_run(tmp_path).write().run_dir) == _run(tmp_path)


def test_the_run_description_imports_no_tensorflow() -> None:
    code = ("import sys, odplug.run, odplug.components; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
