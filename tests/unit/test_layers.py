"""The tiers' import arrows: statically with import-linter, and at run time for the one that
users feel (converting a dataset never loads TensorFlow)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import odplug.data
from tests.support.tools import ROOT, python_output

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_linter_contracts_hold() -> None:
    """The contracts are in pyproject.toml ([tool.importlinter]): plugins import the core and
    never the reverse, tiers point down, the dataset path has no TensorFlow."""
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and " kept" in done.stdout


def test_the_dataset_path_and_the_command_line_import_without_tensorflow() -> None:
    modules = [f"odplug.data.{info.name}" for info in pkgutil.iter_modules(odplug.data.__path__)]
    modules += ["odplug_builtins.supervisely", "odplug_builtins.tf_csv",
                "odplug_builtins.tfrecord", "odplug_builtins.yolo", "odplug_builtins.coco",
                "odplug_builtins.voc", "odplug.plugins",
                # the command line and its workflows, to their argument checks: a wrong path or
                # number is one line at once, not after TensorFlow's seconds of importing
                "odplug.cli.tasks", "odplug.workflows.export", "odplug.workflows.pipeline",
                "odplug.workflows.evaluate"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "from odplug.plugins import load_registry\n"
            "load_registry()\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    heavy = python_output(code)
    assert heavy == "", f"loaded on the dataset path: {heavy}"
