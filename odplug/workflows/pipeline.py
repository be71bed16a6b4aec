"""``pipeline``: dataset -> records -> trained run -> every export -> verification table.

Each stage writes into one output folder and records the inputs it ran with in
``pipeline.json``; a second run reuses every stage whose inputs are unchanged and whose output
is still there (``force`` reruns everything), and a stage that reruns makes every later stage
rerun. The dataset counts as changed when any of its files is added, removed or rewritten.
Training asks the trainer to continue its run if it can (``resume="auto"``): the trainer
decides whether an interrupted run goes on or is replaced. The stages call the same library
functions as the single tasks, so this module is only order and bookkeeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel
from odplug.data.demo import IMAGES as DEMO_IMAGES
from odplug.data.fingerprint import fingerprint
from odplug.errors import OdplugError, UsageError
from odplug.plugins import BUILTIN_DEFAULTS, EXPORTERS, TRAINERS, Registry
from odplug.run import RunInfo

STATE = "pipeline.json"
TABLE_VERSION = 2
"""Raised when the verification table gains columns: a kept table of an older odplug is
rebuilt rather than reused without them."""
STAGES = ("dataset", "import", "train", "export", "verify")
StageEvent = Callable[[str, str], None]
"""Called with (stage, "reused" | "running" | "done")."""


@dataclass
class PipelineOptions:
    source: Path | None = None
    """Dataset to start from; None makes the demo dataset."""
    format: str | None = None
    demo_images: int = DEMO_IMAGES
    seed: int = 0
    trainer: str = BUILTIN_DEFAULTS.trainer
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    to: list[str] = field(default_factory=lambda: list(BUILTIN_DEFAULTS.exporters))
    quantize: list[str] = field(default_factory=list)
    force: bool = False


@dataclass
class PipelineResult:
    out: Path
    records: Path
    run: RunInfo
    exported: list[ExportedModel]
    table: Path | None
    rows: list[Any]
    reused: list[str]


class _State:
    def __init__(self, out: Path, force: bool) -> None:
        self.path = out / STATE
        self.stages: dict[str, Any] = {}
        self.dirty = force
        if self.path.is_file() and not force:
            try:
                self.stages = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                self.stages = {}

    def run(self, name: str, inputs: dict[str, Any], done: Callable[[], bool],
            work: Callable[[], dict[str, Any]], on_stage: StageEvent) -> dict[str, Any]:
        inputs = json.loads(json.dumps(inputs, default=str))
        previous = self.stages.get(name)
        if not self.dirty and previous and previous["inputs"] == inputs and done():
            on_stage(name, "reused")
            return dict(previous["outputs"])
        self.dirty = True
        on_stage(name, "running")
        outputs = work()
        self.stages[name] = {"inputs": inputs,
                             "outputs": json.loads(json.dumps(outputs, default=str))}
        atomic_write_text(self.path, json.dumps(self.stages, indent=2) + "\n")
        on_stage(name, "done")
        return outputs


def run_pipeline(out: Path, options: PipelineOptions, registry: Registry, *,
                 on_stage: StageEvent = lambda stage, event: None,
                 on_step: Callable[[int, int, dict[str, float]], None] | None = None,
                 on_import_total: Callable[[int], None] = lambda total: None,
                 on_import_progress: Callable[[int], None] = lambda n: None) -> PipelineResult:
    from odplug.data.convert import ImportOptions, import_dataset
    from odplug.export import plan as exporting
    from odplug.workflows.export import verify_exports

    trainer = registry.get(TRAINERS, options.trainer)
    exporters = exporting.plan(registry, options.to)
    variants = exporting.variants_for(exporters, options.quantize)
    for component in (trainer, *exporters):
        component.check()
    if options.source is not None and not options.source.exists():
        raise UsageError(f"{options.source}: no such file or folder")
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, options.force)
    reused: list[str] = []

    def event(stage: str, what: str) -> None:
        if what == "reused":
            reused.append(stage)
        on_stage(stage, what)

    source = options.source
    if source is None:
        project = out / "demo-project"

        def make_demo() -> dict[str, Any]:
            from odplug.data.demo import write_demo_project

            write_demo_project(project, images=options.demo_images, seed=options.seed)
            return {"project": str(project)}

        state.run("dataset", {"images": options.demo_images, "seed": options.seed},
                  lambda: (project / "meta.json").is_file(), make_demo, event)
        source = project

    records = out / "records"

    def do_import() -> dict[str, Any]:
        result = import_dataset(source, records, ImportOptions(format=options.format), registry,
                                on_total=on_import_total, progress=on_import_progress)
        return {"images": sum(result.report.images.values())}

    state.run("import", {"source": source.resolve(), "format": options.format,
                         "files": fingerprint(source, exclude=out)},
              lambda: (records / "label_map.pbtxt").is_file(), do_import, event)

    run_dir = out / "run"

    def do_train() -> dict[str, Any]:
        trainer.train(records, run_dir, config=options.config, overrides=options.overrides,
                      resume="auto", on_step=on_step)
        return {"run": str(run_dir)}

    def trained() -> bool:
        try:
            run = trainer.describe(run_dir)
        except OdplugError:  # unreadable: train again, and the trainer replaces it
            return False
        return run is not None and run.complete

    config_text = options.config.read_text() if options.config else ""
    state.run("train", {"trainer": options.trainer, "config": config_text,
                        "overrides": options.overrides}, trained, do_train, event)
    run = trainer.describe(run_dir)
    if run is None or not run.complete:
        raise OdplugError(f"{run_dir}: the {trainer.name} trainer finished without a complete "
                          "run description")
    saved_model = run.saved_model
    export_dir = run_dir / "export"

    def do_export() -> dict[str, Any]:
        written = exporting.export_all(exporters, saved_model, export_dir, variants, records)
        return {"models": [{"exporter": e.name, **asdict(m)} for e, m in written]}

    exported_state = state.run(
        "export", {"to": options.to, "variants": variants},
        lambda: export_dir.is_dir(), do_export, event)
    written = [(registry.get(EXPORTERS, m["exporter"]),
                ExportedModel(m["name"], Path(m["path"]), Path(m["manifest"]), m["size_bytes"]))
               for m in exported_state["models"]]

    def do_verify() -> dict[str, Any]:
        verification = verify_exports(saved_model, written, records,  # type: ignore[arg-type]
                                      export_dir)
        return {"table": str(verification.table),
                "rows": [asdict(r) for r in verification.rows]}

    verified = state.run("verify", {"table": TABLE_VERSION},
                         lambda: (export_dir / "verification.md").is_file(), do_verify, event)
    return PipelineResult(out=out, records=records, run=run,
                          exported=[m for _e, m in written], table=Path(verified["table"]),
                          rows=verified["rows"], reused=reused)
