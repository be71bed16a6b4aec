"""The image table (odplug/cli/docker.py) against the Dockerfiles, compose.yaml and the pinned
requirements: an image that installs another file than its table row says, or a Beam worker
image of another Beam version than beam.txt, would pass every local test and fail in the image.
No Docker engine is needed: nothing is built here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from odplug.cli import docker
from tests.support.tools import ROOT


def test_every_image_installs_its_requirements_and_every_dockerfile_is_an_image() -> None:
    for target in docker.IMAGES.values():
        text = (ROOT / target.dockerfile).read_text()
        assert f"dockerfiles/requirements/{target.requirements}" in text, target.name
        assert "pip install --no-deps -e ." in text, target.name
    listed = {target.dockerfile for target in docker.IMAGES.values()}
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "dockerfiles").glob("*.Dockerfile")}
    assert listed == on_disk


def test_compose_builds_every_image_from_its_dockerfile() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert set(services) == set(docker.IMAGES)
    for name, service in services.items():
        assert service["build"]["dockerfile"] == docker.IMAGES[name].dockerfile
        assert service["image"] == docker.IMAGES[name].tag


def test_the_beam_worker_is_beams_sdk_image_of_the_pinned_version() -> None:
    pinned = re.search(r"^apache-beam==(\S+)$",
                       (ROOT / "dockerfiles/requirements/beam.txt").read_text(), re.M)
    assert pinned
    text = (ROOT / docker.IMAGES["beam"].dockerfile).read_text()
    assert re.search(rf"^FROM apache/beam_python3\.\d+_sdk:{re.escape(pinned[1])}$", text, re.M)
    # the SDK image's boot script (/opt/apache/beam/boot) must stay its entrypoint
    assert not re.search(r"^ENTRYPOINT\b", text, re.M)
    assert "dockerfiles/requirements/cloud.txt" in text
    assert not docker.IMAGES["beam"].gpu


def test_docker_run_starts_the_command_itself_in_the_beam_image() -> None:
    line = docker.run_command(docker.IMAGES["beam"], Path("."), "python -V", gpus=True)
    assert line[line.index("--entrypoint") + 1] == ""
    assert line[-3:] == ["odplug-beam", "python", "-V"]
    assert "--gpus" not in line
    assert "--entrypoint" not in docker.run_command(docker.IMAGES["train"], Path("."), "odplug",
                                                    gpus=True)
