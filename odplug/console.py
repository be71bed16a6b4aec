"""How tasks talk to the user: one-line errors, plugin warnings, a progress bar.

Kept apart from the tasks so each task stays a thin wrapper: parse, call the library, show.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from invoke.exceptions import Exit

from odplug.errors import OdplugError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(body: F) -> F:
    """Turn `OdplugError` into ``odplug: error: ...`` and exit status 1, with no traceback."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except OdplugError as error:
            raise Exit(f"odplug: error: {error}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("odplug: interrupted; nothing was left half-written", code=130) from None

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    print(f"odplug: warning: {message}", file=sys.stderr)


def load_registry_warning() -> Any:
    """The plugin registry, with one warning line per broken plugin."""
    from odplug.plugins import load_registry

    registry = load_registry()
    for line in registry.errors:
        warn(line)
    return registry


class Bar:
    """A rich progress bar on stderr; `start` may come after creation, once the total is known."""

    def __init__(self, progress: Any, description: str) -> None:
        self._progress = progress
        self._description = description
        self._task: Any = None

    def start(self, total: int) -> None:
        self._task = self._progress.add_task(self._description, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None and n:
            self._progress.advance(self._task, n)


class _Silent:
    def add_task(self, description: str, total: int) -> None:
        return None


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Bar]:
    """A bar on an interactive stderr; elsewhere (logs, CI, pipes) nothing, and no rich import."""
    if not enabled or not sys.stderr.isatty():
        yield Bar(_Silent(), description)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield Bar(progress, description)
