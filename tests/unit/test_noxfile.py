"""noxfile.py: every plugin has a session, docker variants stay out of the default run without
an engine, and together the sessions run every test module (so ``nox`` is the whole suite)."""

from __future__ import annotations

import re
import subprocess

import pytest

import noxfile
from tests.support.tools import BIN, ROOT

PLUGINS = ("core", "supervisely", "tf_csv", "coco", "voc", "tfrecord", "yolo", "trainer",
           "tflite", "edgetpu", "tfjs")


@pytest.fixture(scope="module")
def listing() -> dict[str, bool]:
    """Session name -> selected by default, as ``nox -l`` prints them."""
    done = subprocess.run([str(BIN / "nox"), "-l"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return {m[2]: m[1] == "*" for m in re.finditer(r"^([*-]) (\S+) ->", done.stdout, re.M)}


def test_every_plugin_has_a_session_and_a_docker_variant(listing: dict[str, bool]) -> None:
    for name in PLUGINS:
        assert listing.get(name) is True, f"{name} is missing or not in the default run"
        assert f"docker-{name}" in listing
    for name in ("example-plugin", "lint", "typecheck", "hadolint"):
        assert listing.get(name) is True, name


def test_docker_variants_run_by_default_only_where_an_engine_answers(
    listing: dict[str, bool],
) -> None:
    engine = noxfile._docker_engine()
    for name in PLUGINS:
        assert listing[f"docker-{name}"] is engine


def test_the_sessions_together_run_every_test_module_once() -> None:
    runs = [ROOT / folder for _requirements, _image, folders in noxfile.PLUGINS.values()
            for folder in folders]
    for module in (ROOT / "tests").rglob("test_*.py"):
        holders = [folder for folder in runs if module.is_relative_to(folder)]
        assert len(holders) == 1, f"{module.relative_to(ROOT)} is run by {holders or 'no session'}"
