"""A local cluster: training with N worker processes on this machine (``--workers N``).

For trying the multi-worker path and for the tests, not for speed: each worker is the plain
training loop (`train`) under a generated ``TF_CONFIG`` on free localhost ports, run as
``python -m odplug_builtins.trainer.launcher``; `cluster` holds what the loop does to take
part. The launcher relays the chief's progress, stops every worker when one fails, and
checks that all of them ended with the same weights. A real cluster sets ``TF_CONFIG`` on
each machine and runs plain ``model.train`` there (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from odplug.components import (
    EventCallback,
    StepCallback,
    TrainingEvent,
    TrainingStatus,
    TrainingValidation,
)
from odplug.errors import OdplugError
from odplug.run import Resume, RunInfo
from odplug_builtins.trainer import cluster
from odplug_builtins.trainer.runfolder import finished

MAX_LOCAL_WORKERS = 16
_ERROR = "odplug: error: "
_EXIT_GRACE_S = 30.0


@dataclass
class LocalRun:
    info: RunInfo
    digests: dict[str, str]
    """Each worker's `cluster.weights_digest` at the end of training."""


def train_locally(workers: int, records: Path, run_dir: Path, *, config: Path | None,
                  overrides: dict[str, object], resume: Resume,
                  on_step: StepCallback, on_event: EventCallback = lambda event: None
                  ) -> LocalRun:
    """Train with `workers` processes on this machine, a generated ``TF_CONFIG`` on free
    localhost ports; the chief's steps reach `on_step` and its events `on_event`. A finished
    run that ``--resume`` cannot take further starts no worker (`runfolder.finished`).

    Each worker gets ``cores // workers`` threads (at least one), so the workers share the
    machine rather than each assuming it has all of it, and no GPU (one machine's GPUs train
    together under MirroredStrategy, without --workers). A worker that fails stops them all
    with one line naming it and the last line it wrote to stderr. Every worker must end with
    the same weights: a difference is a bug in the strategy's use and fails the run.
    """
    if not 2 <= workers <= MAX_LOCAL_WORKERS:
        raise OdplugError(f"--workers {workers}: give 2 to {MAX_LOCAL_WORKERS} local workers "
                          "(1 trains in this process, without a cluster)")
    done = finished(run_dir, overrides, resume)
    if done is not None:
        on_event(TrainingStatus(done))
        return LocalRun(info=RunInfo.read(run_dir), digests={})
    addresses = [f"localhost:{port}" for port in _free_ports(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    spec = {"records": str(records), "run": str(run_dir),
            "config": None if config is None else str(config),
            "overrides": overrides, "resume": resume, "threads": threads}
    on_event(TrainingStatus(f"starting {workers} local workers ({threads} threads each) "
                            f"on {', '.join(addresses)}"))
    with tempfile.TemporaryDirectory(prefix="odplug-workers-") as scratch:
        processes, stderr_files = [], []
        try:
            for index in range(workers):
                stderr = Path(scratch) / f"worker-{index}.stderr"
                stderr_files.append(stderr)
                processes.append(_start_worker(index, addresses, spec, stderr))
            digests = _watch(processes, stderr_files, on_step, on_event)
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
           cluster.REPORTS: "1", "PYTHONUNBUFFERED": "1"}
    with stderr.open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "odplug_builtins.trainer.launcher", "--index", str(index),
             "--spec", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env,
            text=True, start_new_session=True)


def _watch(processes: list[subprocess.Popen[str]], stderr_files: list[Path],
           on_step: StepCallback, on_event: EventCallback) -> dict[str, str]:
    """Relay the chief's steps and events until every worker has ended; the workers'
    digests."""
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
                elif "event" in message:
                    on_event(event_from_json(message["event"]))
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


def event_to_json(event: TrainingEvent) -> dict[str, Any]:
    """A training event as a worker sends it to its launcher (`event_from_json` reads it)."""
    kind = "status" if isinstance(event, TrainingStatus) else "validation"
    return {"kind": kind, **asdict(event)}


def event_from_json(document: dict[str, Any]) -> TrainingEvent:
    fields = {key: value for key, value in document.items() if key != "kind"}
    if document["kind"] == "status":
        return TrainingStatus(**fields)
    return TrainingValidation(**fields)


def _read_messages(stream: IO[str] | None, messages: queue.Queue[dict[str, Any]]) -> None:
    for line in stream or ():
        if line.startswith(cluster.MESSAGE):
            messages.put(json.loads(line[len(cluster.MESSAGE):]))


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


def _worker(argv: list[str]) -> int:
    """One worker process of `train_locally` (``TF_CONFIG`` is in its environment)."""
    parser = argparse.ArgumentParser(prog="odplug_builtins.trainer.launcher")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--spec", required=True)
    options = parser.parse_args(argv)
    spec = json.loads(options.spec)
    logging.basicConfig(level=logging.INFO, format=f"worker {options.index}: %(message)s")
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
        # here, not at the top: starting workers (`train_locally`) needs no TensorFlow
        from odplug_builtins.trainer.train import train

        chief = cluster.role().chief
        train(Path(spec["records"]), Path(spec["run"]),
              config_path=None if spec["config"] is None else Path(spec["config"]),
              overrides=spec["overrides"], resume=spec["resume"],
              on_step=(lambda step, total, metrics: cluster.tell_launcher(
                  {"step": step, "total": total, "metrics": metrics})) if chief
              else (lambda step, total, metrics: None),
              on_event=(lambda event: cluster.tell_launcher({"event": event_to_json(event)}))
              if chief else (lambda event: None))
    except OdplugError as error:
        print(f"{_ERROR}{error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
