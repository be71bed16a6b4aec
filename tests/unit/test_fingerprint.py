"""The pipeline's dataset fingerprint: any file added, removed or rewritten changes it, except
in the pipeline's own output folder."""

from __future__ import annotations

from pathlib import Path

from odplug.data.fingerprint import fingerprint


def test_fingerprint_follows_every_file_but_the_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "a.jpg").write_bytes(b"a")
    out = data / "output"
    out.mkdir()
    first = fingerprint(data, exclude=out)
    (out / "train.record").write_bytes(b"written by the pipeline")
    assert fingerprint(data, exclude=out) == first
    (data / "img" / "a.jpg").write_bytes(b"ab")
    resized = fingerprint(data, exclude=out)
    assert resized != first
    (data / "img" / "b.jpg").write_bytes(b"b")
    assert fingerprint(data, exclude=out) != resized
    csv = data / "train.csv"
    csv.write_text("filename\n")
    assert fingerprint(csv) == fingerprint(data)
