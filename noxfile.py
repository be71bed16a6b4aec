"""One nox session per plugin, each in a virtualenv built from the pinned requirements file
that the plugin's Docker image installs too, running that plugin's tests.

    nox -l              # every session
    nox -s supervisely  # one plugin
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
REQUIREMENTS = "dockerfiles/requirements"

# plugin -> (requirements file its image installs, the tests that cover it)
PLUGINS: dict[str, tuple[str, list[str]]] = {
    "core": ("tf.txt", [
        "tests/test_tfrecord.py", "tests/test_images.py", "tests/test_labelmap.py",
        "tests/test_convert.py", "tests/test_plugins.py", "tests/test_tasks.py",
        "tests/test_demo.py", "tests/test_bench.py",
    ]),
    "supervisely": ("tf.txt", ["tests/test_supervisely.py"]),
    "csv": ("tf.txt", ["tests/test_tf_csv.py"]),
    "train": ("tf.txt", [
        "tests/test_trainer.py", "tests/test_trainer_data.py", "tests/test_coco.py",
    ]),
}


def run_plugin_tests(session: nox.Session, requirements: str, tests: list[str]) -> None:
    session.install("-r", f"{REQUIREMENTS}/{requirements}", "-r", f"{REQUIREMENTS}/test.txt")
    session.install("--no-deps", "-e", ".")
    session.run("pytest", *tests, *session.posargs)


def _define(name: str, requirements: str, tests: list[str]) -> None:
    def session(session: nox.Session) -> None:
        run_plugin_tests(session, requirements, tests)

    session.__doc__ = f"Tests of the {name} plugin, in the environment of {requirements}."
    nox.session(name=name)(session)


for _name, (_requirements, _tests) in PLUGINS.items():
    _define(_name, _requirements, _tests)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
