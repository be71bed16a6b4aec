"""Running writer jobs over all cores with one progress count.

Jobs are whole output files (a shard, a split's CSV), so each file is written by exactly one
process and nothing needs locking. Workers are forked where the platform allows it, which
keeps start-up to milliseconds; they count finished images in a shared integer that the parent
turns into progress updates.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from odplug.components import Progress

J = TypeVar("J")
R = TypeVar("R")

_counter: Any = None
_direct: Progress | None = None


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


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_jobs(
    fn: Callable[[J], R], jobs: Sequence[J], *, workers: int = 0, progress: Progress
) -> list[R]:
    """`fn` over `jobs` in order of results = order of jobs; in-process when one worker will do."""
    global _direct
    workers = min(workers or default_workers(), len(jobs))
    if workers <= 1:
        _direct = progress
        try:
            return [fn(job) for job in jobs]
        finally:
            _direct = None
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    counter = context.Value("q", 0)
    seen = 0
    with context.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.map_async(fn, jobs, chunksize=1)
        while not pending.ready():
            pending.wait(0.1)
            value = counter.value
            progress(value - seen)
            seen = value
        results = pending.get()
    progress(counter.value - seen)
    return results
