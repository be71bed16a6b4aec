"""Every pair of formats converts: a dataset written by each writer imports back (format
detected, splits and classes kept) into the same records as the original, box for box.

Each format's own tests cover its quirks and bad inputs; this is the matrix that proves they
agree with each other, so a user can go from any format odplug reads to any it writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.records import read_records, run_import

WRITERS = ("tfrecord", "tf_csv", "coco", "yolo")


def _by_image(folder: Path) -> dict[str, dict[str, tuple[list[int], np.ndarray]]]:
    """split -> image sha256 -> (classes, boxes), boxes in a fixed order."""
    found: dict[str, dict[str, tuple[list[int], np.ndarray]]] = {}
    for split in ("train", "val", "test"):
        for row in read_records(folder, split) if any(folder.glob(f"{split}*")) else []:
            boxes = np.asarray(row["boxes"], np.float64).reshape(-1, 4)
            order = np.lexsort((*boxes.T[::-1], row["classes"]))
            found.setdefault(split, {})[row["sha256"]] = (
                [row["classes"][i] for i in order], boxes[order])
    return found


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, registry) -> Path:  # type: ignore[no-untyped-def]
    from odplug.data.demo import write_demo_project

    work = tmp_path_factory.mktemp("formats")
    demo = write_demo_project(work / "demo", images=16, size=64)
    run_import(demo, work / "records", registry, workers=1)
    return work


@pytest.mark.parametrize("second", WRITERS)
@pytest.mark.parametrize("first", WRITERS)
def test_every_pair_of_formats_round_trips(original: Path, tmp_path: Path, registry,  # type: ignore[no-untyped-def]
                                           first: str, second: str) -> None:
    """demo -> first -> second -> records equals demo -> records: same images in the same
    splits, same class ids, boxes equal within float32 rounding."""
    start = original / first
    if not start.exists():
        run_import(original / "demo", start, registry, to=first, workers=1)
    middle = run_import(start, tmp_path / "second", registry, to=second, workers=1)
    assert middle.importer == first
    final = run_import(tmp_path / "second", tmp_path / "records", registry, workers=1)
    assert final.importer == second
    assert final.label_map == run_import(original / "records", tmp_path / "again", registry,
                                         workers=1).label_map
    assert not [p for p in final.report.problems if p.kind != "image note"]
    expected, got = _by_image(original / "records"), _by_image(tmp_path / "records")
    assert {s: sorted(v) for s, v in got.items()} == {s: sorted(v) for s, v in expected.items()}
    for split, images in expected.items():
        for sha, (classes, boxes) in images.items():
            assert got[split][sha][0] == classes
            np.testing.assert_allclose(got[split][sha][1], boxes, rtol=2**-23, atol=1e-7)
