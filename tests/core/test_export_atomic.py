"""An export folder changes whole or not at all: the previous export stays byte-identical.

Every case starts from a folder holding an export and compares the bytes of every file
afterwards: an exporter that fails (an exception, Ctrl-C, a full disk), ``--no-verify`` over a
verified export, a folder that is not an export, a swap cut between its two renames, two
exports into one folder, and a real ``odplug model.export`` of the shared tiny run killed with
SIGKILL after its first model, during its verification and just before it is put in place.
The fast cases run ``model.export`` in process with exporters that write a few bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from odplug import atomic
from odplug.cli import tasks
from odplug.components import NO_INPUTS, ExportedModel, Exporter
from odplug.trained import TrainedDetector
from tests.core.test_export_plan import Recording, registry_of
from tests.support.detectors import TinyRun, write_detector
from tests.support.tools import write_plugin
from tests.unit.test_import_atomic import leftovers, snapshot

BIN = Path(sys.executable).parent


class Writing(Recording):
    """Writes `content` as its one model per variant, then raises `error` if it has one."""

    def __init__(self, name: str, content: bytes, error: BaseException | None = None) -> None:
        super().__init__(name, variants=("float32",))
        self.content, self.error = content, error
        self.outs: list[Path] = []

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        self.outs.append(out)
        models = super().export(trained, out, variants=variants)
        for model in models:
            model.path.write_bytes(self.content)
        if self.error is not None:
            raise self.error
        return models


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_detector(tmp_path_factory.mktemp("export-atomic") / "saved_model")


@pytest.fixture
def export_with(monkeypatch: pytest.MonkeyPatch, saved_model: Path):  # type: ignore[no-untyped-def]
    """``model.export --no-verify`` of `saved_model` into `out` with these exporters (`to`:
    only those named, the others registered)."""
    def run(out: Path, *exporters: Exporter, to: str | None = None) -> None:
        monkeypatch.setattr(tasks, "load_registry_warning", lambda: registry_of(*exporters))
        tasks.model_export(Context(), model=str(saved_model), out=str(out),
                           to=to or ",".join(e.name for e in exporters), verify=False)

    return run


@pytest.fixture
def previous(tmp_path: Path, export_with) -> Path:  # type: ignore[no-untyped-def]
    """A folder holding a verified export by exporters a and b."""
    out = tmp_path / "export"
    export_with(out, Writing("a", b"old a"), Writing("b", b"old b"))
    (out / "verification.md").write_text("| saved_model | 0.50 |\n")
    (out / "verification.json").write_text("[]\n")
    (out / "verification-detections.json").write_text("{}\n")  # what a verified export
    (out / "report.html").write_text("<html></html>\n")  # holds too: replaced, not refused
    return out


# -- failures in process ----------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError("exporter bug"), KeyboardInterrupt()],
                         ids=["exception", "ctrl-c"])
def test_an_exporter_failing_midway_leaves_the_previous_export(
        previous: Path, export_with, error: BaseException) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(previous)
    first, failing = Writing("a", b"new a"), Writing("b", b"new b", error)
    with pytest.raises((type(error), Exit)):
        export_with(previous, first, failing)
    assert snapshot(previous) == before
    [staging] = {out.parent for out in first.outs + failing.outs}
    assert staging.parent == previous.parent and staging.name.startswith(".odplug-stage-")
    assert not staging.exists() and leftovers(previous) == []


def test_a_full_disk_is_one_line_naming_the_output(previous: Path, export_with,  # type: ignore[no-untyped-def]
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(previous)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # write() names no file
    with pytest.raises(Exit) as caught:
        export_with(previous, Writing("a", b"new a", full), Writing("b", b"new b"))
    message = str(caught.value.message)
    assert message.startswith(f"odplug: error: {previous}: No space left on device")
    assert "\n" not in message and "unchanged" in message
    assert snapshot(previous) == before and leftovers(previous) == []

    failing = Writing("a", b"new a")
    named = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_at_the_file(*args, **kwargs):  # type: ignore[no-untyped-def]
        [model] = Writing.export(failing, *args, **kwargs)
        named.filename = str(model.path)
        raise named

    failing.export = full_at_the_file  # type: ignore[method-assign]
    with pytest.raises(Exit) as caught:
        export_with(previous, failing, Writing("b", b"new b"))
    assert f"({previous / 'a' / 'a-float32.bin'})" in str(caught.value.message), \
        "the file is named where the export puts it, not in the staging folder"
    assert snapshot(previous) == before and leftovers(previous) == []


def test_no_verify_over_a_verified_export_leaves_no_table(previous: Path,  # type: ignore[no-untyped-def]
                                                          export_with) -> None:
    export_with(previous, Writing("a", b"new a"), Writing("b", b"new b"))
    after = snapshot(previous)
    assert after.pop("report.html").startswith(b"<!DOCTYPE html>"), "a new report, unverified"
    assert after == {"a": b"<dir>", "a/a-float32.bin": b"new a",
                     "b": b"<dir>", "b/b-float32.bin": b"new b"}
    assert leftovers(previous) == []


def test_a_successful_export_replaces_the_whole_folder_and_names_its_files(
        previous: Path, export_with, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    export_with(previous, Writing("a", b"new a"), Writing("b", b"new b"), to="a")
    after = snapshot(previous)
    assert after.pop("report.html").startswith(b"<!DOCTYPE html>")
    assert after == {"a": b"<dir>", "a/a-float32.bin": b"new a"}
    printed = capsys.readouterr().out
    assert f"a-float32: {previous / 'a' / 'a-float32.bin'} (" in printed, printed
    assert ".odplug-" not in printed


def test_a_folder_that_is_not_an_export_is_not_replaced(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        export_with) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    (mine / "a").mkdir()
    with pytest.raises(Exit) as caught:
        export_with(mine, Writing("a", b"new a"))
    assert "notes.txt, which no export wrote" in str(caught.value.message)
    assert snapshot(mine) == {"a": b"<dir>", "notes.txt": b"the user's own file"}
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(Exit, match="not a folder"):
        export_with(afile, Writing("a", b"new a"))
    assert afile.read_text() == "x"


# -- a crash between the two renames, and two exports at once ---------------------------------

def test_the_next_export_restores_a_folder_set_aside_by_a_killed_swap(
        previous: Path, export_with) -> None:  # type: ignore[no-untyped-def]
    """Killed after renaming the old export aside, before renaming the new one in: the next
    export puts the old one back before anything else (here it then fails, to see it)."""
    before = snapshot(previous)
    run = "4242-0123abcd"
    previous.rename(previous.parent / f"{atomic.ASIDE_PREFIX}{previous.name}-{run}")
    staging = previous.parent / f"{atomic.STAGE_PREFIX}{previous.name}-{run}"
    staging.mkdir()
    (staging / "a").mkdir()
    (staging / "a" / "a-float32.bin").write_bytes(b"complete but never swapped in")
    with pytest.raises(RuntimeError):
        export_with(previous, Writing("a", b"new a", RuntimeError("exporter bug")),
                    Writing("b", b"new b"))
    assert snapshot(previous) == before and leftovers(previous) == []


def test_a_second_export_into_the_same_folder_is_refused(previous: Path,  # type: ignore[no-untyped-def]
                                                         export_with) -> None:
    before = snapshot(previous)
    with atomic.folder_lock(previous.resolve(), "export"):
        with pytest.raises(Exit) as caught:
            export_with(previous, Writing("a", b"new a"), Writing("b", b"new b"))
    assert "another odplug export is writing this folder" in str(caught.value.message)
    assert snapshot(previous) == before


# -- kill -9 of a real export -------------------------------------------------------------------

PAUSE_PLUGIN = '''
"""An exporter built on tflite's float32 model that waits where KILL_AT says: after writing
its model, on the first image it verifies, or after the verification table is written (the
last thing before the export is put in place)."""
import os
import shutil
import time
from pathlib import Path

from odplug import hookimpl
from odplug.components import ExportedModel, Exporter


def pause():
    Path(os.environ["PAUSE_MARKER"]).touch()
    time.sleep(600)


def pausing_after(write_table):
    def write(rows, folder):
        written = write_table(rows, folder)
        pause()
        return written
    return write


class Pause(Exporter):
    name = "pause"
    variants = default_variants = ("float32",)
    requires = ("tflite:float32",)

    def export(self, trained, out, *, variants, records=None, inputs=None):
        source = inputs["tflite"]["float32"]
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pause-float32.tflite"
        shutil.copyfile(source.path, path)
        if os.environ["KILL_AT"] == "model":
            pause()
        if os.environ["KILL_AT"] == "publish":
            from odplug.exports import verify
            verify.write_table = pausing_after(verify.write_table)
        return [ExportedModel("pause", "float32", path, source.manifest, path.stat().st_size)]

    def detector(self, exported):
        from odplug.model import litert

        run = litert.detector(exported)

        def detect(image):
            if os.environ["KILL_AT"] == "verify":
                pause()
            return run(image)
        return detect


@hookimpl
def odplug_register_exporters(register):
    register(Pause())
'''

@pytest.fixture(scope="module")
def verified(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified tflite float32 export of the shared tiny run (two test images)."""
    out = tmp_path_factory.mktemp("verified") / "export"
    tasks.model_export(Context(), model=str(tiny_run.run), out=str(out), to="tflite",
                       quantize="float32", limit=2)
    assert (out / "verification.md").is_file() and (out / "tflite").is_dir()
    return out


@pytest.mark.slow
def test_the_verification_keeps_each_models_detections_on_the_same_images(
        verified: Path) -> None:
    """verification-detections.json: the SavedModel and every export on the same chosen test
    images (all of them here: --limit 2 is under KEEP_IMAGES), each image found again in the
    records by its offset; the report is written beside it."""
    import json

    from odplug.data.tfrecord import read_record, summarize
    from odplug.exports.verify import DETECTIONS_FILE, FLOOR, KEEP_IMAGES

    kept = json.loads((verified / DETECTIONS_FILE).read_text())
    rows = json.loads((verified / "verification.json").read_text())
    assert kept["judged_images"] == 2 and len(kept["images"]) == min(KEEP_IMAGES, 2)
    assert [model["name"] for model in kept["models"]] == [row["name"] for row in rows]
    for model in kept["models"]:
        assert len(model["detections"]) == 2
        assert all(score >= FLOOR for found in model["detections"] for score in found["scores"])
    assert kept["threshold"] >= FLOOR and kept["threshold_reason"]
    for image in kept["images"]:
        summary = summarize(read_record(Path(image["record"]["file"]),
                                        image["record"]["offset"]))
        assert (summary.source_id or summary.filename) == image["id"]
        assert len(image["truth"]["boxes"]) == len(image["truth"]["classes"]) > 0
    assert (verified / "report.html").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("point", ["model", "verify", "publish"])
def test_kill_9_leaves_the_previous_export(verified: Path, tiny_run: TinyRun, tmp_path: Path,
                                           export_with, point: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "export"
    shutil.copytree(verified, out)
    before = snapshot(out)
    site = tmp_path / "site"
    write_plugin(site, "odplug_pause", PAUSE_PLUGIN, entry_point="pause")
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")]), "PAUSE_MARKER": str(marker), "KILL_AT": point}
    process = subprocess.Popen(
        [str(BIN / "odplug"), "model.export", "--model", str(tiny_run.run), "--out", str(out),
         "--to", "tflite,pause", "--quantize", "float32", "--limit", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"the export never reached {point}"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    assert snapshot(out) == before, f"killed at {point}"
    [staging] = leftovers(out)
    written = {p.relative_to(out.parent / staging).as_posix()
               for p in (out.parent / staging).rglob("*")}
    assert "pause/pause-float32.tflite" in written
    assert ("verification.md" in written) == (point == "publish")
    export_with(out, Writing("tflite", b"new"))
    assert leftovers(out) == [], "the next export deletes what the killed one left"
