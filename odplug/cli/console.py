"""How tasks talk to the user: a quiet console, one-line errors, warnings, a progress bar.

Kept apart from the tasks so each task stays a thin wrapper: parse, call the library, show.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.exceptions import Exit

from odplug import quiet
from odplug.cli.interrupt import INTERRUPTED, MESSAGE, interrupts_raise
from odplug.errors import Interrupted, OdplugError, UsageError

if TYPE_CHECKING:
    from odplug.plugins import Registry

F = TypeVar("F", bound=Callable[..., Any])

# Loggers whose records are odplug's own words: the core's and the built-in plugins'.
OWN_LOGGERS = ("odplug", "odplug_builtins")
# Libraries whose Python-side logging is noise to a user of the command line.
NOISY_LOGGERS = ("tensorflow", "absl")


def quiet_console(*, verbose: bool = False) -> None:
    """Set up the console of a command-line run; call it before TensorFlow is imported.

    Log records from any logger print as one line, ``odplug: warning: ...`` for odplug's own
    (``NAME: warning: ...`` for another library's), so the warnings that matter to the user
    read as odplug's. Unless `verbose` (or ``ODPLUG_VERBOSE``) asks to see everything:

    - ``TF_CPP_MIN_LOG_LEVEL=3``, set with ``os.environ.setdefault`` so a user's own setting
      wins, hides TensorFlow's C++ log lines, the cuInit error of a machine without a GPU
      included;
    - the notices TensorFlow prints while it is imported, before that setting is read (oneDNN,
      CUDA), are hidden by importing it with native stderr pointed away (`_QuietImport`);
    - the ``tensorflow`` and ``absl`` Python loggers keep only errors.

    ``TF_ENABLE_ONEDNN_OPTS`` is left alone: it changes numerics, not only what is printed.
    """
    if verbose:
        os.environ[quiet.VERBOSE_ENV] = "1"
    root = logging.getLogger()
    if not any(isinstance(handler, _ConsoleHandler) for handler in root.handlers):
        root.addHandler(_ConsoleHandler())
    if quiet.verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(
            isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


class _ConsoleHandler(logging.Handler):
    """Log records as one line in odplug's words, on whatever ``sys.stderr`` is at the time."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            own = record.name.split(".", 1)[0] in OWN_LOGGERS
            source = "odplug" if own else record.name
            print(f"{source}: {record.levelname.lower()}: {record.getMessage()}",
                  file=sys.stderr)
        except Exception:  # logging must never take the command down
            self.handleError(record)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Has one package imported with native stderr hidden.

    It finds nothing itself: it asks the finders after it for the package and wraps the loader
    they return, so the package is loaded exactly once, the usual way. It stays in place, as a
    probe like ``importlib.util.find_spec`` (which plugins' ``check()`` use) loads nothing.
    """

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.package:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    """Another loader, with its module's code run under `quiet.native_output_hidden`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__ is not None:  # the package keeps its own loader, as if unwrapped
            module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        with quiet.native_output_hidden():
            self.loader.exec_module(module)


USAGE = 2
"""Exit status of a usage error: the command line is wrong (an unknown task or flag, a missing
argument, a bad value, a name no plugin registers); invoke exits 2 on its own too in odplug."""
FAILURE = 1
"""Exit status of a failure found while doing the work (data, environment, a missed target)."""


def user_errors(body: F) -> F:
    """Turn `OdplugError` into ``odplug: error: ...`` with no traceback: exit status `USAGE`
    for a `UsageError`, `FAILURE` for any other.

    An `OSError` that reaches a task is the environment's, not odplug's: a folder that cannot
    be read, a path that is a file, a full disk. It becomes the same one line, naming the path
    (`os_error_line`). Ctrl-C raises KeyboardInterrupt in the body, whatever the command line
    makes of it elsewhere (`interrupt`), so the body's clean-up runs; then it is the line
    ``odplug: interrupted; ...`` and exit status 130.
    """

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interrupts_raise():
                return body(*args, **kwargs)
        except OdplugError as error:
            code = USAGE if isinstance(error, UsageError) else FAILURE
            raise Exit(f"odplug: error: {error}", code=code) from None
        except OSError as error:
            raise Exit(f"odplug: error: {os_error_line(error)}", code=FAILURE) from None
        except KeyboardInterrupt as error:
            said = str(error) if isinstance(error, Interrupted) else MESSAGE
            raise Exit(said, code=INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def os_error_line(error: OSError) -> str:
    """``<path>: <reason>`` for a file-system error, in the system's words."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return reason
    where = os.fsdecode(error.filename)
    if error.filename2 is not None:
        where += f" -> {os.fsdecode(error.filename2)}"
    return f"{where}: {reason}"


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
    and `interactive` tells the task to print occasional plain lines instead. `print` puts a
    line above the bar, or on stdout where there is none.
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

    def set_total(self, total: int) -> None:
        """A new total (a training whose time budget re-estimates its steps)."""
        self.total = total
        if self._task is not None:
            self._progress.update(self._task, total=total)

    def advance(self, n: int, **fields: str) -> None:
        if self._task is not None and (n or fields):
            self._progress.update(self._task, advance=n, **fields)

    def print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)


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
    columns += [TextColumn(f"{{task.fields[{name}]}}", markup=False) for name in fields]
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield Bar(progress, description, interactive=True)
