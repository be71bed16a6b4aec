"""Reading an image file the way the TFRecord will carry it.

Encoded JPEG and PNG bytes go into the record unchanged (re-encoding costs time and, for
JPEG, quality). They are re-encoded only when TensorFlow would decode them differently from
what the annotator saw: an EXIF orientation (TensorFlow ignores it), CMYK JPEG, palette or
16-bit PNG, and formats other than JPEG/PNG.

By default only the header is parsed, plus a check of the file's structure that catches a
truncated file wherever it was cut: a JPEG's segments are followed by their lengths up to the
first scan (so an EXIF thumbnail's end marker cannot pass for the image's own) and the file
must end with the end-of-image marker; a PNG's chunks must chain, length by length, to an IEND
chunk at the very end. A file that fails this is decoded in full, so an unusual but valid file
(data after the end marker, say) costs time, never a wrong verdict. ``verify="decode"`` decodes
every image and checks every PNG chunk's CRC (Pillow's decoder skips the image data's CRCs;
TensorFlow's libpng refuses a file where one fails).

Pillow is made as strict as TensorFlow while odplug reads: ``ImageFile.LOAD_TRUNCATED_IMAGES``
(which another library may have set) is off, and the decompression-bomb guard becomes report
entries with the image's size instead of warnings printed raw.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from odplug.components import Verify
from odplug.dataset_report import Skip
from odplug.storage.mount import open_source, read_source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File suffixes taken for images where a folder is searched (most likely first), lower case."""
_PASSTHROUGH_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"L", "RGB", "RGBA"}}
_SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_PADDING = b"\x00\xff"  # some writers pad after the end-of-image marker
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # markers without a length field
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class ImageProblem(Skip):
    """An image that cannot go into a record; `code` groups it in the report."""


@dataclass(frozen=True, slots=True)
class ImageData:
    """Encoded bytes ready for ``image/encoded`` and the size of the decoded image.

    `notes` are (code, reason) pairs the report should carry although the image is kept.
    """

    data: bytes
    format: str
    width: int
    height: int
    reencoded: str = ""
    notes: tuple[tuple[str, str], ...] = ()


def load_image(path: Path, verify: Verify = "header") -> ImageData:
    """Read and check one image; raises `ImageProblem` for anything a record cannot hold."""
    try:
        data = read_source(path)  # a dataset in a bucket: streamed (odplug.storage.mount)
    except FileNotFoundError:
        raise ImageProblem("missing-image", f"image file not found: {path}") from None
    except OSError as error:
        raise ImageProblem("unreadable-image", f"cannot read {path}: {error.strerror}") from None
    return check_image(data, verify, name=str(path))


def check_image(data: bytes, verify: Verify = "header", *, name: str = "image",
                upright: bool = True) -> ImageData:
    """Check encoded image bytes already read (from a file, or a record's ``image/encoded``)
    exactly as `load_image` checks a file; `name` says where they came from in messages.

    ``upright=False`` is for images whose boxes were drawn on the pixels as stored, ignoring
    EXIF: a record's image, since TensorFlow never applies the orientation. Such an image with
    an orientation is re-encoded as stored without it, so every reader (TensorFlow, Pillow,
    Ultralytics, a browser) sees the pixels the boxes belong to.
    """
    if not data:
        raise ImageProblem("corrupt-image", f"{name} is empty")
    try:
        with _strict_pillow() as caught:
            if verify == "decode":
                with Image.open(io.BytesIO(data)) as whole:
                    whole.verify()  # every chunk's CRC; needs an image of its own afterwards
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format or "?"
                layout = _layout(kind, data)
                if verify == "decode" or layout is None:
                    image.load()
                orientation = _orientation(image, kind, layout)
                why = _reencode_reason(kind, image.mode, orientation, data)
                if not upright and why.startswith("EXIF orientation"):
                    why = f"{why} dropped"
                size = image.size
                if why:
                    result = _reencode(image, kind, why, rotate=upright)
                else:
                    result = ImageData(data, kind.lower(), image.width, image.height)
    except UnidentifiedImageError:
        raise ImageProblem("corrupt-image", f"{name} is not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageProblem("too-large", _too_large(name, data)) from None
    except _DECODE_ERRORS as error:
        raise ImageProblem("corrupt-image", f"{name} is corrupt or truncated: {error}") from None
    if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
        width, height = size
        note = (f"large image: {width}x{height} pixels, over Pillow's decompression-bomb "
                f"warning limit of {Image.MAX_IMAGE_PIXELS} pixels; kept")
        result = ImageData(result.data, result.format, result.width, result.height,
                           result.reencoded, (("large-image", note),))
    return result


@contextmanager
def _strict_pillow() -> Iterator[list[warnings.WarningMessage]]:
    """Truncated data fails whatever ``LOAD_TRUNCATED_IMAGES`` says, and Pillow's warnings are
    collected: decompression-bomb ones become report notes, others are passed on unchanged.

    The setting is module state: it is restored on the way out. odplug's workers are
    processes, one image at a time, so no other reader sees the change.
    """
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            yield caught
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    for warning in caught:
        if not issubclass(warning.category, Image.DecompressionBombWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)


def _too_large(name: str, data: bytes) -> str:
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    size = _declared_size(data)
    pixels = f"{size[0]}x{size[1]} pixels" if size else "more pixels than allowed"
    return (f"{name} is too large: {pixels}, limit {limit} pixels (Pillow's decompression-bomb "
            "guard, twice Image.MAX_IMAGE_PIXELS)")


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The size in the header of an image Pillow refused for its size.

    ``Image.open`` raises before it tells the size, so the format plugins it tries are asked
    directly (they parse the header only; the size check is ``Image.open``'s own).
    """
    Image.init()
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        if accept is not None and not accept(data[:16]):
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except (*_DECODE_ERRORS, IndexError, TypeError):
            continue
    return None


def _layout(kind: str, data: bytes) -> set[bytes] | None:
    """The chunk types of a PNG, or an empty set for a JPEG, when the file's structure is
    whole; None when it may be truncated (or is another format), and must be decoded."""
    if kind == "JPEG":
        return set() if _jpeg_is_whole(data) else None
    if kind == "PNG":
        return _png_chunks(data)
    return None


def _jpeg_is_whole(data: bytes) -> bool:
    """Segments chain by their lengths from SOI to the first scan, and the file ends with EOI.

    The walk skips APP1 by its length, so an EXIF thumbnail's end marker is never taken for
    the image's own; a scan's entropy-coded data cannot hold FF D9, so the last marker is the
    image's end.
    """
    if not data[-1024:].rstrip(_JPEG_PADDING).endswith(b"\xff\xd9"):
        return False
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker in _JPEG_STANDALONE:
            position += 2
        elif marker == 0xDA:  # start of scan: the header is whole, the image data follows
            return position + 4 < end - 2
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return False


def _png_chunks(data: bytes) -> set[bytes] | None:
    """The types of a PNG's chunks when they chain by their lengths to IEND at the file's end."""
    found: set[bytes] = set()
    position, end = len(_PNG_SIGNATURE), len(data)
    while position + 12 <= end:
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        found.add(kind)
        position += 12 + length
        if kind == b"IEND":
            return found if position == end else None
    return None


def _orientation(image: Image.Image, kind: str, layout: set[bytes] | None) -> int:
    """The EXIF orientation; a PNG without an eXIf chunk has none (Pillow would decode the
    whole image to look for one, as the chunk may follow the image data)."""
    if kind == "PNG" and layout is not None and b"eXIf" not in layout:
        return 1
    return _exif_orientation(image)


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def upright_size(path: Path) -> tuple[int, int]:
    """The (width, height) `load_image` gives `path`, from the image's header alone.

    For annotations written as fractions of the image (YOLO's), an importer needs the size
    before any writer reads the pixels. EXIF orientations 5 to 8 swap width and height, as the
    rotation `load_image` applies does (Ultralytics' ``exif_size`` swaps for 6 and 8 of JPEGs
    only; 5 and 7 are transposes and swap too). A PNG's orientation counts when its eXIf chunk
    comes before the image data, where Pillow reads it without decoding; one after the data
    (rare) makes the writer report the image's size mismatch instead of misplacing boxes.
    Formats other than JPEG and PNG are decoded, as `load_image` decodes them: Pillow applies
    some of their orientations itself (TIFF's), and only its decoded image says which.
    Raises `ImageProblem` with `load_image`'s codes.
    """
    try:
        handle = open_source(path)
    except FileNotFoundError:
        raise ImageProblem("missing-image", f"image file not found: {path}") from None
    except OSError as error:
        raise ImageProblem("unreadable-image", f"cannot read {path}: {error.strerror}") from None
    with handle:
        try:
            with _strict_pillow(), Image.open(handle) as image:
                if image.format not in ("JPEG", "PNG"):
                    image.load()  # as load_image does: Pillow's TIFF reader rotates on its own
                width, height = image.size
                if image.format == "PNG" and "exif" not in image.info:
                    orientation = 1
                else:
                    orientation = _exif_orientation(image)
        except UnidentifiedImageError:
            raise ImageProblem("corrupt-image",
                               f"{path} is not an image Pillow can read") from None
        except Image.DecompressionBombError:
            handle.seek(0)
            raise ImageProblem("too-large", _too_large(str(path), handle.read())) from None
        except _DECODE_ERRORS as error:
            raise ImageProblem("corrupt-image",
                               f"{path} is corrupt or truncated: {error}") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _reencode_reason(kind: str, mode: str, orientation: int, data: bytes) -> str:
    if kind not in _PASSTHROUGH_MODES:
        return f"format {kind}"
    if kind == "PNG" and data[12:16] == b"IHDR" and data[24] == 16:
        return "PNG 16-bit"
    if mode not in _PASSTHROUGH_MODES[kind]:
        return f"{kind} mode {mode}"
    if orientation not in (0, 1):
        return f"EXIF orientation {orientation}"
    return ""


def _reencode(image: Image.Image, kind: str, why: str, *, rotate: bool = True) -> ImageData:
    """Apply the EXIF rotation (unless `rotate` is False) and write plain RGB(A), without EXIF:
    lossless PNG unless the source was JPEG."""
    eight = eight_bits(image)
    upright = (ImageOps.exif_transpose(eight) or eight) if rotate else eight
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    target = "JPEG" if kind == "JPEG" else "PNG"
    converted = upright.convert("RGBA" if has_alpha and target == "PNG" else "RGB")
    buffer = io.BytesIO()
    if target == "JPEG":
        converted.save(buffer, "JPEG", quality=95, subsampling=0)
    else:
        converted.save(buffer, "PNG", compress_level=1)
    return ImageData(buffer.getvalue(), target.lower(), converted.width, converted.height, why)


def eight_bits(image: Image.Image) -> Image.Image:
    """16-bit greyscale as 8 bits by ``value >> 8`` (Pillow's ``convert`` clips instead, so
    anything above 255 of 65535 turned white).

    ``>> 8`` rather than ``round(value * 255 / 65535)``: it is what TensorFlow's decode_png
    (libpng's strip_16), ``tf.image.convert_image_dtype`` and Pillow's own 16-bit RGB reader
    do, so a 16-bit image reads the same whichever way it reaches a model; the two differ by
    at most one level. 16-bit colour PNGs already arrive as 8 bits from Pillow, the same way.
    """
    if image.mode not in _SIXTEEN_BIT_GREY:
        return image
    pixels = np.asarray(image.convert("I"), dtype=np.int64) >> 8
    result = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    result.info = dict(image.info)  # the EXIF orientation still to apply, among others
    if isinstance(result.info.get("transparency"), int):  # a 16-bit transparent grey level
        result.info["transparency"] >>= 8
    return result
