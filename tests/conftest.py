"""Shared fixtures: datasets to import, a command-line runner, and the TensorFlow reader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from odplug.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT.parent / "shared" / "datasets" / "raccoon"
BIN = Path(sys.executable).parent


@pytest.fixture
def pm():
    """A plugin manager with the built-ins only: no entry points from the environment."""
    manager, _infos = get_plugin_manager(entry_points=False)
    return manager


@pytest.fixture(scope="session")
def registry():
    """Built-in plugins only, whatever the environment has installed."""
    from odplug.plugins import load_registry

    return load_registry(entry_points=False)


def run_import(source: Path, out: Path, registry, **options):  # type: ignore[no-untyped-def]
    from odplug.data.convert import ImportOptions, import_dataset

    return import_dataset(source, out, ImportOptions(**options), registry)


def problem_files(result, kind: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """The files of each problem code of one kind ("image skipped", "box skipped", ...)."""
    found: dict[str, list[str]] = {}
    for problem in result.report.problems:
        if problem.kind == kind:
            found.setdefault(problem.code, []).append(problem.file)
    return found


@pytest.fixture(scope="session")
def raccoon() -> Path:
    if not RACCOON.is_dir():
        pytest.skip(f"the raccoon dataset is not at {RACCOON} (it ships in shared/datasets)")
    return RACCOON


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo Supervisely project, made once per test session; copy it to modify it."""
    from odplug.data.demo import write_demo_project

    return write_demo_project(tmp_path_factory.mktemp("demo") / "project", images=30, size=96)


@pytest.fixture
def demo_copy(demo_project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(demo_project, target)
    return target


Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_inv() -> Run:
    """Run the real ``inv`` of this environment in the repository root."""

    def run(*args: str, cwd: Path = ROOT, env: dict | None = None,
            program: str = "inv") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / program), *args], cwd=cwd, capture_output=True, text=True,
            env={**os.environ, **(env or {})}, timeout=300,
        )

    return run


def read_records(folder: Path, split: str | None = None) -> list[dict]:
    """Every record of a folder (or one split), decoded by TensorFlow into plain Python."""
    from odplug.data.shards import shard_files
    from odplug.model.tfdata import record_dataset

    files = shard_files(folder, split)
    assert files, f"no shards in {folder}"
    rows = []
    for item in record_dataset(files).as_numpy_iterator():
        rows.append({
            "source_id": item["source_id"].decode(),
            "filename": item["filename"].decode(),
            "boxes": item["boxes"].tolist(),
            "classes": item["classes"].tolist(),
            "height": int(item["height"]),
            "width": int(item["width"]),
            "image_shape": item["image"].shape,
            "format": item["format"].decode(),
            "sha256": item["sha256"].decode(),
        })
    return rows


def assert_same_detections(got: tuple, expected: tuple, *, box_atol: float = 1e-4,
                           score_atol: float = 1e-5) -> None:
    """Two runtimes found the same detections: scores in the same order, and each detection's
    class and box matched by one of the other's detections of the same score.

    Detections whose scores tie (an untrained test model has many) may come out of NMS in
    either order, and which of them comes first differs between runtimes; anything else must
    agree to the tolerances.
    """
    import numpy as np

    boxes, classes, scores = (np.asarray(a) for a in got)
    want_boxes, want_classes, want_scores = (np.asarray(a) for a in expected)
    assert len(scores) == len(want_scores), f"{len(scores)} detections, expected {len(want_scores)}"
    np.testing.assert_allclose(scores, want_scores, atol=score_atol)
    unused = set(range(len(want_scores)))
    for i in range(len(scores)):
        match = next((j for j in sorted(unused, key=lambda j: abs(j - i))
                      if abs(want_scores[j] - scores[i]) <= score_atol
                      and want_classes[j] == classes[i]
                      and np.allclose(want_boxes[j], boxes[i], atol=box_atol, rtol=0)), None)
        assert match is not None, (
            f"detection {i} (class {classes[i]}, score {scores[i]:.6f}, box {boxes[i]}) has no "
            f"counterpart among the expected detections of that score")
        unused.remove(match)


def fresh_venv(folder: Path, *installs: str | Path, editable: bool = False) -> Path:
    """A new virtual environment holding `installs` (wheels, projects); returns its bin folder.

    Only the named packages are installed into it, without their dependencies: those
    (TensorFlow and the rest, gigabytes) are borrowed from the test environment through a
    ``.pth`` line instead of downloaded again. A folder added that way is not a site directory,
    so this checkout's own editable install of odplug listed there stays inert: odplug comes
    only from `installs`. `editable` installs them with ``-e``.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for install in installs:
        args = ["-e", str(install)] if editable else [str(install)]
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                               "--no-build-isolation", "--force-reinstall", *args],
                              capture_output=True, text=True, check=False, cwd=folder)
        assert done.returncode == 0, f"pip install {install}:\n{done.stderr[-3000:]}"
    return folder / "bin"


def tool_env(venv_bin: Path) -> dict[str, str]:
    """The environment for running a fresh venv's ``odplug`` from an unrelated folder, with the
    TF.js converter and Node packages this checkout's setup.sh installed."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env['PATH']}",
               ODPLUG_TFJS_PYTHON=str(ROOT / ".venv-tfjs" / "bin" / "python"),
               ODPLUG_TFJS_NODE_PREFIX=str(ROOT / "plugins" / "tfjs"))
    return env


def needs_tfjs_toolchain() -> None:
    """Skip, saying why, where setup.sh's TF.js pieces are missing."""
    if not (ROOT / "plugins" / "tfjs" / "node_modules" / "@tensorflow" / "tfjs").is_dir() \
            or shutil.which("node") is None \
            or not (ROOT / ".venv-tfjs" / "bin" / "python").is_file():
        pytest.skip("needs Node.js, `npm ci --prefix plugins/tfjs` and .venv-tfjs (setup.sh)")


def tool_runner(venv_bin: Path, cwd: Path) -> Callable[..., str]:
    """``odplug ARGS`` from a fresh venv in `cwd`: returns stdout, fails the test with stderr."""
    env = tool_env(venv_bin)

    def odplug(*args: str) -> str:
        done = subprocess.run([str(venv_bin / "odplug"), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"odplug {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout

    return odplug
