"""How fast the trainer's input pipeline feeds it, and how good the model gets in a CPU budget.

Three numbers, on the demo dataset as `demo.dataset` makes it by default:

- images/s of the tf.data input pipeline alone (decode, augment, batch), default config;
- images/s of the training step alone (forward, loss, backward, update), default config;
- COCO mAP@.5 on the test split after ``model.train`` with the default config, run as a user
  runs it (a new process, timed from outside, start-up included).

Targets: the pipeline at least 10x the step (so it never bottlenecks), and mAP@.5 >= 0.8 within
15 minutes on this 2-core CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from odplug.atomic import atomic_write_text

TARGETS = {"pipeline_vs_step": 10.0, "map50": 0.8, "minutes": 15.0}
RESULTS_FILE = "train-results.json"


def _records(workdir: Path, echo: Callable[[str], None]) -> Path:
    from odplug.data.convert import ImportOptions, import_dataset
    from odplug.data.demo import write_demo_project
    from odplug.plugins import load_registry

    records = workdir / "demo-records"
    if not (records / "label_map.pbtxt").is_file():
        echo("making the demo dataset and its records ...")
        project = write_demo_project(workdir / "demo", images=300, size=256, seed=0)
        import_dataset(project, records, ImportOptions(), load_registry())
    return records


def _throughputs(records: Path, steps: int) -> tuple[float, float]:
    from odplug.data.labelmap import read_label_map
    from odplug.data.shards import shard_files
    from odplug_builtins.trainer import data
    from odplug_builtins.trainer.config import Config
    from odplug_builtins.trainer.train import step_throughput

    config = Config()
    label_map = read_label_map(records / "label_map.pbtxt")
    files = shard_files(records, "train")
    dataset = data.train_dataset(files, label_map, config.model, config.train, config.augment)
    pipeline = data.measure_throughput(dataset, batches=60)
    step_rate = step_throughput(config, len(label_map), next(iter(dataset.take(1))), steps)
    return pipeline, step_rate


def run(*, workdir: Path = Path("bench/work/train"), steps: int = 20, full: bool = True,
        echo: Callable[[str], None] = print) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    records = _records(workdir, echo)
    echo("measuring the input pipeline and the training step ...")
    pipeline, step_rate = _throughputs(records, steps)
    results: dict = {
        "cores": os.cpu_count(),
        "pipeline_images_per_second": round(pipeline, 1),
        "step_images_per_second": round(step_rate, 1),
        "pipeline_vs_step": round(pipeline / step_rate, 1),
        "targets": TARGETS,
    }
    if full:
        run_dir = workdir / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [str(Path(sys.executable).parent / "odplug"), "model.train",
                   "--records", str(records), "--run", str(run_dir)]
        echo("training with the default config: " + " ".join(command))
        started = time.perf_counter()
        done = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        minutes = (time.perf_counter() - started) / 60
        if done.returncode != 0:
            raise RuntimeError(f"model.train failed with exit code {done.returncode}")
        metrics = json.loads((run_dir / "metrics" / "test.json").read_text())
        results.update({"train_minutes": round(minutes, 2), "test_map50": metrics["map50"],
                        "test_map": metrics["map"], "run": str(run_dir)})
    report(results, echo)
    atomic_write_text(workdir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    return results


def report(results: dict, echo: Callable[[str], None]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ratio = results["pipeline_vs_step"]
    echo(f"input pipeline  {results['pipeline_images_per_second']:8.1f} images/s")
    echo(f"training step   {results['step_images_per_second']:8.1f} images/s")
    echo(f"pipeline / step {ratio:8.1f}x   target >= {TARGETS['pipeline_vs_step']}: "
         f"{verdict(ratio >= TARGETS['pipeline_vs_step'])}")
    if "test_map50" in results:
        ok = results["test_map50"] >= TARGETS["map50"] and results["train_minutes"] <= 15
        echo(f"demo test mAP@.5 {results['test_map50']:.3f} (mAP {results['test_map']:.3f}) "
             f"after {results['train_minutes']:.1f} min of model.train on "
             f"{results['cores']} cores   target >= 0.8 within 15 min: {verdict(ok)}")
