"""``pipeline``: dataset -> records -> trained run -> every export -> verification table.

Each stage writes into one output folder and records the inputs it ran with in
``pipeline.json``; a second run reuses every stage whose inputs are unchanged and whose output
is still there (``force`` reruns everything), and a stage that reruns makes every later stage
rerun. The dataset counts as changed when any of its files is added, removed or rewritten. A
training run that was interrupted is resumed from its last checkpoint. The stages call the
same library functions as the single tasks, so this module is only order and bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odplug.atomic import atomic_write_text
from odplug.components import ExportedModel
from odplug.errors import OdplugError
from odplug.plugins import EXPORTERS, TRAINERS, Registry

STATE = "pipeline.json"
STAGES = ("dataset", "import", "train", "export", "verify")
StageEvent = Callable[[str, str], None]
"""Called with (stage, "reused" | "running" | "done")."""


@dataclass
class PipelineOptions:
    source: Path | None = None
    """Dataset to start from; None makes the demo dataset."""
    format: str | None = None
    demo_images: int = 300
    seed: int = 0
    trainer: str = "ssd"
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    to: list[str] = field(default_factory=lambda: ["tflite", "edgetpu", "tfjs"])
    quantize: list[str] = field(default_factory=list)
    force: bool = False


@dataclass
class PipelineResult:
    out: Path
    records: Path
    run: Path
    saved_model: Path
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


def dataset_fingerprint(source: Path, *, exclude: Path | None = None) -> str:
    """A digest of the name, size and modification time of every file of a dataset.

    It tells the pipeline whether an import can be reused without reading a single image: a
    stat walk costs milliseconds per thousand files. A file source (a CSV) stands for its whole
    folder, where its images are; `exclude` (the pipeline's own output) is left out.
    """
    root = source if source.is_dir() else source.parent
    skip = os.path.abspath(exclude) if exclude is not None else None
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.abspath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: the import reports it, the digest notes it
                stat = None
            size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
            digest.update(f"{os.path.relpath(path, root)}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def run_pipeline(out: Path, options: PipelineOptions, registry: Registry, *,
                 on_stage: StageEvent = lambda stage, event: None,
                 on_step: Callable[[int, int, dict[str, float]], None] | None = None,
                 on_import_total: Callable[[int], None] = lambda total: None,
                 on_import_progress: Callable[[int], None] = lambda n: None) -> PipelineResult:
    from odplug.data.convert import ImportOptions, import_dataset
    from odplug.export import plan as exporting

    trainer = registry.get(TRAINERS, options.trainer)
    exporters = exporting.plan(registry, options.to)
    variants = exporting.variants_for(exporters, options.quantize)
    for component in (trainer, *exporters):
        component.check()
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
    elif not source.exists():
        raise OdplugError(f"{source}: no such file or folder")

    records = out / "records"

    def do_import() -> dict[str, Any]:
        result = import_dataset(source, records, ImportOptions(format=options.format), registry,
                                on_total=on_import_total, progress=on_import_progress)
        return {"images": sum(result.report.images.values())}

    state.run("import", {"source": source.resolve(), "format": options.format,
                         "files": dataset_fingerprint(source, exclude=out)},
              lambda: (records / "label_map.pbtxt").is_file(), do_import, event)

    run = out / "run"
    saved_model = run / "saved_model"

    def do_train() -> dict[str, Any]:
        resume = (run / "config.toml").is_file() and (run / "checkpoints").is_dir() \
            and not (saved_model / "saved_model.pb").is_file() and not options.force
        if not resume and run.exists():
            import shutil

            shutil.rmtree(run)
        trainer.train(records, run, config=options.config, overrides=options.overrides,
                      resume=resume, on_step=on_step)
        return {"saved_model": str(saved_model)}

    config_text = options.config.read_text() if options.config else ""
    state.run("train", {"trainer": options.trainer, "config": config_text,
                        "overrides": options.overrides},
              lambda: (saved_model / "saved_model.pb").is_file(), do_train, event)

    export_dir = run / "export"

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
        from odplug.data.labelmap import read_label_map
        from odplug.data.shards import shard_files
        from odplug.export.verify import verify, write_table

        files = shard_files(records, "test")
        if not files:
            raise OdplugError(f"{records}: no test split to verify the exports on")
        rows = verify(saved_model, written, files,  # type: ignore[arg-type]
                      read_label_map(records / "label_map.pbtxt"))
        markdown, _data = write_table(rows, export_dir)
        return {"table": str(markdown), "rows": [asdict(r) for r in rows]}

    verified = state.run("verify", {}, lambda: (export_dir / "verification.md").is_file(),
                         do_verify, event)
    return PipelineResult(out=out, records=records, run=run, saved_model=saved_model,
                          exported=[m for _e, m in written], table=Path(verified["table"]),
                          rows=verified["rows"], reused=reused)
