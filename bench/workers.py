"""Images/s of training with one worker and with a local cluster of N (``bench.train --workers N``).

The demo dataset, the default config and the same global batch (``train.batch_size``) in both
runs; only the number of worker processes changes. The rate is the chief's, median over the
steps after the first two (tracing and warm-up), from the per-step images/s the trainer logs.
On one machine N workers share its cores (each gets ``cores // N`` threads), so this measures
what the cluster path costs rather than what more machines would gain.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

from odplug.atomic import atomic_write_text

RESULTS_FILE = "workers-results.json"
SKIPPED_STEPS = 2


def _records(workdir: Path, shards: int, echo: Callable[[str], None]) -> Path:
    """Demo records with `shards` train files, so each worker reads its own."""
    from odplug.data.convert import ImportOptions, import_dataset
    from odplug.data.demo import write_demo_project
    from odplug.plugins import load_registry

    records = workdir / f"records-{shards}"
    if not (records / "label_map.pbtxt").is_file():
        echo(f"making the demo dataset and its records ({shards} train files) ...")
        project = write_demo_project(workdir / "demo", images=120, size=256, seed=0)
        import_dataset(project, records, ImportOptions(split="ratio", ratios=(0.9, 0.1),
                                                       shards=shards), load_registry())
    return records


def _rate(records: Path, run_dir: Path, workers: int, steps: int) -> float:
    from odplug_builtins.trainer import SSDTrainer

    shutil.rmtree(run_dir, ignore_errors=True)
    rates: list[float] = []

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        if step > SKIPPED_STEPS:
            rates.append(metrics["images_per_second"])

    SSDTrainer().train(records, run_dir, overrides={"train.steps": steps, "train.log_every": 1},
                       on_step=on_step, **({"workers": workers} if workers > 1 else {}))
    return statistics.median(rates)


def run(workdir: Path = Path("bench/work/workers"), steps: int = 20,
        echo: Callable[[str], None] = print, *, workers: int = 2) -> dict:
    if steps <= SKIPPED_STEPS:
        raise ValueError(f"steps must be more than {SKIPPED_STEPS}: the first ones are warm-up")
    workdir.mkdir(parents=True, exist_ok=True)
    records = _records(workdir, workers, echo)
    results: dict = {"cores": os.cpu_count(), "steps": steps, "images_per_second": {}}
    for count in (1, workers):
        echo(f"training {steps} steps with {count} worker(s) ...")
        rate = _rate(records, workdir / f"run-{count}", count, steps)
        results["images_per_second"][str(count)] = round(rate, 2)
        echo(f"{count} worker(s): {rate:.2f} images/s")
    atomic_write_text(workdir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    return results
