"""The odplug task collection, shared by ``inv`` (through the repository's tasks.py) and the
installed ``odplug`` command.

Tasks are thin: parse arguments, call the library, show progress and results. Heavy modules
(TensorFlow above all) are imported inside the tasks that need them, so ``inv -l`` and
``inv plugins`` stay fast and work in every image.
"""

from __future__ import annotations

import atexit
import functools
import gc
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Argument, Collection, Task
from invoke import task as invoke_task
from invoke.exceptions import Exit

from odplug import arguments as args
from odplug.cli.console import load_registry_warning, progress_bar, user_errors
from odplug.cli.overrides import parse_overrides
from odplug.cli.verification_table import show_verification
from odplug.plugins import BUILTIN_DEFAULTS
from odplug.storage.urls import is_url

DEFAULT_EXPORTS = ",".join(BUILTIN_DEFAULTS.exporters)

# These tasks run in a command-line process that ends when its task does. The interpreter's
# final garbage collections then cost a noticeable share of a short run such as a data.import
# (docs/formats.md, "Measurements"); freezing every object at exit skips them. atexit
# handlers still run and files are still flushed and closed.
atexit.register(gc.freeze)


class _Uncast(Argument):  # type: ignore[misc]
    """An argument whose value stays the text typed; its kind still shows in ``--help``."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        super().set_value(value, cast=False)


SHORT_FLAGS = {"source": "s", "out": "o", "model": "m"}
"""The only short flags: each means the same in every task that has it (what to read, where to
write, which model). invoke's automatic ones meant something else in each task (``-t`` was
``--to``, ``--steps``, ``--trainer`` or ``--threshold``) and took ``-h`` from ``--help``."""


class CheckedTask(Task):  # type: ignore[misc]
    """A task whose numeric arguments reach it as the text the user typed, with the short
    flags of `SHORT_FLAGS` only.

    invoke casts an argument to the type of its default while parsing, so ``--shards abc``
    would end in a ValueError traceback before any task code runs. Here such arguments keep
    their numeric default and kind, but a value given is passed on uncast, and each task checks
    it with `whole_number` or `_fraction`, whose errors name the flag. An argument annotated
    ``int | None`` (or ``float | None``) with the default None is such a number that may be left
    out: the task gets None. A value written as a ``file://`` URL reaches the task as the
    local path it names (`odplug.arguments.file_urls_as_paths`).
    """

    def __init__(self, body: Callable[..., Any], *more: Any, **named: Any) -> None:
        super().__init__(args.file_urls_as_paths(body), *more, **named)

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        opts["names"] = [opts["names"][0], *SHORT_FLAGS.get(name, "")]
        if default is None:
            hint = typing.get_type_hints(inspect.unwrap(self.body)).get(name)
            for kind in (int, float):
                if hint == kind | None:
                    opts["kind"] = kind
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        kept = dict(self.help)  # invoke's arg_opts pops each help it uses: a second parse had none
        try:
            arguments: list[Argument] = super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept
        return [_Uncast(names=a.names, kind=a.kind, default=a.default, help=a.help,
                        positional=a.positional, optional=a.optional,
                        incrementable=a.incrementable, attr_name=a.attr_name)
                if a.kind in (int, float) else a for a in arguments]


task = functools.partial(invoke_task, klass=CheckedTask)


MIN_RATIO_HELP = (
    "exit 1 when an export keeps less of the SavedModel's mAP@.5 or mAP@[.5:.95] (point "
    "estimate) than this: 'targets' for each model's own target (99.5% float, 98% int8/uint8), "
    "or a fraction from 0 to 1 for every model, e.g. 0.97 (default: report only)")


PICTURES_HELP = (
    "draw the dataset: dataset.png and dataset.json beside the records (default); "
    "--no-pictures leaves them out, saving about 0.6 s")


SET_HELP = ("section.key=value overrides, values as in TOML; repeat --set or separate them with "
            "commas")


@task(
    name="import",
    iterable=["beam_option"],
    help={
        "source": "dataset to import: a Supervisely, tf_csv, COCO, YOLO, Pascal VOC or "
        "TFRecord folder (or file), or any format a plugin adds; or a bucket URL (s3://, "
        "gs://): images are streamed, not copied",
        "out": "output folder or bucket URL, replaced whole (default: "
        "output/<source name>-<to>)",
        "format": "input format; detected when left out (see `plugins` for the list)",
        "to": f"what to write: {BUILTIN_DEFAULTS.writer} (default), tf_csv, coco or yolo, or a "
        "writer a plugin adds",
        "split": "auto (default: the dataset's own train/val/test marks if it has any, else "
        "--ratios), source, or ratio",
        "ratios": "train,val,test fractions for --split ratio (default 0.8,0.1,0.1; two "
        "numbers mean train,test)",
        "seed": "seed of the ratio split (default 0)",
        "classes": "comma-separated class names to keep (after --rename); others are left out",
        "rename": "comma-separated old=new class renames; several old names may merge",
        "label_map": "label_map.pbtxt to use; boxes of classes not in it are skipped",
        "shards": "shards per split (default: auto, about 128 MiB each, one per core at least)",
        "workers": "worker processes (default: one per core)",
        "verify": "header (default: parse headers, check files are complete) or decode "
        "(decode every image in full)",
        "pictures": PICTURES_HELP,
        "engine": "local (default: worker processes on this machine) or beam (an Apache Beam "
        "pipeline, TFRecords only; needs .venv-beam, see setup.sh)",
        "beam_option": "a Beam pipeline option as KEY=VALUE (or KEY for a switch), e.g. "
        "runner=DataflowRunner; repeat it for each (default: Beam's DirectRunner, in this "
        "machine)",
        "quiet": "print only errors",
    },
)
@user_errors
def import_(
    c, source=None, out=None, format=None, to=BUILTIN_DEFAULTS.writer, split="auto",
    ratios="0.8,0.1,0.1",
    seed=0, classes=None, rename=None, label_map=None, shards=0, workers=0, verify="header",
    pictures=True, engine="local", beam_option=None, quiet=False,
):
    """Import a labelled dataset into TFRecords (or tf_csv, COCO, YOLO), with a report of
    every skip."""
    from odplug.data.beam import ENGINES, beam_flags
    from odplug.data.convert import ImportOptions, import_dataset, parse_rename
    from odplug.data.splits import parse_ratios
    from odplug.dataset_report import render_summary

    args.choice("--split", split, ("auto", "source", "ratio"))
    args.choice("--verify", verify, ("header", "decode"))
    if not source:
        raise Exit("odplug: error: give the dataset with --source (see --help)", code=2)
    options = ImportOptions(
        format=format, to=to, split=split, ratios=parse_ratios(ratios),
        seed=args.whole_number("--seed", seed, 0, 2**63 - 1),
        classes=args.names(classes or ""),
        rename=parse_rename(rename or ""), label_map=args.in_file("--label-map", label_map),
        shards=args.whole_number("--shards", shards, 0, 100_000, " (0: auto)"),
        workers=args.whole_number("--workers", workers, 0, 1024, " (0: one per core)"),
        verify=verify, pictures=pictures, engine=args.choice("--engine", engine, ENGINES),
        beam_options=beam_flags(beam_option),
    )
    source_path = args.place(source)
    out_path = args.out_place("--out", out) or args.default_import_out(source_path, to)
    registry = load_registry_warning()
    with args.writing_to(Path(out_path)), progress_bar("importing", enabled=not quiet) as bar:
        result = import_dataset(source_path, out_path, options, registry,
                                on_total=bar.start, progress=bar.advance,
                                note=lambda text: quiet or bar.print(text))
    if not quiet:
        print(render_summary(result.report), end="")
        drawn = " (dataset.png and dataset.json draw it)" if pictures else ""
        print(f"Wrote {result.writer} to {out_path} ({result.importer} importer); "
              f"label map and report.json beside it{drawn}.")


@task(
    help={
        "folder": "folder of TFRecord shards (as written by data.import), or its bucket URL",
        "json": "print the summary as JSON",
        "pictures": "also draw the dataset into the folder: dataset.png and dataset.json, as "
        "data.import writes them",
    },
)
@user_errors
def stats(c, folder=None, json=False, pictures=False):
    """Summarise a TFRecord folder: records, boxes and classes per split; checks every record."""
    if not folder:
        raise Exit("odplug: error: give the TFRecord folder with --folder (see --help)", code=2)
    import json as json_module

    from odplug.data.geometry import DatasetGeometry
    from odplug.data.stats import render_stats

    if pictures:  # drawn into the folder, which in a bucket is published whole by imports
        args.local_only("--folder", folder, "--pictures draws into the folder; data.import "
                        "draws a bucket output's dataset.png as it publishes it")
    from odplug.workflows.buckets import records_summary

    geometry = DatasetGeometry() if pictures else None
    summary = records_summary(folder, lambda text: print(text, file=sys.stderr),
                              geometry=geometry)
    if geometry is not None:  # a local folder only (refused above for a URL)
        from odplug.data.overview import folder_overview

        summary["picture"] = str(folder_overview(Path(folder), geometry))
    print(json_module.dumps(summary, indent=2) if json else render_stats(summary), end="\n")
    problems = summary["problems"]
    if problems:
        first = problems[0]
        raise Exit(f"odplug: error: {len(problems)} record(s) with an unusable image, the first "
                   f"{first['file']} record {first['record']}: {first['reason']}", code=1)


@task(name="plugins", help={"json": "print the list as JSON"})
def plugins_(c, json=False):
    """List every plugin, its version and what it registers; broken plugins say why."""
    import json as json_module
    from dataclasses import asdict

    from odplug.plugins import load_registry

    registry = load_registry()
    if json:
        print(json_module.dumps([asdict(i) for i in registry.plugins.values()], indent=2))
        return
    for info in registry.plugins.values():
        state = " (disabled)" if info.disabled else (" (BROKEN)" if info.error else "")
        print(f"{info.name} {info.version} [{info.source}]{state}")
        for kind, names in info.registered.items():
            components = registry.components[kind]
            for name in names:
                print(f"    {kind[:-1]:9} {name:12} {components[name].summary}")
        for line in info.warnings:
            print(f"    warning: {line}")
        if info.error:
            print(f"    error: {info.error}")


@task(
    name="dataset",
    help={
        "out": "folder to write the Supervisely project to (default demo/supervisely)",
        "images": "number of images (default 600: 240 train, 30 val, 330 test)",
        "size": "image width and height in pixels (default 256)",
        "seed": "random seed; the same seed gives byte-identical files (default 0)",
    },
)
@user_errors
def demo_dataset(c, out="demo/supervisely", images=600, size=256, seed=0):
    """Write a synthetic Supervisely project (shapes on textures, 3 classes) to try odplug on."""
    from odplug.data.demo import write_demo_project

    images = args.whole_number("--images", images, 0, 1_000_000)
    size = args.whole_number("--size", size, 32, 4096)
    seed = args.whole_number("--seed", seed, 0, 2**63 - 1)
    args.out_folder("--out", out)
    with args.writing_to(Path(out)), progress_bar("drawing") as bar:
        bar.start(images)
        write_demo_project(Path(out), images=images, size=size, seed=seed, progress=bar.advance)
    print(f"Wrote {images} images to {out}")


@task(
    name="train",
    iterable=["set"],
    help={
        "records": "TFRecord folder written by data.import (train split; val for the best "
        "checkpoint; test for the final metrics), or its bucket URL (cached locally)",
        "run": "run folder: the trainer's files, its run description and the SavedModel "
        "(default: runs/<records folder name>); a bucket URL trains in a local copy, "
        "uploaded after every validation and when training ends or stops",
        "config": "TOML config with the settings to change (see `model.config` for all)",
        "steps": "number of training steps, 1 or more (overrides train.steps; default: the "
        "trainer's)",
        "set": f"{SET_HELP}, e.g. --set train.batch_size=8 --set model.fpn=true",
        "resume": "continue the run in --run from its latest checkpoint (a finished run: "
        "only with --steps above its last step)",
        "overwrite": "replace the run in --run with a new one (the old one is deleted once "
        "the new run's config and starting weights are checked)",
        "new_run": "if --run is taken, train into the first free <run>-2, <run>-3, ...",
        "trainer": f"trainer plugin (default {BUILTIN_DEFAULTS.trainer})",
        "workers": "train with N worker processes on this machine, a local multi-worker "
        "cluster (default 1: this process; a real cluster sets TF_CONFIG on each machine, see "
        "docs/distributed.md)",
    },
)
@user_errors
def model_train(c, records=None, run=None, config=None, steps: int | None = None, set=None,
                resume=False, overwrite=False, new_run=False,
                trainer=BUILTIN_DEFAULTS.trainer, workers=1):
    """Train a detector on a TFRecord folder; resumable, GPU when present."""
    import time

    from odplug.cli.training_console import TrainingConsole
    from odplug.data.shards import training_inputs
    from odplug.workflows.train import train_model

    if not records:
        raise Exit("odplug: error: give the TFRecord folder with --records (see --help)", code=2)
    overrides = args.with_steps("--steps", parse_overrides(set or []), steps)
    workers = args.whole_number("--workers", workers, 1, 16)
    config_path = args.in_file("--config", config)
    if not is_url(records):  # a bucket's records are checked once downloaded
        training_inputs(args.in_folder("--records", records))
    if sum(map(bool, (resume, overwrite, new_run))) > 1:
        raise Exit("odplug: error: --resume, --overwrite and --new-run each say what to do "
                   "with a run already in --run: give one of them", code=2)
    run_dir = args.out_place("--run", run) or args.default_run_dir(records)
    started = time.perf_counter()
    with args.writing_to(Path(run_dir)), progress_bar("training", fields=("status",)) as bar:
        console = TrainingConsole(bar, started)
        run_info = train_model(load_registry_warning(), records if is_url(records)
                               else Path(records), run_dir, trainer=trainer,
                               config=config_path, overrides=overrides, resume=resume,
                               overwrite=overwrite, new_run=new_run, workers=workers,
                               on_step=console.on_step, on_event=console.on_event,
                               note=bar.print)
    board = f" (TensorBoard: tensorboard --logdir {run_info.logs})" if run_info.logs else ""
    if run_info.url:
        print(f"Run: {run_info.url} (uploaded; trained in its local copy {run_info.run_dir})")
    print(f"Run folder: {run_info.run_dir}{board}")
    print(f"SavedModel: {run_info.saved_model}")
    test = run_info.metrics.get("test")
    if test:
        where = f" (details in {run_info.metrics_dir})" if run_info.metrics_dir else ""
        print(f"Test split: mAP@.5 {test['map50']:.3f}, mAP@[.5:.95] {test['map']:.3f}{where}")


@task(name="config", help={"out": "write the default config here instead of printing it",
                           "trainer": f"trainer plugin (default {BUILTIN_DEFAULTS.trainer})"})
@user_errors
def model_config(c, out="", trainer=BUILTIN_DEFAULTS.trainer):
    """Print (or write) a trainer's full default config, to copy and edit for --config."""
    from odplug.atomic import atomic_write_text
    from odplug.plugins import TRAINERS

    if out and Path(out).is_dir():
        raise args.usage("--out", out, "is a folder; give the name of the TOML file to write")
    chosen = load_registry_warning().get(TRAINERS, trainer)
    text = chosen.default_config()
    if out:
        with args.writing_to(Path(out)):
            atomic_write_text(Path(out), text)
        print(f"Wrote {out}")
    else:
        print(text, end="")


@task(
    name="evaluate",
    help={
        "model": "run folder (or a SavedModel folder) to evaluate, or its bucket URL (read "
        "through the local cache; the metrics go to the cached copy unless --out)",
        "records": "TFRecord folder or bucket URL (default: the one the run trained on)",
        "split": "split to evaluate on (default test)",
        "out": "folder for <split>.json and <split>-pr.png (default: the run's metrics "
        "folder)",
    },
)
@user_errors
def model_evaluate(c, model=None, records=None, split="test", out=None):
    """COCO metrics (mAP@[.5:.95], mAP@.5, per class) of a SavedModel on a split, + PR plot."""
    from odplug.workflows.evaluate import evaluate_model

    if not model:
        raise Exit("odplug: error: give the run folder with --model (see --help)", code=2)
    args.local_only("--out", out, "the metrics are two small files: give a local folder")
    evaluation = evaluate_model(args.place(model), records=args.place(records) if records
                                else None, split=split, out=args.out_folder("--out", out),
                                note=print)
    result = evaluation.result
    print(f"{split}: {result.images} images, mAP@[.5:.95] {result.map:.3f}, "
          f"mAP@.5 {result.map50:.3f}, mAP@.75 {result.map75:.3f}")
    for name, values in result.per_class.items():
        print(f"  {name:16} AP@.5 {values['ap50']:.3f}  AP {values['ap']:.3f}  "
              f"({values['instances']} objects)")
    print(f"Wrote {evaluation.metrics} and {evaluation.plot}")


@task(
    name="predict",
    help={
        "model": "a run folder, a SavedModel folder, an exported .tflite file or a TF.js "
                 "folder; local or a bucket URL",
        "source": "an image or video file, a folder (with its sub-folders) or a glob in "
                  "quotes, e.g. \"photos/*.jpg\"",
        "out": "folder (or bucket URL) for the drawn images and videos, detections.json "
               "(COCO results) and images.json; replaced whole (default: predictions/)",
        "threshold": "lowest score drawn and listed (default 0.3)",
    },
)
@user_errors
def model_predict(c, model=None, source=None, out="predictions", threshold=0.3):
    """Detect objects in images and videos with any model: drawn copies and a COCO JSON."""
    from odplug.data.media import is_glob
    from odplug.workflows.predict import predict

    if not model or not source:
        raise Exit("odplug: error: give --model and --source (see --help)", code=2)
    if not is_glob(str(source)) and not is_url(source):
        args.in_path("--source", source)
    threshold = args.fraction("--threshold", threshold, 0.0, 1.0)
    model_path = args.in_place("--model", model)
    out_path = args.out_place("--out", out) or Path("predictions")
    # predict checks the model's files, the sources and the output before any model loads
    with progress_bar("video") as bar:
        def on_video(path: Path, frames: int):  # type: ignore[no-untyped-def]
            bar.print(f"{path}: {frames or 'unknown number of'} frames")
            bar.start(frames)
            return lambda number: bar.advance(1)

        result = predict(model_path, source, out_path, threshold, load_registry_warning(),
                         on_model=lambda what: bar.print(f"Running {what}"),
                         on_image=lambda image: image.frame is None and bar.print(
                             f"{image.file}: {len(image.detections)} detection(s)"),
                         on_video=on_video, note=bar.print)
    stills = sum(1 for image in result.images if image.frame is None)
    frames = len(result.images) - stills
    drawn = [f"{stills} image(s)"] + ([f"{len(result.videos)} video(s) of {frames} frames"]
                                     if result.videos else [])
    where = (f"{out_path} (uploaded from its local copy {result.json.parent})"
             if is_url(str(out_path)) else str(out_path))
    print(f"Drew {' and '.join(drawn)} into {where}; detections in {result.json} "
          f"(COCO results, pixels), image index in {result.index}")
    for skipped in result.skipped:
        print(f"odplug: warning: skipped {skipped['file']}: {skipped['reason']}")


@task(
    name="export",
    help={
        "model": "run folder (or its saved_model folder) to export, or its bucket URL",
        "to": f"comma-separated formats (default {DEFAULT_EXPORTS}; see `plugins`)",
        "quantize": "comma-separated variants to write, e.g. float32,int8 or float16 (default: "
        "each format's defaults)",
        "out": "output folder or bucket URL, replaced whole (default: export/ in the run "
        "folder, or beside a SavedModel folder)",
        "records": "TFRecord folder (or bucket URL) for int8 calibration and verification "
        "(default: the run's own)",
        "verify": "run every exported model on the test split and print the table "
        "(default on; --no-verify skips it)",
        "limit": "verify on at most this many test images (default: all)",
        "min_ratio": MIN_RATIO_HELP,
    },
)
@user_errors
def model_export(c, model=None, to=DEFAULT_EXPORTS, quantize="", out=None, records=None,
                 verify=True, limit=0, min_ratio=""):
    """Export a trained run to TFLite / Edge TPU / TF.js, then verify each on the test split."""
    from odplug.workflows.export import check_targets, export, plan_export

    if not model:
        raise Exit("odplug: error: give the run folder with --model (see --help)", code=2)
    limit = args.whole_number("--limit", limit, 0, 10**9, " (0: all)")
    enforce, floor = args.min_ratio("--min-ratio", min_ratio)
    if enforce and not verify:
        raise args.usage("--min-ratio", min_ratio, "needs the verification; leave out --no-verify")
    job = plan_export(load_registry_warning(), to=args.names(to), quantize=args.names(quantize),
                      model=args.place(model),
                      out=args.out_place("--out", out),
                      records=args.place(records) if records else None,
                      verify=verify, note=print)
    print("Exporting " + ", ".join(f"{e.name} ({', '.join(job.variants[e.name])})"
                                   for e in job.exporters) + f" to {job.out}")
    exported = export(
        job, limit=limit or None,
        on_done=lambda m: print(f"  {m.name}: {m.path} ({m.size_bytes / 1e6:.2f} MB)",
                                flush=True),
        on_verifying=lambda: print(f"Verifying on {job.records} (test split) ...", flush=True),
        on_row=lambda r: print(f"  {r.name}: mAP@.5 {r.map50:.3f}", flush=True), note=print)
    verification = exported.verification
    if verification is not None:
        show_verification(verification.rows, verification.table)
        print(f"Wrote {verification.table} and {verification.data}")
    print(f"report: {exported.report}")
    if job.publish_to:
        print(f"Export: {job.publish_to} (uploaded from its local copy {job.out})")
    if enforce and verification is not None:
        check_targets(verification.rows, floor)


@task(
    name="edgetpu-check",
    help={
        "model": "the .tflite file to check (e.g. export/edgetpu/edgetpu-int8.tflite), or "
        "its bucket URL",
        "json": "print the report as JSON instead of text",
        "strict": "exit 1 unless every operator before the post-processing is predicted on "
        "the Edge TPU",
    },
)
@user_errors
def model_edgetpu_check(c, model=None, json=False, strict=False):
    """Predict how edgetpu_compiler 16.0 maps a .tflite model, from the file alone."""
    import json as json_module

    from odplug.model.edgetpu_check import predict

    if model and is_url(model):
        from odplug.workflows.buckets import input_path

        path = input_path(model, ".tflite file", lambda text: print(text, file=sys.stderr))
    else:
        path = args.in_file("--model", model)
    if path is None:
        raise Exit("odplug: error: give the .tflite file with --model (see --help)", code=2)
    prediction = predict(path)
    print(json_module.dumps(prediction.to_json(), indent=2) if json else prediction.to_text(),
          end="\n" if json else "")
    if strict and not prediction.fully_mapped:
        raise Exit(f"odplug: error: {path}: {prediction.summary}", code=1)


@task(
    name="build",
    help={"image": "train, tfjs, edgetpu, beam (the Beam worker image), or all (default all)"},
)
@user_errors
def docker_build(c, image="all"):
    """Build the toolchain images (echoing each docker command)."""
    import shlex

    from odplug.cli import docker

    targets = list(docker.IMAGES.values()) if image == "all" else [docker.image(image)]
    commands = [shlex.join(docker.build_command(target, Path("."))) for target in targets]
    for command in commands:
        print(f"$ {command}", flush=True)
    docker.require_engine()
    for command in commands:
        c.run(command, pty=False)


@task(
    name="run",
    help={
        "image": "train, tfjs, edgetpu or beam (default train)",
        "command": "command to run inside, e.g. 'odplug model.train --records output/demo'",
        "gpus": "pass the host's GPUs to the train image (default on)",
    },
)
@user_errors
def docker_run(c, image="train", command="odplug --list", gpus=True):
    """Run a command in a toolchain image with this folder mounted at /work (echoed)."""
    import shlex

    from odplug.cli import docker

    target = docker.image(image)
    line = shlex.join(docker.run_command(target, Path("."), command, gpus=gpus))
    print(f"$ {line}", flush=True)
    docker.require_engine()
    c.run(line, pty=True)


PIPELINE_IN_BUCKETS = ("the pipeline keeps its stages' state in a local folder; for data in a "
                       "bucket run data.import, model.train and model.export with URLs "
                       "(docs/guide/import.md)")


@task(
    iterable=["set"],
    help={
        "source": "dataset to start from (default: make the demo dataset)",
        "format": "its format, when detection is not enough",
        "out": "output folder for every stage (default output/pipeline)",
        "config": "training config TOML (see model.config)",
        "steps": "training steps, 1 or more (default: the trainer's, 1000 for ssd; more is "
        "better)",
        "set": f"training {SET_HELP}, e.g. --set model.input_size=320",
        "to": f"export formats (default {DEFAULT_EXPORTS})",
        "quantize": "export variants (default: each format's defaults)",
        "force": "rerun every stage, even those whose inputs have not changed",
        "min_ratio": MIN_RATIO_HELP,
    },
)
@user_errors
def pipeline(c, source=None, format=None, out="output/pipeline", config=None,
             steps: int | None = None, set=None,
             to=DEFAULT_EXPORTS, quantize="", force=False, min_ratio=""):
    """Dataset -> TFRecords -> trained detector -> every export -> verification table."""
    import time

    from odplug.cli.training_console import TrainingConsole
    from odplug.workflows.export import check_targets
    from odplug.workflows.pipeline import PipelineOptions, run_pipeline

    for name, value in (("--source", source), ("--out", out)):
        args.local_only(name, value, PIPELINE_IN_BUCKETS)
    overrides = args.with_steps("--steps", parse_overrides(set or []), steps)
    enforce, floor = args.min_ratio("--min-ratio", min_ratio)
    out_path = args.out_folder("--out", out) or Path("output/pipeline")
    config_path = args.in_file("--config", config)
    registry = load_registry_warning()
    options = PipelineOptions(
        source=Path(source) if source else None, format=format,
        config=config_path, overrides=overrides,
        to=args.names(to), quantize=args.names(quantize), force=force)
    started = time.perf_counter()

    def on_stage(stage: str, event: str) -> None:
        elapsed = time.perf_counter() - started
        print(f"[{elapsed:6.0f} s] {stage}: {event}", flush=True)

    with args.writing_to(out_path), progress_bar("training", fields=("status",)) as bar:
        console = TrainingConsole(bar, started, lines=10)
        result = run_pipeline(out_path, options, registry, on_stage=on_stage,
                              on_step=console.on_step, on_event=console.on_event)
    print()
    if result.table:
        show_verification(result.rows, result.table)
    print(f"\nrecords:     {result.records}")
    print(f"run:         {result.run.run_dir}")
    print(f"saved model: {result.run.saved_model}")
    for model in result.exported:
        print(f"{model.name + ':':12} {model.path}")
    print(f"table:       {result.table}")
    if result.reused:
        print(f"reused: {', '.join(result.reused)} (--force reruns them)")
    print(f"total: {time.perf_counter() - started:.0f} s")
    print(f"report:      {result.report}")
    if enforce:
        check_targets(result.rows, floor)


def build_namespace() -> Collection:
    data = Collection("data")
    data.add_task(import_, name="import")
    data.add_task(stats)
    demo = Collection("demo")
    demo.add_task(demo_dataset, name="dataset")
    model = Collection("model")
    for body, name in ((model_train, "train"), (model_evaluate, "evaluate"),
                       (model_predict, "predict"), (model_config, "config"),
                       (model_export, "export"), (model_edgetpu_check, "edgetpu-check")):
        model.add_task(body, name=name)
    docker = Collection("docker")
    docker.add_task(docker_build, name="build")
    docker.add_task(docker_run, name="run")
    ns = Collection()
    ns.add_collection(data)
    ns.add_collection(docker)
    ns.add_collection(model)
    ns.add_collection(demo)
    ns.add_task(plugins_, name="plugins")
    ns.add_task(pipeline)
    return ns


ns = build_namespace()
