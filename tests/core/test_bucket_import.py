"""``data.import`` with datasets and records in a bucket (issue 27), against moto's S3
(`tests.support.buckets`): the demo imported from a bucket into a bucket writes the files a
local import writes, byte for byte; reports name the bucket's objects; outputs that are not
odplug's, or overlap the dataset, are refused untouched; a killed import leaves the bucket's
previous output as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from odplug.data.convert import ImportOptions, ImportResult, import_dataset
from odplug.errors import OdplugError
from odplug.plugins import Registry
from odplug.storage.mount import ENVIRONMENT
from odplug.storage.publish import MANIFEST
from tests.core.test_beam_import import needs_beam, records_by_split  # noqa: F401 (fixture)
from tests.support.buckets import listing, upload
from tests.support.tools import BIN, Run

OPTIONS = ImportOptions(workers=2)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def published(url: str) -> dict[str, bytes]:
    """The output at `url` as a reader sees it: every object but the manifest, which must
    list exactly them, and no staging or intent left."""
    objects = listing(url)
    assert not [name for name in objects if name.startswith(".odplug-")], sorted(objects)
    manifest = json.loads(objects.pop(MANIFEST))
    assert manifest["by"] == "data.import" and sorted(manifest["files"]) == sorted(objects)
    return objects


def run(source: Path | str, out: Path | str, registry: Registry,
        options: ImportOptions = OPTIONS, notes: list[str] | None = None) -> ImportResult:
    return import_dataset(source, out, options, registry,
                          note=(notes if notes is not None else []).append)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the import mirrors the bucket and builds the output in, to check
    it is left empty."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def demo_url(demo_project: Path, s3_endpoint: str) -> str:
    """The demo in a bucket of its own, uploaded once for the module (a second each time):
    tests only read it, and write into their own `bucket`."""
    import s3fs

    name = f"odplug-demo-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return upload(demo_project, f"s3://{name}/datasets/demo")


@pytest.fixture
def local_import(demo_project: Path, tmp_path: Path, registry) -> dict[str, bytes]:
    """What an import of the demo on disk writes: the reference for every bucket import."""
    run(demo_project, tmp_path / "local", registry)
    return files(tmp_path / "local")


def test_the_demo_from_a_bucket_into_a_bucket_equals_a_local_import(
        demo_url: str, bucket: str, local_import: dict[str, bytes], scratch: Path,
        registry) -> None:
    notes: list[str] = []
    result = run(demo_url, f"{bucket}/records", registry, notes=notes)
    assert sorted(local_import) == ["label_map.pbtxt", "report.json",
                                    "test.record-00000-of-00001", "train.record-00000-of-00001",
                                    "val.record-00000-of-00001"]
    assert published(f"{bucket}/records") == local_import
    assert result.out == f"{bucket}/records" and not result.report.problems
    assert notes == [
        f"Reading 31 annotation file(s) from {demo_url}; 30 image(s) are streamed as they are "
        "written", f"Uploading 5 file(s), 0.1 MB, to {bucket}/records"]
    assert list(scratch.iterdir()) == [] and ENVIRONMENT not in os.environ

    notes.clear()
    run(demo_url, f"{bucket}/records", registry, notes=notes)  # again: nothing to upload
    assert notes[1:] == []
    assert published(f"{bucket}/records") == local_import


def test_a_local_dataset_into_a_bucket_and_a_bucket_dataset_into_a_folder(
        demo_project: Path, demo_url: str, bucket: str, local_import: dict[str, bytes],
        scratch: Path, tmp_path: Path, registry) -> None:
    run(demo_project, f"{bucket}/records", registry)
    assert published(f"{bucket}/records") == local_import
    run(demo_url, tmp_path / "from-bucket", registry)
    assert files(tmp_path / "from-bucket") == local_import
    assert list(scratch.iterdir()) == []


def test_a_bad_image_in_a_bucket_is_reported_by_its_url(demo_project: Path, bucket: str,
                                                        tmp_path: Path, registry) -> None:
    project = shutil.copytree(demo_project, tmp_path / "project")
    image = sorted(project.glob("*/img/*"))[3]
    image.write_bytes(image.read_bytes()[:200])  # a JPEG cut short
    url = upload(project, f"{bucket}/damaged")
    wanted = f"{url}/{image.relative_to(project).as_posix()}"

    result = run(url, f"{bucket}/records", registry)
    assert [(p.kind, p.file) for p in result.report.problems] == [("image skipped", wanted)]
    report = published(f"{bucket}/records")["report.json"].decode()
    assert wanted in report and "odplug-mount" not in report and str(tmp_path) not in report

    run(url, tmp_path / "local", registry)
    report = (tmp_path / "local" / "report.json").read_text()
    assert wanted in report and "odplug-mount" not in report


def yolo_dataset(root: Path) -> Path:
    """An Ultralytics layout whose sizes come from image headers only: one phone photo
    stored sideways (EXIF orientation 6), whose boxes belong to the upright image."""
    for split, name, size, orientation in (("train", "a.jpg", (64, 32), 1),
                                           ("train", "b.png", (40, 48), 1),
                                           ("val", "c.jpg", (64, 32), 6)):
        path = root / "images" / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        if orientation != 1:
            exif[0x0112] = orientation
        Image.new("RGB", size, (120, 30, 200)).save(path, exif=exif.tobytes())
        label = root / "labels" / split / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.2 0.2\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    return root


def test_a_yolo_dataset_in_a_bucket_reads_its_image_headers_from_there(
        bucket: str, tmp_path: Path, scratch: Path, registry) -> None:
    source = yolo_dataset(tmp_path / "yolo")
    local = run(source, tmp_path / "local", registry)
    assert local.importer == "yolo" and not local.report.problems
    result = run(upload(source, f"{bucket}/yolo"), f"{bucket}/records", registry)
    assert result.importer == "yolo" and not result.report.problems
    assert published(f"{bucket}/records") == files(tmp_path / "local")


@pytest.mark.slow
@pytest.mark.usefixtures("needs_beam")
def test_beam_from_a_bucket_writes_the_local_engines_examples(
        demo_project: Path, demo_url: str, tmp_path: Path, registry) -> None:
    run(demo_project, tmp_path / "local", registry, ImportOptions(shards=2))
    # worker processes, as on a real runner: each reads the images from the bucket itself
    workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    run(demo_url, tmp_path / "beam", registry,
        ImportOptions(shards=2, engine="beam", beam_options=workers))
    assert records_by_split(tmp_path / "beam") == records_by_split(tmp_path / "local")
    assert sorted(files(tmp_path / "beam")) == sorted(files(tmp_path / "local"))


@pytest.mark.slow
@pytest.mark.usefixtures("needs_beam")
def test_beam_from_a_bucket_into_a_bucket_writes_its_shards_there(
        demo_url: str, bucket: str, local_import: dict[str, bytes], registry) -> None:
    """Beam into a bucket (what Dataflow needs: workers that cannot reach this machine): the
    job and the shards go to the output's staging prefix through Beam's own S3 file system,
    and are published from there with the label map and report; the same bytes as a local
    import (one shard per split, so in the same order). A pipeline that fails leaves the
    output and no staging behind."""
    notes: list[str] = []
    run(demo_url, f"{bucket}/records", registry, ImportOptions(engine="beam"), notes=notes)
    assert published(f"{bucket}/records") == local_import
    assert notes[-1] == f"Uploading 2 file(s), 0.0 MB, to {bucket}/records"  # not the shards
    manifest = json.loads(listing(f"{bucket}/records")[MANIFEST])
    assert set(manifest["files"]["train.record-00000-of-00001"]) == {"size", "etag"}

    before = listing(f"{bucket}/records")
    with pytest.raises(OdplugError, match="the Beam pipeline failed"):
        run(demo_url, f"{bucket}/records", registry,
            ImportOptions(engine="beam", beam_options=["--runner=NoSuchRunner"]))
    assert listing(f"{bucket}/records") == before


@pytest.mark.slow
def test_the_command_line_imports_from_a_bucket_into_a_bucket(demo_url: str, bucket: str,
                                                              run_inv: Run) -> None:
    done = run_inv("data.import", "--source", demo_url, "--out", f"{bucket}/records",
                   "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert f"Wrote tfrecord to {bucket}/records (supervisely importer)" in done.stdout
    assert "│ total │     30 │" in done.stdout
    assert {"dataset.png", "dataset.json", "train.record-00000-of-00001"} <= set(
        published(f"{bucket}/records"))


def test_an_output_holding_someone_elses_objects_is_refused_untouched(
        demo_url: str, bucket: str, tmp_path: Path, scratch: Path, registry) -> None:
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("not odplug's")
    upload(tmp_path / "theirs", f"{bucket}/records")
    before = listing(bucket)
    with pytest.raises(OdplugError, match="not empty and not an odplug output") as caught:
        run(demo_url, f"{bucket}/records", registry)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{bucket}/records: ")
    assert listing(bucket) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(("out", "where"), [("/demo/records", "is inside the dataset"),
                                            ("", "holds the dataset")])
def test_an_output_overlapping_the_bucket_dataset_is_refused(
        demo_url: str, registry, out: str, where: str) -> None:
    parent = demo_url.rsplit("/", 1)[0]
    before = listing(parent)
    with pytest.raises(OdplugError, match=where) as caught:
        run(demo_url, f"{parent}{out}", registry)
    assert "\n" not in str(caught.value)
    assert listing(parent) == before


@pytest.mark.slow
def test_a_killed_import_leaves_the_previous_output_intact(
        demo_project: Path, bucket: str, tmp_path: Path, registry) -> None:
    from odplug.data.demo import write_demo_project

    out = f"{bucket}/records"
    run(demo_project, out, registry)
    before = listing(out)
    # about a second of streaming from moto for 100 images with one worker
    big = upload(write_demo_project(tmp_path / "big", images=100, size=64), f"{bucket}/big")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [str(BIN / "odplug"), "data.import", "--source", big, "--out", out,
               "--workers", "1", "--no-pictures", "--quiet"]
    process = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(scratch)},
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in scratch.glob("odplug-import-*/**/*")):
        assert process.poll() is None, f"ended before it was killed: {process.stderr.read()!r}"
        assert time.monotonic() < deadline, "the import wrote nothing in 60 s"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # its workers too, as when the machine goes
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert listing(out) == before

    result = run(big, out, registry)
    assert result.report.images.total() == 100
    assert published(out) != {k: v for k, v in before.items() if k != MANIFEST}


@pytest.mark.slow
def test_stats_of_records_in_a_bucket(demo_url: str, bucket: str, registry, run_inv: Run,
                                      tmp_path: Path) -> None:
    """``data.stats --folder s3://...`` reads the records through the cache; ``--pictures``,
    which draws into the folder, is refused for a bucket in one line."""
    run(demo_url, f"{bucket}/records", registry)
    env = {"ODPLUG_CACHE_DIR": str(tmp_path / "cache")}
    done = run_inv("data.stats", "--folder", f"{bucket}/records", "--json", program="odplug",
                   env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["splits"]["train"]["records"] == 12 and not summary["problems"]
    assert summary["folder"] == f"{bucket}/records", "the URL, not its cache"
    assert f"from {bucket}/records" in done.stderr
    shown = run_inv("data.stats", "--folder", f"{bucket}/records", program="odplug", env=env)
    assert shown.stdout.startswith(f"{bucket}/records:\n"), shown.stdout
    refused = run_inv("data.stats", "--folder", f"{bucket}/records", "--pictures",
                      program="odplug", env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"odplug: error: --folder '{bucket}/records': takes a local path, not a URL; "
        "--pictures draws into the folder; data.import draws a bucket output's dataset.png "
        "as it publishes it"]
