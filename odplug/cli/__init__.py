"""The ``odplug`` command: the same tasks as ``inv``, usable from any folder once installed."""

from __future__ import annotations

from collections.abc import Callable

from invoke import Argument, Program

from odplug import __version__
from odplug.cli.console import parse_errors_are_usage, quiet_console
from odplug.cli.tasks import ns


class OdplugProgram(Program):
    """invoke's Program with one more core flag, ``--verbose``, read before any task runs, and
    exit status 2 on its parse errors, as on every other usage error."""

    def core_args(self) -> list[Argument]:
        return [*super().core_args(), Argument(
            names=("verbose",), kind=bool, default=False,
            help="Show everything TensorFlow and its converters print (hidden by default; "
            "ODPLUG_VERBOSE=1 does the same).")]

    def parse_core(self, argv: list[str] | None) -> None:
        with parse_errors_are_usage():
            super().parse_core(argv)
        quiet_console(verbose=self.args.verbose.value)

    def parse_tasks(self) -> None:
        with parse_errors_are_usage():
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        with parse_errors_are_usage():
            super().parse_cleanup()


def usage_status_in(program: Program) -> None:
    """Give a running invoke `program` that odplug did not make (``inv``, which loads this
    checkout's tasks.py) `OdplugProgram`'s exit status 2 on parse errors.

    tasks.py is loaded after the core flags are parsed and before the tasks are, so this covers
    every parse error but a core flag's own (``inv -f`` without its file).
    """
    for step in ("parse_tasks", "parse_cleanup"):
        setattr(program, step, _usage_status(getattr(program, step)))


def _usage_status(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with parse_errors_are_usage():
            step()

    return run


program = OdplugProgram(namespace=ns, version=__version__, name="odplug", binary="odplug")


def main() -> None:
    program.run()
