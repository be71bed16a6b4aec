"""``grid``: a tiny one-level grid detector, trained by a plugin that knows odplug only from
outside.

It is deliberately small (three strided convolutions, two square anchors per cell of an 8x8
grid) and deliberately written against odplug's public API alone: the records come from
`odplug.model.tfdata.record_dataset`, the targets are encoded with `odplug.model.boxcoder`, the
SavedModel is written by `odplug.model.savedmodel.write_detector` and the run is described by
`odplug.run.RunInfo`. Whatever the built-in exporters and ``model.*`` tasks accept from it,
they accept from any trainer that follows the same contract.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from odplug import hookimpl
from odplug.components import StepCallback, Trainer, require_module
from odplug.errors import OdplugError
from odplug.run import Resume, RunInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULTS: dict[str, Any] = {
    "model.input_size": 64,
    "train.steps": 60,
    "train.batch_size": 8,
    "train.learning_rate": 3e-3,
    "train.seed": 0,
}
CONFIG = """\
# The grid trainer's settings (odplug model.train --trainer grid --config this.toml).
[model]
input_size = 64        # square input side in pixels, a multiple of 8

[train]
steps = 60             # optimiser steps
batch_size = 8         # images per step
learning_rate = 0.003  # Adam
seed = 0               # weights and shuffling
"""
ANCHOR_SIZES = (0.25, 0.5)
"""Square anchors per grid cell, as a share of the image side."""


class GridTrainer(Trainer):
    name = "grid"
    summary = "example third-party trainer: a tiny one-level grid detector"

    def check(self) -> None:
        require_module("tensorflow", what="the grid trainer", install="pip install odplug[tf]")

    def default_config(self) -> str:
        return CONFIG

    def train(self, records: Path, run_dir: Path, *, config: Path | None = None,
              overrides: dict[str, object] | None = None, resume: Resume = "never",
              on_step: StepCallback | None = None) -> RunInfo:
        settings = _settings(config, overrides or {})
        existing = self.describe(run_dir)
        if resume == "required":
            raise OdplugError(f"{run_dir}: the grid trainer cannot resume a run; start a new one")
        if existing is not None:
            if resume == "never":
                raise OdplugError(f"{run_dir} already holds a run; give a new --run folder")
            shutil.rmtree(run_dir)  # "auto": this trainer always starts over
        from odplug_gridtrainer.fit import fit

        return fit(records, run_dir, settings, self.name,
                   on_step or (lambda step, total, metrics: None))


def _settings(config: Path | None, overrides: dict[str, object]) -> dict[str, Any]:
    settings = dict(DEFAULTS)
    if config is not None:
        try:
            document = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise OdplugError(f"{config}: cannot read the grid trainer's config: {error}") from None
        overrides = {**{f"{section}.{key}": value for section, table in document.items()
                        for key, value in table.items()}, **overrides}
    for key, value in overrides.items():
        if key not in DEFAULTS:
            raise OdplugError(f"grid trainer: unknown setting {key!r}; settings: "
                              + ", ".join(DEFAULTS))
        settings[key] = type(DEFAULTS[key])(value)  # type: ignore[operator]
    if settings["model.input_size"] % 8 or settings["model.input_size"] < 16:
        raise OdplugError("grid trainer: model.input_size must be a multiple of 8, at least 16")
    return settings


@hookimpl
def odplug_register_trainers(register):  # type: ignore[no-untyped-def]
    register(GridTrainer())
