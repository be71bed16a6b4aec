"""Several workers, one run: who writes what, how the input is split, and a local cluster.

Under MultiWorkerMirroredStrategy (``TF_CONFIG`` names a cluster) every worker runs the same
training loop on its part of the data and the gradients are summed across all of them, so
every worker holds the same weights after every step. The run folder lives on storage all
workers share, and only the chief writes it: the config, label map, ``run.json``, TensorBoard
logs, validation (the best checkpoint), test metrics, the weights files and the SavedModel.
Each other worker trains into a scratch folder of its own and deletes it at the end: saving a
checkpoint or a SavedModel is a collective step that every worker must take (TensorFlow's
documented pattern is that non-chief workers save to a temporary folder), and pointing the
whole loop at a scratch folder keeps every other write of a non-chief worker out of the run.

Evaluation runs the Keras model outside ``strategy.run`` (a plain call, reading each mirrored
variable's local copy), so it uses no collective op and the chief alone does it while the
others wait at the next step's gradient sum.

`train_locally` starts a cluster of N worker processes on this machine, for trying the path
and for the tests; a real cluster sets ``TF_CONFIG`` on each machine and runs plain
``model.train`` there (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from odplug.components import StepCallback
from odplug.errors import OdplugError
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer.config import Config, load_config
from odplug_builtins.trainer.runfolder import RunFolder

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

MAX_LOCAL_WORKERS = 16
_MESSAGE = "odplug-worker: "  # a worker's stdout lines that its launcher reads
_ERROR = "odplug: error: "
_EXIT_GRACE_S = 30.0


@dataclass(frozen=True)
class Role:
    """This process's place in the cluster ``TF_CONFIG`` describes (alone: the chief of one)."""

    chief: bool
    name: str
    index: int
    """This worker's place among all of them, 0 to ``workers - 1`` (the chief's is 0)."""
    workers: int


def role(environ: Mapping[str, str] = os.environ) -> Role:
    """The role `TF_CONFIG` gives this process, by TensorFlow's rule: the ``chief`` task if the
    cluster has one, else ``worker`` 0, is the chief."""
    text = environ.get("TF_CONFIG", "")
    if not text:
        return Role(chief=True, name="chief", index=0, workers=1)
    try:
        described = json.loads(text)
        cluster, task = described["cluster"], described["task"]
        kind, index = str(task["type"]), int(task["index"])
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise OdplugError(f"TF_CONFIG is not a cluster description ({error!r}): it needs "
                          '{"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}'
                          ) from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    place = index + (1 if kind == "worker" and "chief" in cluster else 0)
    return Role(chief=chief, name=f"{kind} {index}", index=place, workers=workers)


@contextlib.contextmanager
def own_folder(run: RunFolder, me: Role) -> Iterator[RunFolder]:
    """The folder this process writes: the run itself for the chief, a scratch folder (removed
    afterwards, whatever happens) for every other worker."""
    if me.chief:
        yield run
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"odplug-{me.name.replace(' ', '-')}-"))
    try:
        yield RunFolder(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def follow(run: RunFolder, config_path: Path | None, overrides: dict[str, Any],
           resume: Resume) -> Config:
    """A non-chief worker's config, read without touching the run folder, which is the
    chief's to decide on (`runfolder.start`). Whether it resumes is the chief's word
    (`chief_decides`)."""
    if resume == "required":
        return load_config(run.config, overrides)
    return load_config(config_path, overrides)


def chief_decides(strategy: tf.distribute.Strategy, me: Role, value: bool) -> bool:
    """The chief's `value`, on every worker: whether the run resumes is decided once."""
    if me.workers == 1:
        return value
    import tensorflow as tf

    flag = tf.constant(1.0 if me.chief and value else 0.0)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: flag), axis=None)
    return bool(total.numpy() > 0)


def my_files(files: Sequence[Path], me: Role) -> tuple[list[Path], bool]:
    """The train files this worker reads, and whether they are its own share.

    With at least as many files as workers, each worker reads every ``workers``-th file from
    its own `Role.index` on and nothing else. With fewer, every worker reads all of them and
    the distributed dataset keeps its share of the elements (`split_by_data`). The files are
    split here rather than by tf.data's ``AutoShardPolicy.FILE``, which refuses the pipeline:
    its element index (``enumerate``, the augmentation's seed) is a source that is no file.
    """
    if me.workers == 1:
        return list(files), True
    if len(files) >= me.workers:
        log.info("%d train files over %d workers: each worker reads only its own",
                 len(files), me.workers)
        return list(files[me.index::me.workers]), True
    log.warning("%d train file(s) for %d workers: every worker reads all of them and keeps its "
                "share of the images (data.import --shards %d lets each read only its own)",
                len(files), me.workers, me.workers)
    return list(files), False


def split_by_data(dataset: tf.data.Dataset, own_files: bool) -> tf.data.Dataset:
    """`dataset` with the sharding `my_files` chose: none left to do when each worker reads
    its own files, else each keeps every ``workers``-th element (``AutoShardPolicy.DATA``)."""
    import tensorflow as tf

    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.OFF if own_files else policy.DATA
    return dataset.with_options(options)


def synchronise_batchnorm(model: keras.Model, replicas: int) -> None:
    """Make every BatchNormalization layer of `model` normalise by the statistics of the global
    batch when several replicas train it.

    Keras' BatchNormalization keeps one copy of its moving mean and variance per replica and
    updates each from that replica's images alone (their aggregation is NONE): after training,
    the copies differ from worker to worker, and the chief would export statistics of its share
    of the data. Synchronised, every replica normalises by, and averages in, the same global
    statistics, so the workers' weights stay identical and a step is the one-device step on the
    global batch; the price is one small all-reduce per layer and step.
    """
    if replicas == 1:
        return
    import keras

    def walk(layers: list[keras.Layer]) -> None:
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
            elif isinstance(layer, keras.Model):
                walk(layer.layers)

    walk(model.layers)


def all_done(strategy: tf.distribute.Strategy, me: Role) -> None:
    """Wait here until every worker is here: the end of training for all of them at once.

    The chief goes on alone after the last step (the test split, the SavedModel). A worker
    that ended meanwhile would stop answering the cluster's heartbeats, and workers that end
    far apart fail TensorFlow's shutdown barrier, hanging the later ones at exit.
    """
    chief_decides(strategy, me, True)


def check_batch(batch_size: int, replicas: int) -> None:
    if batch_size < replicas:
        raise OdplugError(f"train.batch_size = {batch_size} is smaller than the {replicas} "
                          "replicas training together: each needs at least one image (the "
                          "batch size is the global batch, split across them)")


def check_budget(minutes: float, me: Role) -> None:
    """A time budget (``train.minutes``) needs one clock: each worker would estimate its own
    step count (the chief, which validates, fewer than the others) and the workers would wait
    for each other's gradient sums at different last steps, for ever."""
    if minutes and me.workers > 1:
        raise OdplugError(f"train.minutes = {minutes:g} with {me.workers} workers: each worker "
                          "would time its own step count; give train.steps instead")


def share_of_global_batch(losses: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """This replica's share of the losses of the global batch; summed over the replicas (as
    the optimizer sums their gradients, and as the step reports them) they are exactly the
    losses one device computes on the whole global batch.

    `DetectionLoss` divides its sums by the positive anchors of the batch it sees. A replica
    sees only its part of the global batch, so dividing each part by its own positives and
    averaging the replicas (``loss / replicas``) weighs a positive in a part with few of them
    more than one in a part with many, and the step is not the one-device step. Here each
    replica's sums are divided by the positives of the whole global batch instead.
    """
    import tensorflow as tf

    positives = losses["positives"]
    everywhere = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, positives)
    scale = tf.maximum(positives, 1.0) / tf.maximum(everywhere, 1.0)
    return {**{k: v * scale for k, v in losses.items() if k != "positives"},
            "positives": positives}


def clipped_global_gradients(grads: list[tf.Tensor], clip_norm: float | tf.Tensor,
                             replicas: int) -> list[tf.Tensor]:
    """The global batch's gradients clipped to `clip_norm` (global norm), as this replica's
    share: the optimizer sums the shares of all replicas.

    Keras' optimizer clips the gradients it is given before it sums them across replicas, so
    with ``global_clipnorm`` each replica's share would be clipped on its own and the sum could
    reach ``replicas`` times the limit. The norm that counts is the sum's, so the sum is taken
    here first (one more all-reduce per step, only when several replicas train) and the
    optimizer is built without clipping (`train.build_optimizer`).
    """
    import tensorflow as tf

    total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    clipped, _ = tf.clip_by_global_norm(total, clip_norm)
    return [g / replicas for g in clipped]


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of every weight of `model` (trainable or not), in order: equal on two workers
    exactly when they hold the same model."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def report(me: Role, model: keras.Model) -> None:
    """Tell a launcher (`train_locally`) which weights this worker ended with."""
    if me.workers > 1 and os.environ.get("ODPLUG_WORKER_REPORTS"):
        _say({"worker": me.name, "weights": weights_digest(model)})


# ---------------------------------------------------------------------------------------------
# A local cluster: N worker processes on this machine.


@dataclass
class LocalRun:
    info: RunInfo
    digests: dict[str, str]
    """Each worker's `weights_digest` at the end of training."""


def train_locally(workers: int, records: Path, run_dir: Path, *, config: Path | None,
                  overrides: dict[str, object], resume: Resume,
                  on_step: StepCallback) -> LocalRun:
    """Train with `workers` processes on this machine, a generated ``TF_CONFIG`` on free
    localhost ports; the chief's progress reaches `on_step`.

    Each worker gets ``cores // workers`` threads (at least one), so the workers share the
    machine rather than each assuming it has all of it, and no GPU (one machine's GPUs train
    together under MirroredStrategy, without --workers). A worker that fails stops them all
    with one line naming it and the last line it wrote to stderr. Every worker must end with
    the same weights: a difference is a bug in the strategy's use and fails the run.
    """
    if not 2 <= workers <= MAX_LOCAL_WORKERS:
        raise OdplugError(f"--workers {workers}: give 2 to {MAX_LOCAL_WORKERS} local workers "
                          "(1 trains in this process, without a cluster)")
    addresses = [f"localhost:{port}" for port in _free_ports(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    spec = {"records": str(records), "run": str(run_dir),
            "config": None if config is None else str(config),
            "overrides": overrides, "resume": resume, "threads": threads}
    log.info("starting %d local workers (%d threads each) on %s", workers, threads,
             ", ".join(addresses))
    with tempfile.TemporaryDirectory(prefix="odplug-workers-") as scratch:
        processes, stderr_files = [], []
        try:
            for index in range(workers):
                stderr = Path(scratch) / f"worker-{index}.stderr"
                stderr_files.append(stderr)
                processes.append(_start_worker(index, addresses, spec, stderr))
            digests = _watch(processes, stderr_files, on_step)
        finally:
            for process in processes:
                _stop(process)
    if len(set(digests.values())) != 1:
        raise OdplugError(f"the {workers} workers ended with different weights ({digests}): "
                          f"the run in {run_dir} is not to be trusted")
    return LocalRun(info=RunInfo.read(run_dir), digests=digests)


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports free on localhost now (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("localhost", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _start_worker(index: int, addresses: list[str], spec: dict[str, Any], stderr: Path
                  ) -> subprocess.Popen[str]:
    threads = str(spec["threads"])
    env = {**os.environ,
           "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                    "task": {"type": "worker", "index": index}}),
           "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
           "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": "-1",
           "ODPLUG_WORKER_REPORTS": "1", "PYTHONUNBUFFERED": "1"}
    with stderr.open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "odplug_builtins.trainer.cluster", "--index", str(index),
             "--spec", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env,
            text=True, start_new_session=True)


def _watch(processes: list[subprocess.Popen[str]], stderr_files: list[Path],
           on_step: StepCallback) -> dict[str, str]:
    """Relay the chief's steps until every worker has ended; the workers' digests."""
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    readers = [threading.Thread(target=_read_messages, args=(p.stdout, messages), daemon=True)
               for p in processes]
    for reader in readers:
        reader.start()
    digests: dict[str, str] = {}

    def relay(wait: float) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                message = messages.get(timeout=wait)
                if "step" in message:
                    on_step(message["step"], message["total"], message["metrics"])
                else:
                    digests[message["worker"]] = message["weights"]

    while processes[0].poll() != 0:
        relay(0.2)
        for index, process in enumerate(processes):
            code = process.poll()
            if code not in (None, 0):
                raise OdplugError(f"worker {index} failed ({_how(code)}): "
                                  f"{_last_line(stderr_files[index])}; the other workers "
                                  "were stopped")
    # The chief is done, so every worker has passed `all_done`: what is left is their exit.
    deadline = time.monotonic() + _EXIT_GRACE_S
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        relay(0.2)
    for reader in readers:
        reader.join(timeout=1)
    relay(0)
    missing = [f"worker {i}" for i in range(len(processes)) if f"worker {i}" not in digests]
    if missing:
        raise OdplugError(f"{', '.join(missing)} never reported its final weights: "
                          f"{_last_line(stderr_files[int(missing[0].split()[1])])}")
    return digests


def _read_messages(stream: IO[str] | None, messages: queue.Queue[dict[str, Any]]) -> None:
    for line in stream or ():
        if line.startswith(_MESSAGE):
            messages.put(json.loads(line[len(_MESSAGE):]))


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _last_line(stderr: Path) -> str:
    lines = [line.strip() for line in stderr.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1].removeprefix(_ERROR) if lines else "nothing on stderr"


def _stop(process: subprocess.Popen[str]) -> None:
    """End a worker and everything it started (its own session), if it is still running."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _say(message: dict[str, Any]) -> None:
    print(_MESSAGE + json.dumps(message), flush=True)


def _worker(argv: list[str]) -> int:
    """One worker process of `train_locally` (``TF_CONFIG`` is in its environment)."""
    parser = argparse.ArgumentParser(prog="odplug_builtins.trainer.cluster")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--spec", required=True)
    options = parser.parse_args(argv)
    spec = json.loads(options.spec)
    logging.basicConfig(level=logging.INFO, format=f"worker {options.index}: %(message)s")
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
        from odplug_builtins.trainer.train import train

        chief = role().chief
        train(Path(spec["records"]), Path(spec["run"]),
              config_path=None if spec["config"] is None else Path(spec["config"]),
              overrides=spec["overrides"], resume=spec["resume"],
              on_step=(lambda step, total, metrics: _say(
                  {"step": step, "total": total, "metrics": metrics})) if chief
              else (lambda step, total, metrics: None))
    except OdplugError as error:
        print(f"{_ERROR}{error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
