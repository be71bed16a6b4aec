"""Reading an image file the way the TFRecord will carry it.

Encoded JPEG and PNG bytes go into the record unchanged (re-encoding costs time and, for
JPEG, quality). They are re-encoded only when TensorFlow would decode them differently from
what the annotator saw: an EXIF orientation (TensorFlow ignores it), CMYK JPEG, palette or
16-bit PNG, and formats other than JPEG/PNG. By default only the header is parsed, plus a
check that the file ends the way a complete JPEG/PNG ends; ``verify="decode"`` decodes every
image in full.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from odplug.components import Verify

_PASSTHROUGH_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"L", "RGB", "RGBA"}}
_ORIENTATION_TAG = 0x0112
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND"


class ImageProblem(Exception):
    """An image that cannot go into a record; `code` groups it in the report."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageData:
    """Encoded bytes ready for ``image/encoded`` and the size of the decoded image."""

    data: bytes
    format: str
    width: int
    height: int
    reencoded: str = ""


def load_image(path: Path, verify: Verify = "header") -> ImageData:
    """Read and check one image; raises `ImageProblem` for anything a record cannot hold."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageProblem("missing-image", f"image file not found: {path}") from None
    except OSError as error:
        raise ImageProblem("unreadable-image", f"cannot read {path}: {error.strerror}") from None
    if not data:
        raise ImageProblem("corrupt-image", f"{path} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or "?"
            if verify == "decode" or not _looks_complete(kind, data):
                image.load()
            orientation = _orientation(image)
            why = _reencode_reason(kind, image.mode, orientation)
            if not why:
                return ImageData(data, kind.lower(), image.width, image.height)
            return _reencode(image, kind, why)
    except UnidentifiedImageError:
        raise ImageProblem("corrupt-image", f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageProblem("corrupt-image", f"{path} is corrupt or truncated: {error}") from None


def _looks_complete(kind: str, data: bytes) -> bool:
    """Cheap truncation check: a complete JPEG ends with EOI, a PNG with its IEND chunk."""
    tail = data[-4096:]
    if kind == "JPEG":
        return _JPEG_END in tail
    if kind == "PNG":
        return _PNG_END in tail[-16:]
    return False


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def _reencode_reason(kind: str, mode: str, orientation: int) -> str:
    if kind not in _PASSTHROUGH_MODES:
        return f"format {kind}"
    if mode not in _PASSTHROUGH_MODES[kind]:
        return f"{kind} mode {mode}"
    if orientation not in (0, 1):
        return f"EXIF orientation {orientation}"
    return ""


def _reencode(image: Image.Image, kind: str, why: str) -> ImageData:
    """Apply the EXIF rotation and write plain RGB(A): lossless PNG unless the source was JPEG."""
    upright = ImageOps.exif_transpose(image) or image
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    target = "JPEG" if kind == "JPEG" else "PNG"
    converted = upright.convert("RGBA" if has_alpha and target == "PNG" else "RGB")
    buffer = io.BytesIO()
    if target == "JPEG":
        converted.save(buffer, "JPEG", quality=95, subsampling=0)
    else:
        converted.save(buffer, "PNG", compress_level=1)
    return ImageData(buffer.getvalue(), target.lower(), converted.width, converted.height, why)
