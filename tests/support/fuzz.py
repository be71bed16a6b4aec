"""Hypothesis strategies and checks that the importer fuzz tests share: image bytes good and
broken, numbers and text as they appear in broken files, JSON of any shape, and the rule that
every image given to an import ends up in the records or in the report."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from PIL import Image

from odplug.data.convert import ImportOptions, ImportResult, import_dataset
from odplug.data.shards import shard_files
from odplug.data.tfrecord import iter_records, summarize
from odplug.errors import OdplugError
from odplug.plugins import Registry, load_registry

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REGISTRY: Registry = load_registry(entry_points=False)
IMAGE_NAMES = [f"img{i}.{ext}" for i, ext in enumerate(("png", "jpg", "png", "jpeg", "png"))]


# -- images: real ones of a few pixels, and every way bytes can fail to be one ------------------


def _encoded(size: tuple[int, int], colour: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (colour, 255 - colour, colour // 2)).save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def image_files(draw: st.DrawFn, size: tuple[int, int]) -> bytes:
    """Mostly a good image of `size` (so imports get as far as writing), else broken bytes."""
    colour = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["png", "jpeg"] * 3 + ["truncated", "garbage", "empty",
                                                        "header-only"]))
    if kind in ("png", "jpeg"):
        return _encoded(size, colour, kind.upper())
    whole = _encoded(size, colour, draw(st.sampled_from(["PNG", "JPEG"])))
    if kind == "truncated":
        return whole[: draw(st.integers(1, len(whole) - 1))]
    if kind == "header-only":
        return whole[:32]
    return b"" if kind == "empty" else draw(st.binary(max_size=64))


# -- numbers and text as they appear in broken files ------------------------------------------

numeric_text = st.one_of(
    st.integers(-40, 60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "abc", "1e999", "-1e999", "9" * 300, "0." + "1" * 300, "-0",
                     " 3 ", "0x10", "1_000", "nan", "inf", "NaN", "3.5", "1e-320"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5),
)
class_text = st.one_of(st.sampled_from(["cat", "dog", "", " cat ", "Cat", "a,b", 'q"t']),
                       st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6))


# -- what an import must leave: records or report lines for every image -----------------------


def imported(source: Path, out: Path) -> ImportResult | None:
    """The import's result; None when it stopped with one clear `OdplugError` line."""
    try:
        result = import_dataset(source, out, ImportOptions(workers=1), REGISTRY)
    except OdplugError as error:
        assert "\n" not in str(error), str(error)
        event("refused: " + str(error).split(": ", 1)[-1][:40])
        return None
    event("imported")
    return result


def record_filenames(out: Path) -> list[str]:
    return [summarize(record).filename
            for path in shard_files(out) for record in iter_records(path)]


def assert_accounted(result: ImportResult, out: Path, images: Iterable[str],
                      origins: dict[str, str]) -> None:
    """Every image name is in a record or in a problem line (by name, or by the row that gave
    it, `origins`)."""
    written = record_filenames(out)
    told = [(problem.file, problem.reason) for problem in result.report.problems
            if problem.kind == "image skipped"]
    for name in images:
        in_records = any(f == name or f.endswith("/" + name) for f in written)
        in_report = any(name in file or name in reason or file == origins.get(name)
                        for file, reason in told)
        assert in_records or in_report, (name, written, told)


# -- Supervisely ------------------------------------------------------------------------------
# Numbers include integers of hundreds of digits and NaN/infinity (json.dumps writes them as
# NaN/Infinity literals, which Python's reader accepts), and a few files nest thousands deep.

json_numbers = st.one_of(st.integers(-10**6, 10**6), st.integers(-10**400, 10**400),
                         st.floats(allow_nan=True, allow_infinity=True))
json_leaves = st.one_of(st.none(), st.booleans(), json_numbers,
                        st.text(st.characters(blacklist_categories=("Cs",)), max_size=5))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
