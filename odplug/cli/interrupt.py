"""Ctrl-C at any moment of a command: one line and exit status 130, never a traceback.

Outside a task's body (importing, parsing the command line, finishing) there is nothing to clean
up, so SIGINT ends the process at once (`exit_on_interrupt`). Inside it, SIGINT raises
KeyboardInterrupt as usual, so the task's own clean-up runs before `console.user_errors`
turns it into the same line (`interrupts_raise`). Only the standard library is imported here:
this module is loaded before anything slow.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED = 130
"""Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it."""
MESSAGE = "odplug: interrupted; nothing was left half-written"


def _exit_now(signum: int, frame: FrameType | None) -> None:
    """End the process now, with `os._exit`, which nothing can catch. A SystemExit raised here
    was once lost during inv's start-up (about 0.12 s in, under load: the line was printed, the
    task ran to its end and the exit status was 0). Outside a task's body there is nothing to
    flush or clean up."""
    os.write(2, f"{MESSAGE}\n".encode())  # safe inside a signal handler, unlike print
    os._exit(INTERRUPTED)


def exit_on_interrupt() -> None:
    """From now on, Ctrl-C outside a task's body exits with `MESSAGE` and `INTERRUPTED`."""
    signal.signal(signal.SIGINT, _exit_now)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within: Ctrl-C raises KeyboardInterrupt, for the task to clean up. Only where
    `exit_on_interrupt` holds (the command line's process): a test or a program that calls a
    task keeps its own handler."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not _exit_now:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _exit_now)
