"""Training, export and prediction with their folders in a bucket (moto's S3 API).

The issue's "done when": training reads records from a bucket and writes its run there, and
the export reads that run and writes beside it. One tiny run is trained from bucket records
into a bucket for the module; the tests then export it and predict with the export, all by
URL. Another machine resuming a run from its bucket after the first was killed is
tests/e2e/test_bucket_training.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from odplug.errors import OdplugError
from odplug.storage import MANIFEST
from tests.support.buckets import listing
from tests.support.detectors import TINY_RUN
from tests.support.records import run_import

pytestmark = pytest.mark.slow
STEPS = {**TINY_RUN, "train.steps": 2, "train.checkpoint_every": 2, "train.eval_every": 2}


@pytest.fixture(scope="module")
def cloud(s3_endpoint: str, demo_project: Path, registry, tmp_path_factory
          ) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Records imported into a bucket, and a 2-step run trained from them into it."""
    import s3fs

    from odplug.workflows.train import train_model

    name = f"odplug-runs-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    records, run = f"s3://{name}/records", f"s3://{name}/runs/tiny"
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ODPLUG_CACHE_DIR", str(cache))
        run_import(demo_project, records, registry)  # type: ignore[arg-type]
        notes: list[str] = []
        trained = train_model(registry, records, run, trainer="ssd", overrides=STEPS,
                              note=notes.append)
        yield {"records": records, "run": run, "bucket": f"s3://{name}", "cache": str(cache),
               "local_run": str(trained.run_dir), "notes": "\n".join(notes),
               "url": str(trained.url)}


def test_a_run_trained_from_bucket_records_is_published_to_its_bucket(cloud) -> None:
    objects = listing(cloud["run"])
    manifest = json.loads(objects[MANIFEST])
    assert manifest["by"] == "model.train"
    assert cloud["url"] == cloud["run"], "RunInfo.url: where the run was published"
    assert manifest["records"] == cloud["records"]  # the export finds them on any machine
    assert {"run.json", "saved_model/saved_model.pb", "config.toml"} <= set(manifest["files"])
    assert set(manifest["files"]) == {n for n in objects if n != MANIFEST}
    local = Path(cloud["local_run"])
    assert local.is_relative_to(Path(cloud["cache"]))  # trained in the cache's copy
    assert objects["run.json"] == (local / "run.json").read_bytes()
    assert f"from {cloud['records']}" in cloud["notes"]  # the records came through the cache
    assert f"to {cloud['run']}" in cloud["notes"]


def test_a_run_in_a_bucket_exports_into_it_and_predicts_from_there(cloud, registry,
                                                                   monkeypatch, tmp_path
                                                                   ) -> None:
    """model.export --model s3://.../run: verified on the run's records (found through its
    manifest), written to <run>/export; then model.predict from the bucket's .tflite into a
    bucket folder."""
    from odplug.workflows.export import export, plan_export
    from odplug.workflows.predict import predict

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "exporter"))
    job = plan_export(registry, to=["tflite"], quantize=["float32"], model=cloud["run"])
    assert job.publish_to == cloud["run"] + "/export"
    exported = export(job, limit=4)
    assert exported.verification is not None
    objects = listing(job.publish_to)
    assert {"tflite/tflite-float32.tflite", "tflite/tflite-float32.json", "verification.json",
            "report.html", MANIFEST} <= set(objects)
    assert json.loads(objects[MANIFEST])["records"] == cloud["records"]
    assert MANIFEST in listing(cloud["run"])  # the run's own manifest is untouched
    assert "export/report.html" not in json.loads(listing(cloud["run"])[MANIFEST])["files"]

    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (96, 96), "white").save(images / "blank.jpg")
    out = cloud["bucket"] + "/predictions"
    found = predict(job.publish_to + "/tflite/tflite-float32.tflite", images, out, 0.3,
                    registry)
    assert len(found.images) == 1
    predicted = listing(out)
    assert {"blank.jpg", "detections.json", "images.json", MANIFEST} <= set(predicted)


def test_a_bucket_folder_of_other_files_is_not_taken_for_a_run(cloud, registry, tmp_path,
                                                               monkeypatch) -> None:
    import fsspec

    from odplug.workflows.train import train_model

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "cache"))
    foreign = cloud["bucket"] + "/notes"
    fsspec.filesystem("s3").pipe_file(foreign.removeprefix("s3://") + "/todo.txt", b"mine")
    with pytest.raises(OdplugError, match="not an odplug output.*run folder is odplug's own"):
        train_model(registry, cloud["records"], foreign, trainer="ssd", overrides=STEPS)
    assert listing(foreign) == {"todo.txt": b"mine"}


def test_a_run_already_in_the_bucket_is_refused_by_its_url(cloud, registry, tmp_path,
                                                           monkeypatch) -> None:
    """Training again without --resume, --overwrite or --new-run: the refusal named the run's
    working copy in the cache, not the URL the user gave."""
    from odplug.workflows.train import train_model

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(OdplugError) as refused:
        train_model(registry, cloud["records"], cloud["run"], trainer="ssd", overrides=STEPS)
    assert str(refused.value).startswith(f"{cloud['run']} already holds a run"), refused.value
    assert str(tmp_path / "cache") not in str(refused.value)


def test_a_new_run_beside_one_in_the_bucket_tells_its_url(cloud, registry, tmp_path,
                                                          monkeypatch) -> None:
    """``--new-run`` trained into ``<run>-2`` and the command line said ``Run: <run>``: the
    URL the run was published to is on what training returns (`RunInfo.url`)."""
    from odplug.run import RunInfo
    from odplug.workflows import train as training

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "cache"))

    def trained(trainer, records, run_dir, **named):  # type: ignore[no-untyped-def]
        (run_dir / "run.json").write_text("{}")
        return RunInfo(run_dir=run_dir, trainer="ssd", records=records,
                       label_map=records / "label_map.pbtxt", saved_model=run_dir / "saved_model")

    monkeypatch.setattr(training, "train_with", trained)
    info = training.train_model(registry, cloud["records"], cloud["run"], trainer="ssd",
                                new_run=True)
    assert info.url == f"{cloud['run']}-2"
    assert info.run_dir.name == "tiny-2" and "run.json" in listing(info.url)


def test_an_export_or_prediction_into_a_missing_bucket_downloads_nothing(
        cloud, registry, tmp_path, monkeypatch) -> None:
    """Their output URL was checked after the run (and its records) had been downloaded."""
    from odplug.workflows.export import plan_export
    from odplug.workflows.predict import predict

    monkeypatch.setenv("ODPLUG_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached yet
    missing = f"s3://odplug-missing-{uuid.uuid4().hex[:8]}/out"
    notes: list[str] = []
    with pytest.raises(OdplugError, match="does not exist"):
        plan_export(registry, to=["tflite"], model=cloud["run"], out=missing,
                    note=notes.append)
    with pytest.raises(OdplugError, match="does not exist"):
        predict(cloud["run"], tmp_path, missing, 0.3, registry, note=notes.append)
    assert notes == [] and not (tmp_path / "cache").exists(), notes
