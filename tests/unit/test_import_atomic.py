"""An import's output is one unit: it appears whole, or the previous output stays byte-identical.

Every case starts from a folder holding a good import and compares the bytes of every file
afterwards: a failed import (nothing to write, a bad option, a full disk, an exception inside a
writer), a real ``odplug data.import`` killed with SIGKILL in the middle of writing, two imports
into one folder at once, and outputs that overlap the dataset itself.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from odplug import atomic
from odplug.components import DatasetWriter, WriteJob
from odplug.data.shards import shard_files, write_tfrecords
from odplug.data.stats import folder_stats
from odplug.dataset_report import Report
from odplug.errors import OdplugError
from tests.support.records import run_import as run
from tests.support.tools import write_plugin

BIN = Path(sys.executable).parent


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes; folders as empty entries."""
    return {
        str(path.relative_to(folder)): b"<dir>" if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def leftovers(out: Path) -> list[str]:
    """What odplug keeps beside an output folder, the lock file aside."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith(".odplug-") and not p.name.startswith(atomic.LOCK_PREFIX))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from odplug.data.demo import write_demo_project

    return write_demo_project(tmp_path / "project", images=12, size=64)


@pytest.fixture
def good(project: Path, tmp_path: Path, registry) -> Path:  # type: ignore[no-untyped-def]
    """A folder holding a complete import of `project`, two shards per split."""
    out = tmp_path / "out"
    run(project, out, registry, shards=2, workers=1)
    assert shard_files(out, "train") and (out / "report.json").is_file()
    return out


# -- failures in process ----------------------------------------------------------------------

def test_every_image_skipped_keeps_the_previous_output(good: Path, project: Path,
                                                       registry) -> None:
    before = snapshot(good)
    for image in project.glob("*/img/*"):
        image.unlink()
    with pytest.raises(OdplugError, match="every image was skipped") as caught:
        run(project, good, registry)
    assert snapshot(good) == before
    failed = good.parent / "out.failed-report.json"
    assert str(failed) in str(caught.value) and "missing-image" in failed.read_text()
    assert leftovers(good) == []


def test_negative_shard_count_keeps_the_previous_output(good: Path, project: Path,
                                                        registry) -> None:
    before = snapshot(good)
    with pytest.raises(OdplugError, match="wrote no image"):
        run(project, good, registry, shards=-1)
    assert snapshot(good) == before
    assert leftovers(good) == []
    failed = good.parent / "out.failed-report.json"
    assert failed.is_file()
    run(project, good, registry)
    assert not failed.exists(), "a successful import removes the failed one's report"


def test_a_csv_with_only_a_header_keeps_the_previous_output(good: Path, tmp_path: Path,
                                                            registry) -> None:
    source = tmp_path / "csv"
    source.mkdir()
    (source / "train.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    before = snapshot(good)
    with pytest.raises(OdplugError, match="no images to import"):
        run(source, good, registry)
    assert snapshot(good) == before


def test_a_full_disk_while_writing_the_report_keeps_the_previous_output(
        good: Path, project: Path, registry, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(good)

    def full(self: Report, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Report, "write_json", full)
    with pytest.raises(OdplugError, match="No space left on device") as caught:
        run(project, good, registry, shards=1)
    assert len(str(caught.value).splitlines()) == 1 and str(good) in str(caught.value)
    assert snapshot(good) == before
    assert leftovers(good) == []


class _FailingWriter(DatasetWriter):
    """Writes a real shard under the final name, then fails the way it is told to."""

    name = "failing"

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.outs: list[Path] = []

    def write(self, job: WriteJob) -> Report:
        self.outs.append(job.out)
        assert job.out.is_dir() and not any(job.out.iterdir()), "a fresh empty folder"
        write_tfrecords(job)
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("writer bug")],
                         ids=["ctrl-c", "exception"])
def test_a_writer_that_fails_midway_changes_nothing(
        good: Path, project: Path, registry, monkeypatch: pytest.MonkeyPatch,
        error: BaseException) -> None:
    writer = _FailingWriter(error)
    monkeypatch.setitem(registry.writers, writer.name, writer)
    before = snapshot(good)
    with pytest.raises(type(error)):
        run(project, good, registry, to=writer.name, shards=3)
    assert snapshot(good) == before
    [staging] = writer.outs
    assert staging != good and staging.parent == good.parent and staging.name.startswith(".")
    assert not staging.exists() and leftovers(good) == []


def test_a_successful_import_replaces_the_whole_folder(good: Path, project: Path,
                                                       registry) -> None:
    (good / "train.record-00007-of-00009").write_bytes(b"a shard of some older run")
    run(project, good, registry, shards=1)
    assert [p.name for p in shard_files(good, "train")] == ["train.record-00000-of-00001"]
    assert leftovers(good) == []


# -- a crash between the two renames ----------------------------------------------------------

def test_the_next_run_restores_a_folder_set_aside_by_a_killed_swap(
        good: Path, project: Path, registry) -> None:
    """Killed after renaming the old output aside, before renaming the new one in: the next
    import puts the old one back before anything else (here it then fails, to see it)."""
    before = snapshot(good)
    run_id = "4242-0123abcd"
    staging = good.parent / f"{atomic.STAGE_PREFIX}{good.name}-{run_id}"
    good.rename(good.parent / f"{atomic.ASIDE_PREFIX}{good.name}-{run_id}")
    staging.mkdir()
    (staging / "train.record-00000-of-00001").write_bytes(b"complete but never swapped in")
    stray = good.parent / f"{atomic.STAGE_PREFIX}{good.name}-77-deadbeef"
    stray.mkdir()
    other = good.parent / f"{atomic.STAGE_PREFIX}{good.name}-b-77-deadbeef"
    other.mkdir()  # belongs to the folder "out-b", which this import must not touch
    with pytest.raises(OdplugError, match="no image"):
        run(project, good, registry, shards=-1)
    assert snapshot(good) == before
    assert leftovers(good) == [other.name]


# -- folders that are not this import's to replace ---------------------------------------------

def test_output_equal_to_or_inside_the_source_is_refused(project: Path, tmp_path: Path,
                                                         registry) -> None:
    before = snapshot(project)
    for out in (project, project / "records", project / "ds0"):
        with pytest.raises(OdplugError, match="dataset") as caught:
            run(project, out, registry)
        assert len(str(caught.value).splitlines()) == 1
    link = tmp_path / "link"
    link.symlink_to(project)
    with pytest.raises(OdplugError, match="inside the dataset"):
        run(project, link / "records", registry)
    with pytest.raises(OdplugError, match="holds the dataset"):
        run(project, tmp_path, registry)
    assert snapshot(project) == before


def test_tf_csv_into_its_own_source_is_refused(project: Path, tmp_path: Path,
                                               registry) -> None:
    source = tmp_path / "csv"
    run(project, source, registry, to="tf_csv")
    with (source / "train.csv").open("a") as handle:
        handle.write("not-a-row\n")
    before = snapshot(source)
    with pytest.raises(OdplugError, match="is the dataset folder"):
        run(source, source, registry, to="tf_csv")
    with pytest.raises(OdplugError, match="is the dataset folder"):
        run(source / "train.csv", source, registry, to="tf_csv")
    assert snapshot(source) == before


def test_a_folder_that_is_not_an_import_is_not_replaced(project: Path, tmp_path: Path,
                                                        registry) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    with pytest.raises(OdplugError, match="not an odplug import") as caught:
        run(project, mine, registry)
    assert str(mine) in str(caught.value)
    assert snapshot(mine) == {"notes.txt": b"the user's own file"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(project, empty, registry).report.images
    killed = tmp_path / "killed"  # an earlier version's first import, killed mid-write
    killed.mkdir()
    (killed / f"{atomic.TEMP_PREFIX}train.record-00000-of-00001.1a2b3c4d").write_bytes(b"x")
    assert run(project, killed, registry).report.images
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OdplugError, match="not a folder"):
        run(project, afile, registry)
    assert afile.read_text() == "x"


# -- real processes: kill -9 and two imports at once ------------------------------------------

SLOW_WRITER = '''
"""A writer that writes real shards, then waits in two forked workers: a killable import."""
import os
import time
from pathlib import Path

from odplug import hookimpl
from odplug.components import DatasetWriter
from odplug.data.parallel import run_jobs
from odplug.data.shards import write_tfrecords


def wait(seconds):
    Path(os.environ["SLOW_MARKER"]).touch()
    time.sleep(seconds)
    return seconds


class SlowWriter(DatasetWriter):
    name = "slow"

    def write(self, job):
        report = write_tfrecords(job)
        seconds = float(os.environ["SLOW_SECONDS"])
        run_jobs(wait, [seconds, seconds], workers=2, progress=job.progress)
        return report


@hookimpl
def odplug_register_writers(register):
    register(SlowWriter())
'''


@pytest.fixture
def slow_import(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start ``odplug data.import --to slow`` in its own session; returns once it is writing."""
    site = tmp_path / "site"
    write_plugin(site, "odplug_slow", SLOW_WRITER, entry_point="slow")
    started: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(source: Path, out: Path, seconds: float) -> subprocess.Popen:  # type: ignore[type-arg]
        marker = tmp_path / f"writing-{len(started)}"
        env = {**os.environ, "PYTHONPATH": str(site), "SLOW_MARKER": str(marker),
               "SLOW_SECONDS": str(seconds)}
        process = subprocess.Popen(
            [str(BIN / "odplug"), "data.import", "--source", str(source), "--out", str(out),
             "--to", "slow", "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        started.append(process)
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the slow import never started writing"
            time.sleep(0.05)
        return process

    yield start
    for process in started:  # the orphaned workers of a killed parent too
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def test_kill_9_mid_write_keeps_the_previous_output(
        good: Path, project: Path, registry, slow_import) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(good)
    stats = folder_stats(good)
    process = slow_import(project, good, 600)
    os.kill(process.pid, signal.SIGKILL)  # the parent only: its workers live on, orphaned
    process.wait(timeout=30)
    assert snapshot(good) == before
    assert leftovers(good), "the killed run left its staging folder beside the output"
    assert folder_stats(good) == stats
    assert shard_files(good) == sorted(p for p in good.iterdir() if ".record-" in p.name)
    result = run(project, good, registry, shards=1)
    assert result.report.images and leftovers(good) == []
    assert [p.name for p in shard_files(good, "train")] == ["train.record-00000-of-00001"]


@pytest.mark.slow
def test_a_second_import_into_the_same_folder_is_refused(
        good: Path, project: Path, registry, slow_import) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(good)
    first = slow_import(project, good, 4)
    with pytest.raises(OdplugError, match="another odplug import is writing") as caught:
        run(project, good, registry, shards=1)
    assert len(str(caught.value).splitlines()) == 1 and str(good) in str(caught.value)
    assert snapshot(good) == before
    _stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert snapshot(good) != before and (good / "report.json").is_file()
    assert leftovers(good) == []


def test_the_lock_refuses_a_second_holder_in_the_same_process(tmp_path: Path) -> None:
    """POSIX locks never conflict within a process; the lock still refuses there."""
    with atomic.folder_lock(tmp_path / "out"):
        with pytest.raises(OdplugError, match="another odplug import"):
            with atomic.folder_lock(tmp_path / "out"):
                pass
        with atomic.folder_lock(tmp_path / "other"):
            pass
    with atomic.folder_lock(tmp_path / "out"):
        pass


@pytest.mark.slow
def test_the_lock_is_per_folder(good: Path, project: Path, tmp_path: Path, registry,
                                slow_import) -> None:  # type: ignore[no-untyped-def]
    first = slow_import(project, good, 4)
    assert run(project, tmp_path / "out-b", registry).report.images
    first.communicate(timeout=120)
    assert first.returncode == 0

