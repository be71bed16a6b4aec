"""Fixtures every tier shares: the plugin registry, datasets to import, the command line.

The tiers are folders that say what they cost: ``unit`` (no TensorFlow, seconds), ``core``
(the core's model and export side on tiny models), ``plugins/<name>`` (one built-in plugin
each), ``e2e`` (installed programs, command lines, clusters, benchmarks). Plain helpers live
in `tests.support`; only fixtures are here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from odplug.plugins import get_plugin_manager
from tests.support.buckets import bucket, s3_endpoint  # noqa: F401 (fixtures)
from tests.support.tools import BIN, RACCOON, ROOT, Run


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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, registry):  # type: ignore[no-untyped-def]
    """The built-in trainer's tiny run that every test needing *a* trained detector shares,
    trained once per session (`tests.support.detectors.shared_tiny_run`); read-only."""
    from tests.support.detectors import shared_tiny_run

    return shared_tiny_run(tmp_path_factory, registry)


@pytest.fixture
def demo_copy(demo_project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(demo_project, target)
    return target


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


E2E = ROOT / "tests" / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` what is slow by what it uses: the e2e tier (installed programs, command
    lines that load TensorFlow, clusters, benchmarks) and every test that needs the session's
    tiny training (`tiny_run`). Other tests that take more than a few seconds carry the mark
    themselves; ``pytest -m "not slow"`` is the fast tier."""
    for item in items:
        if item.path.is_relative_to(E2E) or "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
