"""The built wheel, installed into a fresh environment, works from a folder unrelated to the
checkout: ``pip install odplug`` is what a user gets, not this source tree.

The fresh environment (`conftest.fresh_venv`) gets odplug only from the wheel; the test checks
that odplug and its built-in plugins are imported from the wheel's files.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.tools import ROOT, fresh_venv, needs_tfjs_toolchain, tool_env, tool_runner

TINY = ("model.input_size=96,model.levels=[4,5],model.head_channels=32,train.batch_size=4,"
        "train.steps=6,train.warmup_steps=2,train.eval_every=1000,train.checkpoint_every=1000")
PLUGIN_DATA = ("odplug_builtins/tfjs/runner.mjs", "odplug_builtins/tfjs/package.json",
               "odplug_builtins/tfjs/package-lock.json", "odplug_builtins/tfjs/web/index.html",
               "odplug_builtins/tfjs/web/app.js")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("odplug-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin folder."""
    return fresh_venv(tmp_path_factory.mktemp("venv") / "env", wheel)


def test_wheel_holds_odplug_builtins_and_their_files_and_no_plugins_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.endswith(".dist-info/RECORD")}
    assert "plugins" not in top, sorted(top)
    assert {"odplug", "odplug_builtins"} <= top
    missing = [name for name in PLUGIN_DATA if name not in names]
    assert not missing, missing
    assert not any("node_modules" in name for name in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_whole_job_from_an_unrelated_folder(
        installed: Path, tmp_path: Path) -> None:
    needs_tfjs_toolchain()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = tool_env(installed)
    odplug = tool_runner(installed, work)

    where = subprocess.run(
        [str(installed / "python"), "-c", "import odplug, odplug_builtins.tfjs; "
         "print(odplug.__file__); print(odplug_builtins.tfjs.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(installed.parent)) for path in where), where
    listing = subprocess.run([str(installed / "python"), "-m", "pip", "show", "-f", "odplug"],
                             cwd=work, env=env, capture_output=True, text=True, check=True)
    files = [line.strip() for line in listing.stdout.splitlines() if line.startswith("  ")]
    assert not [f for f in files if f.startswith("plugins/")]
    assert "odplug_builtins/tfjs/runner.mjs" in files

    odplug("demo.dataset", "--out", "demo", "--images", "24", "--size", "96")
    odplug("data.import", "--source", "demo", "--out", "records", "--quiet")
    odplug("model.train", "--records", "records", "--run", "run", "--set", TINY)
    table = odplug("model.export", "--model", "run", "--to", "tflite,tfjs",
                   "--quantize", "float32", "--limit", "3")
    assert "| tflite-float32 |" in table and "| tfjs-float32 |" in table, table
    assert (work / "run" / "export" / "tfjs" / "tfjs-float32" / "model.json").is_file()
