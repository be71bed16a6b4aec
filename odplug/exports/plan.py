"""``model.export``: which exporters to run, in what order, with which variants.

Exporters declare what they build on (edgetpu requires ``tflite:int8``), so asking for edgetpu
runs tflite first, makes sure tflite writes its int8 model, and hands that model to edgetpu:
each model is converted once, and no plugin imports another. Every exporter's `check()` runs
before any work starts, and the SavedModel is checked against the trained-detector contract
once, so a missing package, a broken model folder or a bad variant is one clear line at once,
not a failure half-way through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from odplug.components import ExportedModel, Exporter
from odplug.errors import OdplugError, UsageError
from odplug.plugins import EXPORTERS, Registry
from odplug.suggest import did_you_mean


def requirements(exporter: Exporter) -> dict[str, list[str]]:
    """`exporter.requires` read: each required exporter's name -> the variants it must write
    (empty: whichever it writes anyway)."""
    needed: dict[str, list[str]] = {}
    for entry in exporter.requires:
        name, _, variant = entry.partition(":")
        needed.setdefault(name, [])
        if variant and variant not in needed[name]:
            needed[name].append(variant)
    return needed


def plan(registry: Registry, names: Sequence[str]) -> list[Exporter]:
    """The exporters asked for plus what they require, dependencies first, each once.

    A ``requires`` cycle (a -> b -> a, or a -> a) is an error naming it, and so is a required
    variant the required exporter does not have.
    """
    ordered: dict[str, Exporter] = {}

    def add(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name):], name))
            raise OdplugError(f"exporters require each other in a cycle: {cycle}; no order "
                              "runs them")
        if name in ordered:
            return
        try:
            exporter = registry.get(EXPORTERS, name)
        except OdplugError:
            if not path:
                raise
            raise OdplugError(f"exporter {path[-1]!r} requires {name!r}, which no plugin "
                              "registers") from None
        assert isinstance(exporter, Exporter)
        for needed, variants in requirements(exporter).items():
            add(needed, (*path, name))
            for variant in variants:
                if variant not in ordered[needed].variants:
                    raise OdplugError(f"exporter {name!r} requires variant {variant!r} of "
                                      f"{needed!r}, which has "
                                      f"{', '.join(ordered[needed].variants) or 'none'}")
        ordered[name] = exporter

    for name in names:
        add(name, ())
    return list(ordered.values())


def check(exporters: Sequence[Exporter]) -> None:
    problems = []
    for exporter in exporters:
        try:
            exporter.check()
        except OdplugError as error:
            problems.append(f"{exporter.name}: {error}")
    if problems:
        raise OdplugError("cannot export: " + "; ".join(problems))


def check_variants(exporter: Exporter, variants: Sequence[str]) -> None:
    """At least one variant, each one of `exporter`'s: the only check of it, made by the core
    before `exporter` runs, so no exporter repeats it."""
    available = ", ".join(exporter.variants) or "none"
    if not variants:
        raise OdplugError(f"no variant asked of {exporter.name}; it has {available}")
    for variant in variants:
        if variant not in exporter.variants:
            raise OdplugError(f"{exporter.name} has no variant {variant!r}."
                              f"{did_you_mean(variant, exporter.variants)} "
                              f"Available: {available}.")


def variants_for(exporters: Sequence[Exporter], quantize: Sequence[str]) -> dict[str, list[str]]:
    """Each exporter's variants: the requested ones it supports, else its defaults, plus every
    variant an exporter that builds on it requires."""
    known = sorted({v for e in exporters for v in e.variants})
    for value in quantize:
        if value not in known:
            raise UsageError(f"--quantize {value!r} is not a variant of "
                              f"{', '.join(e.name for e in exporters)}."
                              f"{did_you_mean(value, known)} Available: {', '.join(known)}.")
    chosen = {}
    for exporter in exporters:
        picked = [v for v in dict.fromkeys(quantize) if v in exporter.variants]
        chosen[exporter.name] = picked or list(exporter.default_variants or exporter.variants)
    for exporter in exporters:
        for needed, variants in requirements(exporter).items():
            chosen[needed] += [v for v in variants if v not in chosen[needed]]
    return chosen


def export_all(exporters: Sequence[Exporter], saved_model: Path, out: Path,
               variants: Mapping[str, Sequence[str]], records: Path | None,
               on_done: Callable[[ExportedModel], None] = lambda model: None
               ) -> list[tuple[Exporter, ExportedModel]]:
    """Check the variants and the SavedModel (the trained-detector contract), then run each
    exporter in order under ``out/<name>``, handing it what the exporters it requires wrote.

    `exporters` in `plan`'s order. Nothing is converted unless every check passes.
    """
    from odplug.model.contract import validate_detector

    ran: set[str] = set()
    for exporter in exporters:
        check_variants(exporter, variants.get(exporter.name, ()))
        for needed, wanted in requirements(exporter).items():
            if needed not in ran:
                raise OdplugError(f"exporter {exporter.name!r} requires {needed!r}, which must "
                                  "run before it: plan() gives the order")
            missing = [v for v in wanted if v not in variants[needed]]
            if missing:
                raise OdplugError(f"exporter {exporter.name!r} requires {needed!r} to write "
                                  f"{', '.join(missing)}, which is not asked of it")
        ran.add(exporter.name)
    trained = validate_detector(saved_model)
    by_variant: dict[str, dict[str, ExportedModel]] = {}
    written: list[tuple[Exporter, ExportedModel]] = []
    for exporter in exporters:
        asked = list(dict.fromkeys(variants[exporter.name]))
        inputs = {name: by_variant[name] for name in requirements(exporter)}
        models = exporter.export(trained, out / exporter.name, variants=asked, records=records,
                                 inputs=inputs)
        by_variant[exporter.name] = _by_variant(exporter, asked, models)
        for model in models:
            written.append((exporter, model))
            on_done(model)
    return written


def _by_variant(exporter: Exporter, asked: Sequence[str],
                models: Sequence[ExportedModel]) -> dict[str, ExportedModel]:
    """`models` by variant: one per variant asked for, each saying it is `exporter`'s, as the
    contract says, so an exporter that builds on them finds them."""
    got = sorted((model.exporter, model.variant) for model in models)
    if got != sorted((exporter.name, variant) for variant in asked):
        expected = ", ".join(f"{exporter.name}-{variant}" for variant in asked)
        raise OdplugError(f"exporter {exporter.name!r} wrote "
                          f"{', '.join(m.name for m in models) or 'nothing'} where "
                          f"{expected} (one model per variant asked) was expected")
    return {model.variant: model for model in models}
