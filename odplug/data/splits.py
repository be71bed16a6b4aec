"""Deciding which split each image goes to: the source's own marks, or a seeded ratio.

A ratio split shuffles the samples sorted by key with a seeded generator, so the same dataset
and seed always give the same split, whatever order the files were listed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

from odplug.dataset_report import Report
from odplug.errors import OdplugError, UsageError
from odplug.samples import SPLITS, Sample

SplitMode = Literal["auto", "source", "ratio"]


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0.8,0.1,0.1`` (train, val, test) or ``80,20`` (train, test); any scale."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--ratios {text!r}: give numbers separated by commas, "
                          "e.g. 0.8,0.1,0.1") from None
    if (len(values) not in (2, 3) or not all(math.isfinite(v) and v >= 0 for v in values)
            or not 0 < sum(values) < math.inf):
        raise UsageError(f"--ratios {text!r}: give 2 (train,test) or 3 (train,val,test) "
                          "finite, non-negative numbers")
    total = sum(values)
    return tuple(v / total for v in values)


def assign_splits(
    samples: Sequence[Sample], mode: SplitMode, ratios: Sequence[float], seed: int, report: Report
) -> dict[str, list[Sample]]:
    if mode == "auto":
        mode = "source" if any(s.split for s in samples) else "ratio"
    if mode == "source":
        return _by_source(samples, report)
    if mode == "ratio":
        return _by_ratio(samples, ratios, seed)
    raise OdplugError(f"unknown split mode {mode!r}: use auto, source or ratio")


def _by_source(samples: Sequence[Sample], report: Report) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for sample in samples:
        if sample.split:
            splits.setdefault(sample.split, []).append(sample)
        else:
            report.skip_image(
                sample.origin or sample.location, "no-split",
                "has no train/val/test mark while others do; mark it, or use --split ratio",
            )
    return {name: items for name, items in splits.items() if items}


def _by_ratio(
    samples: Sequence[Sample], ratios: Sequence[float], seed: int
) -> dict[str, list[Sample]]:
    names = ("train", "test") if len(ratios) == 2 else SPLITS
    ordered = sorted(samples, key=lambda s: s.key)
    random.Random(seed).shuffle(ordered)
    splits: dict[str, list[Sample]] = {}
    start = 0
    cumulative = 0.0
    for index, (name, ratio) in enumerate(zip(names, ratios, strict=True)):
        cumulative += ratio
        end = len(ordered) if index == len(names) - 1 else int(cumulative * len(ordered) + 0.5)
        if end > start:
            splits[name] = sorted(ordered[start:end], key=lambda s: s.key)
        start = end
    return splits
