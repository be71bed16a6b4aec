"""invoke tasks for this repository: every odplug task, plus the benchmarks.

The odplug tasks themselves live in `odplug.cli.tasks` so the installed ``odplug`` command has
them too; the benchmarks need this checkout, so they are added here only.

``inv`` is invoke's own program, which has no ``--verbose``: ``ODPLUG_VERBOSE=1 inv ...`` shows
everything TensorFlow prints, as ``odplug --verbose`` does. It is given odplug's parsing
(`parse_like_odplug`): the same answers to a wrong command line, exit status 2, and help.
"""

from pathlib import Path

import invoke.main
from invoke import Collection

from odplug.cli.interrupt import exit_on_interrupt

if invoke.main.program.argv:  # loaded by inv, not imported by a test: Ctrl-C is one clean line
    exit_on_interrupt()  # before the slow imports below

from odplug import arguments as args  # noqa: E402
from odplug.cli.console import quiet_console, user_errors  # noqa: E402
from odplug.cli.parsing import parse_like_odplug  # noqa: E402
from odplug.cli.tasks import build_namespace, task  # noqa: E402
from odplug.errors import UsageError  # noqa: E402

quiet_console()
parse_like_odplug(invoke.main.program)


@task(
    name="convert",
    help={
        "images": "photo-sized JPEGs in the generated project (default 2000)",
        "runs": "timed runs of each command, taking turns; the median is reported (default 5)",
        "workdir": "where the project and outputs go (default bench/work)",
        "engine": "local (default: against the original scripts and cat) or beam (data.import "
        "--engine beam on the DirectRunner against the local engine and cat)",
        "bucket": "instead, the engine's import with --source s3://... from a moto S3 server on "
        "127.0.0.1 against the same files on disk, taking turns; needs the test requirements "
        "(moto[server]) and odplug[cloud] (s3fs), which setup.sh installs",
        "latency": "with --bucket: answer every request this many milliseconds late, as a "
        "bucket across a network does (default 0: moto on this machine)",
    },
)
@user_errors
def bench_convert(c, images=2000, runs=5, workdir="bench/work", engine="local", bucket=False,
                  latency=0):
    """Images/s of data.import vs the original scripts vs cat, end to end as a user runs them;
    with --engine beam, of the Beam engine vs the local one; with --bucket, from a bucket vs
    from disk."""
    from bench.convert import ENGINES, run

    run(images=args.whole_number("--images", images, 1, 1_000_000),
        runs=args.whole_number("--runs", runs, 1, 1000), workdir=Path(workdir),
        engine=args.choice("--engine", engine, ENGINES), bucket=bool(bucket),
        latency_ms=args.whole_number("--latency", latency, 0, 10_000))


@task(
    name="train",
    iterable=["set"],
    help={
        "datasets": "comma-separated: demo, raccoon (default demo,raccoon)",
        "seeds": "training runs per dataset, seeds 0..N-1, for mean and spread (default 1)",
        "set": "extra config overrides for every run, e.g. train.ema_decay=0.998 (to compare "
        "a change against the defaults); repeat --set or separate them with commas",
        "workdir": "where the records, the runs and the results go (default bench/work/train)",
        "steps": "training steps timed for the step throughput (default 20)",
        "full": "also train and draw the learning curves (default on; --no-full times only "
        "the input pipeline and the step)",
        "workers": "instead, training images/s with 1 and with N local workers, the same "
        "global batch (bench/workers.py; its workdir defaults to bench/work/workers)",
    },
)
@user_errors
def bench_train(c, datasets="demo,raccoon", seeds=1, set=None, workdir="bench/work/train",
                steps=20, full=True, workers=0):
    """Learning curves (test mAP vs training seconds) per dataset and seed, images/s, CPU use;
    or, with --workers N, images/s of one and of N local training workers."""
    workers = args.whole_number("--workers", workers, 0, 16, " (0: the learning-curve benchmark)")
    if workers == 1:
        raise UsageError("bench.train --workers 1: give 2 or more (one worker is always "
                          "measured, to compare with)")
    if workers:
        from bench import workers as cluster_bench

        where = Path("bench/work/workers") if workdir == "bench/work/train" else Path(workdir)
        cluster_bench.run(where, args.whole_number("--steps", steps, 3, 1_000_000), workers=workers)
        return
    from bench.train import run
    from odplug.cli.overrides import parse_overrides

    run(workdir=Path(workdir), datasets=[d.strip() for d in datasets.split(",") if d.strip()],
        seeds=args.whole_number("--seeds", seeds, 1, 100), settings=parse_overrides(set or []),
        steps=args.whole_number("--steps", steps, 1, 1_000_000), full=full)


@task(
    name="tfjs",
    help={
        "model": "a TF.js export folder, e.g. output/pipeline/run/export/tfjs/tfjs-float32",
        "images": "demo images timed per run and backend, after one warm-up (default 30)",
        "runs": "runs, the backends taking turns in each; the median is reported (default 3)",
        "workdir": "where the demo images and the results go (default bench/work/tfjs)",
    },
)
@user_errors
def bench_tfjs(c, model="", images=30, runs=3, workdir="bench/work/tfjs"):
    """ms per image of TF.js verification in Node.js: the wasm backend vs the pure-JS cpu one."""
    from bench.tfjs import run

    if not model:
        raise UsageError("bench.tfjs needs --model: a TF.js export folder "
                          "(model.export --to tfjs)")
    run(model=Path(model), images=args.whole_number("--images", images, 1, 100_000),
        runs=args.whole_number("--runs", runs, 1, 1000), workdir=Path(workdir))


@task(
    name="predict",
    help={
        "model": "the model to run: a .tflite file (e.g. output/pipeline/run/export/tflite/"
                 "tflite-int8.tflite), a TF.js folder, a run or a SavedModel folder",
        "frames": "frames of the clip made from the demo images, 256 px at 30 frames/s "
                  "(default 300)",
        "workdir": "where the clip, the drawn video and the results go "
                   "(default bench/work/predict)",
    },
)
@user_errors
def bench_predict(c, model="", frames=300, workdir="bench/work/predict"):
    """Frames/s of model.predict on a video: end to end (decode, detect, draw, encode) and the
    detector alone."""
    from bench.predict import run

    if not model:
        raise UsageError("bench.predict needs --model: e.g. the int8 .tflite of an export")
    run(args.in_path("--model", model), Path(workdir),
        args.whole_number("--frames", frames, 1, 1_000_000))


ns = build_namespace()
bench = Collection("bench")
bench.add_task(bench_convert, name="convert")
bench.add_task(bench_train, name="train")
bench.add_task(bench_tfjs, name="tfjs")
bench.add_task(bench_predict, name="predict")
ns.add_collection(bench)
