"""How fast odplug turns a Supervisely project into TFRecords, against the workflow it replaces.

Three things are timed the way a user meets them: whole new processes, wall clock from outside,
start-up and imports included, median of `runs` runs after one untimed warm-up (so every run
reads a warm page cache), the contenders taking turns, outputs deleted before each run and
checked after it:

- odplug: `odplug data.import --source PROJECT --out OUT`;
- baseline: the original workflow, `baseline_supervisely_to_csv.py` then
  `baseline_csv_to_tfrecord.py` once per split, as its README runs them (time = the sum);
- cat: every image of the project concatenated into one file, the I/O floor for any converter;
- odplug-no-pictures: the same import with ``--no-pictures``, measured without a target: the
  dataset picture (``dataset.png``, drawn by default since issue 25) is a fixed cost of about
  0.6 s, as much as the rest of this import, so the ratios are given both ways.

Targets: odplug at least 5x the baseline's images/s and at least 0.3x cat's.

With ``engine="beam"`` the question is another one, what the Apache Beam engine costs against
the local one (issue 27): odplug-beam (`data.import --engine beam`, Beam's default DirectRunner,
in one process) takes turns with odplug and cat, and the slow baseline is left out.

With ``bucket=True``, what reading the dataset from a bucket costs against reading it from
disk (issue 27): the project is uploaded to a moto S3 server on 127.0.0.1 (`bench.buckets`),
and the engine's import from the bucket (`--source s3://...`, output on disk) takes turns
with the same import from the folder on disk and with cat-bucket, every object of the project
fetched from the server through s3fs into one file (the floor for any reader of that server).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.buckets import project_in_bucket
from bench.photos import SPLIT_TAGS, ProjectSpec, ensure_project
from odplug.atomic import atomic_write_text
from odplug.errors import OdplugError

HERE = Path(__file__).resolve().parent
TARGETS = {"odplug_vs_baseline": 5.0, "odplug_vs_cat": 0.3}
ENGINES = ("local", "beam")
RESULTS_FILE = "convert-results.json"
CAT_SCRIPT = 'find "$1" -name "*.jpg" -print0 | sort -z | xargs -0 cat > "$2"'

Command = Sequence[str | os.PathLike]


@dataclass(frozen=True)
class Contender:
    """One way of converting the project: its processes, run in order, and a check of its output.

    `check` returns how many images the output holds and raises if the output is wrong, so a
    fast but broken run can never count.
    """

    name: str
    commands: list[Command]
    out: Path
    check: Callable[[Path], int]


def count_records(path: Path) -> int:
    """Count the records of a TFRecord file from its framing (length, crc, data, crc)."""
    count, size = 0, path.stat().st_size
    with path.open("rb") as f:
        while f.tell() < size:
            header = f.read(12)
            if len(header) < 12:
                raise ValueError(f"{path}: truncated record header after {count} records")
            (length,) = struct.unpack("<Q", header[:8])
            f.seek(length + 4, os.SEEK_CUR)
            count += 1
        if f.tell() != size:
            raise ValueError(f"{path}: last record runs past the end of the file")
    return count


def record_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and "record" in p.name)


def check_records(out: Path) -> int:
    files = record_files(out)
    if not files:
        raise RuntimeError(f"{out}: no TFRecord files were written")
    return sum(count_records(p) for p in files)


def run_timed(contender: Contender, env: dict[str, str], log: Path) -> tuple[list[float], int]:
    """Run the contender's commands once from a clean output; return each one's seconds."""
    shutil.rmtree(contender.out, ignore_errors=True)
    contender.out.mkdir(parents=True)
    seconds = []
    with log.open("wb") as sink:
        for command in contender.commands:
            start = time.perf_counter()
            done = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
            seconds.append(time.perf_counter() - start)
            if done.returncode != 0:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"{contender.name}: {' '.join(map(str, command))} exited with "
                    f"{done.returncode}; the end of its output ({log}):\n{tail}"
                )
    return seconds, contender.check(contender.out)


def measure(
    contenders: Sequence[Contender],
    *,
    images: int,
    runs: int,
    env: dict[str, str],
    logs: Path,
    echo: Callable[[str], None],
) -> dict[str, dict]:
    """Median over `runs` timed runs of each contender, every output checked.

    One untimed warm-up each, then `runs` rounds that run every contender once in turn. Taking
    turns matters on a shared machine: a spell of load elsewhere then slows all contenders
    alike instead of whichever happened to be running, which would skew the ratios.
    """
    logs_of = {c.name: logs / f"{c.name}.log" for c in contenders}
    for contender in contenders:
        echo(f"{contender.name}: warm-up run")
        run_timed(contender, env, logs_of[contender.name])
    steps: dict[str, list[list[float]]] = {c.name: [] for c in contenders}
    for i in range(runs):
        for contender in contenders:
            seconds, found = run_timed(contender, env, logs_of[contender.name])
            if found != images:
                raise RuntimeError(
                    f"{contender.name}: output holds {found} images, expected {images}"
                )
            steps[contender.name].append(seconds)
            echo(f"{contender.name}: run {i + 1}/{runs}: {sum(seconds):.2f} s")
    results = {}
    for contender in contenders:
        totals = [sum(seconds) for seconds in steps[contender.name]]
        median = statistics.median(totals)
        results[contender.name] = {
            "seconds": median,
            "images_per_s": images / median,
            "runs_s": totals,
            "steps_median_s": [statistics.median(s)
                               for s in zip(*steps[contender.name], strict=True)],
            "commands": [[str(part) for part in c] for c in contender.commands],
        }
    return results


def import_contender(name: str, source: Path | str, out: Path, engine: str,
                     prefetch: int = 0, flags: Sequence[str] = ()) -> Contender:
    """`odplug data.import` of `source` (a folder or a bucket URL) on `engine` into `out/name`;
    with `prefetch`, that many images fetched at once from a bucket (``ODPLUG_PREFETCH``: 1
    is the import without `odplug.storage.mount.prefetched`)."""
    command: list[str | os.PathLike] = [
        *(["env", f"ODPLUG_PREFETCH={prefetch}"] if prefetch else []),
        Path(sys.executable).parent / "odplug", "data.import", "--source", source,
        "--out", out / name, *flags]
    if engine != "local":
        command += ["--engine", engine]
    return Contender(name, [command], out / name, check_records)


def contenders(project: Path, out: Path, image_bytes: int, engine: str = "local",
               bucket: str = "") -> list[Contender]:
    """The contenders of a benchmark, in the order they take turns; with `bucket` (the
    project's URL there), the engine's import from disk and from the bucket, and cat-bucket."""
    local = import_contender("odplug", project, out, "local")
    python = sys.executable
    if bucket:
        disk = local if engine == "local" else import_contender(f"odplug-{engine}", project,
                                                                out, engine)
        project_bytes = sum(p.stat().st_size for p in project.rglob("*") if p.is_file())

        def check_cat_bucket(folder: Path) -> int:
            written = (folder / "objects.bin").stat().st_size
            if written != project_bytes:
                raise RuntimeError(f"cat-bucket wrote {written} bytes, the project holds "
                                   f"{project_bytes}")
            return len(list(project.glob("*/img/*.jpg")))

        cat_bucket = Contender("cat-bucket", [[python, HERE / "buckets.py", bucket,
                                               out / "cat-bucket" / "objects.bin"]],
                               out / "cat-bucket", check_cat_bucket)
        one_by_one = import_contender(f"{disk.name}-bucket-one-by-one", bucket, out, engine,
                                      prefetch=1)
        return [disk, import_contender(f"{disk.name}-bucket", bucket, out, engine), one_by_one,
                cat_bucket]
    tf_csv = out / "baseline" / "tf_csv"
    baseline_steps: list[Command] = [
        [python, HERE / "baseline_supervisely_to_csv.py", "--src", project, "--dst", tf_csv]
    ]
    for split in SPLIT_TAGS:
        baseline_steps.append(
            [
                python,
                HERE / "baseline_csv_to_tfrecord.py",
                f"--csv_input={tf_csv / f'{split}.csv'}",
                f"--output_path={out / 'baseline' / 'tf_records' / f'{split}.record'}",
                f"--img_path={tf_csv / 'images' / split}",
                f"--label_map={tf_csv / 'label_map.pbtxt'}",
            ]
        )

    def check_cat(folder: Path) -> int:
        written = (folder / "images.bin").stat().st_size
        if written != image_bytes:
            raise RuntimeError(f"cat wrote {written} bytes, the images hold {image_bytes}")
        return len(list(project.glob("*/img/*.jpg")))

    cat = Contender("cat", [["bash", "-c", CAT_SCRIPT, "cat", project,
                             out / "cat" / "images.bin"]], out / "cat", check_cat)
    if engine == "beam":
        return [local, import_contender("odplug-beam", project, out, engine), cat]
    return [local, import_contender("odplug-no-pictures", project, out, "local",
                                    flags=["--no-pictures"]),
            Contender("baseline", baseline_steps, out / "baseline", check_records), cat]


def results_file(engine: str, bucket: bool) -> str:
    """``convert-results.json``, or with the variant's words (``convert-beam-bucket-...``)."""
    words = [*([engine] if engine != "local" else []), *(["bucket"] if bucket else [])]
    return RESULTS_FILE if not words else f"convert-{'-'.join(words)}-results.json"


def report(results: dict, echo: Callable[[str], None]) -> None:
    d = results["dataset"]
    echo(
        f"\n{d['images']} images, {d['total_mb']:.1f} MB ({d['mean_image_kb']:.0f} KB/image), "
        f"{results['machine']['cores']} cores"
    )
    width = max(12, *(len(name) + 2 for name in results["measurements"]))
    for name, m in results["measurements"].items():
        echo(f"  {name:<{width}}{m['seconds']:8.2f} s {m['images_per_s']:9.1f} images/s")
    labels = {key: key.replace("_vs_", " / ") for key in results["ratios"]}
    column = max([18, *(len(label) + 2 for label in labels.values())])
    for key, r in results["ratios"].items():
        verdict = ("" if "target" not in r
                   else f"  target >= {r['target']}: {'met' if r['met'] else 'NOT met'}")
        echo(f"  {labels[key]:<{column}}{r['value']:6.2f}x{verdict}")


def run(
    *,
    images: int = 2000,
    runs: int = 5,
    workdir: Path = Path("bench/work"),
    engine: str = "local",
    bucket: bool = False,
    latency_ms: int = 0,
    echo: Callable[[str], None] = print,
) -> dict:
    """Generate (or reuse) the project, time odplug, odplug-no-pictures, the baseline and cat
    (with ``engine="beam"``: odplug, odplug-beam and cat; with ``bucket=True``: the engine's
    import from disk and from a moto bucket); report and save.

    :returns: the results also written to ``workdir/convert-results.json`` (with the Beam
        engine ``convert-beam-results.json``, from a bucket ``convert-bucket-results.json``
        or ``convert-beam-bucket-results.json``).
    """
    if images < 5 or runs < 1:
        raise OdplugError(
            f"images must be at least 5 (every fifth is a test image, and the baseline needs "
            f"both splits) and runs at least 1; got images={images}, runs={runs}"
        )
    odplug = Path(sys.executable).parent / "odplug"
    if not odplug.exists():
        raise OdplugError(
            f"{odplug} not found: install odplug into this environment "
            "(pip install -e .) to benchmark it"
        )
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    project, summary = ensure_project(workdir, ProjectSpec(images=images), echo=echo)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out, logs = workdir / "out", workdir / "logs"
    logs.mkdir(exist_ok=True)

    if engine not in ENGINES:
        raise OdplugError(f"engine {engine!r}: use {' or '.join(ENGINES)}")
    with contextlib.ExitStack() as stack:
        url = ""
        if bucket:
            url, environment = stack.enter_context(project_in_bucket(project, echo,
                                                                     latency_ms))
            env.update(environment)
        load_before = list(os.getloadavg())  # a list, as the saved JSON reads back
        measurements = measure(contenders(project, out, summary["image_bytes"], engine, url),
                               images=images, runs=runs, env=env, logs=logs, echo=echo)
    speed = {name: m["images_per_s"] for name, m in measurements.items()}
    ratios = {}
    for key, target in TARGETS.items():
        if key.split("_vs_")[1] in speed:
            value = speed["odplug"] / speed[key.split("_vs_")[1]]
            ratios[key] = {"value": value, "target": target, "met": value >= target}
    for name in list(speed):  # measurements, no targets
        if name == "odplug-no-pictures":
            for other in ("baseline", "cat"):
                ratios[f"{name}_vs_{other}"] = {"value": speed[name] / speed[other]}
        if name == "odplug-beam" and "odplug" in speed:
            ratios["odplug-beam_vs_odplug"] = {"value": speed[name] / speed["odplug"]}
        if f"{name}-bucket" in speed:
            ratios[f"{name}-bucket_vs_{name}"] = {"value": speed[f"{name}-bucket"] / speed[name]}
            ratios[f"{name}-bucket_vs_cat-bucket"] = {
                "value": speed[f"{name}-bucket"] / speed["cat-bucket"]}
        if f"{name}-bucket-one-by-one" in speed:
            ratios[f"{name}-bucket_vs_{name}-bucket-one-by-one"] = {
                "value": speed[f"{name}-bucket"] / speed[f"{name}-bucket-one-by-one"]}
    results = {
        "dataset": {
            "project": str(project),
            "images": images,
            "total_mb": summary["total_bytes"] / 1e6,
            "image_mb": summary["image_bytes"] / 1e6,
            "mean_image_kb": summary["mean_image_kb"],
            "size": [summary["width"], summary["height"]],
            **({"bucket": url, "bucket_server": "moto (ThreadedMotoServer, 127.0.0.1, "
                "in the benchmark's process)", "latency_ms": latency_ms} if bucket else {}),
        },
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        },
        "runs": runs,
        "measurements": measurements,
        "ratios": ratios,
    }
    report(results, echo)
    saved = workdir / results_file(engine, bucket)
    atomic_write_text(saved, json.dumps(results, indent=2) + "\n")
    echo(f"results: {saved}")
    return results
