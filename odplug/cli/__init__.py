"""The ``odplug`` command: the same tasks as ``inv``, usable from any folder once installed."""

from invoke import Program

from odplug import __version__
from odplug.cli.tasks import ns

program = Program(namespace=ns, version=__version__, name="odplug", binary="odplug")


def main() -> None:
    program.run()
