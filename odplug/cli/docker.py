"""The toolchain images: one table, and the docker commands the ``docker.*`` tasks echo and run.

Each image installs one pinned requirements file from ``dockerfiles/requirements/``, the same
file its nox session installs, so a test that passes in nox passes in the image.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from odplug.errors import OdplugError


@dataclass(frozen=True)
class ToolchainImage:
    name: str
    dockerfile: str
    requirements: str
    gpu: bool
    platform: str = ""
    entrypoint: str | None = None
    """What ``docker.run`` starts the command with, where the image's own ENTRYPOINT is not a
    shell-like launcher (the beam worker's boot script takes the runner's flags, not a
    command): ``""`` runs the command itself."""

    @property
    def tag(self) -> str:
        return f"odplug-{self.name}"


IMAGES = {
    image.name: image
    for image in (
        ToolchainImage("train", "dockerfiles/train.Dockerfile", "tf.txt", gpu=True),
        ToolchainImage("tfjs", "dockerfiles/tfjs.Dockerfile", "tfjs.txt", gpu=False),
        ToolchainImage("edgetpu", "dockerfiles/edgetpu.Dockerfile", "tf.txt", gpu=False,
                       platform="linux/amd64"),
        # The Beam SDK worker for remote runners (Dataflow, Flink): beam.txt, cloud.txt and
        # odplug --no-deps on Beam's own SDK image, whose boot script stays its ENTRYPOINT.
        ToolchainImage("beam", "dockerfiles/beam.Dockerfile", "beam.txt", gpu=False,
                       entrypoint=""),
    )
}


def image(name: str) -> ToolchainImage:
    if name not in IMAGES:
        raise OdplugError(f"unknown image {name!r}: choose one of {', '.join(IMAGES)}")
    return IMAGES[name]


def require_engine() -> None:
    """One clear line when there is no docker client or no engine behind it."""
    if shutil.which("docker") is None:
        raise OdplugError("docker is not installed: install Docker Engine (docs.docker.com)")
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise OdplugError("no Docker engine is reachable (`docker info` failed): start the "
                          "docker daemon, or use the nox sessions, which need no Docker")


def build_command(target: ToolchainImage, root: Path) -> list[str]:
    command = ["docker", "build", "-f", target.dockerfile, "-t", target.tag]
    if target.platform:
        command += ["--platform", target.platform]
    return [*command, str(root)]


def run_command(target: ToolchainImage, root: Path, command: str, *, gpus: bool) -> list[str]:
    docker = ["docker", "run", "--rm", "-v", f"{root.resolve()}:/work", "-w", "/work"]
    if target.platform:
        docker += ["--platform", target.platform]
    if gpus and target.gpu:
        docker += ["--gpus", "all"]
    if target.entrypoint is not None:
        docker += ["--entrypoint", target.entrypoint]
    return [*docker, target.tag, *shlex.split(command)]
