"""The worker pool behind every writer: results in job order, progress counted, no pickling."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from odplug.data.parallel import run_jobs, tick

fork_only = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                               reason="workers inherit their jobs only where they are forked")


def _square(job: tuple[int, int]) -> tuple[int, int]:
    value, images = job
    for _ in range(images):
        tick()
    return value * value, os.getpid()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_job_order_and_every_image_is_counted(workers: int) -> None:
    counted: list[int] = []
    jobs = [(value, value % 4) for value in range(12)]
    results = run_jobs(_square, jobs, workers=workers, progress=counted.append)
    assert [square for square, _ in results] == [value * value for value in range(12)]
    assert sum(counted) == sum(images for _, images in jobs)
    pids = {pid for _, pid in results}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)


class _Unpicklable:
    """A job that cannot cross a pipe: forked workers must find it in inherited memory."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.callback = lambda: value

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("this job must not be pickled")


def _call(job: _Unpicklable) -> int:
    return job.callback() + 1


@fork_only
def test_forked_workers_take_their_jobs_from_inherited_memory() -> None:
    jobs = [_Unpicklable(value) for value in range(6)]
    assert run_jobs(_call, jobs, workers=2, progress=lambda n: None) == [1, 2, 3, 4, 5, 6]


def _fail(value: int) -> int:
    if value == 3:
        raise ValueError("job 3 broke")
    return value


def test_a_failing_job_raises_in_the_caller() -> None:
    with pytest.raises(ValueError, match="job 3 broke"):
        run_jobs(_fail, list(range(6)), workers=2, progress=lambda n: None)


def _sigint_handler(job: int) -> tuple[object, int]:
    import signal

    return signal.getsignal(signal.SIGINT), os.getpid()


def test_workers_leave_ctrl_c_to_the_parent() -> None:
    """Ctrl-C reaches the whole process group: a worker that took it printed "Process
    ForkPoolWorker-2:" above the command's one line; the parent stops the pool itself."""
    import signal

    results = run_jobs(_sigint_handler, list(range(4)), workers=2, progress=lambda n: None)
    assert {pid for _, pid in results} - {os.getpid()}, "ran in workers"
    assert {handler for handler, _ in results} == {signal.SIG_IGN}
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN, "the parent still takes it"
