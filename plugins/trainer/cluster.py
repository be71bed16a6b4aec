"""Several workers, one run: who writes what, how the input is split, how the step is shared.

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

A worker takes part through the training loop (`train`) that imports this module; what
starts a cluster of N worker processes on this machine is `launcher`. A real cluster sets
``TF_CONFIG`` on each machine and runs plain ``model.train`` there (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odplug.errors import OdplugError
from odplug.run import Resume
from odplug_builtins.trainer.config import Config, load_config
from odplug_builtins.trainer.runfolder import RunFolder

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

MESSAGE = "odplug-worker: "
"""Starts the lines of a worker's stdout that its launcher reads (`launcher.train_locally`)."""
REPORTS = "ODPLUG_WORKER_REPORTS"
"""Set in a worker's environment when a launcher reads its reports (`report`)."""


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
    optimizer is built without clipping (`learner.build_optimizer`).
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
    """Tell a launcher (`launcher.train_locally`) which weights this worker ended with."""
    if me.workers > 1 and os.environ.get(REPORTS):
        tell_launcher({"worker": me.name, "weights": weights_digest(model)})


def tell_launcher(message: dict[str, Any]) -> None:
    """One line of this worker's stdout that its launcher reads (`MESSAGE`)."""
    print(MESSAGE + json.dumps(message), flush=True)
