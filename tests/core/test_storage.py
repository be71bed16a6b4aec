"""odplug.storage against a real S3 API (moto's server, `tests.support.buckets`): a folder
published whole through its staging prefix and manifest, an interrupted publish rolled forward
or left unseen, inputs fetched into the cache and checked, URLs told from paths, and every
storage failure one line (issue 27)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from odplug.errors import OdplugError
from odplug.storage import fetched, is_url, local_copy, publish_folder, read_manifest, recover
from odplug.storage import publish as publishing
from odplug.storage.publish import INTENT, MANIFEST, STAGING, target_state
from odplug.storage.urls import filesystem, local_path, url_name
from tests.support.buckets import listing, upload


def folder(path: Path, files: dict[str, bytes]) -> Path:
    """`path` holding exactly `files` (relative name -> bytes)."""
    for old in sorted(path.rglob("*"), reverse=True) if path.exists() else []:
        if old.is_file():
            old.unlink()
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def published(url: str) -> dict[str, bytes]:
    """What a reader of `url` sees: the listing without the manifest, failing on leftovers."""
    objects = listing(url)
    assert not [name for name in objects if name.startswith(".odplug-")], objects.keys()
    assert MANIFEST in objects
    return {name: data for name, data in objects.items() if name != MANIFEST}


def one_line(error: pytest.ExceptionInfo[OdplugError]) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    return text


V1 = {"train.record": b"t" * 300, "val.record": b"v" * 100, "meta/label_map.pbtxt": b"item {}"}


# -- publishing ---------------------------------------------------------------------------------


def test_publish_writes_every_file_and_a_manifest_of_their_md5(bucket: str,
                                                               tmp_path: Path) -> None:
    url = f"{bucket}/records"
    manifest = publish_folder(folder(tmp_path / "out", V1), url, by="test")
    assert published(url) == V1
    stored = json.loads(listing(url)[MANIFEST])
    assert stored == manifest == read_manifest(url)
    assert stored["by"] == "test"
    assert stored["files"] == {name: {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
                               for name, data in V1.items()}
    assert target_state(url) == "odplug"


def test_publishing_again_removes_what_it_left_out_and_keeps_what_it_never_listed(
        bucket: str, tmp_path: Path) -> None:
    url = f"{bucket}/run"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")
    fs, root = filesystem(url)
    fs.pipe_file(f"{root}/export/model.tflite", b"an export published beside the run")
    publish_folder(folder(tmp_path / "out", {"train.record": b"T" * 10}), url, by="test")
    objects = listing(url)
    assert sorted(objects) == ["export/model.tflite", MANIFEST, "train.record"]
    assert objects["train.record"] == b"T" * 10
    assert list(json.loads(objects[MANIFEST])["files"]) == ["train.record"]


def test_unchanged_files_are_not_uploaded_again(bucket: str, tmp_path: Path) -> None:
    url = f"{bucket}/records"
    notes: list[str] = []
    publish_folder(folder(tmp_path / "out", V1), url, by="test", note=notes.append)
    assert notes == [f"Uploading 3 file(s), 0.0 MB, to {url}"]
    fs, root = filesystem(url)
    fs.invalidate_cache()
    stamps = {name: fs.info(f"{root}/{name}")["LastModified"] for name in V1}
    notes.clear()
    publish_folder(folder(tmp_path / "out", V1), url, by="test", note=notes.append)
    assert notes == []
    publish_folder(folder(tmp_path / "out", {**V1, "val.record": b"w" * 100}), url, by="test",
                   note=notes.append)
    assert notes == [f"Uploading 1 file(s), 0.0 MB, to {url}"]
    fs.invalidate_cache()
    kept = [name for name in V1 if name != "val.record"]
    assert {name: fs.info(f"{root}/{name}")["LastModified"] for name in kept} == {
        name: stamps[name] for name in kept}
    assert published(url)["val.record"] == b"w" * 100


def test_an_empty_folder_is_not_published(bucket: str, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(OdplugError, match="nothing to upload") as caught:
        publish_folder(tmp_path / "out", f"{bucket}/records", by="test")
    one_line(caught)
    assert listing(bucket) == {}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing odplug catches (`storage_errors` lets it through)."""


V2 = {"train.record": b"n" * 300, "test.record": b"new split"}


@pytest.mark.parametrize("read", [recover, read_manifest, target_state])
def test_a_publish_killed_after_its_intent_is_rolled_forward_by_the_next_look(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whatever looks first finishes the publish, and says so (it was silent where the
    reader had no note to give: a user never learnt of the upload finished then)."""
    url = f"{bucket}/records"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")

    def killed(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(publishing, "_finish", killed)
    with pytest.raises(Killed):
        publish_folder(folder(tmp_path / "out", V2), url, by="test")
    monkeypatch.undo()
    left = listing(url)
    assert INTENT in left and any(name.startswith(STAGING + "/") for name in left)
    assert {name: left[name] for name in V1} == V1  # nothing final touched before the intent
    with caplog.at_level(logging.WARNING):
        read(url)
    assert [r.getMessage() for r in caplog.records] == [
        f"{url}: finishing an upload that was interrupted"]
    assert published(url) == V2
    assert read_manifest(url)["files"].keys() == V2.keys()


def test_ctrl_c_after_the_intent_finishes_the_publish_and_twice_says_what_is_left(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C once the intent was written stopped the copies midway, and the command said
    "nothing was left half-written" over a folder holding old and new files side by side.
    Real SIGINTs, sent to this process while the publish copies its files."""
    import os
    import signal
    import threading

    from odplug.errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    url = f"{bucket}/records"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")
    finish = publishing._finish

    def interrupted(times: int) -> Callable[..., None]:
        def during(*args: object) -> None:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here, in this thread
            finish(*args)  # type: ignore[arg-type]
        return during

    notes: list[str] = []
    monkeypatch.setattr(publishing, "_finish", interrupted(1))
    with pytest.raises(KeyboardInterrupt) as stopped:
        publish_folder(folder(tmp_path / "out", V2), url, by="test", note=notes.append)
    assert not isinstance(stopped.value, Interrupted), "finished: the usual line is true"
    assert published(url) == V2 and INTENT not in listing(url)
    assert notes[-1].startswith(f"odplug: finishing the upload to {url} before stopping")

    monkeypatch.setattr(publishing, "_finish", interrupted(2))
    with pytest.raises(Interrupted, match=f"interrupted while publishing {url}: .* the next "
                       "odplug command that reads or writes it finishes the upload"):
        publish_folder(folder(tmp_path / "out", V1), url, by="test")
    monkeypatch.undo()
    assert INTENT in listing(url)
    recover(url)
    assert published(url) == V1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "restored"


def test_a_bucket_whose_look_up_is_not_allowed_is_written_when_it_can_be(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A role limited to a prefix cannot look its bucket up (S3's HeadBucket, GCS's
    buckets.get): such a bucket was refused as missing, though the publish would work; a
    bucket that is truly missing is still refused before any work."""
    import s3fs

    from odplug.storage.publish import check_target

    url = f"{bucket}/records"
    monkeypatch.setattr(s3fs.S3FileSystem, "exists", lambda self, path, **kw: False)
    check_target(url, "why")  # the probe is written, so the bucket is there
    assert listing(url) == {}, "the probe is deleted"
    missing = f"s3://odplug-missing-{tmp_path.name[-8:].lower()}x/records"
    with pytest.raises(OdplugError, match=r"bucket 'odplug-missing-.*' does not exist; create "
                       "it first") as refused:
        check_target(missing, "why")
    one_line(refused)


def test_a_publish_killed_before_its_intent_changes_nothing_and_its_staging_goes_next_time(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{bucket}/records"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")
    before = listing(url)
    fs, _ = filesystem(url)
    real_pipe = fs.pipe_file

    def pipe_file(path: str, data: bytes, **kwargs: object) -> None:
        if path.endswith(INTENT):
            raise Killed
        real_pipe(path, data, **kwargs)

    monkeypatch.setattr(fs, "pipe_file", pipe_file)
    with pytest.raises(Killed):
        publish_folder(folder(tmp_path / "out", V2), url, by="test")
    monkeypatch.undo()
    left = listing(url)
    staged = sorted(name for name in left if name.startswith(STAGING + "/"))
    assert [name.split("/", 2)[2] for name in staged] == sorted(V2)
    assert {name: data for name, data in left.items() if name not in staged} == before
    assert read_manifest(url) == json.loads(before[MANIFEST])
    assert listing(url) == left  # reading does not touch a staging prefix without an intent

    publish_folder(folder(tmp_path / "out", {"other.record": b"o"}), url, by="test")
    assert published(url) == {"other.record": b"o"}


def test_an_intent_whose_staged_files_are_gone_is_one_line(bucket: str) -> None:
    url = f"{bucket}/records"
    fs, root = filesystem(url)
    intent = {"stage": f"{STAGING}/gone", "copy": ["train.record"], "remove": [],
              "manifest": {"format": 1, "by": "test", "files": {"train.record": {}}}}
    fs.pipe_file(f"{root}/{INTENT}", json.dumps(intent).encode())
    with pytest.raises(OdplugError, match="train.record is missing from its staging") as caught:
        read_manifest(url)
    assert one_line(caught).startswith(url)


def test_output_over_someone_elses_objects_is_refused_untouched(bucket: str,
                                                                tmp_path: Path) -> None:
    url = f"{bucket}/theirs"
    upload(folder(tmp_path / "theirs", {"notes.txt": b"mine", "a/b.csv": b"1,2"}), url)
    before = listing(url)
    assert target_state(url) == "foreign" and target_state(f"{bucket}/new") == "empty"
    with pytest.raises(OdplugError, match="holds 2 object") as caught:
        publish_folder(folder(tmp_path / "out", V1), url, by="test", foreign="give a new folder")
    assert one_line(caught).endswith("give a new folder")
    assert listing(url) == before


# -- fetching -----------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def cached(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith(".odplug-")}


def test_fetched_downloads_once_then_only_what_changed(bucket: str, tmp_path: Path,
                                                      cache: Path) -> None:
    url = f"{bucket}/data/records"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")
    notes: list[str] = []
    local = fetched(url, "records", note=notes.append)
    assert local == local_copy(url) == cache / "s3" / bucket[5:] / "data" / "records"
    assert cached(local) == V1
    assert notes == [f"Downloading 3 file(s), 0.0 MB, from {url}"]

    notes.clear()
    assert fetched(url, "records", note=notes.append) == local
    assert notes == []

    changed = {"train.record": V1["train.record"], "val.record": b"w" * 100}
    publish_folder(folder(tmp_path / "out", changed), url, by="test")
    fetched(url, "records", note=notes.append)
    assert notes == [f"Downloading 1 file(s), 0.0 MB, from {url}"]
    assert cached(local) == changed  # the label map the new version left out is gone

    (local / "train.record").unlink()  # a cache file lost is downloaded again
    notes.clear()
    fetched(url, "records", note=notes.append)
    assert notes == [f"Downloading 1 file(s), 0.0 MB, from {url}"]
    assert cached(local) == changed


def test_a_file_that_does_not_match_the_manifest_is_refused(bucket: str, tmp_path: Path,
                                                            cache: Path) -> None:
    url = f"{bucket}/records"
    publish_folder(folder(tmp_path / "out", V1), url, by="test")
    fs, root = filesystem(url)
    fs.pipe_file(f"{root}/val.record", b"x" * 100)  # same size, other bytes
    with pytest.raises(OdplugError, match="val.record: changed while it was downloaded") as caught:
        fetched(url, "records")
    assert one_line(caught).startswith(f"{url}/val.record")
    assert "val.record" not in cached(local_copy(url))


def test_a_folder_odplug_did_not_publish_is_fetched_as_listed(bucket: str, tmp_path: Path,
                                                              cache: Path) -> None:
    url = upload(folder(tmp_path / "model", {"saved_model.pb": b"pb",
                                             "variables/variables.index": b"ix"}),
                 f"{bucket}/model")
    notes: list[str] = []
    assert cached(fetched(url, "model", note=notes.append)) == {
        "saved_model.pb": b"pb", "variables/variables.index": b"ix"}
    notes.clear()
    fetched(url, "model", note=notes.append)
    assert notes == []


def test_fetching_a_file_brings_its_same_stem_siblings_only(bucket: str, tmp_path: Path,
                                                            cache: Path) -> None:
    url = f"{bucket}/export"
    publish_folder(folder(tmp_path / "out", {
        "tflite-int8.tflite": b"int8", "tflite-int8.json": b"{}", "tflite-fp32.tflite": b"fp32",
        "labels/tflite-int8.txt": b"below"}), url, by="test")
    model = fetched(f"{url}/tflite-int8.tflite", "model")
    assert model == local_copy(url) / "tflite-int8.tflite"
    assert cached(local_copy(url)) == {"tflite-int8.tflite": b"int8", "tflite-int8.json": b"{}"}
    fetched(f"{url}/tflite-fp32.tflite", "model")  # adds, deletes nothing
    assert sorted(cached(local_copy(url))) == ["tflite-fp32.tflite", "tflite-int8.json",
                                               "tflite-int8.tflite"]


def test_fetching_nothing_names_what_was_wanted(bucket: str, cache: Path) -> None:
    with pytest.raises(OdplugError, match="nothing there; give the records") as caught:
        fetched(f"{bucket}/no/such/records", "records")
    one_line(caught)


# -- URLs and their errors ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "url"), [
    ("s3://bucket/data", True), ("gs://bucket", True), ("S3://Bucket/x", True),
    ("abfs://container/x", True), ("file:///tmp/data", False), ("FILE:///tmp/data", False),
    ("/tmp/data", False), ("data/set", False), ("./s3:/x", False), ("C:\\data\\set", False),
    ("C:/data/set", False), ("s3:/bucket", False), (Path("s3://bucket"), False), (None, False),
])
def test_is_url(value: object, url: bool) -> None:
    assert is_url(value) is url  # type: ignore[arg-type]


def test_file_urls_and_names() -> None:
    assert local_path("file:///tmp/data") == "/tmp/data"
    assert local_path("FILE:///tmp/data") == "/tmp/data"
    assert local_path("file://localhost/tmp/data") == "/tmp/data"
    assert local_path("file://data/set") == "data/set"  # relative, as fsspec reads it
    assert local_path("/tmp/data") == "/tmp/data"
    assert local_path("s3://bucket/file:///x") == "s3://bucket/file:///x"
    assert url_name("s3://bucket/data/ds/") == "ds"
    assert url_name("s3://bucket") == "bucket"


def test_a_missing_backend_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec.registry  # noqa: F401 (the module, which fsspec's `registry` name hides)

    monkeypatch.setitem(sys.modules, "adlfs", None)  # importing it fails, installed or not
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "abfs", raising=False)
    with pytest.raises(OdplugError, match="abfs:// URLs need adlfs: pip install adlfs") as caught:
        filesystem("abfs://container/data")
    one_line(caught)


def test_a_missing_package_of_another_scheme_is_in_fsspecs_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """hdfs:// needs pyarrow: the line said 'pip install the fsspec backend for hdfs://'."""
    import fsspec.registry  # noqa: F401 (the module, which fsspec's `registry` name hides)

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "hdfs", raising=False)
    with pytest.raises(OdplugError, match=r"hdfs://x/ds: hdfs:// URLs need a package that is not "
                       r"installed \(.*pyarrow.*\)") as caught:
        filesystem("hdfs://x/ds")
    one_line(caught)


def test_a_storage_that_connects_when_opened_is_one_line_naming_it() -> None:
    """An ftp:// server that is not there was 'odplug: error: Connection refused', no URL."""
    import socket

    with socket.socket() as unused:  # a port nothing listens on once this is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"ftp://127.0.0.1:{port}/data"
    with pytest.raises(OdplugError, match=f"{url}: cannot reach the storage: .*refused"
                       ) as caught:
        filesystem(url)
    one_line(caught)


def test_an_unknown_scheme_is_one_line() -> None:
    with pytest.raises(OdplugError, match="nosuch:// is not a storage odplug knows") as caught:
        filesystem("nosuch://bucket/data")
    one_line(caught)


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """s3fs keeps one client per set of options: a test that changes the environment must
    make a new one, and leave none behind that points elsewhere."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.usefixtures("fresh_clients")
def test_an_unreachable_endpoint_is_one_line(bucket: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(OdplugError, match="cannot reach the storage service at 127.0.0.1:9: "
                       "no network, a proxy in the way, or a wrong endpoint") as caught:
        publish_folder(folder(tmp_path / "out", V1), f"{bucket}/records", by="test")
    assert one_line(caught).startswith(f"{bucket}/records: reading failed: ")


@pytest.mark.usefixtures("fresh_clients")
def test_no_credentials_is_one_line_saying_where_they_go(bucket: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OdplugError, match="no credentials found") as caught:
        fetched(f"{bucket}/records", "records")
    assert one_line(caught).startswith(f"{bucket}/records: reading failed: ")
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_prefetched_images_are_read_without_a_request_of_their_own(bucket: str, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The writer's batch fetch (`prefetched`): inside it, `read_source` takes each image from
    what was fetched together, not with a request of its own; an image gone from the bucket
    since the listing is left out and fails alone, naming its URL."""
    import fsspec

    from odplug.storage.mount import mount, prefetched, read_source

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(name.encode() * 10)
    upload(folder, f"{bucket}/data")
    with mount(f"{bucket}/data") as mounted:
        images = [mounted.local / name for name in ("a.jpg", "b.jpg", "c.jpg")]
        fsspec.filesystem("s3").rm_file(f"{bucket}/data/c.jpg".removeprefix("s3://"))
        with prefetched(images):
            fs = filesystem(bucket)[0]  # fsspec's cached instance, the one read_source gets
            monkeypatch.setattr(fs, "cat_file", _no_single_requests)
            assert read_source(images[0]) == b"a.jpg" * 10
            assert read_source(images[1]) == b"b.jpg" * 10
            with pytest.raises(OSError, match="single request"):
                read_source(images[2])  # not fetched: it is read alone, and fails alone
        monkeypatch.undo()
        with pytest.raises(FileNotFoundError) as gone:
            read_source(images[2])
        assert gone.value.filename == f"{bucket}/data/c.jpg"
        assert read_source(images[0]) == b"a.jpg" * 10  # taken once; read again alone


def _no_single_requests(*args: object, **kwargs: object) -> bytes:
    raise OSError("a single request was made")


@pytest.mark.parametrize("value", ["0", "many", "2000", "-3"])
def test_a_wrong_prefetch_setting_is_one_line(value: str, monkeypatch) -> None:
    from odplug.storage.mount import PREFETCH, prefetch_count

    monkeypatch.delenv("ODPLUG_PREFETCH", raising=False)
    assert prefetch_count() == PREFETCH
    monkeypatch.setenv("ODPLUG_PREFETCH", "64")
    assert prefetch_count() == 64
    monkeypatch.setenv("ODPLUG_PREFETCH", value)
    with pytest.raises(OdplugError, match="ODPLUG_PREFETCH=.*whole number of images from 1"):
        prefetch_count()


def test_a_worker_without_the_mirror_reads_a_record_file_from_the_bucket(
        bucket: str, tmp_path: Path) -> None:
    """A Beam worker on another machine has no mirror of a bucket dataset: a record file it
    must read an image from (a TFRecord source) is read from the bucket, one record at its
    offset; on the driver, where the mirror holds the file, the mirror's copy is read."""
    from odplug.data.tfrecord import read_record, write_record
    from odplug.storage.mount import mount

    folder = tmp_path / "records"
    folder.mkdir()
    with (folder / "train.record").open("wb") as handle:
        write_record(handle, b"first")
        write_record(handle, b"second record")
    upload(folder, f"{bucket}/records")
    with mount(f"{bucket}/records") as mounted:
        shard = mounted.local / "train.record"
        assert read_record(shard, 0) == b"first"  # the driver's mirror
        shard.unlink()  # as on a worker that never had the mirror
        assert read_record(shard, 8 + 4 + 5 + 4) == b"second record"
