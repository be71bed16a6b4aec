"""The ``odplug`` command: the same tasks as ``inv``, usable from any folder once installed.

This module imports nothing slow: `main` first makes Ctrl-C a clean exit (`interrupt`), then
imports the command line (`odplug.cli.command`), so an early Ctrl-C prints one line, not a
traceback from the middle of an import.
"""

from __future__ import annotations

from typing import Any

from odplug.cli.interrupt import exit_on_interrupt

_LAZY = ("OdplugProgram", "program")
"""Names of `odplug.cli.command` reachable here, imported on first use."""


def main() -> None:
    exit_on_interrupt()
    from odplug.cli.command import program

    program.run()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from odplug.cli import command

        return getattr(command, name)
    raise AttributeError(f"module 'odplug.cli' has no attribute {name!r}")
