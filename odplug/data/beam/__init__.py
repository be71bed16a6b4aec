"""``data.import --engine beam``: the writing half of an import as an Apache Beam pipeline.

The driver does what the local engine does first, in this process: the importer lists the
samples, the checks that need no image run, the split is decided (`odplug.data.convert`).
Then, instead of the local process pool (`odplug.data.shards`), a Beam pipeline reads, checks
and encodes every image in parallel workers with the same per-sample functions (`prepare`,
`encode_example`), writes the shards with Beam's own TFRecord sink under odplug's names, and
combines the report from every worker. The pipeline writes into the staging folder the core
gives every writer, so the output is still published whole by the same swap.

Why a separate Python: Apache Beam pins protobuf below 7 and python-dateutil below 3, and
odplug's TensorFlow needs protobuf 7, so Beam cannot live in the main environment (``pip
install --dry-run apache-beam`` there would downgrade both). The pipeline (`pipeline`) imports
only what ``.venv-beam`` holds: Beam, and odplug's TensorFlow-free dataset path (odplug is
installed there with ``--no-deps``, its few light dependencies pinned in
``dockerfiles/requirements/beam.txt``). This module runs in the main environment and imports
no Beam: it hands the job over in files and runs the pipeline as a subprocess
(``python -m odplug.data.beam``), as the tfjs exporter runs its converter.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from odplug.components import Verify, WriteJob, side_python
from odplug.data.parallel import default_workers
from odplug.data.shards import auto_shard_count
from odplug.dataset_report import Report
from odplug.errors import OdplugError, UsageError
from odplug.labels import LabelMap
from odplug.samples import Sample
from odplug.storage.mount import registered
from odplug.storage.urls import filesystem, is_url, remove_quietly, storage_errors

ENGINES = ("local", "beam")
REPO = Path(__file__).resolve().parents[3]
"""The checkout's root when odplug runs from one (odplug/data/beam/ -> the repository)."""
PYTHON_ENV = "ODPLUG_BEAM_PYTHON"
SETUP = ("python3 -m venv .venv-beam && .venv-beam/bin/pip install "
         "-r dockerfiles/requirements/beam.txt && .venv-beam/bin/pip install --no-deps -e . "
         f"(setup.sh does it), or set {PYTHON_ENV} to a Python that has apache-beam and odplug")
JOB_FOLDER = ".odplug-beam-job"
"""Inside the staging folder, deleted before the swap: the workers must reach the output
folder anyway, so they can read the job there; its name is hidden like every odplug
temporary."""
PROGRESS = "odplug-progress"
"""How a worker's line of progress starts (`pipeline.say_progress`): ``odplug-progress 20``."""
CHUNK = 1000
"""Samples per job file: the pipeline reads the chunks in parallel, so a million-image import
does not put every sample into the pipeline's graph (Dataflow refuses graphs over 10 MB)."""
NO_BEAM = 3
"""The pipeline's exit status when apache_beam cannot be imported."""


@dataclass(frozen=True)
class BeamJob:
    """What the pipeline needs besides the samples, pickled as ``job.pickle``."""

    label_map: LabelMap
    verify: Verify
    shards: dict[str, int]
    """Shards per split, decided on the driver as the local engine decides them."""
    out: str
    chunks: list[str]
    report: str
    mounts: dict[str, str] = field(default_factory=dict)
    """Mirror folder -> bucket URL of a dataset in a bucket (`odplug.storage.mount`): a worker
    on another machine has no mirror, and reads each image from its URL."""


def beam_flags(options: str | Sequence[str] | Mapping[str, object] | None) -> list[str]:
    """Beam pipeline options as its own command-line flags: ``KEY=VALUE`` or a bare ``KEY``
    (a switch), each one option, never split at commas (``experiments=a,b`` is one value);
    a mapping's True is a switch. ``runner=DataflowRunner`` -> ``--runner=DataflowRunner``."""
    if isinstance(options, Mapping):
        items = [key if value is True else f"{key}={value}" for key, value in options.items()]
    elif isinstance(options, str):
        items = [options]
    else:
        items = list(options or [])
    flags = []
    for item in items:
        text = str(item).strip().lstrip("-")
        key = text.partition("=")[0]
        if not key or not key.replace("_", "").isalnum():
            raise UsageError(f"--beam-option {item!r}: write it as KEY=VALUE or KEY, a Beam "
                             "pipeline option such as runner=DataflowRunner")
        flags.append(f"--{text}")
    return flags


def check_engine(engine: str, writer: str, flags: Sequence[str]) -> None:
    """Refuse, before anything is read, an engine that does not exist, Beam with a writer it
    does not have, Beam options without Beam, and a missing Beam environment."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "local":
        if flags:
            raise UsageError("--beam-option: only with --engine beam")
        return
    if writer != "tfrecord":
        raise UsageError(f"--engine beam writes TFRecords (--to tfrecord), not {writer}; "
                         "import with the local engine for other formats")
    beam_python()


def beam_python() -> Path:
    """The interpreter that has apache-beam and odplug: $ODPLUG_BEAM_PYTHON, else
    ``.venv-beam`` in this checkout or the current folder, else this one if it has Beam."""
    found = side_python(PYTHON_ENV, ".venv-beam", REPO, SETUP)
    if found is not None:
        return found
    if importlib.util.find_spec("apache_beam") is not None:
        return Path(sys.executable)
    raise OdplugError(f"--engine beam needs Apache Beam in its own environment: {SETUP}")


def write_on_beam(job: WriteJob, flags: Sequence[str], remote: str | None = None) -> Report:
    """Write `job` (TFRecords into its staging folder) with the Beam pipeline; the report
    combined from every worker. Shard counts are the local engine's, so are the file names.
    The options are Beam's own; without any, Beam's DirectRunner runs the pipeline in one
    process. That is also the fastest DirectRunner here: on the 2,000-image benchmark on 2 cores
    it took 11.3 s, against 16.1 s with two worker processes (``direct_running_mode=
    multi_processing``, whose workers start slower and get every image's bytes over gRPC) and
    17.2 s with two threads (docs/development.md, "Benchmarks").

    With `remote` (the output's staging prefix in its bucket, `odplug.storage.publish`), the
    job files and the shards go there instead of `job.out`, where a runner's workers on other
    machines (Dataflow's) reach them; the import then publishes them from there. Only the
    pipeline's log stays on this machine."""
    python = beam_python()
    workers = job.workers or default_workers()
    local = job.out / JOB_FOLDER if remote is None else Path(tempfile.mkdtemp(
        prefix="odplug-beam-job-"))
    local.mkdir(parents=True, exist_ok=True)
    folder = str(local) if remote is None else f"{remote}/{JOB_FOLDER}"
    try:
        chunks = _write_chunks(job.splits, local)
        beam_job = BeamJob(
            label_map=job.label_map, verify=job.verify,
            shards={split: min(job.shards or auto_shard_count(samples, workers), len(samples))
                    for split, samples in job.splits.items() if samples},
            out=str(job.out) if remote is None else remote,
            chunks=[f"{folder}/{Path(chunk).name}" for chunk in chunks],
            report=f"{folder}/report.pickle", mounts=registered())
        (local / "job.pickle").write_bytes(pickle.dumps(beam_job))
        if remote is not None:
            _upload(local, folder)
        total = sum(len(samples) for samples in job.splits.values())
        shown = _Progress(job.progress, total)
        _run_pipeline(python, folder, flags, local, shown.line)
        report: Report = pickle.loads(_read(beam_job.report))
    finally:
        shutil.rmtree(local, ignore_errors=True)
        if remote is not None:
            remove_quietly(folder)  # what is left goes with the staging prefix
    shown.finish()
    return report


class _Progress:
    """The workers' lines of progress (`PROGRESS`) as the import's bar, never past `total`
    (a bundle that a runner retries reports its images again); the rest when it is done."""

    def __init__(self, progress: Callable[[int], None], total: int) -> None:
        self.progress, self.total, self.shown = progress, total, 0

    def line(self, text: str) -> None:
        word, _, number = text.strip().partition(" ")
        if word == PROGRESS and number.isdigit():
            step = min(int(number), self.total - self.shown)
            if step > 0:
                self.shown += step
                self.progress(step)

    def finish(self) -> None:
        if self.total > self.shown:
            self.progress(self.total - self.shown)
            self.shown = self.total


def _upload(local: Path, url: str) -> None:
    fs, key = filesystem(url)
    files = sorted(p for p in local.iterdir() if p.is_file())
    with storage_errors(url, "uploading the Beam job"):
        fs.put([str(p) for p in files], [f"{key}/{p.name}" for p in files])


def _read(path: str) -> bytes:
    if not is_url(path):
        return Path(path).read_bytes()
    fs, key = filesystem(path)
    with storage_errors(path, "reading the Beam pipeline's report"):
        return bytes(fs.cat_file(key))


def _write_chunks(splits: dict[str, list[Sample]], folder: Path) -> list[str]:
    """The samples as (split, sample) pairs in files of `CHUNK`; their paths."""
    pairs = [(split, sample) for split, samples in splits.items() for sample in samples]
    paths = []
    for start in range(0, len(pairs), CHUNK):
        path = folder / f"samples-{start // CHUNK:05d}.pickle"
        path.write_bytes(pickle.dumps(pairs[start:start + CHUNK]))
        paths.append(str(path))
    return paths


def _run_pipeline(python: Path, folder: str, flags: Sequence[str], local: Path,
                  on_line: Callable[[str], None] = lambda line: None) -> None:
    """Run ``python -m odplug.data.beam`` on the job in `folder` (a path or a URL); its
    output goes to a log in `local`, each line also to `on_line` as it comes (the workers'
    progress), the last line the error when the pipeline fails, the whole log then kept in a
    temporary file."""
    log = local / "pipeline.log"
    env = dict(os.environ)
    if (REPO / "pyproject.toml").is_file():  # a checkout: the pipeline runs this very odplug
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log.open("wb") as sink:
        pipeline = subprocess.Popen([str(python), "-m", "odplug.data.beam", folder, *flags],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert pipeline.stdout is not None
            for raw in pipeline.stdout:
                sink.write(raw)
                on_line(raw.decode(errors="replace"))
        finally:
            if pipeline.poll() is None:  # Ctrl-C or an error in on_line: no orphan pipeline
                pipeline.kill()
            pipeline.wait()
    done = pipeline
    if done.returncode == NO_BEAM:
        raise OdplugError(f"{python} has no apache_beam package: {SETUP}")
    if done.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if line.strip() and not line.startswith(PROGRESS)]
        kept = Path(tempfile.mkstemp(prefix="odplug-beam-", suffix=".log")[1])
        shutil.copyfile(log, kept)  # the job folder goes with the staging folder
        last = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise OdplugError(f"the Beam pipeline failed: {last}; the output is unchanged (the "
                          f"pipeline's whole output: {kept})")
