"""``data.import --engine beam`` (issue 27): the same examples as the local engine, written by
an Apache Beam pipeline on the DirectRunner in ``.venv-beam``; its options and refusals.

The pipeline tests start Beam (about 2 s to fail at the start, 7 s for the 30-image demo with
two worker processes, 3.5 s in one, on the 2-core test machine), so they are slow; the option
tests need no Beam."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from odplug.atomic import LOCK_PREFIX
from odplug.data import beam
from odplug.data.convert import ImportOptions, import_dataset
from odplug.data.tfrecord import iter_framed
from odplug.errors import OdplugError, UsageError


def records_by_split(folder: Path) -> dict[str, Counter[bytes]]:
    """Every serialized example of every shard, counted per split: shards hold them in the
    order their workers wrote them, which the runner decides."""
    found: dict[str, Counter[bytes]] = {}
    for path in sorted(folder.glob("*.record-*")):
        split = path.name.split(".record-")[0]
        found.setdefault(split, Counter()).update(record for _, record in iter_framed(path))
    return found


def report_without_order(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    report["problems"].sort(key=lambda p: (p["file"], p["kind"], p["code"], p["reason"]))
    return report


@pytest.fixture
def needs_beam() -> None:
    try:
        beam.beam_python()
    except OdplugError:
        pytest.skip("needs Apache Beam in .venv-beam (setup.sh)")


@pytest.fixture
def damaged_project(demo_project: Path, tmp_path: Path) -> Path:
    """The demo with one image cut short, so that a worker's report has a skip to combine."""
    project = shutil.copytree(demo_project, tmp_path / "project")
    image = sorted(project.glob("*/img/*"))[3]
    image.write_bytes(image.read_bytes()[:200])
    return project


@pytest.mark.slow
@pytest.mark.usefixtures("needs_beam")
def test_beam_writes_the_local_engines_examples_shards_and_report(
        damaged_project: Path, tmp_path: Path, registry) -> None:
    local = import_dataset(damaged_project, tmp_path / "local", ImportOptions(shards=2),
                           registry)
    # worker processes, as on a real runner: every function a worker runs must reach it
    workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    shown: list[int] = []
    on_beam = import_dataset(damaged_project, tmp_path / "beam",
                             ImportOptions(shards=2, engine="beam", beam_options=workers),
                             registry, progress=shown.append)
    # the workers' lines of progress move the bar as they go, and it ends at every image
    assert sum(shown) == 30 and len(shown) >= 2, shown
    assert sorted(p.name for p in (tmp_path / "beam").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir())
    assert (tmp_path / "beam" / "train.record-00001-of-00002").is_file()
    assert records_by_split(tmp_path / "beam") == records_by_split(tmp_path / "local")
    assert sum(local.report.count_problems("image skipped").values()) == 1
    assert report_without_order(tmp_path / "beam") == report_without_order(tmp_path / "local")
    assert on_beam.report.images == local.report.images
    assert not [p for p in tmp_path.glob(".odplug-*") if not p.name.startswith(LOCK_PREFIX)]


def test_progress_follows_the_workers_lines_and_never_passes_the_total() -> None:
    shown: list[int] = []
    progress = beam._Progress(shown.append, 50)
    for line in ["odplug-progress 20\n", "INFO:root:something else\n", "odplug-progress 20",
                 "odplug-progress x", "odplug-progress 20\n"]:  # the last one a retry's
        progress.line(line)
    assert shown == [20, 20, 10]
    progress.finish()
    assert sum(shown) == 50
    fresh: list[int] = []
    beam._Progress(fresh.append, 7).finish()  # a remote runner's workers print elsewhere
    assert fresh == [7]


@pytest.mark.slow
@pytest.mark.usefixtures("needs_beam")
def test_a_failed_pipeline_is_one_line_and_leaves_the_output_as_it_was(
        demo_project: Path, tmp_path: Path, registry) -> None:
    out = tmp_path / "records"
    import_dataset(demo_project, out, ImportOptions(), registry)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OdplugError) as failed:
        import_dataset(demo_project, out, ImportOptions(
            engine="beam", beam_options=["--runner=NoSuchRunner"]), registry)
    message = str(failed.value)
    assert "\n" not in message and "NoSuchRunner" in message
    assert "the output is unchanged" in message
    assert Path(message.rsplit(": ", 1)[1].rstrip(")")).is_file()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{LOCK_PREFIX}records", "records"]


def test_beam_options_become_beams_own_flags() -> None:
    assert beam.beam_flags(["runner=DataflowRunner", "experiments=a,b", "save_main_session"]
                           ) == ["--runner=DataflowRunner", "--experiments=a,b",
                                 "--save_main_session"]
    assert beam.beam_flags({"runner": "FlinkRunner", "streaming": True}) == [
        "--runner=FlinkRunner", "--streaming"]
    assert beam.beam_flags("--project=p") == ["--project=p"]
    assert beam.beam_flags(None) == []
    with pytest.raises(UsageError, match="write it as KEY=VALUE"):
        beam.beam_flags(["runner DataflowRunner"])


def test_engine_refusals_come_before_any_work(demo_project: Path, tmp_path: Path, registry,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(ImportOptions(engine="spark"), "--engine 'spark': use local or beam"),
             (ImportOptions(engine="beam", to="coco"), r"writes TFRecords \(--to tfrecord\)"),
             (ImportOptions(beam_options=["--runner=X"]), "only with --engine beam")]
    monkeypatch.setenv(beam.PYTHON_ENV, str(tmp_path / "no-python"))
    cases.append((ImportOptions(engine="beam"), f"{beam.PYTHON_ENV}=.*no such Python"))
    for options, message in cases:
        with pytest.raises(OdplugError, match=message):
            import_dataset(demo_project, tmp_path / "out", options, registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
