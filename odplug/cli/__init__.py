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

    try:
        program.run()
    except BrokenPipeError:
        _reader_went_away()


def _reader_went_away() -> None:
    """``odplug --help | head``: the reader closed the pipe. Not a traceback: stdout goes to
    /dev/null (so the interpreter's final flush cannot fail again) and the exit status is the
    shell's for SIGPIPE, as ``cat`` or ``grep`` would end."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + 13)  # SIGPIPE


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from odplug.cli import command

        return getattr(command, name)
    raise AttributeError(f"module 'odplug.cli' has no attribute {name!r}")
