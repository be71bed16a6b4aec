"""The ssd trainer on tiny data: the loss falls, a killed run resumes, the trainer decides what
becomes of a run already in its folder, the SavedModel serves exactly what the Keras model
computes, and the model tasks work through the command line."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odplug.errors import OdplugError
from odplug.pictures.training import read_results
from odplug.run import RunInfo
from odplug_builtins.trainer.config import RANGES, Config, load_config
from odplug_builtins.trainer.runfolder import RunFolder, start
from tests.plugins.trainer.common import TINY, random_backbone
from tests.support.detectors import TinyRun, assert_same_detections
from tests.support.records import run_import
from tests.support.tools import BIN, ROOT


def _set(overrides: dict) -> str:
    return ",".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, registry) -> Path:
    from odplug.data.demo import write_demo_project

    base = tmp_path_factory.mktemp("trainer")
    project = write_demo_project(base / "demo", images=24, size=96, seed=3)
    run_import(project, base / "records", registry)
    return base / "records"


@pytest.fixture(scope="module")
def trained(tiny_run: TinyRun) -> dict:
    """The session's shared tiny run (`tests.support.detectors.TINY_RUN`: 30 steps of the SSD
    loss without mosaic, whose loss is known to fall by a fifth over them); read-only."""
    return {"run": tiny_run.run, "saved": tiny_run.saved_model,
            "info": tiny_run.returned, "history": tiny_run.history,
            "records": tiny_run.records}


def test_loss_falls_and_the_run_folder_is_complete(trained: dict) -> None:
    losses = [h["loss"] for h in trained["history"]]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    run: Path = trained["run"]
    for name in ("config.toml", "label_map.pbtxt", "run.json", "inputs.json", "best.json",
                 "best.weights.h5", "metrics/test.json", "metrics/test-pr.png",
                 "saved_model/saved_model.pb", "saved_model/label_map.pbtxt",
                 "saved_model/anchors.npy"):
        assert (run / name).exists(), name
    assert list((run / "logs").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "checkpoint").is_file()
    resolved = load_config(run / "config.toml")
    assert resolved.train.steps == 30 and resolved.model.input_size == 96
    metrics = json.loads((run / "metrics" / "test.json").read_text())
    assert 0.0 <= metrics["map50"] <= 1.0 and metrics["images"] > 0


def test_the_run_description_is_what_train_returns(trained: dict) -> None:
    from odplug_builtins.trainer import SSDTrainer

    info: RunInfo = trained["info"]
    assert RunInfo.read(trained["run"]) == info == SSDTrainer().describe(trained["run"])
    assert info.complete and info.resumable and info.trainer == "ssd"
    assert info.records == trained["records"].resolve()
    assert info.saved_model == trained["run"] / "saved_model" == trained["saved"]
    assert info.label_map.is_file() and info.logs == trained["run"] / "logs"
    written = json.loads((info.metrics_dir / "test.json").read_text())
    assert info.metrics == {"test": {"map50": written["map50"], "map": written["map"]}}


def test_saved_model_serves_what_the_keras_model_computes(trained: dict) -> None:
    from odplug.model.detector import SavedModelDetector
    from odplug.model.postprocess import detect
    from odplug_builtins.trainer.evaluation import nms
    from odplug_builtins.trainer.train import load_run_model

    model, config, labels, anchors = load_run_model(trained["run"])
    detector = SavedModelDetector(trained["saved"])
    rng = np.random.default_rng(0)
    loaded = tf.saved_model.load(str(trained["saved"]))
    for height, width in ((96, 96), (120, 80)):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        resized = tf.image.resize(tf.cast(image[None], tf.float32), (96, 96))
        outputs = model(resized, training=False)
        expected = detect(outputs["box_codes"], outputs["class_logits"], tf.constant(anchors),
                          nms(config.eval), class_ids=labels.ids)
        got = detector(image)
        count = int(expected["num_detections"][0])
        assert len(got.scores) == count
        assert_same_detections(
            (got.boxes, got.classes, got.scores),
            tuple(expected[key][0, :count] for key in ("detection_boxes", "detection_classes",
                                                       "detection_scores")),
            score_atol=1e-4)
        raw = loaded.signatures["raw"](images=resized)
        np.testing.assert_allclose(raw["box_codes"], outputs["box_codes"], atol=1e-4)
        np.testing.assert_allclose(raw["class_scores"], tf.sigmoid(outputs["class_logits"]),
                                   atol=1e-5)


def test_saved_model_holds_its_weights_as_constants_or_variables(trained: dict) -> None:
    """An exported model must not need the Python model around it: load it fresh and run it."""
    done = subprocess.run(
        [str(BIN / "python"), "-c",
         "import sys, numpy as np, tensorflow as tf;"
         f"m = tf.saved_model.load({str(trained['saved'])!r});"
         "out = m.signatures['serving_default'](images=tf.zeros([1, 64, 64, 3], tf.uint8));"
         "print(sorted(out))"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "detection_boxes" in done.stdout and "num_detections" in done.stdout


@pytest.mark.slow
def test_step_throughput_times_the_compiled_training_step(records: Path) -> None:
    """What bench.train compares the input pipeline against: the same step `train` runs."""
    from odplug.data.labelmap import read_label_map
    from odplug.data.shards import shard_files
    from odplug_builtins.trainer import data
    from odplug_builtins.trainer.learner import step_throughput

    config = load_config(overrides=TINY)
    label_map = read_label_map(records / "label_map.pbtxt")
    dataset = data.train_dataset(shard_files(records, "train"), label_map, config.model,
                                 config.train, config.augment)
    rate = step_throughput(config, len(label_map), next(iter(dataset.take(1))), steps=2)
    assert 0 < rate < float("inf")


@pytest.mark.slow
def test_resume_after_a_kill_continues_from_the_saved_step(records: Path, tmp_path: Path,
                                                           run_inv) -> None:  # type: ignore[no-untyped-def]
    """``model.train`` from a local backbone file, killed mid-run; the file moved away; then
    ``model.train --resume``: the second command trains only the steps left, needing no
    backbone file (the run's own weights replace it), and prints where the run is. (The
    command line's training output, and a run from a local backbone file, are checked here on
    the one run they need: a training costs half a minute of fixed work.)"""
    run = tmp_path / "run"
    backbone = tmp_path / "mine.weights.h5"
    random_backbone(0.35, TINY["model.input_size"])[0].save_weights(backbone)
    overrides = {**TINY, "train.steps": 400, "train.eval_every": 1000,
                 "model.weights": str(backbone)}
    process = subprocess.Popen(
        [str(BIN / "inv"), "model.train", "--records", str(records), "--run", str(run),
         "--set", _set(overrides)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list((run / "checkpoints").glob("ckpt-10.index")):
        if process.poll() is not None:
            pytest.fail(process.stderr.read().decode()[-2000:] if process.stderr else "died")
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert saved is not None
    saved_step = int(saved.rsplit("-", 1)[1])
    # ckpt-10's files appear before the manager notes it in the index (it notes a checkpoint
    # only once complete), so a kill in between leaves step 5 the latest: seen in a suite run.
    assert 5 <= saved_step < 400
    killed = RunInfo.read(run)
    assert killed.resumable and not killed.complete
    started = json.loads((run / "inputs.json").read_text())
    assert started["backbone"] == {"from": "file", "path": str(backbone.resolve()),
                                   "sha256": hashlib.sha256(backbone.read_bytes()).hexdigest()}
    backbone.unlink()
    total = saved_step + 5
    done = run_inv("model.train", "--records", str(records), "--run", str(run), "--resume",
                   "--set", f"train.steps={total}")
    assert done.returncode == 0, done.stderr[-2000:]
    steps = re.findall(rf"^\[ *\d+ s\] step +(\d+)/{total}  loss +(\S+) .* img/s ", done.stdout,
                       re.M)
    assert [int(step) for step, _ in steps] == list(range(saved_step + 1, total + 1)), done.stdout
    assert all(np.isfinite(float(loss)) for _, loss in steps)
    info = RunInfo.read(run)
    assert info.complete
    assert f"SavedModel: {run / 'saved_model'}" in done.stdout
    assert f"tensorboard --logdir {run / 'logs'}" in done.stdout
    test = info.metrics["test"]
    assert (f"Test split: mAP@.5 {test['map50']:.3f}, mAP@[.5:.95] {test['map']:.3f} "
            f"(details in {run / 'metrics'})") in done.stdout
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == saved_step + 5


def test_starting_over_an_existing_run_or_resuming_nothing_is_refused(records: Path,
                                                                      trained: dict,
                                                                      tmp_path: Path) -> None:
    from odplug_builtins.trainer.train import train

    with pytest.raises(OdplugError, match="already holds a run"):
        train(records, trained["run"], overrides={**TINY, "train.steps": 1})
    with pytest.raises(OdplugError, match="nothing to resume"):
        train(records, tmp_path / "empty", resume="required")
    with pytest.raises(OdplugError, match="no label_map.pbtxt"):
        train(tmp_path, tmp_path / "x")


def _unfinished_run(records: Path, folder: RunFolder, *, trainer: str = "ssd") -> RunInfo:
    """What a run killed after its first checkpoint leaves, without training anything."""
    start(records, folder, None, {**TINY, "train.steps": 5}, "never")
    folder.checkpoints.mkdir()
    (folder.checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    return RunInfo(folder.root, trainer, records.resolve(), folder.label_map,
                   folder.saved_model, complete=False, resumable=True).write()


@pytest.mark.parametrize("change", ["nothing", "config", "records", "finished", "other trainer",
                                    "unreadable run.json"])
def test_auto_continues_only_an_unfinished_run_with_the_same_inputs(tmp_path: Path,
                                                                    change: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    (records / "train.record-00000-of-00001").write_bytes(b"x")
    folder = RunFolder(tmp_path / "run")
    info = _unfinished_run(records, folder, trainer="yolo" if change == "other trainer" else "ssd")
    overrides = {**TINY, "train.steps": 7 if change == "config" else 5}
    if change == "records":
        (records / "train.record-00000-of-00001").write_bytes(b"re-imported")
    elif change == "finished":
        (folder.saved_model / "saved_model.pb").parent.mkdir()
        (folder.saved_model / "saved_model.pb").write_bytes(b"")
        replace(info, complete=True).write()
    elif change == "unreadable run.json":
        info.path.write_text("{")
    config, resuming = start(records, folder, None, overrides, "auto")
    assert resuming == (change == "nothing")
    assert folder.has_checkpoint() == resuming, "a replaced run leaves none of its files"
    assert load_config(folder.config).to_dict() == config.to_dict()
    assert config.train.steps == overrides["train.steps"]


def test_never_and_required_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    folder = RunFolder(tmp_path / "run")
    info = _unfinished_run(records, folder)
    with pytest.raises(OdplugError, match="already holds a run: continue it with --resume"):
        start(records, folder, None, {}, "never")
    with pytest.raises(OdplugError, match="leave out --config"):
        start(records, folder, tmp_path / "other.toml", {}, "required")
    config, resuming = start(records, folder, None, {"train.steps": 9}, "required")
    assert resuming and config.train.steps == 9 and config.model.input_size == 96
    replace(info, trainer="yolo").write()
    with pytest.raises(OdplugError, match="a run of the 'yolo' trainer; the ssd trainer cannot"):
        start(records, folder, None, {}, "required")
    (folder.checkpoints / "checkpoint").unlink()
    replace(info, trainer="ssd").write()
    from odplug_builtins.trainer.runfolder import describe

    assert describe(folder.root) == replace(info, resumable=False), "checkpoints gone"
    with pytest.raises(OdplugError, match="nothing to resume"):
        start(records, folder, None, {}, "required")


def _fake_records(tmp_path: Path) -> Path:
    records = tmp_path / "records"
    records.mkdir()
    (records / "train.record-00000-of-00001").write_bytes(b"x")
    return records


def _failed_start(records: Path, folder: RunFolder) -> RunInfo:
    """What a start that failed before its first checkpoint leaves (a download, the first
    step out of memory): the config, inputs.json, an empty logs folder and a run.json that is
    neither resumable nor complete."""
    start(records, folder, None, {**TINY, "train.steps": 5}, "never")
    (folder.logs).mkdir()
    return RunInfo(folder.root, "ssd", records.resolve(), folder.label_map,
                   folder.saved_model).write()


def _finished_run(records: Path, folder: RunFolder, **settings: object) -> RunInfo:
    """What a run of 5 steps leaves once finished, without training anything."""
    start(records, folder, None, {**TINY, "train.steps": 5, **settings}, "never")
    folder.checkpoints.mkdir()
    (folder.checkpoints / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckpt-5"\n')
    (folder.saved_model).mkdir()
    (folder.saved_model / "saved_model.pb").write_bytes(b"")
    return RunInfo(folder.root, "ssd", records.resolve(), folder.label_map, folder.saved_model,
                   complete=True, resumable=True,
                   metrics={"test": {"map50": 0.5, "map": 0.25}}).write()


def test_a_failed_start_is_replaced_by_the_next_one(tmp_path: Path) -> None:
    records = _fake_records(tmp_path)
    folder = RunFolder(tmp_path / "run")
    _failed_start(records, folder)
    folder.checkpoints.mkdir()  # a first checkpoint killed before the manager noted it
    (folder.checkpoints / "ckpt-5.index").write_bytes(b"")
    assert not folder.holds_a_run()
    with pytest.raises(OdplugError, match="nothing to resume"):
        start(records, folder, None, {}, "required")
    config, resuming = start(records, folder, None, {**TINY, "train.steps": 7}, "never")
    assert not resuming and config.train.steps == 7
    assert not RunInfo.exists(folder.root) and not folder.logs.exists(), "started afresh"
    assert load_config(folder.config).train.steps == 7
    start(records, folder, None, TINY, "never")  # config and inputs.json, no run.json: startable


@pytest.mark.parametrize("kept", ["checkpoint", "best weights", "finished", "other trainer",
                                  "unreadable run.json"])
def test_a_run_with_anything_worth_keeping_is_protected(tmp_path: Path, kept: str) -> None:
    records = _fake_records(tmp_path)
    folder = RunFolder(tmp_path / "run")
    info = _failed_start(records, folder)
    if kept == "checkpoint":
        folder.checkpoints.mkdir()
        (folder.checkpoints / "ckpt-5.index").write_bytes(b"")
        (folder.checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    elif kept == "best weights":
        folder.best_weights.write_bytes(b"")
    elif kept == "finished":
        _finished_run(records, RunFolder(tmp_path / "run"))
    elif kept == "other trainer":
        replace(info, trainer="yolo").write()
    else:
        info.path.write_text("{")
    assert folder.holds_a_run()
    with pytest.raises(OdplugError, match="replace it with --overwrite, or start a new one "
                                          "beside it with --new-run"):
        start(records, folder, None, TINY, "never")


def test_overwrite_replaces_a_run_only_once_its_start_is_at_hand(tmp_path: Path) -> None:
    records = _fake_records(tmp_path)
    folder = RunFolder(tmp_path / "run")
    _finished_run(records, folder)
    with pytest.raises(OdplugError, match="nowhere.h5'\\: no such file"):
        start(records, folder, None, {**TINY, "model.weights": str(tmp_path / "nowhere.h5")},
              "overwrite")
    assert folder.has_checkpoint() and RunInfo.read(folder.root).complete, "kept as it was"
    config, resuming = start(records, folder, None, {**TINY, "train.steps": 3}, "overwrite")
    assert not resuming and config.train.steps == 3
    assert not folder.checkpoints.exists() and not folder.saved_model.exists()
    assert not RunInfo.exists(folder.root), "the old run.json is gone with the old run"


def test_resume_leaves_a_finished_run_as_it_is_unless_asked_for_more_steps(
        tmp_path: Path) -> None:
    from odplug_builtins.trainer.runfolder import finished

    records = _fake_records(tmp_path)
    folder = RunFolder(tmp_path / "run")
    _finished_run(records, folder)
    assert folder.last_step() == 5
    line = finished(folder.root, {}, "required")
    assert line == (f"{folder.root}: the run finished at step 5 (test mAP@.5 0.500, "
                    "mAP@[.5:.95] 0.250); nothing to train (--resume --steps N, N above 5, "
                    "trains it further)")
    assert finished(folder.root, {"train.steps": 5}, "required") == line
    assert finished(folder.root, {}, "never") is None, "never refuses it instead"
    assert finished(folder.root, {"train.steps": 8}, "required") is None
    config, resuming = start(records, folder, None, {"train.steps": 8}, "required")
    assert resuming and config.train.steps == 8
    budget = RunFolder(tmp_path / "budget")
    _finished_run(records, budget, **{"train.minutes": 2.0})
    assert finished(budget.root, {"train.steps": 8}, "required").endswith(
        "with --set train.minutes=0 (its time budget fixed its step count))")
    assert finished(budget.root, {"train.steps": 8, "train.minutes": 0}, "required") is None


def test_train_returns_a_finished_run_untouched_and_says_so(tmp_path: Path) -> None:
    from odplug.components import TrainingStatus
    from odplug_builtins.trainer.train import train

    records = _fake_records(tmp_path)
    folder = RunFolder(tmp_path / "run")
    info = _finished_run(records, folder)
    before = {p: p.stat().st_mtime_ns for p in folder.root.rglob("*")}
    events: list = []
    steps: list = []
    assert train(records, folder.root, resume="required", on_event=events.append,
                 on_step=lambda *step: steps.append(step)) == info
    assert len(events) == 1 and isinstance(events[0], TrainingStatus) and not steps
    assert events[0].text.startswith(f"{folder.root}: the run finished at step 5 (test")
    assert {p: p.stat().st_mtime_ns for p in folder.root.rglob("*")} == before


def test_what_needs_no_training_is_answered_before_tensorflow_loads(tmp_path: Path) -> None:
    """A folder that holds a run, nothing to resume and a finished run are answered by the
    trainer before it imports TensorFlow: in well under a second, not after 5-10 s."""
    records = _fake_records(tmp_path)
    _finished_run(records, RunFolder(tmp_path / "finished"))
    code = f"""
import sys
from pathlib import Path
from odplug.errors import OdplugError
from odplug_builtins.trainer import SSDTrainer
tmp, trainer = Path({str(tmp_path)!r}), SSDTrainer()
for run, resume in (("finished", "never"), ("empty", "required")):
    try:
        trainer.train(tmp / "records", tmp / run, resume=resume)
    except OdplugError as error:
        print(error)
events = []
trainer.train(tmp / "records", tmp / "finished", resume="required", on_event=events.append)
print(events[0].text)
print("tensorflow" in sys.modules)
"""
    done = subprocess.run([BIN / "python", "-c", code], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    held, empty, finished, tensorflow = done.stdout.splitlines()
    assert held.startswith(f"{tmp_path / 'finished'} already holds a run")
    assert empty.startswith(f"{tmp_path / 'empty'}: nothing to resume")
    assert finished.startswith(f"{tmp_path / 'finished'}: the run finished at step 5")
    assert tensorflow == "False"


def test_resume_on_a_finished_run_says_so_and_trains_nothing(trained: dict, run_inv
                                                            ) -> None:  # type: ignore[no-untyped-def]
    run: Path = trained["run"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    done = run_inv("model.train", "--records", str(trained["records"]), "--run", str(run),
                   "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    test = trained["info"].metrics["test"]
    assert re.search(rf"^\[ *\d+ s\] {re.escape(str(run))}: the run finished at step 30 "
                     rf"\(test mAP@\.5 {test['map50']:.3f}, mAP@\[\.5:\.95\] {test['map']:.3f}\); "
                     r"nothing to train \(--resume --steps N, N above 30, trains it further\)$",
                     done.stdout, re.M), done.stdout
    assert "] step " not in done.stdout and f"SavedModel: {run / 'saved_model'}" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_the_run_flags_on_the_command_line(trained: dict, run_inv, tmp_path: Path
                                          ) -> None:  # type: ignore[no-untyped-def]
    """--new-run names the folder it chose before anything can fail; --resume, --overwrite
    and --new-run are one choice."""
    taken = tmp_path / "runs" / "demo"
    taken.mkdir(parents=True)
    (taken / "run.json").write_text("{}")
    done = run_inv("model.train", "--records", str(trained["records"]), "--run", str(taken),
                   "--new-run", "--set", f"model.weights={tmp_path / 'nowhere.h5'}")
    assert done.returncode == 1
    assert f"{taken} is taken: training into {taken}-2\n" in done.stdout
    assert "nowhere.h5': no such file" in done.stderr and not (tmp_path / "runs/demo-2").exists()
    done = run_inv("model.train", "--records", str(trained["records"]), "--run", str(taken),
                   "--resume", "--overwrite")
    assert done.returncode == 2 and "give one of them" in done.stderr


def test_missing_weights_file_is_a_clear_error(records: Path, tmp_path: Path) -> None:
    from odplug_builtins.trainer.train import train

    with pytest.raises(OdplugError, match="'imagenet.h5': no such file; give a previous run's "
                       "folder, a local MobileNetV2"):
        train(records, tmp_path / "run",
              overrides={**TINY, "train.steps": 1, "model.weights": "imagenet.h5"})
    assert not (tmp_path / "run").exists(), "refused before the run folder is made"


@pytest.mark.parametrize("text,message", [
    ("[train]\nstepz = 3\n", "unknown setting 'stepz'. Did you mean 'steps'?"),
    ("[train]\nsteps = 'many'\n", "should be a int"),
    ("[model]\ninput_size = 100\n", "multiple of 32"),
    ("[model]\ninput_size = 160\nfpn = true\nlevels = [4, 5, 6]\n",
     r"input_size = 160: with model.fpn and level 6 it must be a multiple of 64"),
    ("[model]\nfpn = true\nlevels = [3, 5]\n", r"consecutive and ascending \(e.g. \[3, 4, 5\]\)"),
    ("[train\n", "not valid TOML"),
])
def test_bad_configs_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(OdplugError, match=message):
        load_config(path)


def _with_bad_record(records: Path, folder: Path, split: str, encoded: bytes) -> tuple[Path, int]:
    """A copy of `records` whose first `split` shard ends with one record holding `encoded`;
    the shard and the index of that record."""
    import shutil

    from odplug.data.protos import Example
    from odplug.data.tfrecord import iter_records, write_record

    shutil.copytree(records, folder)
    shard = sorted(folder.glob(f"{split}.record-*"))[0]
    last = list(iter_records(shard))[-1]
    example = Example()
    example.ParseFromString(last)
    feature = example.features.feature["image/encoded"].bytes_list
    del feature.value[:]
    feature.value.append(encoded)
    with shard.open("ab") as handle:
        write_record(handle, example.SerializeToString())
    return shard, len(list(iter_records(shard))) - 1


def _corrupt_jpeg(records: Path) -> bytes:
    """A JPEG whose header reads (so data.stats passes it) but whose scan header is broken."""
    from odplug.data.protos import Example
    from odplug.data.tfrecord import iter_records

    example = Example()
    example.ParseFromString(next(iter_records(sorted(records.glob("train.record-*"))[0])))
    jpeg = bytes(example.features.feature["image/encoded"].bytes_list.value[0])
    scan = jpeg.index(b"\xff\xda")
    return jpeg[:scan + 2] + b"\x00\x01" + jpeg[scan + 4:]


@pytest.mark.parametrize("kind", ["empty", "garbage", "corrupt"])
def test_the_training_reader_names_the_file_and_record_it_cannot_read(
        records: Path, tmp_path: Path, kind: str) -> None:
    from odplug.data.labelmap import read_label_map
    from odplug_builtins.trainer import data

    encoded = {"empty": b"", "garbage": b"no image at all" * 10,
               "corrupt": _corrupt_jpeg(records)}[kind]
    folder = tmp_path / "records"
    shard, index = _with_bad_record(records, folder, "train", encoded)
    config = load_config(overrides=TINY)
    label_map = read_label_map(folder / "label_map.pbtxt")
    files = sorted(folder.glob("train.record-*"))
    batches = data.train_dataset(files, label_map, config.model, config.train, config.augment)
    with pytest.raises(OdplugError) as caught:
        for _batch in itertools.islice(data.checked(batches, files), 50):
            pass
    message = str(caught.value)
    assert message.startswith(f"{shard} record {index}: ") and "\n" not in message, message
    assert "{{" not in message and "0x" not in message
    expected = {"empty": "image/encoded is empty", "garbage": "no format Pillow knows",
                "corrupt": "TensorFlow cannot decode image/encoded"}[kind]
    assert expected in message
    evaluation = data.eval_dataset(files, label_map, 96, 8)
    with pytest.raises(OdplugError, match=f"^{re.escape(str(shard))} record {index}: "):
        list(data.checked(evaluation, files))


@pytest.mark.slow
def test_a_bad_validation_record_stops_training_with_one_line(records: Path,
                                                              tmp_path: Path) -> None:
    from odplug_builtins.trainer.train import train

    shard, index = _with_bad_record(records, tmp_path / "records", "val", b"")
    with pytest.raises(OdplugError, match=f"^{re.escape(str(shard))} record {index}: image/enc"):
        train(tmp_path / "records", tmp_path / "run",
              overrides={**TINY, "train.steps": 1, "train.eval_every": 1})


def test_a_config_that_is_a_folder_or_nests_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match="is a folder"):
        load_config(tmp_path)
    path = tmp_path / "deep.toml"
    path.write_text("[train]\nsteps = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(OdplugError, match="nested too deeply"):
        load_config(path)


@pytest.mark.parametrize("key,value,allowed", [
    ("model.alpha", float("nan"), "0 < value <= 1.4"),
    ("train.learning_rate", -0.001, "0 < value <= 1"),
    ("train.learning_rate", float("inf"), "0 < value <= 1"),
    ("eval.iou_threshold", 5.0, "0 < value <= 1"),
    ("train.batch_size", 10**30, "1 <= value <= 4096"),
    ("model.anchor_scales", [1.0, -2.0], "0 < value <= 16"),
    ("train.seed", -1, "0 <= value <= 2147483647"),
])
def test_out_of_range_settings_name_the_key_and_the_range(key: str, value: object,
                                                           allowed: str) -> None:
    with pytest.raises(OdplugError) as caught:
        load_config(overrides={key: value})
    message = str(caught.value)
    assert message.startswith(f"{key} = ") and message.endswith(f"the allowed range is {allowed}")
    assert "\n" not in message


def test_every_numeric_setting_has_a_range_the_default_is_in() -> None:
    numeric = {f"{section}.{key}" for section, table in Config().to_dict().items()
               for key, value in table.items()
               if not isinstance(value, (bool, str)) and (
                   isinstance(value, (int, float)) or value and all(isinstance(v, (int, float))
                                                                    for v in value))}
    assert numeric == set(RANGES)
    load_config()  # every default within its range


def test_model_tasks_through_the_command_line(trained: dict, run_inv, tmp_path: Path) -> None:
    """predict, evaluate and config as a user runs them (model.train's own output: the resume
    test above)."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for index, path in enumerate(sorted((trained["records"].parent / "demo").glob("*/img/*"))[:3]):
        Image.open(path).save(images / f"test {index}.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    done = run_inv("model.predict", "--model", str(trained["run"]), "--source", str(images),
                   "--out", str(tmp_path / "pred"), "--threshold", "0.0")
    assert done.returncode == 0, done.stderr[-2000:]
    index = json.loads((tmp_path / "pred" / "images.json").read_text())
    assert len(index["images"]) == 3 and index["skipped"][0]["file"].endswith("broken.jpg")
    assert {c["name"] for c in index["categories"]} == {"circle", "square", "triangle"}
    results = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert isinstance(results, list) and {r["image_id"] for r in results} <= {1, 2, 3}
    assert {r["category_id"] for r in results} <= {c["id"] for c in index["categories"]}
    assert Image.open(tmp_path / "pred" / "test 0.png").size == (96, 96)
    done = run_inv("model.evaluate", "--model", str(trained["run"]), "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mAP@.5" in done.stdout and (tmp_path / "m" / "test-pr.png").is_file()
    done = run_inv("model.evaluate", "--model", str(trained["saved"]), "--records",
                   str(trained["records"]), "--split", "val", "--out", str(tmp_path / "bare"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "bare" / "val.json").is_file(), "a bare SavedModel with --records"
    done = run_inv("model.config")
    assert done.returncode == 0 and "[train]" in done.stdout and "steps = " in done.stdout
    done = run_inv("model.evaluate", "--model", str(tmp_path))
    assert done.returncode == 1 and "not a run folder" in done.stderr


GAPPED_MAP = """
item { id: 1 name: 'circle' }
item { id: 3 name: 'square' }
item { id: 7 name: 'triangle' }
"""


@pytest.fixture(scope="module")
def gapped(tmp_path_factory: pytest.TempPathFactory, registry) -> Path:  # type: ignore[no-untyped-def]
    """Demo records imported with a COCO-like label map: ids 1, 3 and 7."""
    from odplug.data.demo import write_demo_project

    base = tmp_path_factory.mktemp("gapped")
    (base / "label_map.pbtxt").write_text(GAPPED_MAP)
    project = write_demo_project(base / "demo", images=24, size=96, seed=5)
    run_import(project, base / "records", registry, label_map=base / "label_map.pbtxt")
    return base / "records"


def _record_classes(records: Path, split: str) -> list[list[int]]:
    from odplug.model.tfdata import record_dataset

    files = sorted(records.glob(f"{split}.record-*"))
    return [item["classes"].tolist() for item in record_dataset(files).as_numpy_iterator()]


@pytest.mark.slow
def test_the_input_pipeline_trains_gapped_ids_in_their_own_columns(gapped: Path) -> None:
    """Ids 1, 3, 7 become class columns 0, 1, 2 (the label map's ascending order): none falls
    outside the C columns, where it would train as background."""
    from odplug.data.labelmap import read_label_map
    from odplug_builtins.trainer import data

    label_map = read_label_map(gapped / "label_map.pbtxt")
    recorded = _record_classes(gapped, "train")
    assert {id_ for classes in recorded for id_ in classes} == {1, 3, 7}
    files = sorted(gapped.glob("train.record-*"))
    evaluated = [row[row >= 0].tolist() for batch in data.eval_dataset(files, label_map, 96, 8)
                 for row in batch["classes"].numpy()]
    assert evaluated == [[label_map.column_of(id_) for id_ in classes] for classes in recorded]
    config = load_config(None, overrides={**TINY, "train.steps": 1})
    batch = next(iter(data.train_dataset(files, label_map, config.model, config.train,
                                         config.augment)))
    columns = set(batch[1]["classes"].numpy().ravel().tolist())
    assert columns <= {-1, 0, 1, 2} and columns & {0, 1, 2}


@pytest.mark.slow
def test_gapped_label_ids_survive_training_export_and_tflite(gapped: Path, tmp_path: Path
                                                             ) -> None:
    """A map with ids 1, 3, 7 through training, the SavedModel and a float32 TFLite file: every
    detection carries one of those ids, and the two runtimes give a box the same id."""
    from odplug.model.contract import validate_detector
    from odplug.model.detector import SavedModelDetector
    from odplug.model.litert import detector as tflite_detector
    from odplug.model.tfdata import record_dataset
    from odplug_builtins.tflite import TFLiteExporter
    from odplug_builtins.trainer.train import train

    assert {id_ for classes in _record_classes(gapped, "test") for id_ in classes} <= {1, 3, 7}
    info = train(gapped, tmp_path / "run", overrides={
        **TINY, "train.steps": 40, "train.eval_every": 1000, "eval.score_threshold": 0.001})
    saved = SavedModelDetector(info.saved_model)
    (exported,) = TFLiteExporter().export(validate_detector(info.saved_model), tmp_path / "out",
                                          variants=["float32"])
    assert json.loads(exported.manifest.read_text())["label_ids"] == [1, 3, 7]
    lite = tflite_detector(exported)
    files = sorted(gapped.glob("test.record-*"))
    seen: set[int] = set()
    compared = 0
    for item in record_dataset(files).take(4).as_numpy_iterator():
        reference, found = saved(item["image"]), lite(item["image"])
        assert set(reference.classes.tolist()) <= {1, 3, 7}
        assert set(found.classes.tolist()) <= {1, 3, 7}
        seen |= set(reference.classes.tolist())
        for i in range(min(3, len(found.scores))):  # the top detections of the TFLite file
            same = [j for j in range(len(reference.scores))
                    if abs(reference.scores[j] - found.scores[i]) <= 1e-4
                    and np.allclose(reference.boxes[j], found.boxes[i], atol=1e-3)]
            assert same, f"TFLite detection {i} has no SavedModel counterpart"
            assert found.classes[i] in reference.classes[same], (
                f"TFLite says id {found.classes[i]}, the SavedModel "
                f"{reference.classes[same].tolist()} for the same box")
            compared += 1
    assert compared >= 6 and seen & {3, 7}


@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"),
                    reason="no GPU here: the mixed-precision, XLA and MirroredStrategy path "
                    "runs on machines with one")
def test_gpu_training_uses_mixed_precision_and_xla(records: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "inv"), "model.train", "--records", str(records), "--run", str(tmp_path / "r"),
         "--set", _set({**TINY, "train.steps": 20})],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "r" / "saved_model" / "saved_model.pb").is_file()


KILLED_AT = """
import os, shutil, signal, sys
from pathlib import Path

point, run, records = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if point == "checkpoint":  # the step's checkpoint files written, the manager's index not yet
    from tensorflow.python.checkpoint import checkpoint_management
    checkpoint_management.update_checkpoint_state_internal = lambda *a, **k: die()
elif point.endswith(".weights.h5"):  # the weights file written, not yet closed
    import h5py
    close = h5py.File.close
    def closing(self):
        if self.mode != "r" and point in Path(self.filename).name:
            die()
        close(self)
    h5py.File.close = closing
elif point == "saved_model":  # the first file of the old SavedModel deleted
    rmtree, unlink = shutil.rmtree, os.unlink
    def removing(path, *args, **kwargs):
        if (Path(path) / "saved_model.pb").is_file():
            def unlinking(*a, **k):
                unlink(*a, **k)
                die()
            os.unlink = unlinking
        rmtree(path, *args, **kwargs)
    shutil.rmtree = removing

from odplug_builtins.trainer.train import train
train(records, run, resume="required", overrides={"train.steps": 31})
"""


def _kill_at(point: str, run: Path, records: Path) -> None:
    """Continue `run` to step 31 in a process that kills itself (SIGKILL) at `point`."""
    done = subprocess.run([str(BIN / "python"), "-c", KILLED_AT, point, str(run), str(records)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_a_run_killed_at_any_write_keeps_whole_files_and_resumes(trained: dict,
                                                                 tmp_path: Path) -> None:
    """A finished run continued by one step, killed (SIGKILL) while it notes its checkpoint,
    writes best.weights.h5 (best.json made any validation the best), writes last.weights.h5
    and deletes the old SavedModel: each time the files keep their previous bytes (the
    SavedModel is whole), ``run.json`` says the run can be resumed and is not complete, so an
    export refuses it in one line; a last ``--resume`` finishes it."""
    from odplug.run import resolve_model
    from odplug_builtins.trainer.train import train

    run, records = tmp_path / "run", trained["records"]
    shutil.copytree(trained["run"], run)
    best = json.loads((run / "best.json").read_text())
    (run / "best.json").write_text(json.dumps({**best, "map": -1.0, "map50": -1.0}))
    before = {name: (run / name).read_bytes() for name in ("best.weights.h5", "last.weights.h5")}
    saved_model = _files(run / "saved_model")
    for point, name in (("checkpoint", None), ("best.weights.h5", "best.weights.h5"),
                        ("last.weights.h5", "last.weights.h5"), ("saved_model", None)):
        _kill_at(point, run, records)
        if name is not None:
            assert (run / name).read_bytes() == before[name], f"{name} changed at {point}"
        assert _files(run / "saved_model") in (saved_model, set()), f"half a SavedModel: {point}"
        info = RunInfo.read(run)
        assert info.resumable and not info.complete, point
        with pytest.raises(OdplugError, match="not complete .*model.train --resume"):
            resolve_model(run)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-31")
    done = train(records, run, resume="required", overrides={"train.steps": 31})
    assert done.complete and resolve_model(run)[0] == run / "saved_model"
    assert _files(run / "saved_model") == saved_model
    # the resumed runs keep the rows before them; step 31's validation died with the kill in
    # best.weights.h5 after its checkpoint (as its point in curve.json did), so none is added
    rows = read_results(run / "results.csv")
    assert rows == read_results(trained["run"] / "results.csv")
    assert done.summary["steps"] == 31  # and the seconds go on from before the resumes
    # (summary seconds are rounded to the millisecond, the rows' are not)
    assert rows[-1]["seconds"] - 1e-3 <= done.summary["seconds"] <= rows[-1]["seconds"] + 30
    assert not [path.name for path in run.iterdir() if path.name.startswith(".odplug-")]


@pytest.mark.slow
def test_a_loss_gone_nan_stops_the_run_before_it_is_checkpointed(
        records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class head's bias made NaN before step 7, between two logs (log_every is 100): the
    run stops at step 7 naming the classification loss, with the checkpoint of step 5 the
    latest and finite, not at the next log with NaN weights checkpointed at step 10."""
    from odplug_builtins.trainer import train as training

    build = training.build_learner

    def poisoned(*args: object, **kwargs: object) -> object:
        learner = build(*args, **kwargs)
        calls = itertools.count(1)
        step = learner.train_step

        def train_step(images: object, targets: object) -> object:
            if next(calls) == 7:
                bias = learner.model.get_layer("class_head_5").weights[-1]
                bias.assign(tf.fill(bias.shape, float("nan")))
            return step(images, targets)
        return replace(learner, train_step=train_step)

    monkeypatch.setattr(training, "build_learner", poisoned)
    run = tmp_path / "run"
    with pytest.raises(OdplugError) as stopped:
        training.train(records, run, overrides={**TINY, "train.steps": 12,
                                                "train.log_every": 100})
    assert re.fullmatch(r"step 7: the classification loss became nan at learning rate \S+; "
                        r"training stopped and the run keeps its checkpoint of step 5: continue "
                        r"it with model.train --resume --set train.learning_rate=<lower> .*",
                        str(stopped.value)), stopped.value
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert latest.endswith("ckpt-5")
    reader = tf.train.load_checkpoint(latest)
    assert all(np.isfinite(reader.get_tensor(name)).all()
               for name, dtype in reader.get_variable_to_dtype_map().items() if dtype.is_floating)


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
        records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint of step 10 written under a file size limit (RLIMIT_FSIZE: the write
    fails in the kernel, as on a full disk): one line naming the folder, and the checkpoint of
    step 5 stays the one ``--resume`` continues from."""
    import resource

    from odplug_builtins.trainer.train import train

    save = tf.train.CheckpointManager.save

    def limited(self: tf.train.CheckpointManager, checkpoint_number: int) -> str:
        if checkpoint_number < 10:
            return save(self, checkpoint_number=checkpoint_number)
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
        try:
            return save(self, checkpoint_number=checkpoint_number)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, handler)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", limited)
    run = tmp_path / "run"
    with pytest.raises(OdplugError) as stopped:
        train(records, run, overrides={**TINY, "train.steps": 12, "train.eval_every": 100})
    assert re.fullmatch(rf"{run / 'checkpoints'}: cannot write the checkpoint of step 10: .+; "
                        r"the run keeps its checkpoint of step 5; free space, then continue it "
                        r"with model.train --resume", str(stopped.value)), stopped.value
    assert ": File too large;" in str(stopped.value)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-5")
    assert RunFolder(run).last_step() == 5 and RunInfo.read(run).resumable
