"""A user's review of the bucket surface (issue 27), against moto's S3 (`tests.support.buckets`).

The first tests are what the review found a user would trip over, each failing before its fix
(doubled slashes leaving staging behind, a bucket root's failed report hiding the error, a
file source named twice, a bucket glob called nothing, a cache trusting files changed here,
evaluate's help and --out, gcsfs's words); the others cover what the review found working and
no other test covers: image-copying writers fed from a bucket, a bucket's root as the output,
TFRecords in a bucket as a source, and the message of a missing s3fs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from odplug.data.convert import ImportOptions, ImportResult, import_dataset
from odplug.errors import OdplugError
from odplug.plugins import Registry
from odplug.storage import fetched, publish_folder
from odplug.storage.publish import MANIFEST
from tests.support.buckets import listing, upload
from tests.support.tools import BIN, Run

OPTIONS = ImportOptions(workers=1)


def run(source: Path | str, out: Path | str, registry: Registry,
        options: ImportOptions = OPTIONS, notes: list[str] | None = None) -> ImportResult:
    return import_dataset(source, out, options, registry,
                          note=(notes if notes is not None else []).append)


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def demo_url(demo_project: Path, s3_endpoint: str) -> str:
    """The demo in a bucket of its own, uploaded once for the module; tests only read it."""
    import s3fs

    name = f"odplug-review-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return upload(demo_project, f"s3://{name}/datasets/demo")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(folder))
    return folder


# -- findings -----------------------------------------------------------------------------------


def test_an_output_url_with_a_doubled_slash_leaves_no_staging_behind(
        demo_project: Path, bucket: str, registry) -> None:
    out = f"{bucket}//records"
    run(demo_project, out, registry)
    notes: list[str] = []
    run(demo_project, out, registry, notes=notes)  # the same import again: nothing to upload
    left = [name for name in listing(bucket) if ".odplug-" in name]
    assert left == [] and notes == []


def test_a_failed_import_into_a_bucket_root_says_why_it_failed(
        demo_project: Path, bucket: str, tmp_path: Path, registry) -> None:
    broken = shutil.copytree(demo_project, tmp_path / "broken")
    for image in broken.glob("*/img/*"):
        image.write_bytes(b"not an image")
    with pytest.raises(OdplugError) as caught:
        run(broken, bucket, registry)
    text = one_line(str(caught.value))
    assert "nothing imported" in text and "uploading the report failed" not in text


def test_a_single_file_source_in_a_bucket_is_named_by_its_url(bucket: str, tmp_path: Path,
                                                              registry) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a dataset")
    url = f"{upload(tmp_path / 'junk', f'{bucket}/junk')}/notes.txt"
    with pytest.raises(OdplugError, match="not a dataset format") as caught:
        run(url, tmp_path / "out", registry)
    text = one_line(str(caught.value))
    assert text.startswith(f"{url}: ") and "notes.txt/notes.txt" not in text


def test_a_glob_of_pictures_in_a_bucket_is_not_called_nothing(bucket: str, tmp_path: Path,
                                                             cache: Path, registry) -> None:
    from PIL import Image

    from odplug.workflows.predict import predict

    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(3):
        Image.new("RGB", (32, 32), (number * 80, 40, 90)).save(photos / f"p{number}.jpg")
    upload(photos, f"{bucket}/photos")
    with pytest.raises(Exception) as caught:  # the model is missing: what is said first?
        predict(tmp_path / "no-model", f"{bucket}/photos/*.jpg", tmp_path / "out", 0.3,
                registry)
    text = one_line(str(caught.value))
    assert "nothing there" not in text
    assert "--model" in text or "glob" in text


def test_a_cached_file_changed_locally_is_downloaded_again(bucket: str, tmp_path: Path,
                                                          cache: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "weights.bin").write_bytes(b"bucket bytes")
    publish_folder(tmp_path / "run", f"{bucket}/run", by="test")
    local = fetched(f"{bucket}/run", "run")
    (local / "weights.bin").write_bytes(b"edited here!")  # same size, other bytes
    assert (fetched(f"{bucket}/run", "run") / "weights.bin").read_bytes() == b"bucket bytes"


@pytest.mark.slow
def test_the_evaluate_help_says_which_options_take_a_bucket_url(run_inv: Run) -> None:
    done = run_inv("model.evaluate", "--help", program="odplug")
    assert done.returncode == 0, done.stderr
    model = done.stdout.split("--model", 1)[1].split("--", 1)[0]
    assert "URL" in model


def test_a_storage_service_out_of_reach_or_anonymous_is_said_as_such() -> None:
    """What gcsfs and botocore raise when there is no network or no Google credentials (the
    first falls back to anonymous access) reads as the cause, not as the library's words.
    Without a network gcsfs retries for about a minute before it raises (its retries are fixed
    in its code): that is not tested here, where it would cost the minute."""
    from odplug.storage.urls import reason

    unreachable = reason(OSError("Cannot connect to host storage.googleapis.com:443 ssl:default "
                                 "[Network is unreachable]"))
    assert unreachable.startswith("cannot reach the storage service at "
                                  "storage.googleapis.com:443: no network")
    anonymous = reason(OSError("Anonymous caller does not have storage.objects.list access to "
                               "the Google Cloud Storage bucket."))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in anonymous


def test_a_runs_working_copy_keeps_what_this_machine_has_not_uploaded(
        bucket: str, tmp_path: Path, cache: Path) -> None:
    """A training whose upload failed leaves its work in the run's working copy only: the next
    sync of that copy keeps it (and takes what the bucket changed), and reading the run as an
    input (an export of it) uses the bucket's files in a cache of its own, never touching it."""
    from odplug.storage.fetch import sync_down, work_copy

    run = tmp_path / "run"
    run.mkdir()
    (run / "weights.bin").write_bytes(b"uploaded")
    (run / "config.toml").write_text("a = 1")
    publish_folder(run, f"{bucket}/run", by="model.train")
    work = work_copy(f"{bucket}/run")
    assert sync_down(f"{bucket}/run", work, keep_local=True)
    (work / "weights.bin").write_bytes(b"trained!")  # the upload of these failed
    (work / "ckpt-2.index").write_bytes(b"new")
    (run / "config.toml").write_text("a = 2")  # meanwhile in the bucket
    publish_folder(run, f"{bucket}/run", by="model.train")
    sync_down(f"{bucket}/run", work, keep_local=True)
    assert (work / "weights.bin").read_bytes() == b"trained!"
    assert (work / "ckpt-2.index").read_bytes() == b"new"
    assert (work / "config.toml").read_text() == "a = 2"
    copy = fetched(f"{bucket}/run", "run")
    assert copy != work and (copy / "weights.bin").read_bytes() == b"uploaded"
    assert (work / "weights.bin").read_bytes() == b"trained!"
    sync_down(f"{bucket}/run", work, keep_local=True)  # still not uploaded: still kept
    assert (work / "weights.bin").read_bytes() == b"trained!"


def test_a_run_never_uploaded_is_kept_and_uploaded_by_the_next_training(
        bucket: str, tmp_path: Path, cache: Path) -> None:
    """A training into a bucket that did not exist yet (or could not be written) ended with
    the whole run in its working copy only, and said so; the next training of that run
    deleted it, taking the empty bucket for a run deleted since. A copy that did hold the
    bucket's files still goes when the bucket's run is deleted."""
    from odplug.storage.fetch import sync_down, work_copy
    from odplug.workflows.buckets import _publish_run, run_folder

    missing = f"s3://odplug-no-such-bucket-{uuid.uuid4().hex[:8]}/runs/r"
    work = work_copy(missing)
    sync_down(missing, work, keep_local=True)  # what the first training's start did
    (work / "last.weights.h5").write_bytes(b"trained")
    with pytest.raises(OdplugError, match="kept in its local copy") as failed:
        _publish_run(work, missing, [].append, records=None, failed=False)
    assert str(work) in one_line(str(failed.value))

    url = f"{bucket}/runs/r"
    work = work_copy(url)
    sync_down(url, work, keep_local=True)  # the first training: its every upload failed
    (work / "last.weights.h5").write_bytes(b"trained")
    with run_folder(url, [].append, records=None) as again:  # the next training
        assert (again / "last.weights.h5").read_bytes() == b"trained"
    assert "last.weights.h5" in listing(url)

    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).rm(url.removeprefix("s3://"), recursive=True)
    with run_folder(url, [].append, records=None) as fresh:  # the bucket's run was deleted
        assert not (fresh / "last.weights.h5").exists()


# -- what works and was not yet tested ---------------------------------------------------------


@pytest.mark.parametrize("to", ["yolo", "coco"])
def test_writers_that_copy_images_copy_the_bucket_images_not_their_stand_ins(
        demo_url: str, demo_project: Path, tmp_path: Path, registry, to: str) -> None:
    """The mirror's images are empty sparse files of the right size: a writer that copied
    those would write zeros silently. Every image written is a real one, as from disk."""
    run(demo_url, tmp_path / "bucket", registry, ImportOptions(workers=1, to=to))
    run(demo_project, tmp_path / "disk", registry, ImportOptions(workers=1, to=to))

    def images(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes()
                for p in sorted(folder.rglob("*")) if p.suffix in (".jpg", ".png")}

    written = images(tmp_path / "bucket")
    assert len(written) == 30 and written == images(tmp_path / "disk")
    assert not [name for name, data in written.items() if not data.strip(b"\0")]


def test_a_bucket_root_is_an_output_and_a_trailing_slash_names_the_same_folder(
        demo_project: Path, bucket: str, registry) -> None:
    run(demo_project, bucket, registry)
    objects = listing(bucket)
    assert MANIFEST in objects and "train.record-00000-of-00001" in objects
    assert not [name for name in objects if name.startswith(".odplug-")]
    notes: list[str] = []
    run(demo_project, f"{bucket}/", registry, notes=notes)
    again = listing(bucket)
    assert notes == []  # nothing uploaded again, the same objects (the manifest re-dated)
    assert {k: v for k, v in again.items() if k != MANIFEST} == {
        k: v for k, v in objects.items() if k != MANIFEST}


def test_records_in_a_bucket_are_a_source_as_a_folder_and_as_one_shard(
        demo_project: Path, bucket: str, tmp_path: Path, registry) -> None:
    run(demo_project, tmp_path / "records", registry)
    url = upload(tmp_path / "records", f"{bucket}/records")
    notes: list[str] = []
    whole = run(url, tmp_path / "again", registry, notes=notes)
    assert whole.importer == "tfrecord" and whole.report.images.total() == 30
    assert notes[0].endswith("0 image(s) are streamed as they are written")  # all in records
    one = run(f"{url}/train.record-00000-of-00001", tmp_path / "train-only", registry)
    assert one.importer == "tfrecord"
    assert 0 < one.report.images.total() < 30


@pytest.mark.slow
def test_a_missing_s3fs_is_one_line_naming_the_package(tmp_path: Path) -> None:
    """As on an image without the cloud extra: importing s3fs fails."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "s3fs.py").write_text("raise ImportError('No module named s3fs')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(blocked), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = time.monotonic()
    done = subprocess.run([str(BIN / "odplug"), "data.import", "--source", "s3://any/ds",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and time.monotonic() - started < 30
    assert one_line(done.stderr).strip() == (
        "odplug: error: s3://any/ds: s3:// URLs need s3fs: pip install s3fs (or pip install "
        "'odplug[cloud]' for s3:// and gs://)")
    assert not (tmp_path / "out").exists()


def test_an_output_in_a_missing_bucket_or_foreign_is_refused_before_any_work(
        demo_url: str, bucket: str, tmp_path: Path, registry: Registry, cache: Path) -> None:
    """An output bucket that does not exist was found at the upload, after the whole import
    (training, export); a foreign output URL was refused only after the dataset's
    annotations were listed and downloaded, where a local one is refused at once."""
    from odplug.workflows.buckets import local_output, run_folder

    missing = f"s3://odplug-missing-{uuid.uuid4().hex[:8]}/records"
    for source in (demo_url, tmp_path / "nowhere"):
        notes: list[str] = []
        with pytest.raises(OdplugError, match=r"bucket 'odplug-missing-\w+' does not exist"
                           ) as refused:
            run(source, missing, registry, notes=notes)
        one_line(str(refused.value))
        assert notes == [], "refused before the dataset was read"
    with pytest.raises(OdplugError, match="does not exist"):
        local_output(missing)  # an export's or predictions' output
    with pytest.raises(OdplugError, match="does not exist"), run_folder(missing, [].append,
                                                                        records=None):
        pass  # a training's run
    upload(_one_file(tmp_path), f"{bucket}/theirs")
    notes = []
    with pytest.raises(OdplugError, match="not an odplug output"):
        run(demo_url, f"{bucket}/theirs", registry, notes=notes)
    assert notes == [], "refused before the dataset was read"
    assert list(listing(f"{bucket}/theirs")) == ["notes.txt"]


def _one_file(folder: Path) -> Path:
    (folder / "theirs").mkdir()
    (folder / "theirs" / "notes.txt").write_text("not odplug's")
    return folder / "theirs"


def test_a_training_stopped_by_a_second_ctrl_c_in_an_upload_publishes_nothing_more(
        bucket: str, cache: Path) -> None:
    """The second Ctrl-C says the next command finishes the upload and stops at once; the
    run's working copy then published itself whole as the block ended, which made that line
    untrue and kept going after the user had asked twice to stop."""
    from odplug.errors import Interrupted
    from odplug.workflows.buckets import run_folder

    url = f"{bucket}/runs/stopped"
    with pytest.raises(Interrupted), run_folder(url, [].append, records=None) as work:
        (work / "last.weights.h5").write_bytes(b"trained")
        raise Interrupted("odplug: interrupted while publishing ...")
    assert listing(bucket) == {}


def test_an_error_of_a_training_into_a_bucket_keeps_its_kind(
        bucket: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Named by the run's URL, a trainer's UsageError (exit 2) had become an OdplugError
    (exit 1) for bucket runs only."""
    from odplug.errors import UsageError
    from odplug.storage.fetch import work_copy
    from odplug.workflows import train as training

    url = f"{bucket}/runs/kind"

    def refuse(*args: object, **named: object) -> None:
        raise UsageError(f"{work_copy(url)}: train.steps: give a whole number")

    monkeypatch.setattr(training, "train_with", refuse)
    with pytest.raises(UsageError, match=f"^{url}: train.steps: give a whole number$"):
        training._train_into_bucket(
            None, Path("records"), url, config=None, overrides=None,  # type: ignore[arg-type]
            mode="never", workers=1, on_step=None, on_event=None, note=[].append,
            records_url=None)


def test_a_damaged_record_in_a_bucket_is_named_by_its_url(bucket: str, tmp_path: Path,
                                                          cache: Path) -> None:
    """data.stats of records in a bucket named the damaged file by its cached copy."""
    from odplug.workflows.buckets import records_summary

    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "train.record-00000-of-00001").write_bytes(b"not a record at all")
    publish_folder(tmp_path / "records", f"{bucket}/records", by="data.import")
    with pytest.raises(OdplugError) as damaged:
        records_summary(f"{bucket}/records/", [].append)
    said = one_line(str(damaged.value))
    assert said.startswith(f"{bucket}/records/train.record-00000-of-00001"), said
    assert str(cache) not in said


def test_a_free_run_url_is_not_called_taken(bucket: str, tmp_path: Path) -> None:
    """``--new-run`` with a bucket run URL: a URL written with a trailing slash and holding
    nothing is free (it was once said to be taken, being compared in another spelling), and
    one holding a run gives the first free ``-2``, ``-3``."""
    from odplug.components import TrainingStatus
    from odplug.workflows.train import _free_run

    said: list[str] = []

    def hear(event: object) -> None:
        if isinstance(event, TrainingStatus):
            said.append(event.text)

    assert _free_run(f"{bucket}/runs/new/", hear) == f"{bucket}/runs/new/" and said == []
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    publish_folder(tmp_path / "run", f"{bucket}/runs/old", by="model.train")
    publish_folder(tmp_path / "run", f"{bucket}/runs/old-2", by="model.train")
    assert _free_run(f"{bucket}/runs/old", hear) == f"{bucket}/runs/old-3"
    assert said == [f"{bucket}/runs/old is taken: training into {bucket}/runs/old-3"]
