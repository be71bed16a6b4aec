"""The report as a person sees it: opened from its folder in headless Chromium, every image
decodes, nothing fails to load and nothing logs an error; the screenshot is kept for a look.

The report is built from the synthetic inputs of the core tests (a real records folder, a fake
run and export): what is checked is the page, and a real export would add half a minute of
training and conversion to the suite for no other check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from odplug.report.page import write_report
from tests.core.test_report import records, write_export, write_run  # noqa: F401 (fixture)
from tests.support.browser import open_page


def test_the_report_renders_in_chromium_with_every_image(records: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", records)
    export = write_export(tmp_path / "run" / "export", records)
    page = write_report(tmp_path / "out" / "report.html", records=records, run=run,
                        export=export, title="odplug report <test>")
    seen = open_page(page, tmp_path / "profile", tmp_path / "report.png")
    assert seen.failed == [] and seen.errors == []
    assert seen.headings == ["Dataset", "Training", "Evaluation", "Exports"]
    assert len(seen.images) == 19
    broken = [image for image in seen.images if not image["complete"] or image["width"] == 0]
    assert broken == [], broken
    assert all(image["src"].startswith("data:image/") for image in seen.images)
    assert seen.screenshot is not None
    with Image.open(seen.screenshot) as shot:
        assert shot.width >= 1000 and shot.height > 2000, "the whole page, not the window"


def test_a_broken_image_would_be_seen(tmp_path: Path) -> None:
    """The check can fail: an image that does not decode is reported as such."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><h2>x</h2>'
                    '<img src="data:image/png;base64,AAAA"></body></html>')
    seen = open_page(page, tmp_path / "profile", tmp_path / "broken.png")
    assert [image["width"] for image in seen.images] == [0]
    assert seen.headings == ["x"]
    missing = tmp_path / "missing.html"
    missing.write_text('<!DOCTYPE html><html><body><img src="nothing.png">'
                       '<script>throw new Error("boom")</script></body></html>')
    seen = open_page(missing, tmp_path / "profile2", tmp_path / "missing.png")
    assert len(seen.failed) == 1 and any("boom" in error for error in seen.errors)


@pytest.fixture(autouse=True)
def _quiet_chromium_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
