"""``model.export``: which exporters to run, in what order, with which variants.

Exporters declare what they build on (edgetpu requires tflite), so asking for edgetpu runs
tflite first; every exporter's `check()` runs before any work starts, so a missing package or
tool is one clear line at once, not a failure half-way through.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from odplug.components import ExportedModel, Exporter
from odplug.errors import OdplugError
from odplug.plugins import EXPORTERS, Registry


def resolve_model(path: Path) -> tuple[Path, Path | None]:
    """A run folder or a SavedModel folder -> (SavedModel folder, records folder if known)."""
    if (path / "saved_model" / "saved_model.pb").is_file():
        saved = path / "saved_model"
    elif (path / "saved_model.pb").is_file():
        saved = path
    else:
        raise OdplugError(f"{path}: no SavedModel (neither {path / 'saved_model'} nor "
                          f"{path / 'saved_model.pb'}); train first with model.train")
    info = (saved.parent if saved != path else path) / "run.json"
    records = Path(json.loads(info.read_text())["records"]) if info.is_file() else None
    return saved, records


def plan(registry: Registry, names: Sequence[str]) -> list[Exporter]:
    """The exporters asked for plus what they require, dependencies first, each once."""
    ordered: list[Exporter] = []

    def add(name: str, wanted_by: str | None) -> None:
        if any(e.name == name for e in ordered):
            return
        try:
            exporter = registry.get(EXPORTERS, name)
        except OdplugError:
            if wanted_by is None:
                raise
            raise OdplugError(f"exporter {wanted_by!r} requires {name!r}, which no plugin "
                              "registers") from None
        for needed in exporter.requires:
            add(needed, name)
        ordered.append(exporter)

    for name in names:
        add(name, None)
    return ordered


def check(exporters: Sequence[Exporter]) -> None:
    problems = []
    for exporter in exporters:
        try:
            exporter.check()
        except OdplugError as error:
            problems.append(f"{exporter.name}: {error}")
    if problems:
        raise OdplugError("cannot export: " + "; ".join(problems))


def variants_for(exporters: Sequence[Exporter], quantize: Sequence[str]) -> dict[str, list[str]]:
    """Each exporter's variants: the requested ones it supports, else its defaults."""
    known = sorted({v for e in exporters for v in e.variants})
    for value in quantize:
        if value not in known:
            hint = difflib.get_close_matches(value, known, n=1)
            raise OdplugError(f"--quantize {value!r} is not a variant of "
                              f"{', '.join(e.name for e in exporters)}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "")
                              + f" (choices: {', '.join(known)})")
    chosen = {}
    for exporter in exporters:
        picked = [v for v in quantize if v in exporter.variants]
        chosen[exporter.name] = picked or list(exporter.default_variants or exporter.variants)
    return chosen


def export_all(exporters: Sequence[Exporter], saved_model: Path, out: Path,
               variants: dict[str, list[str]], records: Path | None,
               on_done: Callable[[ExportedModel], None] = lambda model: None
               ) -> list[tuple[Exporter, ExportedModel]]:
    written: list[tuple[Exporter, ExportedModel]] = []
    for exporter in exporters:
        for model in exporter.export(saved_model, out / exporter.name,
                                     variants=variants[exporter.name], records=records):
            written.append((exporter, model))
            on_done(model)
    return written
