"""``inv pipeline`` end to end on tiny settings, the reuse of finished stages, and training
that the trainer continues or replaces."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from odplug.plugins import TRAINERS

TINY = ("model.input_size=96,model.levels=[4,5],model.head_channels=32,train.batch_size=4,"
        "train.steps=12,train.warmup_steps=2,train.eval_every=1000,train.checkpoint_every=1000")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from odplug.data.demo import write_demo_project

    return write_demo_project(tmp_path_factory.mktemp("pipe") / "demo", images=24, size=96)


@pytest.fixture(scope="module")
def coco(project: Path, tmp_path_factory: pytest.TempPathFactory, registry) -> Path:  # type: ignore[no-untyped-def]
    """The demo as a COCO dataset (instances_<split>.json and images/<split>/), written by the
    coco writer."""
    from odplug.data.convert import ImportOptions, import_dataset

    coco = tmp_path_factory.mktemp("pipe-coco") / "coco"
    import_dataset(project, coco, ImportOptions(to="coco"), registry)
    assert sorted(p.name for p in (coco / "annotations").iterdir()) == [
        "instances_test.json", "instances_train.json", "instances_val.json"]
    return coco


def test_pipeline_runs_every_stage_then_reuses_them(coco: Path, tmp_path: Path,
                                                    run_inv) -> None:  # type: ignore[no-untyped-def]
    """A COCO dataset goes through every stage without --format, its category ids kept; a
    second run reuses every stage and a new --quantize reruns the export alone. (The demo's
    own Supervisely project goes through the pipeline in the resume test below.)"""
    from odplug.data.labelmap import read_label_map

    out = tmp_path / "out"
    args = ("pipeline", "--source", str(coco), "--out", str(out), "--set", TINY,
            "--to", "tflite", "--quantize", "float32")
    first = run_inv(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("import", "train", "export", "verify"):
        assert f"{stage}: done" in first.stdout
    assert "| saved_model |" in first.stdout and "| tflite-float32 |" in first.stdout
    state = json.loads((out / "pipeline.json").read_text())
    assert list(state) == ["import", "train", "export", "verify"]
    assert (out / "run" / "export" / "verification.md").is_file()
    assert (out / "run" / "saved_model" / "saved_model.pb").is_file()
    categories = json.loads((coco / "annotations" / "instances_train.json").read_text())
    records = read_label_map(out / "records" / "label_map.pbtxt")
    assert [(c["id"], c["name"]) for c in categories["categories"]] == [
        (item.id, item.name) for item in records.items]

    again = run_inv(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reused: import, train, export, verify" in again.stdout
    assert "train: running" not in again.stdout

    changed = run_inv(*args[:-2], "--quantize", "float16")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "train: reused" in changed.stdout and "export: done" in changed.stdout
    assert "| tflite-float16 |" in changed.stdout


class Interrupted(Exception):
    """Stands for a Ctrl-C in the middle of training."""


def test_pipeline_resumes_an_interrupted_run_and_replaces_a_finished_one(
        project: Path, tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    from odplug.workflows.pipeline import PipelineOptions, run_pipeline

    out = tmp_path / "out"
    overrides = {"model.input_size": 96, "model.levels": [4, 5], "model.head_channels": 32,
                 "train.batch_size": 4, "train.steps": 12, "train.warmup_steps": 2,
                 "train.eval_every": 1000, "train.checkpoint_every": 5}
    options = PipelineOptions(source=project, overrides=overrides, to=["tflite"],
                              quantize=["float32"])
    steps: list[int] = []

    def interrupt_at_8(step: int, total: int, metrics: dict) -> None:
        steps.append(step)
        if step == 8:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_pipeline(out, options, registry, on_step=interrupt_at_8)
    described = registry.get(TRAINERS, "ssd").describe(out / "run")
    assert described.resumable and not described.complete

    steps.clear()
    result = run_pipeline(out, options, registry,
                          on_step=lambda step, total, metrics: steps.append(step))
    assert steps == list(range(6, 13)), "continued from the checkpoint of step 5"
    assert result.reused == ["import"]
    assert result.run.complete and result.run.metrics["test"]["map50"] >= 0
    assert [row.name for row in result.rows] == ["saved_model", "tflite-float32",
                                                 "tflite-float32 (MediaPipe Tasks)"]
    assert [(m.exporter, m.variant) for m in result.exported] == [("tflite", "float32")]

    def stop_at_the_first(step: int, total: int, metrics: dict) -> None:
        steps.append(step)
        raise Interrupted  # the first step says it all, and the rest costs a training

    steps.clear()
    changed = replace(options, overrides={**overrides, "train.steps": 6})
    with pytest.raises(Interrupted):
        run_pipeline(out, changed, registry, on_step=stop_at_the_first)
    assert steps == [1], "a finished run with other inputs starts over"
    replaced = registry.get(TRAINERS, "ssd").describe(out / "run")
    assert replaced is not None and not replaced.complete


def test_pipeline_reports_unknown_formats_before_any_work(run_inv, tmp_path: Path  # type: ignore[no-untyped-def]
                                                          ) -> None:
    done = run_inv("pipeline", "--out", str(tmp_path / "o"), "--to", "tflite,tfjz")
    assert done.returncode == 2, "a usage error"
    assert "unknown exporter 'tfjz'. Did you mean 'tfjs'" in done.stderr
    assert not (tmp_path / "o").exists()
    done = run_inv("pipeline", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "no"))
    assert done.returncode == 2, "a usage error"
    assert done.stderr.strip().endswith(f"{tmp_path / 'no'}: no such file or folder")
    assert not (tmp_path / "o").exists()
