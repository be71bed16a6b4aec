"""Image bytes go into records unchanged unless TensorFlow would decode them wrongly."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFile

from odplug.data.images import ImageProblem, load_image, upright_size
from odplug.dataset_report import render_summary


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
    ("PNG", "I;16", "png", "PNG 16-bit"),
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



def png(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk, so tests can give it any depth, size or damage."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _png16(pixels: np.ndarray) -> bytes:
    """A 16-bit greyscale (H, W) or RGB (H, W, 3) PNG of `pixels` (uint16)."""
    colour_type = 0 if pixels.ndim == 2 else 2
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    return png(pixels.shape[1], pixels.shape[0], 16, colour_type, rows)


@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path, channels: int) -> None:
    """value >> 8: what TensorFlow's decode_png (libpng strip_16), tf.image.convert_image_dtype
    and Pillow's own 16-bit RGB reader give, so every reader of the record sees the same pixels,
    and what a browser showed the annotator. Clipping turned every value over 255 white."""
    rng = np.random.default_rng(0)
    shape = (24, 40) if channels == 1 else (24, 40, 3)
    pixels = rng.integers(0, 65536, shape, dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(pixels))
    image = load_image(path)
    assert (image.format, image.reencoded, image.width, image.height) == ("png", "PNG 16-bit",
                                                                          40, 24)
    assert Image.open(io.BytesIO(image.data)).info.get("bits", 8) == 8
    decoded = tf.io.decode_image(image.data, channels=3).numpy()
    expected = (pixels >> 8).astype(np.uint8)
    assert np.array_equal(decoded, np.dstack([expected] * 3) if channels == 1 else expected)


def _bad_crc(png: bytes) -> bytes:
    """`png` with the CRC of its first image data chunk wrong, the data itself intact."""
    damaged = bytearray(png)
    start = damaged.index(b"IDAT")
    length = struct.unpack(">I", damaged[start - 4:start])[0]
    damaged[start + 4 + length] ^= 0xFF
    return bytes(damaged)


def test_decode_catches_a_png_chunk_that_fails_its_crc(tmp_path: Path) -> None:
    """Pillow's load() skips the CRC of image data; TensorFlow's libpng refuses the file."""
    damaged = _bad_crc(_save(tmp_path / "g.png", _photo(64, 48), "PNG").read_bytes())
    broken = tmp_path / "crc.png"
    broken.write_bytes(damaged)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(damaged).numpy()
    with pytest.raises(ImageProblem, match="crc.png") as caught:
        load_image(broken, "decode")
    assert caught.value.code == "corrupt-image"


def test_lenient_pillow_setting_does_not_weaken_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another library may set ImageFile.LOAD_TRUNCATED_IMAGES; odplug's checks ignore it."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    good = _save(tmp_path / "good.jpg", _photo(400, 300), "JPEG").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    for verify in ("header", "decode"):
        with pytest.raises(ImageProblem, match="truncated"):
            load_image(truncated, verify)  # type: ignore[arg-type]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and the setting is left as it was


def _exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """An APP1 Exif block whose IFD1 holds a JPEG thumbnail, as cameras write it."""
    ifd0 = struct.pack("<H", 0) + struct.pack("<I", 26)  # no tags; IFD1 at offset 26
    ifd1 = struct.pack("<H", 2)
    ifd1 += struct.pack("<HHII", 0x0201, 4, 1, 26 + 2 + 24 + 4)  # JPEGInterchangeFormat
    ifd1 += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))  # ...Length
    ifd1 += struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd0 + bytes(26 - 8 - 6) + ifd1 \
        + thumbnail


@pytest.mark.parametrize("cut", ["inside the scan", "right after the thumbnail"])
def test_header_check_catches_truncation_after_an_exif_thumbnail(tmp_path: Path, cut: str) -> None:
    """The thumbnail's end-of-image marker lies near the end of a small truncated file; only the
    main image's own end counts."""
    buffer = io.BytesIO()
    _photo(16, 12).save(buffer, "JPEG")
    thumbnail = buffer.getvalue()
    whole = _save(tmp_path / "whole.jpg", _photo(64, 48), "JPEG",
                  exif=_exif_with_thumbnail(thumbnail)).read_bytes()
    assert load_image(tmp_path / "whole.jpg").data == whole
    end_of_thumbnail = whole.index(thumbnail) + len(thumbnail)
    keep = len(whole) - 300 if cut == "inside the scan" else end_of_thumbnail
    assert len(whole) - whole.rindex(b"\xff\xd9", 0, keep) < 4096
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[:keep])
    with pytest.raises(ImageProblem, match="truncated.jpg") as caught:
        load_image(truncated)
    assert caught.value.code == "corrupt-image"


@pytest.mark.parametrize("padding", [b"", b"\0" * 7, b"\xff\xff"])
def test_complete_files_pass_the_header_check_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, padding: bytes
) -> None:
    """The header path stays fast: a whole JPEG (trailing padding allowed) or PNG is not decoded."""
    jpeg = _save(tmp_path / "a.jpg", _photo(64, 48), "JPEG", progressive=True)
    jpeg.write_bytes(jpeg.read_bytes() + padding)
    png = _save(tmp_path / "a.png", _photo(64, 48), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    for path in (jpeg, png):
        assert load_image(path).data == path.read_bytes()


def test_an_image_over_the_decompression_bomb_limit_is_too_large_not_corrupt(
    tmp_path: Path,
) -> None:
    """Only the header is read: the pixels of a 20000x10000 image are never allocated."""
    path = tmp_path / "huge.png"
    path.write_bytes(png(20000, 10000, 8, 0, b"\0" * 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageProblem) as caught:
            load_image(path)
    assert caught.value.code == "too-large"
    assert "too large: 20000x10000 pixels" in caught.value.reason
    assert str(2 * Image.MAX_IMAGE_PIXELS) in caught.value.reason  # type: ignore[operator]


def test_an_image_over_the_warning_limit_is_kept_with_a_note_and_no_raw_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _save(tmp_path / "big.jpg", _photo(40, 30), "JPEG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would raise here
        image = load_image(path)
    assert image.data == path.read_bytes()
    [(code, reason)] = image.notes
    assert code == "large-image" and "40x30 pixels" in reason and "1000" in reason


def test_prepare_reports_the_notes_of_a_kept_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odplug.data.prepare import prepare
    from odplug.dataset_report import Report
    from odplug.samples import Box, Sample

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _save(tmp_path / "big.jpg", _photo(40, 30), "JPEG")
    report = Report()
    prepared = prepare(Sample(path, "big.jpg", [Box("car", 1, 1, 5, 5)]), "header", report)
    assert prepared is not None and prepared.boxes == [Box("car", 1, 1, 5, 5)]
    [note] = report.problems
    assert (note.kind, note.file, note.code) == ("image note", str(path), "large-image")
    assert report.to_dict()["notes"] == {"large-image": 1}
    assert "Notes on kept images: 1 (1 large-image)" in render_summary(report)


def test_every_tricky_image_decodes_in_tensorflow_to_its_declared_size(
    tmp_path: Path, registry
) -> None:
    """The records of a project of awkward inputs, read back by odplug's TensorFlow reader:
    every image decodes, to the height and width its record declares, and the one image
    TensorFlow cannot decode (a PNG chunk failing its CRC) never reaches them."""
    import json

    from tests.support.records import read_records, run_import

    project = tmp_path / "project"
    images = project / "ds" / "img"
    images.mkdir(parents=True)
    photo = _photo(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6
    grey16 = (np.asarray(photo.convert("L")).astype(np.uint16) * 257)
    sizes = {}
    for name, make in {
        "grey16.png": lambda p: p.write_bytes(_png16(grey16)),
        "rgb16.png": lambda p: p.write_bytes(_png16(np.asarray(photo).astype(np.uint16) * 257)),
        "palette.png": lambda p: photo.convert("P").save(p),
        "palette-alpha.png": lambda p: photo.convert("P").save(p, transparency=0),
        "grey.png": lambda p: photo.convert("L").save(p),
        "rgba.png": lambda p: photo.convert("RGBA").save(p),
        "cmyk.jpg": lambda p: photo.convert("CMYK").save(p, "JPEG"),
        "rotated.jpg": lambda p: photo.save(p, "JPEG", exif=exif.tobytes()),
        "progressive.jpg": lambda p: photo.save(p, "JPEG", progressive=True),
        "grey.jpg": lambda p: photo.convert("L").save(p, "JPEG"),
        "picture.bmp": lambda p: photo.save(p, "BMP"),
        "crc.png": lambda p: p.write_bytes(_bad_crc(_png16(grey16))),
    }.items():
        make(images / name)
        sizes[name] = (24, 40) if name == "rotated.jpg" else (40, 24)
    (project / "meta.json").write_text(json.dumps({"classes": [{"title": "thing"}]}))
    (project / "ds" / "ann").mkdir()
    for name, (width, height) in sizes.items():
        box = {"classTitle": "thing", "geometryType": "rectangle",
               "points": {"exterior": [[2, 2], [10, 10]], "interior": []}}
        (project / "ds" / "ann" / f"{name}.json").write_text(json.dumps(
            {"size": {"width": width, "height": height}, "objects": [box], "tags": []}))
    result = run_import(project, tmp_path / "out", registry, split="ratio", ratios=(1, 0, 0),
                        verify="decode")
    assert [(Path(p.file).name, p.code) for p in result.report.problems] == [
        ("crc.png", "corrupt-image")]
    rows = read_records(tmp_path / "out")
    assert len(rows) == len(sizes) - 1
    for row in rows:
        name = row["source_id"].removeprefix("ds/")
        assert row["image_shape"] == (row["height"], row["width"], 3), name
        assert (row["width"], row["height"]) == sizes[name], name


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_size_from_the_header_is_what_load_image_gives(
    tmp_path: Path, fmt: str, orientation: int
) -> None:
    """Importers of normalised boxes (YOLO) need the size before the writer reads the image."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / f"a.{fmt.lower()}", _photo(40, 24), fmt, exif=exif.tobytes())
    image = load_image(path)
    assert upright_size(path) == (image.width, image.height)
    assert upright_size(path) == ((24, 40) if orientation >= 5 else (40, 24))


@pytest.mark.parametrize("content,code", [(None, "missing-image"), (b"", "corrupt-image"),
                                          (b"GIF89a-not-really", "corrupt-image")])
def test_upright_size_problems_use_load_images_codes(tmp_path: Path, content: bytes | None,
                                                      code: str) -> None:
    path = tmp_path / "a.gif"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageProblem) as caught:
        upright_size(path)
    assert caught.value.code == code and str(path) in caught.value.reason
