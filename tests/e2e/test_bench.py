"""The conversion benchmark's inputs are photo-like and its baseline converts correctly.

A speed-up is only worth claiming against a baseline that produces right records, so the
baseline scripts run here on a tiny generated project and TensorFlow reads their output back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.convert import HERE, count_records
from bench.photos import ProjectSpec, ensure_project

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet(_: str) -> None:
    pass


def test_photos_are_photo_sized_and_deterministic(tmp_path: Path) -> None:
    spec = ProjectSpec(images=8, seed=3)
    first, summary = ensure_project(tmp_path / "a", spec, processes=1, echo=quiet)
    second, _ = ensure_project(tmp_path / "b", spec, processes=2, echo=quiet)

    assert 220 <= summary["mean_image_kb"] <= 280
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert ensure_project(tmp_path / "a", spec, echo=quiet) == (first, summary)  # cached


def expected_boxes(project: Path) -> dict[str, tuple[str, list[tuple]]]:
    """Image name -> (split, [(class, xmin, ymin, xmax, ymax) normalised]) from the annotations."""
    expected = {}
    for ann_path in project.glob("*/ann/*.json"):
        ann = json.loads(ann_path.read_text())
        w, h = ann["size"]["width"], ann["size"]["height"]
        boxes = []
        for obj in ann["objects"]:
            xs, ys = zip(*obj["points"]["exterior"], strict=True)
            boxes.append((obj["classTitle"], min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h))
        expected[ann_path.name.removesuffix(".json")] = (ann["tags"][0]["name"], sorted(boxes))
    return expected


@pytest.mark.slow
def test_baseline_records_hold_the_annotated_boxes(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    project, _ = ensure_project(
        tmp_path, ProjectSpec(images=6, width=64, height=48), processes=1, echo=quiet
    )
    tf_csv, records = tmp_path / "tf_csv", tmp_path / "tf_records"
    subprocess.run(
        [
            sys.executable,
            HERE / "baseline_supervisely_to_csv.py",
            "--src",
            project,
            "--dst",
            tf_csv,
        ],
        env=ENV,
        check=True,
        capture_output=True,
    )
    for split in ("train", "test"):
        subprocess.run(
            [
                sys.executable,
                HERE / "baseline_csv_to_tfrecord.py",
                f"--csv_input={tf_csv / f'{split}.csv'}",
                f"--output_path={records / f'{split}.record'}",
                f"--img_path={tf_csv / 'images' / split}",
                f"--label_map={tf_csv / 'label_map.pbtxt'}",
            ],
            env=ENV,
            check=True,
            capture_output=True,
        )

    header = (tf_csv / "train.csv").read_text().splitlines()[0]
    assert header == "filename,width,height,class,xmin,ymin,xmax,ymax"
    ids = {"car": 1, "person": 2, "tree": 3}
    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        **{
            f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32)
            for k in ("xmin", "ymin", "xmax", "ymax")
        },
    }
    found = {}
    for split in ("train", "test"):
        path = records / f"{split}.record"
        for raw in tf.data.TFRecordDataset(str(path)):
            ex = tf.io.parse_single_example(raw, features)
            dense = {
                k: tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy()
                for k, v in ex.items()
            }
            name = dense["image/filename"].decode()
            assert dense["image/source_id"].decode() == name
            assert tf.io.decode_jpeg(dense["image/encoded"]).shape == (48, 64, 3)
            assert (dense["image/width"], dense["image/height"]) == (64, 48)
            texts = [t.decode() for t in dense["image/object/class/text"]]
            assert [ids[t] for t in texts] == list(dense["image/object/class/label"])
            boxes = zip(
                texts,
                *(dense[f"image/object/bbox/{k}"] for k in ("xmin", "ymin", "xmax", "ymax")),
                strict=True,
            )
            found[name] = (split, sorted(boxes))
        assert count_records(path) == sum(s == split for s, _ in found.values())

    expected = expected_boxes(project)
    assert found.keys() == expected.keys()
    for name, (split, boxes) in expected.items():
        assert found[name][0] == split
        assert [b[0] for b in found[name][1]] == [b[0] for b in boxes]
        for got, want in zip(found[name][1], boxes, strict=True):
            assert got[1:] == pytest.approx(want[1:], abs=1e-6)


@pytest.mark.slow
def test_benchmark_times_every_contender_and_saves_what_it_prints(tmp_path: Path) -> None:
    from bench.convert import RESULTS_FILE, TARGETS, run

    lines: list[str] = []
    results = run(images=5, runs=2, workdir=tmp_path, echo=lines.append)

    names = ["odplug", "odplug-no-pictures", "baseline", "cat"]
    assert list(results["measurements"]) == names
    for name, measured in results["measurements"].items():
        assert len(measured["runs_s"]) == 2 and measured["images_per_s"] > 0, name
    timed = [line.split(":")[0] for line in lines if ": run " in line]
    assert timed == names * 2, "the contenders take turns"
    assert set(results["ratios"]) == {*TARGETS, "odplug-no-pictures_vs_baseline",
                                      "odplug-no-pictures_vs_cat"}
    assert all("target" not in results["ratios"][f"odplug-no-pictures_vs_{other}"]
               for other in ("baseline", "cat")), "a measurement, not a target"
    assert not (tmp_path / "out" / "odplug-no-pictures" / "dataset.png").exists()
    assert (tmp_path / "out" / "odplug" / "dataset.png").is_file()
    assert any(line.strip().startswith("odplug / cat") for line in lines)
    assert json.loads((tmp_path / RESULTS_FILE).read_text()) == results


@pytest.mark.slow
def test_benchmark_from_a_bucket_takes_turns_with_disk(tmp_path: Path) -> None:
    pytest.importorskip("moto.server", reason="moto[server] is a test requirement")
    pytest.importorskip("s3fs", reason="s3fs comes with odplug[cloud]")
    from bench.convert import record_files, run

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    lines: list[str] = []
    results = run(images=5, runs=2, workdir=tmp_path, bucket=True, latency_ms=5,
                  echo=lines.append)

    contenders = ["odplug", "odplug-bucket", "odplug-bucket-one-by-one", "cat-bucket"]
    assert set(results["measurements"]) == set(contenders)
    bucket_import = results["measurements"]["odplug-bucket"]["commands"][0]
    assert bucket_import[bucket_import.index("--source") + 1].startswith("s3://odplug-bench/")
    one_by_one = results["measurements"]["odplug-bucket-one-by-one"]["commands"][0]
    assert one_by_one[:2] == ["env", "ODPLUG_PREFETCH=1"]
    timed = [line.split(":")[0] for line in lines if ": run " in line]
    assert timed == contenders * 2, "disk and bucket take turns"
    assert set(results["ratios"]) == {"odplug-bucket_vs_odplug", "odplug-bucket_vs_cat-bucket",
                                      "odplug-bucket_vs_odplug-bucket-one-by-one"}
    assert results["dataset"]["latency_ms"] == 5
    assert any("answered 5 ms late" in line for line in lines)
    assert any(line.strip().startswith("odplug-bucket / odplug") for line in lines)
    assert results["dataset"]["bucket"].startswith("s3://")
    assert json.loads((tmp_path / "convert-bucket-results.json").read_text()) == results
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint, "the server's address is the " \
        "imports' environment only"
    disk, bucket = (record_files(tmp_path / "out" / name) for name in ("odplug", "odplug-bucket"))
    assert [p.name for p in disk] == [p.name for p in bucket]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(disk, bucket, strict=True)), \
        "the bucket import timed is the same import"


def test_benchmark_file_names_say_the_variant() -> None:
    from bench.convert import RESULTS_FILE, results_file

    assert results_file("local", False) == RESULTS_FILE
    assert results_file("beam", False) == "convert-beam-results.json"
    assert results_file("local", True) == "convert-bucket-results.json"
    assert results_file("beam", True) == "convert-beam-bucket-results.json"


TINY_TRAINING = {
    "model.input_size": 96, "model.levels": [4, 5], "model.head_channels": 16,
    "train.batch_size": 4, "train.steps": 6, "train.warmup_steps": 1, "train.eval_every": 3,
    "train.checkpoint_every": 6, "eval.batch_size": 8,
}


@pytest.mark.slow
def test_bench_train_draws_curves_and_summarises_seeds(tmp_path: Path) -> None:
    from bench.train import RESULTS_FILE, run

    lines: list[str] = []
    results = run(workdir=tmp_path, datasets=["demo"], seeds=2, settings=TINY_TRAINING,
                  demo_images=24, timing=False, echo=lines.append)

    assert json.loads((tmp_path / RESULTS_FILE).read_text()) == results
    assert (tmp_path / "train-curves.png").read_bytes()[:4] == b"\x89PNG"
    demo = results["datasets"]["demo"]
    assert [r["seed"] for r in demo["runs"]] == [0, 1]
    for run_result in demo["runs"]:
        assert [p["step"] for p in run_result["curve"]] == [3, 6]
        assert run_result["steps"] == 6 and run_result["train_seconds"] > 0
        assert 0 < run_result["cpu_utilisation"] <= 1.05
        assert 0 <= run_result["test_map"] <= run_result["test_map50"] <= 1
    maps = [r["test_map"] for r in demo["runs"]]
    assert demo["summary"]["test_map_spread"] == pytest.approx(max(maps) - min(maps), abs=1e-4)
    assert demo["summary"]["met"]["map"] is False  # six steps are not a trained detector
    assert any(line.startswith("demo: test mAP@[.5:.95]") and "NOT met" in line
               for line in lines)


def test_bench_train_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    from bench.train import run
    from odplug.errors import OdplugError

    with pytest.raises(OdplugError, match="unknown dataset 'racoon'"):
        run(workdir=tmp_path, datasets=["racoon"], echo=quiet)
