"""Images inside the page itself, as ``data:`` URIs, so the report is one file that opens
offline, from anywhere it is copied to, with nothing to fetch.

Charts stay PNG (sharp lines and text, few colours: small); photographs become JPEG at
`JPEG_QUALITY`, scaled down to fit `PHOTO_WIDTH` (a grid of validation images saved as a
large PNG would make the page tens of megabytes). A file that is missing or no image is a
`Shown` with a sentence instead of an image: the page says what is missing, never fails.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

JPEG_QUALITY = 80
PHOTO_WIDTH = 1280
"""The widest a photograph (a tile of images) is embedded; the page shows it no wider."""
THUMBNAIL = 320
"""The size of each image of the side-by-side comparisons, in pixels."""


@dataclass(frozen=True)
class Shown:
    """One picture of the page: its title, its image as a data: URI (None when it cannot be
    shown) and a caption that says what it shows, or why it is not there."""

    title: str
    uri: str | None
    caption: str = ""


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def jpeg_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_uri(path: Path, *, photo: bool) -> str:
    """`path`'s image as a data: URI: a photo as a JPEG no wider than `PHOTO_WIDTH`, a chart
    as its own PNG bytes (re-encoded as PNG only when the file is another format). Raises
    `OSError` (Pillow's unreadable image included) or `ValueError` for a file that is no
    image."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if photo:
            image.thumbnail((PHOTO_WIDTH, PHOTO_WIDTH * 4))
            return jpeg_uri(image)
        if image.format == "PNG":
            return png_uri(data)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return png_uri(buffer.getvalue())


def show_file(title: str, path: Path | None, caption: str, *, photo: bool,
              missing: str) -> Shown:
    """`path` embedded under `title`, or, when there is no such file or it is no image, the
    sentence `missing` (with the reason when the file is there but unreadable)."""
    if path is None or not path.is_file():
        return Shown(title, None, missing)
    try:
        return Shown(title, image_uri(path, photo=photo), caption)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return Shown(title, None, f"{path.name} could not be read as an image ({error}).")
