"""The built-in trainer: an SSD detector with a MobileNetV2 backbone, in TensorFlow/Keras.

Registered as ``ssd``. TensorFlow is imported only when training starts, so listing plugins
and tasks stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

from odplug import hookimpl
from odplug.components import (
    EventCallback,
    StepCallback,
    Trainer,
    TrainingStatus,
    require_module,
)
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer.runfolder import TRAINER, check_request, describe, finished


class SSDTrainer(Trainer):
    name = TRAINER
    summary = "SSD + MobileNetV2 (optional FPN-lite), focal loss; GPU when present, else CPU"
    requires = ()

    def check(self) -> None:
        install = ("install the pinned TensorFlow: pip install -r "
                   "dockerfiles/requirements/tf.txt (or use the train image)")
        require_module("tensorflow", what="the ssd trainer", install=install)
        require_module("pycocotools", what="the ssd trainer's COCO evaluation", install=install)

    def default_config(self) -> str:
        from odplug_builtins.trainer.config import Config, to_toml

        return to_toml(Config())

    def train(self, records: Path, run_dir: Path, *, config: Path | None = None,
              overrides: dict[str, object] | None = None, resume: Resume = "never",
              on_step: StepCallback | None = None, workers: int = 1,
              on_event: EventCallback | None = None) -> RunInfo:
        step = on_step or (lambda step, total, metrics: None)
        event = on_event or (lambda event: None)
        check_request(run_dir, config, overrides or {}, resume)  # before TensorFlow loads
        done = finished(run_dir, overrides or {}, resume)
        if done is not None:
            event(TrainingStatus(done))
            return RunInfo.read(run_dir)
        if workers > 1:
            from odplug_builtins.trainer.launcher import train_locally

            return train_locally(workers, records, run_dir, config=config,
                                 overrides=overrides or {}, resume=resume, on_step=step,
                                 on_event=event).info
        if "tensorflow" not in sys.modules:
            event(TrainingStatus("loading TensorFlow"))
        from odplug_builtins.trainer.train import train

        return train(records, run_dir, config_path=config, overrides=overrides or {},
                     resume=resume, on_step=step, on_event=event)

    def describe(self, run_dir: Path) -> RunInfo | None:
        return describe(run_dir)


@hookimpl(trylast=True)
def odplug_register_trainers(register):  # type: ignore[no-untyped-def]
    register(SSDTrainer())
