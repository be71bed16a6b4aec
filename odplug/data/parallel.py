"""Running writer jobs over all cores with one progress count.

Jobs are whole output files (a shard, a split's CSV), so each file is written by exactly one
process and nothing needs locking. Workers are forked where the platform allows it, which
keeps start-up to milliseconds, and then they find their jobs in the memory they inherited:
only an index crosses the pipe (pickling a shard's samples to send it cost time per job and
before the first image: docs/formats.md, "Measurements"). They count finished images in a
shared integer that the parent turns into progress updates.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from odplug.components import Progress

J = TypeVar("J")
R = TypeVar("R")

_counter: Any = None
_direct: Progress | None = None
_inherited: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def tick(n: int = 1) -> None:
    """Called by job functions after each image."""
    if _direct is not None:
        _direct(n)
    elif _counter is not None:
        with _counter.get_lock():
            _counter.value += n


def _init_worker(counter: Any) -> None:
    global _counter, _direct
    _counter, _direct = counter, None
    # Ctrl-C reaches the terminal's whole process group: the parent stops the pool (its
    # KeyboardInterrupt ends the ``with Pool``, which terminates the workers). A worker that
    # took it too printed "Process ForkPoolWorker-2:" above the command's one line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_inherited(index: int) -> Any:
    """In a forked worker: the job at `index` of the table the parent set before forking."""
    if _inherited is None:
        raise RuntimeError("a worker of run_jobs was started without the parent's job table")
    fn, jobs = _inherited
    return fn(jobs[index])


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_jobs(
    fn: Callable[[J], R], jobs: Sequence[J], *, workers: int = 0, progress: Progress
) -> list[R]:
    """`fn` over `jobs` in order of results = order of jobs; in-process when one worker will do."""
    global _direct, _inherited
    workers = min(workers or default_workers(), len(jobs))
    if workers <= 1:
        _direct = progress
        try:
            return [fn(job) for job in jobs]
        finally:
            _direct = None
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    counter = context.Value("q", 0)
    seen = 0
    _inherited = (fn, jobs) if fork else None
    try:
        with context.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
            if fork:
                pending = pool.map_async(_run_inherited, range(len(jobs)), chunksize=1)
            else:
                pending = pool.map_async(fn, jobs, chunksize=1)
            while not pending.ready():
                pending.wait(0.1)
                value = counter.value
                progress(value - seen)
                seen = value
            results = pending.get()
    finally:
        _inherited = None
    progress(counter.value - seen)
    return results
