"""Image bytes go into records unchanged unless TensorFlow would decode them wrongly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from odplug.data.images import ImageProblem, load_image


def _save(path: Path, image: Image.Image, fmt: str, **kwargs: object) -> Path:
    image.save(path, fmt, **kwargs)
    return path


def _photo(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt,mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"),
                                      ("PNG", "RGBA"), ("PNG", "L")])
def test_plain_jpeg_and_png_pass_through_unchanged(tmp_path: Path, fmt: str, mode: str) -> None:
    path = _save(tmp_path / f"a.{fmt.lower()}", _photo().convert(mode), fmt)
    image = load_image(path)
    assert image.data == path.read_bytes()
    assert (image.format, image.width, image.height, image.reencoded) == (fmt.lower(), 40, 24, "")


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(tmp_path / "rot.jpg", _photo(40, 24), "JPEG", exif=exif.tobytes())
    image = load_image(path)
    assert image.reencoded == "EXIF orientation 6"
    assert (image.width, image.height, image.format) == (24, 40, "jpeg")
    decoded = tf.io.decode_image(image.data, channels=3).numpy()
    assert decoded.shape == (40, 24, 3)


@pytest.mark.parametrize("fmt,mode,target,why", [
    ("JPEG", "CMYK", "jpeg", "JPEG mode CMYK"),
    ("PNG", "P", "png", "PNG mode P"),
    ("PNG", "I;16", "png", "PNG mode I;16"),
    ("BMP", "RGB", "png", "format BMP"),
    ("WEBP", "RGB", "png", "format WEBP"),
    ("TIFF", "RGB", "png", "format TIFF"),
])
def test_other_kinds_are_reencoded(
    tmp_path: Path, fmt: str, mode: str, target: str, why: str
) -> None:
    photo = _photo()
    source = photo.convert(mode) if mode != "I;16" else Image.fromarray(
        np.asarray(photo.convert("L")).astype(np.uint16) * 256)
    path = _save(tmp_path / f"x.{fmt.lower()}", source, fmt)
    image = load_image(path)
    assert (image.format, image.reencoded) == (target, why)
    decoded = tf.io.decode_image(image.data, channels=3).numpy()
    assert decoded.shape == (24, 40, 3)
    if fmt in ("BMP", "TIFF"):  # lossless in, lossless out
        assert np.array_equal(decoded, np.asarray(photo))


def test_palette_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    palette = _photo().convert("P")
    path = _save(tmp_path / "p.png", palette, "PNG", transparency=0)
    image = load_image(path)
    assert Image.open(io.BytesIO(image.data)).mode == "RGBA"


@pytest.mark.parametrize("verify", ["header", "decode"])
def test_truncated_and_corrupt_images_are_problems(tmp_path: Path, verify: str) -> None:
    good = _save(tmp_path / "good.jpg", _photo(400, 300), "JPEG").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageProblem) as caught:
        load_image(truncated, verify)  # type: ignore[arg-type]
    assert caught.value.code == "corrupt-image" and "truncated.jpg" in caught.value.reason
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageProblem, match="garbage.png"):
        load_image(garbage, verify)  # type: ignore[arg-type]
    with pytest.raises(ImageProblem) as missing:
        load_image(tmp_path / "nope.jpg", verify)  # type: ignore[arg-type]
    assert missing.value.code == "missing-image"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageProblem, match="empty"):
        load_image(empty, verify)  # type: ignore[arg-type]


def test_damage_inside_a_complete_looking_png_needs_decode(tmp_path: Path) -> None:
    """The header check trusts a file that ends properly; the full decode catches the rest."""
    good = bytearray(_save(tmp_path / "g.png", _photo(400, 300), "PNG").read_bytes())
    start = good.index(b"IDAT") + 100  # inside the compressed pixels, IEND kept
    good[start:start + 200] = bytes(200)
    broken = tmp_path / "broken.png"
    broken.write_bytes(bytes(good))
    assert load_image(broken, "header").width == 400
    with pytest.raises(ImageProblem, match="broken.png"):
        load_image(broken, "decode")
