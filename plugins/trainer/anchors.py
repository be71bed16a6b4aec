"""Anchors: the contract between the network's output rows, the loss and every exporter.

Anchors are (ycenter, xcenter, height, width), normalised to [0, 1], ordered row by row, cell
by cell, anchor by anchor within a cell, level after level: the order the heads' outputs are
reshaped in. The box coder that encodes boxes against them is `odplug.model.boxcoder`, shared with
the exporters.
"""

from __future__ import annotations

import math

import numpy as np

from odplug_builtins.trainer.config import ModelConfig


def anchors_per_cell(model: ModelConfig) -> int:
    return len(model.anchor_scales) * len(model.aspect_ratios)


def grid_size(input_size: int, level: int) -> int:
    return math.ceil(input_size / 2**level)


def level_sizes(model: ModelConfig) -> list[int]:
    """Anchors per level, in `make_anchors`' order: rows know their level only by position, and
    what works level by level (ATSS's per-level candidates) slices them with these counts."""
    return [grid_size(model.input_size, level) ** 2 * anchors_per_cell(model)
            for level in model.levels]


def make_anchors(model: ModelConfig) -> np.ndarray:
    """float32 [A, 4] as (ycenter, xcenter, height, width), normalised."""
    rows: list[tuple[float, float, float, float]] = []
    for level in model.levels:
        cells = grid_size(model.input_size, level)
        base = model.anchor_size * 2**level / model.input_size
        shapes = [
            (base * scale / math.sqrt(ratio), base * scale * math.sqrt(ratio))
            for scale in model.anchor_scales
            for ratio in model.aspect_ratios
        ]
        centres = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        for y in centres:
            for x in centres:
                rows.extend((y, x, h, w) for h, w in shapes)
    return np.asarray(rows, dtype=np.float32)
