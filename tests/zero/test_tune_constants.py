"""Constant tuning (zero.tune_constants): improves a bad constant, deterministic, reproducible, valid output."""

import dataclasses
import importlib
import jax
import numpy as np
import pytest

from azjax import zero

CFG = zero.algorithms.linear_regression_config()


def _tasks(seed=0, num_tasks=2):
    return zero.linear_regression_tasks(jax.random.key(seed), num_tasks=num_tasks, features=CFG.features,
                                        num_train=50, num_valid=50)


def _sgd(learning_rate):
    return zero.parse_program(zero.algorithms.linear_regression_text(learning_rate), CFG)


def _combined(program, tasks, key, cfg=CFG):
    per_task = zero.evaluate(program, tasks, cfg, key=key)
    with jax.enable_x64(cfg.dtype == "float64"):
        return float(zero.combine_fitness(per_task, "mean"))


def _equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_bad_learning_rate_is_improved_and_result_reproduces():
    tasks, key = _tasks(), jax.random.key(1)
    program = _sgd(1e-5)  # far too small: SGD barely moves in 50 steps
    result = zero.tune_constants(program, tasks, CFG, key=key, num_trials=24, batch_size=10)
    assert result.num_constants == 1
    assert result.trial_fitness.shape == (24,) and result.factors.shape == (24, 1)
    assert np.all((result.factors >= 1e-3) & (result.factors <= 1e3))
    assert result.best_trial >= 0
    assert result.fitness > result.untuned_fitness + 0.1
    # The reported numbers are what evaluating the returned programs gives.
    assert result.untuned_fitness == _combined(program, tasks, key)
    assert result.fitness == _combined(result.program, tasks, key)
    zero.validate_program(result.program, CFG)
    lr = float(np.asarray(result.program.setup.data)[0, 0])
    assert lr == pytest.approx(1e-5 * result.factors[result.best_trial, 0], rel=1e-6)
    # Only the constant changed; the text format round-trips it.
    assert np.array_equal(np.asarray(result.program.learn.instructions), np.asarray(program.learn.instructions))
    assert _equal(zero.parse_program(zero.format_program(result.program, CFG), CFG), result.program)


def test_deterministic_for_a_key_and_independent_of_batch_size():
    tasks = _tasks()
    program = _sgd(0.5)
    a = zero.tune_constants(program, tasks, CFG, key=jax.random.key(3), num_trials=12, batch_size=5)
    b = zero.tune_constants(program, tasks, CFG, key=jax.random.key(3), num_trials=12, batch_size=12)
    c = zero.tune_constants(program, tasks, CFG, key=jax.random.key(4), num_trials=12, batch_size=12)
    # A program without random ops: the padding and chunking do not change any trial.
    np.testing.assert_array_equal(a.trial_fitness, b.trial_fitness)
    np.testing.assert_array_equal(a.factors, b.factors)
    assert _equal(a.program, b.program) and a.fitness == b.fitness
    assert not np.array_equal(a.factors, c.factors)
    # Never worse than untuned on the tuning tasks.
    assert a.fitness >= a.untuned_fitness


def test_only_live_nonzero_value_constants_are_tuned():
    cfg = dataclasses.replace(CFG, setup_ops=CFG.setup_ops + ("VECTOR_CONST_SET",),
                              learn_ops=CFG.learn_ops + ("VECTOR_CONST_SET",))
    program = zero.parse_program(
        "def Setup():\n  s2 = 0.01\n  s3 = 0.7\n  s2 = 0.0\n  v2[1] = 0.3\n"
        "def Predict():\n  s1 = dot(v1, v0)\n"
        "def Learn():\n  s3 = s0 - s1\n  v2[2] = 0.5\n  v1 = v1 + v2\n", cfg)
    setup, predict, learn = zero.tunable_constants(program, cfg)
    # s2 = 0.01 is overwritten (dead), s3 = 0.7 is overwritten in Learn before any read (dead), s2 = 0.0 is
    # zero; v2[1] = 0.3 reaches v1 through Learn: only its value slot (not the index) is tuned.
    assert setup[:, :].nonzero() == (np.array([3]), np.array([1]))
    assert not predict.any()
    assert learn[1].tolist() == [False, True, False]
    all_setup, _, _ = zero.tunable_constants(program, cfg, live_only=False)
    assert all_setup[:, 0].tolist()[:3] == [True, True, False]


def test_program_without_constants_is_returned_unchanged():
    program = zero.parse_program("def Setup():\n  pass\ndef Predict():\n  s1 = dot(v1, v0)\n"
                                 "def Learn():\n  s3 = s0 - s1\n  v2 = s3 * v0\n  v1 = v1 + v2\n", CFG)
    tasks = _tasks()
    result = zero.tune_constants(program, tasks, CFG, key=jax.random.key(0), num_trials=5)
    assert result.num_constants == 0 and result.best_trial == -1
    assert result.trial_fitness.shape == (0,)
    assert _equal(result.program, program)
    assert result.fitness == result.untuned_fitness == _combined(program, tasks, jax.random.key(0))


def test_float32_stored_constants_stay_float32_in_float64_programs():
    cfg = dataclasses.replace(CFG, dtype="float64", setup_ops=CFG.setup_ops + ("VECTOR_GAUSSIAN_SET",))
    program = zero.parse_program("def Setup():\n  s2 = 0.01\n  v1 = gaussian(0.1, 0.2)\n"
                                 "def Predict():\n  s1 = dot(v1, v0)\n"
                                 "def Learn():\n  s3 = s0 - s1\n  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n",
                                 cfg)
    tasks = zero.linear_regression_tasks(jax.random.key(0), num_tasks=2, features=cfg.features, num_train=20,
                                         num_valid=20, dtype="float64")
    result = zero.tune_constants(program, tasks, cfg, key=jax.random.key(2), num_trials=6)
    assert result.num_constants == 3
    # The module (its name is shadowed by the function in azjax.zero).
    trial = importlib.import_module("azjax.zero.tune_constants")._trial_programs(
        program, zero.tunable_constants(program, cfg), result.factors, cfg)
    data = np.asarray(trial.setup.data)
    assert data.dtype == np.float64
    # SCALAR_CONST_SET keeps full float64 precision; the Gaussian's mean and sd are float32 values.
    np.testing.assert_array_equal(data[:, 1, :2], data[:, 1, :2].astype(np.float32).astype(np.float64))
    assert not np.array_equal(data[:, 0, 0], data[:, 0, 0].astype(np.float32).astype(np.float64))
    # With the same key, the returned program evaluates to the reported fitness.
    assert result.fitness == _combined(result.program, tasks, jax.random.key(2), cfg)


def test_bad_inputs_raise_clear_errors():
    program, tasks, key = _sgd(0.01), _tasks(), jax.random.key(0)
    with pytest.raises(ValueError, match="num_trials must be an integer >= 1"):
        zero.tune_constants(program, tasks, CFG, key=key, num_trials=0)
    with pytest.raises(ValueError, match="batch_size"):
        zero.tune_constants(program, tasks, CFG, key=key, batch_size=0)
    with pytest.raises(ValueError, match="min_factor"):
        zero.tune_constants(program, tasks, CFG, key=key, min_factor=10.0, max_factor=1.0)
    with pytest.raises(ValueError, match="combine"):
        zero.tune_constants(program, tasks, CFG, key=key, combine="max")
    with pytest.raises(ValueError, match="expected one program, got a batch"):
        zero.tune_constants(zero.stack_programs([program, program]), tasks, CFG, key=key)
    with pytest.raises(ValueError, match="expected a zero.Program"):
        zero.tune_constants(np.zeros(3), tasks, CFG, key=key)
    with pytest.raises(ValueError, match="expected a zero.Tasks"):
        zero.tune_constants(program, "tasks", CFG, key=key)


def test_launcher_tunes_the_final_program(tmp_path):
    from experiments.automl_zero import search
    from tests.experiments.test_automl_zero_launcher import tiny_config

    c = tiny_config()
    c.backend = ""
    c.tune_constants.num_trials = 4
    summary = search.run_experiments(c, str(tmp_path))
    tuning = summary["tuning"]
    assert tuning["num_trials"] == 4
    assert tuning["tuning_fitness_tuned"] >= tuning["tuning_fitness_untuned"]
    assert 0.0 <= tuning["final_fitness_tuned"] <= 1.0
    assert (tmp_path / "tuned_program.txt").read_text() == tuning["program"]
    c.tune_constants.num_trials = -1
    with pytest.raises(ValueError, match="config.tune_constants.num_trials"):
        search.run_experiments(c, str(tmp_path / "bad"))
