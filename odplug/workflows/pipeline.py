"""``pipeline``: dataset -> records -> trained run -> every export -> verification table.

Each stage writes into one output folder and records the inputs it ran with in
``pipeline.json``; a second run reuses every stage whose inputs are unchanged and whose output
is still there (``force`` reruns everything), and a stage that reruns makes every later stage
rerun. The dataset counts as changed when any of its files is added, removed or rewritten.
Training asks the trainer to continue its run if it can (``resume="auto"``): the trainer
decides whether an interrupted run goes on or is replaced. The stages call the same library
functions as the single tasks (the export is planned, written and verified by
`odplug.workflows.export`, as ``model.export`` does it, and its folder changes whole or not
at all), so this module is only order and bookkeeping. The pipeline ends with one HTML page,
``report.html`` (`odplug.report`), rebuilt every time. A stage whose stored outputs this
odplug cannot read (an older odplug's) runs again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from odplug.atomic import atomic_write_text
from odplug.components import EventCallback, ExportedModel, Trainer, train_with
from odplug.data.demo import IMAGES as DEMO_IMAGES
from odplug.data.fingerprint import fingerprint
from odplug.errors import OdplugError, UsageError
from odplug.plugins import BUILTIN_DEFAULTS, TRAINERS, Registry
from odplug.run import RunInfo

if TYPE_CHECKING:  # TensorFlow comes with them: imported where a stage needs them
    from odplug.exports.verify import Row
    from odplug.workflows.export import ExportJob, Written

STATE = "pipeline.json"
TABLE_VERSION = 3
"""Raised when the verification table gains columns: a kept table of an older odplug is
rebuilt rather than reused without them."""
STAGES = ("dataset", "import", "train", "export", "verify")
StageEvent = Callable[[str, str], None]
"""Called with (stage, "reused" | "running" | "done")."""
T = TypeVar("T")


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
    rows: list[Row]
    reused: list[str]
    report: Path
    """``<out>/report.html``: dataset, training, evaluation and exports in one page."""


class _State:
    """``pipeline.json``: each stage's inputs and outputs, and which stages were reused."""

    def __init__(self, out: Path, force: bool, on_stage: StageEvent) -> None:
        self.path = out / STATE
        self.stages: dict[str, Any] = {}
        self.dirty = force
        self.on_stage = on_stage
        self.reused: list[str] = []
        if self.path.is_file() and not force:
            try:
                stages = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                stages = {}
            self.stages = stages if isinstance(stages, dict) else {}

    def run(self, name: str, inputs: dict[str, Any], done: Callable[[], bool],
            work: Callable[[], dict[str, Any]], read: Callable[[dict[str, Any]], T]) -> T:
        """Stage `name`'s result, `read` from its stored outputs: those of the last run when
        no stage before it ran, its `inputs` are the same and its output is still there
        (`done`), else those `work` returns, stored first. One reading for both, so a reused
        stage gives what a fresh one does; outputs `read` refuses run the stage again."""
        inputs = _plain(inputs)
        previous = self.stages.get(name)
        if not self.dirty and isinstance(previous, dict) and previous.get("inputs") == inputs \
                and done():
            try:
                result = read(previous["outputs"])
            except (KeyError, TypeError, ValueError):  # an older odplug's outputs
                pass
            else:
                self.reused.append(name)
                self.on_stage(name, "reused")
                return result
        self.dirty = True
        self.on_stage(name, "running")
        outputs = _plain(work())
        self.stages[name] = {"inputs": inputs, "outputs": outputs}
        atomic_write_text(self.path, json.dumps(self.stages, indent=2) + "\n")
        self.on_stage(name, "done")
        return read(outputs)


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    """`value` as JSON stores it (paths as text), so a fresh stage reads like a stored one."""
    plain: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return plain


def _nothing(outputs: dict[str, Any]) -> None:
    """The reading of a stage whose outputs no later stage needs."""


def run_pipeline(out: Path, options: PipelineOptions, registry: Registry, *,
                 on_stage: StageEvent = lambda stage, event: None,
                 on_step: Callable[[int, int, dict[str, float]], None] | None = None,
                 on_event: EventCallback | None = None,
                 on_import_total: Callable[[int], None] = lambda total: None,
                 on_import_progress: Callable[[int], None] = lambda n: None) -> PipelineResult:
    """Every stage in order, each reused when it can be; nothing is done before every check
    that can fail without work has passed: the trainer's name, the export planned and checked
    as ``model.export`` does it (`plan_export`), the trainer's own check and the source."""
    from odplug.workflows.export import plan_export

    records, run_dir = out / "records", out / "run"
    trainer = registry.get(TRAINERS, options.trainer)
    job = plan_export(registry, to=options.to, quantize=options.quantize,
                      out=run_dir / "export", records=records)
    trainer.check()
    if options.source is not None and not options.source.exists():
        raise UsageError(f"{options.source}: no such file or folder")
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, options.force, on_stage)
    source = options.source or _demo_dataset(state, out / "demo-project", options)
    _import(state, source, records, options.format, registry, exclude=out,
            on_total=on_import_total, on_progress=on_import_progress)
    run = _train(state, trainer, records, run_dir, options, on_step, on_event)
    job = job.for_model(run.saved_model, run)
    written, rows, table = _export(state, job, options.to)
    report = _report(out, records, run, job.out)
    return PipelineResult(out=out, records=records, run=run,
                          exported=[model for _exporter, model in written], table=table,
                          rows=rows, reused=state.reused, report=report)


def _report(out: Path, records: Path, run: RunInfo, export: Path) -> Path:
    """``<out>/report.html``, written again on every run, reused stages included: it costs
    seconds (a dozen images drawn per model) against the minutes of any stage, and a page
    kept from an earlier run could describe another dataset or run than the folder now
    holds."""
    from odplug.exports.output import REPORT_FILE
    from odplug.report.page import write_report

    return write_report(out / REPORT_FILE, records=records, run=run, export=export,
                        title=f"odplug pipeline: {out.resolve().name}")


def _demo_dataset(state: _State, project: Path, options: PipelineOptions) -> Path:
    def make() -> dict[str, Any]:
        from odplug.data.demo import write_demo_project

        write_demo_project(project, images=options.demo_images, seed=options.seed)
        return {"project": str(project)}

    state.run("dataset", {"images": options.demo_images, "seed": options.seed},
              lambda: (project / "meta.json").is_file(), make, _nothing)
    return project


def _import(state: _State, source: Path, records: Path, format: str | None,
            registry: Registry, *, exclude: Path, on_total: Callable[[int], None],
            on_progress: Callable[[int], None]) -> None:
    """`source` into `records`; `exclude` (the pipeline's own folder, which may lie inside
    the dataset) is left out of the dataset's fingerprint."""
    from odplug.data.convert import ImportOptions, import_dataset

    def work() -> dict[str, Any]:
        result = import_dataset(source, records, ImportOptions(format=format, pictures=True),
                                registry, on_total=on_total, progress=on_progress)
        return {"images": sum(result.report.images.values())}

    state.run("import", {"source": source.resolve(), "format": format,
                         "files": fingerprint(source, exclude=exclude)},
              lambda: (records / "label_map.pbtxt").is_file(), work, _nothing)


def _train(state: _State, trainer: Trainer, records: Path, run_dir: Path,
           options: PipelineOptions,
           on_step: Callable[[int, int, dict[str, float]], None] | None,
           on_event: EventCallback | None) -> RunInfo:
    def work() -> dict[str, Any]:
        train_with(trainer, records, run_dir, config=options.config,
                   overrides=options.overrides, resume="auto", on_step=on_step,
                   on_event=on_event)
        return {"run": str(run_dir)}

    def trained() -> bool:
        try:
            run = trainer.describe(run_dir)
        except OdplugError:  # unreadable: train again, and the trainer replaces it
            return False
        return run is not None and run.complete

    config_text = options.config.read_text() if options.config else ""
    state.run("train", {"trainer": options.trainer, "config": config_text,
                        "overrides": options.overrides}, trained, work, _nothing)
    run = trainer.describe(run_dir)
    if run is None or not run.complete:
        raise OdplugError(f"{run_dir}: the {trainer.name} trainer finished without a complete "
                          "run description")
    return run


def _export(state: _State, job: ExportJob, to: list[str]) -> tuple[Written, list[Row], Path]:
    """The export and verify stages: one `export` writes the models and their verification
    together, since an export folder changes whole; a verification that must run again
    while the models are reused (a table of an older odplug) exports them again with it."""
    from odplug.exports.verify import Row
    from odplug.workflows.export import Exported, export

    exporters = {exporter.name: exporter for exporter in job.exporters}
    fresh: list[Exported] = []

    def exported() -> Exported:
        if not fresh:
            fresh.append(export(job))
        return fresh[0]

    def read_models(outputs: dict[str, Any]) -> Written:
        models = [ExportedModel.from_json(model) for model in outputs["models"]]
        return [(exporters[model.exporter], model) for model in models]

    def verified() -> dict[str, Any]:
        verification = exported().verification
        assert verification is not None  # the pipeline's job always verifies
        return {"table": str(verification.table),
                "rows": [row.to_json() for row in verification.rows]}

    def read_rows(outputs: dict[str, Any]) -> tuple[list[Row], Path]:
        return [Row.from_json(row) for row in outputs["rows"]], Path(outputs["table"])

    written = state.run("export", {"to": to, "variants": job.variants}, job.out.is_dir,
                        lambda: {"models": [model.to_json() for model in exported().models]},
                        read_models)
    rows, table = state.run("verify", {"table": TABLE_VERSION},
                            lambda: (job.out / "verification.md").is_file(), verified, read_rows)
    return written, rows, table
