"""What odplug keeps off the console unless asked, and the switch that shows it all again.

TensorFlow and the TFLite runtime and converter write straight to file descriptor 2 from C++:
at import (oneDNN and CUDA notices, before absl logging is even set up, so no environment
variable hides them), when the TFLite interpreter starts (the XNNPACK notice) and while the
converter calibrates (its debug prints). Python's ``sys.stderr`` is not in that path, so the
only way to hide them is to point descriptor 2 elsewhere while that code runs: that is
`native_output_hidden`, for the few calls known to print.

``ODPLUG_VERBOSE=1`` (what ``odplug --verbose`` sets) turns all hiding off. It is an
environment variable so that plugins and the subprocesses odplug starts see it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "ODPLUG_VERBOSE"


def verbose() -> bool:
    """Whether the user asked to see everything: ``ODPLUG_VERBOSE`` set and not ``0``."""
    return os.environ.get(VERBOSE_ENV, "0").strip() not in ("", "0")


@contextmanager
def native_output_hidden() -> Iterator[None]:
    """Send what native code writes to stderr to /dev/null for the duration, unless verbose.

    Python's own writes to ``sys.stderr`` in that time are hidden too, so keep the block to the
    one call that prints: its errors still arrive as Python exceptions.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
