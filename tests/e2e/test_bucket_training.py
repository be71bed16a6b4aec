"""A training machine lost mid-run (``kill -9``) leaves its bucket a run to resume anywhere.

``model.train --run s3://...`` uploads the run after every validation, paused in the training
loop, so the bucket holds the run as a kill at that moment would leave it; another machine
(an empty cache) then continues it with ``--resume``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from odplug.storage import MANIFEST
from tests.support.buckets import listing
from tests.support.records import run_import
from tests.support.tools import BIN, ROOT

SETTINGS = ("model.input_size=96,model.levels=[4,5],model.head_channels=32,train.batch_size=4,"
            "train.warmup_steps=2,train.eval_every=4,train.checkpoint_every=4,"
            "train.log_every=1,eval.batch_size=8,augment.mosaic=0.0")


def _validated(url: str) -> bool:
    """Whether the bucket holds the run as of a validation (results.csv in its manifest)."""
    try:
        manifest = json.loads(listing(url).get(MANIFEST, b"{}"))
    except FileNotFoundError:
        return False
    return "results.csv" in manifest.get("files", {})


def test_a_killed_training_machine_leaves_a_run_another_resumes(bucket, demo_project, registry,
                                                                tmp_path, monkeypatch) -> None:
    from odplug.cli.overrides import parse_overrides
    from odplug.components import TrainingStatus
    from odplug.workflows.train import train_model

    records, run = f"{bucket}/records", f"{bucket}/runs/killed"
    run_import(demo_project, records, registry)  # type: ignore[arg-type]
    env = {**os.environ, "ODPLUG_CACHE_DIR": str(tmp_path / "first-machine")}
    trainer = subprocess.Popen(
        [str(BIN / "odplug"), "model.train", "--records", records, "--run", run,
         "--steps", "400", "--set", SETTINGS], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not _validated(run) and trainer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert trainer.poll() is None, "training ended before its first upload was seen"
        assert _validated(run), "no run in the bucket after 240 s"
    finally:
        os.killpg(trainer.pid, signal.SIGKILL)  # the machine is gone: no upload at the end
        trainer.wait()
    uploaded = json.loads(listing(run)[MANIFEST])
    assert json.loads(listing(run)["run.json"])["complete"] is False

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "second-machine"))
    said: list[str] = []
    overrides = parse_overrides([SETTINGS])
    resumed = train_model(registry, records, run, trainer="ssd", resume=True,
                          overrides={**overrides, "train.steps": 10},
                          on_event=lambda e: isinstance(e, TrainingStatus) and said.append(e.text))
    assert any(text.startswith("resuming at step") for text in said), said
    step = int(next(t for t in said if t.startswith("resuming at step")).split()[3])
    assert step >= 4
    assert resumed.complete and resumed.summary["steps"] == 10
    final = json.loads(listing(run)[MANIFEST])
    assert final["files"]["run.json"] != uploaded["files"]["run.json"]
    assert json.loads(listing(run)["run.json"])["complete"] is True
    assert Path(resumed.run_dir).is_relative_to(tmp_path / "second-machine")
