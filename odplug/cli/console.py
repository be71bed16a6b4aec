"""How tasks talk to the user: one-line errors, plugin warnings, a progress bar.

Kept apart from the tasks so each task stays a thin wrapper: parse, call the library, show.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.exceptions import Exit

from odplug.errors import OdplugError

if TYPE_CHECKING:
    from odplug.plugins import Registry

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


def load_registry_warning() -> Registry:
    """The plugin registry, with one warning line per broken plugin or name taken twice."""
    from odplug.plugins import load_registry

    registry = load_registry()
    for line in [*registry.errors, *registry.warnings]:
        warn(line)
    return registry


class Bar:
    """A progress bar whose total may come after creation, once the work is counted.

    On an interactive stderr it is a rich bar; elsewhere (logs, CI, pipes) it only counts,
    and `interactive` tells the task to print occasional plain lines instead.
    """

    def __init__(self, progress: Any, description: str, interactive: bool) -> None:
        self._progress = progress
        self._description = description
        self._task: Any = None
        self.total: int | None = None
        self.interactive = interactive

    def start(self, total: int, completed: int = 0) -> None:
        self.total = total
        if self._progress is not None:
            self._task = self._progress.add_task(self._description, total=total,
                                                 completed=completed, status="")

    def advance(self, n: int, **fields: str) -> None:
        if self._task is not None and (n or fields):
            self._progress.update(self._task, advance=n, **fields)


@contextmanager
def progress_bar(description: str, *, enabled: bool = True,
                 fields: tuple[str, ...] = ()) -> Iterator[Bar]:
    """A bar on an interactive stderr; elsewhere nothing, and no rich import."""
    if not enabled or not sys.stderr.isatty():
        yield Bar(None, description, interactive=False)
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

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    columns += [TextColumn(f"{{task.fields[{name}]}}") for name in fields]
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield Bar(progress, description, interactive=True)


def training_reporter(bar: Bar, started: float, *, lines: int = 20
                      ) -> Callable[[int, int, dict[str, float]], None]:
    """The trainers' `on_step`: the bar with loss and images/s, or `lines` plain log lines."""
    import time

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        if bar.total is None:
            bar.start(total, completed=step - 1)
        status = " ".join(f"{k}={metrics[k]:.3g}" for k in
                          ("loss", "images_per_second", "val_map50") if k in metrics)
        bar.advance(1, status=status)
        if not bar.interactive and metrics and step % max(1, total // lines) == 0:
            print(f"step {step}/{total} {status} ({time.perf_counter() - started:.0f} s)",
                  flush=True)

    return on_step
