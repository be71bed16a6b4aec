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


DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0.8,0.1,0.1`` (train, val, test) or ``80,20`` (train, test), checked but kept as given:
    `assign_splits` scales them, and says so when they add up to neither 1 nor 100."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--ratios {text!r}: give numbers separated by commas, "
                          "e.g. 0.8,0.1,0.1") from None
    if (len(values) not in (2, 3) or not all(math.isfinite(v) and v >= 0 for v in values)
            or not 0 < sum(values) < math.inf):
        raise UsageError(f"--ratios {text!r}: give 2 (train,test) or 3 (train,val,test) "
                          "finite, non-negative numbers")
    return values


def assign_splits(
    samples: Sequence[Sample], mode: SplitMode, ratios: Sequence[float], seed: int, report: Report
) -> dict[str, list[Sample]]:
    """The images of each split, none empty; what the user may not expect goes into `report`
    as a warning: ratios rescaled or unused, a split that training wants left without images.
    """
    if mode == "auto":
        mode = "source" if any(s.split for s in samples) else "ratio"
    if mode == "source" and tuple(ratios) != DEFAULT_RATIOS:
        report.warn("ratios-unused", "the split follows the dataset's own train/val/test "
                    f"marks, so ratios {_listed(ratios)} are not used; give --split ratio to "
                    "split by them instead")
    if mode == "source":
        splits = _by_source(samples, report)
        wanted = {"train": "", "val": ""}
    elif mode == "ratio":
        names = _ratio_names(ratios)
        splits = _by_ratio(samples, _scaled(ratios, report), seed)
        wanted = {name: f" ({len(samples)} images split {_listed(ratios)} leave it none)"
                  for name, ratio in zip(names, ratios, strict=True) if ratio > 0}
    else:
        raise OdplugError(f"unknown split mode {mode!r}: use auto, source or ratio")
    for name, why in wanted.items():
        if name not in splits and splits:
            why = why or f" (the dataset marks no {name} images)"
            report.warn("empty-split", f"split {name!r} is empty{why}; {CONSEQUENCE[name]}")
    return splits


CONSEQUENCE = {
    "train": "there is nothing to train on",
    "val": "training will run without validation",
    "test": "the trained model will have no test score",
}
"""What an empty split costs the user, said with the warning."""


def _scaled(ratios: Sequence[float], report: Report) -> tuple[float, ...]:
    """`ratios` as fractions of 1; a warning when they add up to neither 1 nor 100 (percent),
    where a typo is likelier than a choice."""
    total = sum(ratios)
    scaled = tuple(r / total for r in ratios)
    if not (math.isclose(total, 1, rel_tol=1e-6) or math.isclose(total, 100, rel_tol=1e-6)):
        used = ", ".join(f"{name} {r:.3g}" for name, r in
                         zip(_ratio_names(ratios), scaled, strict=True))
        report.warn("ratios-rescaled", f"ratios {_listed(ratios)} add up to {total:g}, not 1; "
                    f"used as {used}")
    return scaled


def _ratio_names(ratios: Sequence[float]) -> tuple[str, ...]:
    return ("train", "test") if len(ratios) == 2 else SPLITS


def _listed(ratios: Sequence[float]) -> str:
    return ",".join(f"{r:g}" for r in ratios)


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
    names = _ratio_names(ratios)
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
