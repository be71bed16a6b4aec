"""How long the ssd trainer trains, what it keeps, and that a seed gives the same run twice.

The schedule and the time budget are checked against Keras' own schedule and a simulated
clock; the weight average against its formula; reproducibility and the learning curve on real
(tiny) runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from odplug.errors import OdplugError
from odplug_builtins.trainer.config import TrainConfig, load_config
from odplug_builtins.trainer.ema import WeightAverage
from odplug_builtins.trainer.schedule import StepBudget, WarmupCosine, mosaic_closes
from tests.plugins.trainer import test_trainer
from tests.plugins.trainer.common import TINY

records = test_trainer.records  # the tiny demo records fixture, made once per module


def test_the_schedule_is_keras_cosine_decay_with_warmup_for_a_fixed_length() -> None:
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=2e-5, decay_steps=850, alpha=0.01, warmup_target=2e-3,
        warmup_steps=150)
    ours = WarmupCosine(2e-3, 150, tf.Variable(1000, dtype=tf.int64))
    for step in (0, 1, 75, 149, 150, 151, 500, 999, 1000, 1200):
        assert float(ours(step)) == pytest.approx(float(keras_schedule(step)), rel=1e-5), step


def test_the_schedule_follows_its_length_variable() -> None:
    total = tf.Variable(1000, dtype=tf.int64)
    schedule = WarmupCosine(1e-2, 10, total)
    assert float(schedule(1000)) == pytest.approx(1e-4)
    total.assign(2000)
    assert float(schedule(1000)) > 4e-3  # half-way down the cosine now
    assert float(schedule(2000)) == pytest.approx(1e-4)


def test_the_schedule_is_built_once_per_traced_graph() -> None:
    """AdamW asks for the rate once per variable it decays: inside one trace the schedule
    gives the same tensor each time for the same step, which still follows the variables."""
    total = tf.Variable(100, dtype=tf.int64)
    schedule = WarmupCosine(1e-3, 10, total)
    step = tf.Variable(5, dtype=tf.int64)
    same: list[bool] = []

    @tf.function
    def twice() -> tf.Tensor:
        first, second = schedule(step), schedule(step)
        same.append(first is second)
        return first + second

    np.testing.assert_allclose(twice(), 2 * schedule(5), rtol=1e-6)
    step.assign(50)
    total.assign(60)
    np.testing.assert_allclose(twice(), 2 * schedule(50), rtol=1e-6)
    assert same == [True], "traced once, with one schedule in the graph"
    assert schedule(50) is not schedule(50), "eagerly the rate is computed at every call"


def test_a_time_budget_sets_the_step_count_from_the_measured_speed() -> None:
    total = tf.Variable(0, dtype=tf.int64)
    budget = StepBudget(TrainConfig(steps=1000, minutes=1.0), total, resuming=False)
    assert budget.steps == 1000  # until measured
    seen = []
    for step in range(1, 10_000):
        seen.append(budget.update(step, elapsed=step * 0.1 + 5.0))  # 5 s to trace, 0.1 s/step
        if step >= seen[-1]:
            break
    assert seen[-1] == step
    assert 5.0 + 0.1 * step == pytest.approx(60, abs=1.5)  # the run fits the minute
    assert len(set(seen[-int(0.15 * step):])) == 1  # frozen for the last part


def test_a_time_budget_foresees_the_validations_to_come() -> None:
    # 0.1 s a step after 5 s of tracing, and a validation of 3 s every 100 steps and at the end
    budget = StepBudget(TrainConfig(steps=1000, minutes=1.0, eval_every=100),
                        tf.Variable(0, dtype=tf.int64), resuming=False)
    step, total, clock, validations = 0, budget.steps, 5.0, 0
    while step < total:
        step += 1
        clock += 0.1
        total = budget.update(step, clock, validations, 3.0 * validations)
        if step % 100 == 0 or step == total:
            clock += 3.0
            validations += 1
    assert 54.0 <= clock <= 60.0, f"{step} steps and {validations} validations: {clock:.1f} s"


def test_a_time_budget_stops_at_once_when_the_time_is_spent() -> None:
    budget = StepBudget(TrainConfig(minutes=0.01), tf.Variable(0, dtype=tf.int64),
                        resuming=False)
    assert budget.update(10, elapsed=30.0) == 10


def test_without_a_budget_the_steps_are_the_configs_even_on_resume() -> None:
    total = tf.Variable(500, dtype=tf.int64)  # as restored from a checkpoint
    budget = StepBudget(TrainConfig(steps=800), total, resuming=True)
    assert [budget.update(s, elapsed=s * 10.0) for s in (10, 20)] == [800, 800]
    kept = StepBudget(TrainConfig(steps=800, minutes=1), total, resuming=True)
    assert kept.update(10, elapsed=1.0) == 800  # the checkpoint's count, now 800, frozen


def test_the_weight_average_follows_its_ramped_decay_and_swaps_back() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False),
                              keras.layers.BatchNormalization()])
    kernel = model.layers[0].kernel
    kernel.assign([[1.0], [2.0]])
    average = WeightAverage(model, decay=0.5)
    assert len(average.shadows) == 5  # kernel, gamma, beta, moving mean and variance
    kernel.assign([[3.0], [4.0]])
    average.update(tf.constant(1))  # decay min(0.5, 2 / 11)
    d = 2 / 11
    expected = [[d * 1 + (1 - d) * 3], [d * 2 + (1 - d) * 4]]
    np.testing.assert_allclose(average.shadows[0].numpy(), expected, rtol=1e-6)
    average.update(tf.constant(100))  # capped at 0.5
    expected = [[0.5 * expected[0][0] + 1.5], [0.5 * expected[1][0] + 2.0]]
    np.testing.assert_allclose(average.shadows[0].numpy(), expected, rtol=1e-6)
    with average.swapped_in():
        np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), [[3.0], [4.0]])


def _weights(run: Path) -> list[np.ndarray]:
    from odplug_builtins.trainer.train import load_run_model

    model, *_ = load_run_model(run)
    return [w.numpy() for w in model.weights]


SEEDED = {**TINY, "train.steps": 10, "train.eval_every": 5, "train.ema_decay": 0.9,
          "eval.curve_splits": ["test"], "augment.mosaic": 1.0, "augment.mixup": 0.5,
          "augment.close_mosaic": 0.25}
"""The settings of three tiny runs (seeds 5, 5 and 6) that the reproducibility, learning-curve
and close_mosaic tests share: a training costs half a minute of tracing and saving whatever
its steps, so one set of runs answers all three. close_mosaic 0.25 of 10 steps: mosaic and
mixup for steps 1-8, a plain pipeline for 9-10."""


def _seeded_run(records: Path, folder: Path, seed: int) -> dict:
    """One run of `SEEDED`: its folder, run description and steps, and the input pipelines it
    built (seed, mosaic, mixup), recorded where the loop asks `data.train_dataset` for them."""
    from odplug_builtins.trainer import data
    from odplug_builtins.trainer.train import train

    made = data.train_dataset
    built: list[tuple[int, float, float]] = []

    def recorded(files, label_map, model, train_config, augment, **kwargs):  # type: ignore[no-untyped-def]
        built.append((train_config.seed, augment.mosaic, augment.mixup))
        return made(files, label_map, model, train_config, augment, **kwargs)

    steps: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "train_dataset", recorded)
        info = train(records, folder, overrides={**SEEDED, "train.seed": seed},
                     on_step=lambda step, total, metrics: steps.append(step))
    return {"run": folder, "info": info, "steps": steps, "built": built}


@pytest.fixture(scope="module")
def seeded_runs(records: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("seeded")
    return {name: _seeded_run(records, base / name, seed)
            for name, seed in (("a", 5), ("b", 5), ("c", 6))}


def _curve(run: Path) -> list[dict]:
    return json.loads((run / "metrics" / "curve.json").read_text())["points"]


@pytest.mark.slow
def test_the_same_seed_gives_the_same_run_and_another_seed_another(seeded_runs: dict) -> None:
    a, b, c = (seeded_runs[name] for name in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(_weights(a["run"]), _weights(b["run"]),
                                                    strict=True))
    assert a["info"].metrics["test"] == b["info"].metrics["test"]
    assert ([{k: v for k, v in point.items() if k != "seconds"} for point in _curve(a["run"])]
            == [{k: v for k, v in point.items() if k != "seconds"} for point in _curve(b["run"])])
    assert not all(np.array_equal(x, z) for x, z in zip(_weights(a["run"]), _weights(c["run"]),
                                                        strict=True))
    from tensorflow.python.framework import config as tf_config
    assert not tf_config.is_op_determinism_enabled()  # put back after the run


@pytest.mark.slow
def test_the_learning_curve_scores_val_and_curve_splits_at_every_validation(
        seeded_runs: dict) -> None:
    points = _curve(seeded_runs["a"]["run"])
    assert [p["step"] for p in points] == [5, 10]
    assert [p["images"] for p in points] == [20, 40]
    assert all(set(p) == {"step", "seconds", "images", "val", "test"} for p in points)
    assert 0 < points[0]["seconds"] < points[1]["seconds"]
    assert all(0 <= p[s][k] <= 1 for p in points for s in ("val", "test")
               for k in ("map50", "map"))


@pytest.mark.slow
def test_close_mosaic_rebuilds_the_pipeline_without_mosaic_for_the_last_steps(
        seeded_runs: dict) -> None:
    for run, seed in ((seeded_runs["a"], 5), (seeded_runs["c"], 6)):
        # steps 1-8 from the mosaic stream, 9-10 from a plain one seeded where it starts
        assert run["built"] == [(seed, 1.0, 0.5), (seed + 8, 0.0, 0.0)]
        assert run["steps"] == list(range(1, 11))


@pytest.mark.slow
def test_a_time_budget_ends_the_run_within_it(records: Path, tmp_path: Path) -> None:
    from odplug_builtins.trainer.train import train

    run = tmp_path / "run"
    started = time.perf_counter()
    steps: list[tuple[int, int]] = []
    stamps: list[float] = []

    def on_step(step: int, total: int, metrics: dict) -> None:
        steps.append((step, total))
        stamps.append(time.perf_counter())

    train(records, run, overrides={**TINY, "train.minutes": 0.15, "train.steps": 100_000,
                                   "train.eval_every": 20}, on_step=on_step)
    looped = time.perf_counter() - started
    last_step, last_total = steps[-1]
    assert last_step == last_total < 100_000
    points = json.loads((run / "metrics" / "curve.json").read_text())["points"]
    assert points[-1]["step"] == last_step
    # 9 s, plus what the estimate cannot foresee on a shared machine: the first step's tracing
    # (10-40 s, by load), the validations (tracing included) and the checkpoints; set-up and
    # the SavedModel come on top. From the first step on, the loop keeps to the budget.
    assert stamps[-1] - stamps[0] < 39, f"{stamps[-1] - stamps[0]:.1f} s after the first step"
    assert points[-1]["seconds"] < 90 and looped < 180


@pytest.mark.parametrize("settings,total,closes", [
    ({"close_mosaic": 0.15}, 1000, 850),
    ({"close_mosaic": 0.15}, 7, 6),
    ({"close_mosaic": 0.0}, 1000, 1000),
    ({"close_mosaic": 0.15, "mosaic": 0.0}, 1000, 1000),  # nothing to close
    ({"close_mosaic": 0.15, "mosaic": 0.0, "mixup": 0.3}, 1000, 850),
    ({"close_mosaic": 1.0}, 1000, 0),
])
def test_close_mosaic_counts_its_fraction_from_the_end(settings: dict, total: int,
                                                       closes: int) -> None:
    from odplug_builtins.trainer.config import AugmentConfig

    assert mosaic_closes(AugmentConfig(**{"mosaic": 0.5, **settings}), total) == closes


@pytest.mark.parametrize("value,message", [
    (["tset"], "unknown split 'tset'. Did you mean 'test'?"),
    ([3], "unknown split '3'"),
])
def test_a_bad_curve_split_is_one_clear_line(value: list, message: str) -> None:
    with pytest.raises(OdplugError, match=message):
        load_config(overrides={"eval.curve_splits": value})
