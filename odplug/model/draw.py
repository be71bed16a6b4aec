"""Boxes, class names and scores drawn on an image, for people to check a detector by eye."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, well separated colour per class (golden-ratio hues)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: Image.Image, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray, names: Mapping[int, str]) -> Image.Image:
    """A copy of `image` with each box (normalised ymin, xmin, ymax, xmax) and its label."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width, height = out.size
    line = max(1, round(min(width, height) / 150))
    font = ImageFont.load_default(size=max(10, round(min(width, height) / 28)))
    for box, class_id, score in zip(boxes, classes, scores, strict=True):
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        corners = (xmin * width, ymin * height, xmax * width, ymax * height)
        colour = class_colour(int(class_id))
        draw.rectangle(corners, outline=colour, width=line)
        label = f"{names.get(int(class_id), f'class {int(class_id)}')} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x, y = corners[0], max(0.0, corners[1] - (bottom - top) - 2 * line)
        label_box = (x, y, x + right - left + 2 * line, y + bottom - top + 2 * line)
        draw.rectangle(label_box, fill=colour)
        draw.text((x + line, y + line - top), label, fill=(0, 0, 0), font=font)
    return out
