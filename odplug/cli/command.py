"""The ``odplug`` program: invoke's, with odplug's parsing and its ``--verbose`` flag."""

from __future__ import annotations

from invoke import Argument
from invoke.exceptions import Exit, ParseError

from odplug import __version__
from odplug.cli.console import USAGE, quiet_console
from odplug.cli.parsing import OdplugParsing
from odplug.cli.tasks import ns


class OdplugProgram(OdplugParsing):
    """invoke's Program parsing the odplug way (`OdplugParsing`), with one more core flag,
    ``--verbose``, read before any task runs."""

    def core_args(self) -> list[Argument]:
        return [*super().core_args(), Argument(
            names=("verbose",), kind=bool, default=False,
            help="Show everything TensorFlow and its converters print (hidden by default; "
            "ODPLUG_VERBOSE=1 does the same).")]

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as error:
            raise Exit(self.usage_line(error), code=USAGE) from None
        quiet_console(verbose=self.args.verbose.value)


program = OdplugProgram(namespace=ns, version=__version__, name="odplug", binary="odplug")
