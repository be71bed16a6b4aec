"""noxfile.py: every plugin has a session, docker variants stay out of the default run without
an engine, and together the sessions run every test module (so ``nox`` is the whole suite)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
    for name in ("beam", "example-plugin", "lint", "typecheck", "hadolint"):
        assert listing.get(name) is True, name


def test_docker_variants_run_by_default_only_where_an_engine_answers(
    listing: dict[str, bool],
) -> None:
    engine = noxfile._docker_engine()
    for name in PLUGINS:
        assert listing[f"docker-{name}"] is engine


def runs(arguments: list[str]) -> list[tuple[Path, list[Path]]]:
    """Each pytest path of a session's arguments with the ``--ignore=`` paths among them."""
    ignored = [ROOT / a.removeprefix("--ignore=") for a in arguments if a.startswith("--ignore=")]
    return [(ROOT / a, ignored) for a in arguments if not a.startswith("-")]


def test_the_sessions_together_run_every_test_module_once() -> None:
    sessions = [*noxfile.PLUGINS.values(), ("tf.txt", "", noxfile.BEAM_TESTS)]
    paths = [run for _requirements, _image, arguments in sessions for run in runs(arguments)]
    for module in (ROOT / "tests").rglob("test_*.py"):
        holders = [path for path, ignored in paths if module.is_relative_to(path)
                   and not any(module.is_relative_to(skip) for skip in ignored)]
        assert len(holders) == 1, f"{module.relative_to(ROOT)} is run by {holders or 'no session'}"


def test_the_beam_session_has_the_beam_tests_and_core_passes_them_over() -> None:
    assert (ROOT / "tests/core/test_beam_import.py").is_file()
    assert "tests/core/test_beam_import.py" in noxfile.BEAM_TESTS
    assert "--ignore=tests/core/test_beam_import.py" in noxfile.PLUGINS["core"][2]
