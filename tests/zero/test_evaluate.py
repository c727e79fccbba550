"""Evaluation: hand-written algorithms, strategy agreement, pruning, early stopping, bad input, no retrace."""
import functools
import importlib
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import zero
from azjax.zero import evaluate as _unused  # noqa: F401  (module import keeps the name `evaluate` a function)
from azjax.zero import random_programs
from azjax.zero.evaluate import _jitted

A = zero.algorithms

# One config and one task shape shared by most tests, so the evaluator compiles once per strategy.
MIXED_OPS = ("SCALAR_CONST_SET", "SCALAR_SUM", "SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_DIVISION",
             "SCALAR_LOG", "SCALAR_HEAVYSIDE", "VECTOR_INNER_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM",
             "VECTOR_MAX", "MATRIX_VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT", "MATRIX_SUM", "VECTOR_ST_DEV",
             "VECTOR_CONST_SET", "SCALAR_GAUSSIAN_SET", "VECTOR_UNIFORM_SET", "MATRIX_GAUSSIAN_SET")
CFG = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=3, setup_ops=MIXED_OPS,
                      predict_ops=MIXED_OPS, learn_ops=MIXED_OPS, setup_size=6, predict_size=5, learn_size=6)
T, N, M, E = 2, 20, 10, 2


@pytest.fixture(scope="module")
def tasks():
    return zero.linear_regression_tasks(jax.random.key(7), T, CFG.features, N, M, num_epochs=E)


@pytest.fixture(scope="module")
def population():
    return random_programs.random_programs(jax.random.key(11), CFG, 40)


def test_linear_sgd_solves_linear_regression():
    cfg = A.linear_regression_config()
    tasks = zero.linear_regression_tasks(jax.random.key(1), 10, 4, 1000, 100)
    fit = zero.evaluate(A.linear_regression_program(cfg, learning_rate=0.03), tasks, cfg, key=jax.random.key(0))
    chex.assert_shape(fit, (10,))
    assert float(jnp.min(fit)) > 0.9999


def test_neural_network_beats_linear_on_teacher_tasks():
    cfg = A.neural_network_config(features=4)
    tasks = zero.teacher_network_tasks(jax.random.key(2), 5, 4, 1000, 100)
    linear = zero.parse_program(A.linear_regression_text(0.03).replace("s3", "s4"), cfg)
    progs = zero.stack_programs([A.neural_network_program(cfg, learning_rate=0.03), linear])
    fit = zero.combine_fitness(zero.evaluate(progs, tasks, cfg, key=jax.random.key(0)))
    assert float(fit[0]) > float(fit[1]) + 0.1, fit


@pytest.mark.slow
def test_strategies_and_pruning_agree(tasks, population):
    key = jax.random.key(5)
    results = {}
    for strategy, prune in (("cond", True), ("select", True), ("cond", False)):
        results[strategy, prune] = zero.evaluate(population, tasks, CFG, key=key, backend=strategy,
                                                 prune=prune, return_predictions=True)
    fit, preds = results["cond", True]
    chex.assert_shape(fit, (40, T))
    chex.assert_shape(preds["train"], (40, T, E, N))
    chex.assert_shape(preds["valid"], (40, T, E, M))
    assert np.all((np.asarray(fit) >= 0) & (np.asarray(fit) <= 1))
    # Random programs: some learn something, some diverge; the test is only meaningful with both.
    assert np.any(np.asarray(fit) > 0.2) and np.any(np.asarray(fit) == 0)
    for other in (("select", True), ("cond", False)):
        f2, p2 = results[other]
        # XLA fuses differently per strategy; float32 rounding may differ in the last bits.
        np.testing.assert_allclose(np.asarray(f2), np.asarray(fit), rtol=1e-5, atol=1e-6)
        for split in ("train", "valid"):
            a, b = np.asarray(preds[split]), np.asarray(p2[split])
            same_nan = np.isnan(a) == np.isnan(b)
            assert same_nan.mean() > 0.99
            ok = ~np.isnan(a) & ~np.isnan(b) & (np.abs(a) < 1e3)
            np.testing.assert_allclose(b[ok], a[ok], rtol=1e-4, atol=1e-4)


def test_select_result_of_a_program_does_not_depend_on_its_batch_partners(tasks, population):
    # `select` sorts programs by live length into chunks; permuting the batch (programs with their keys)
    # must permute the result bitwise.
    ev = importlib.import_module("azjax.zero.evaluate")
    fn = _jitted(CFG, "rms", E, "select", False, True)
    progs = ev.prepare_programs(population, CFG)
    keys = ev.program_task_keys(jax.random.key(4), 40, T)
    active = jnp.ones(40, bool)
    arrays = ev.prepare_tasks(tasks, CFG)
    perm = np.random.default_rng(0).permutation(40)
    a = np.asarray(fn(progs, *arrays, keys, active))
    b = np.asarray(fn(jax.tree_util.tree_map(lambda x: x[perm], progs), *arrays, keys[perm], active))
    np.testing.assert_array_equal(b, a[perm])


def test_compiles_once_per_config_and_shapes(tasks, population):
    evaluate = functools.partial(zero.evaluate, backend="cond", return_predictions=True)
    evaluate(population, tasks, CFG, key=jax.random.key(0))
    fn = _jitted(CFG, "rms", E, "cond", True, True)
    before = fn._cache_size()
    other = jax.tree_util.tree_map(lambda x: x[::-1], population)
    for k in range(3):
        evaluate(other, tasks, CFG, key=jax.random.key(k))
    assert fn._cache_size() == before == 1


def test_deterministic_given_key(tasks, population):
    a, _ = zero.evaluate(population, tasks, CFG, key=jax.random.key(3), backend="cond", return_predictions=True)
    b, _ = zero.evaluate(population, tasks, CFG, key=jax.random.key(3), backend="cond", return_predictions=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _zeros_tasks():
    return zero.Tasks(np.zeros((T, N, 3), np.float32), np.zeros((T, N), np.float32),
                      np.zeros((T, M, 3), np.float32), np.zeros((T, M), np.float32), num_epochs=E)


def test_divergence_in_a_later_epoch_keeps_the_best_earlier_epoch():
    # s2 grows by 3 per training step: after epoch 0 the prediction is 60 (RMSE 60); in epoch 1 the error
    # passes 100 and training stops, so the epoch-0 fitness stands.
    text = ("def Setup():\n  s3 = 3.0\ndef Predict():\n  s1 = s2 + s4\n"
            "def Learn():\n  s2 = s2 + s3\n")
    prog = zero.parse_program(text, CFG)
    fit, preds = zero.evaluate(prog, _zeros_tasks(), CFG, key=jax.random.key(0), backend="cond",
                               return_predictions=True)
    # float32: 1 - (2/pi) atan(60) cancels, so the product's rounding (no FMA, as the reference) leaves an
    # absolute error of up to half an ulp of 1 on a result of 0.0106.
    np.testing.assert_allclose(np.asarray(fit), 1 - (2 / math.pi) * math.atan(60.0), rtol=0, atol=6e-8)
    train = np.asarray(preds["train"][0])
    np.testing.assert_allclose(train[0], 3.0 * np.arange(N))
    first_bad = int(np.argmax(train[1] > 100))
    assert first_bad > 0 and np.all(np.isnan(train[1, first_bad + 1:]))
    assert np.all(np.isnan(np.asarray(preds["valid"][0, 1])))


def test_divergence_in_the_first_epoch_gives_zero_and_nan_is_not_a_crash():
    texts = ["def Setup():\n  s3 = -1.0\ndef Predict():\n  s1 = log(s3)\ndef Learn():\n  pass\n",
             "def Setup():\n  s3 = 500.0\ndef Predict():\n  s1 = s3 + s4\ndef Learn():\n  pass\n"]
    progs = zero.stack_programs([zero.parse_program(t, CFG) for t in texts])
    fit, _ = zero.evaluate(progs, _zeros_tasks(), CFG, key=jax.random.key(0), backend="cond",
                           return_predictions=True)
    np.testing.assert_array_equal(np.asarray(fit), 0.0)


def test_float64_matches_float32_on_a_stable_program():
    cfg32 = A.linear_regression_config(features=3)
    cfg64 = A.linear_regression_config(features=3, dtype="float64")
    tasks = zero.linear_regression_tasks(jax.random.key(4), 2, 3, 50, 20)
    f32 = zero.evaluate(A.linear_regression_program(cfg32, 0.05), tasks, cfg32, key=jax.random.key(0))
    f64 = zero.evaluate(A.linear_regression_program(cfg64, 0.05), tasks, cfg64, key=jax.random.key(0))
    assert f64.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(f64), np.asarray(f32), rtol=1e-4)


def test_combine_fitness():
    per_task = jnp.array([[0.1, 0.9, 0.5, 0.3]])
    np.testing.assert_allclose(zero.combine_fitness(per_task, "mean"), [0.45])
    np.testing.assert_allclose(zero.combine_fitness(per_task, "median"), [0.5])  # upper median
    with pytest.raises(ValueError, match="combine mode"):
        zero.combine_fitness(per_task, "max")


@pytest.mark.parametrize("make, match", [
    (lambda t: t.replace(train_labels=t.train_labels[:, :-1]), "Tasks.train_labels"),
    (lambda t: t.replace(valid_features=t.valid_features[:, :, :2]), "Tasks.valid_features"),
    (lambda t: t.replace(train_features=t.train_features[:, :, :2],
                         valid_features=t.valid_features[:, :, :2]), "ZeroConfig.features"),
    (lambda t: t.replace(eval_type="mse"), "Tasks.eval_type"),
    (lambda t: t.replace(num_epochs=0), "Tasks.num_epochs"),
])
def test_bad_tasks_name_the_field(tasks, population, make, match):
    with pytest.raises(ValueError, match=match):
        zero.evaluate(population, make(tasks), CFG, key=jax.random.key(0))


def test_bad_programs_and_backend(tasks, population):
    with pytest.raises(ValueError, match="backend"):
        zero.evaluate(population, tasks, CFG, key=jax.random.key(0), backend="fast")
    with pytest.warns(DeprecationWarning, match="backend"):  # the deprecated alias still works
        zero.evaluate(jax.tree_util.tree_map(lambda x: x[:2], population), tasks, CFG, key=jax.random.key(0),
                      strategy="cond")
    nested = jax.tree_util.tree_map(lambda x: x.reshape((4, 10) + x.shape[1:]), population)
    with pytest.raises(ValueError, match="programs"):
        zero.evaluate(nested, tasks, CFG, key=jax.random.key(0))
    other = A.linear_regression_config(features=3)
    with pytest.raises(ValueError, match="program.setup"):
        zero.evaluate(population, tasks, other, key=jax.random.key(0))


def test_task_generators():
    key = jax.random.key(0)
    for make in (zero.linear_regression_tasks, zero.affine_regression_tasks, zero.teacher_network_tasks):
        t = make(key, 3, 4, 8, 5)
        chex.assert_shape([t.train_features, t.train_labels, t.valid_features, t.valid_labels],
                          [(3, 8, 4), (3, 8), (3, 5, 4), (3, 5)])
        assert np.all(np.isfinite(np.asarray(t.train_labels)))
    lin = zero.linear_regression_tasks(key, 1, 4, 8, 5)
    # label = w·x exactly: the least-squares fit is perfect.
    w, res, *_ = np.linalg.lstsq(np.asarray(lin.train_features[0]), np.asarray(lin.train_labels[0]), rcond=None)
    np.testing.assert_allclose(np.asarray(lin.valid_features[0]) @ w, np.asarray(lin.valid_labels[0]), atol=1e-4)
    inc = zero.unit_tasks("increment", 3, num_train=4, num_valid=2, increment=0.5)
    np.testing.assert_allclose(np.asarray(inc.train_labels[0]), [0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(np.asarray(inc.valid_features[0]), [[0, 0, 0], [0.5, 0.5, 0.5]])
    orders = zero.linear_regression_tasks(key, 2, 3, 6, 2, num_epochs=3).epoch_orders()
    chex.assert_shape(orders, (2, 3, 6))
    np.testing.assert_array_equal(orders[:, 0], np.tile(np.arange(6), (2, 1)))
    assert all(sorted(o) == list(range(6)) for o in orders.reshape(-1, 6))
    with pytest.raises(ValueError, match="num_train"):
        zero.linear_regression_tasks(key, 2, 3, 0, 2)


def test_projected_binary_tasks_from_digits():
    t = zero.projected_binary_tasks(jax.random.key(0), 3, 4, 100, 50)
    assert t.eval_type == "accuracy"
    chex.assert_shape([t.train_features, t.valid_labels], [(3, 100, 4), (3, 50)])
    x = np.asarray(t.train_features)
    np.testing.assert_allclose(x.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(1), 1, atol=1e-3)
    labels = np.asarray(t.train_labels)
    assert set(np.unique(labels)) == {0.0, 1.0} and 0.3 < labels.mean() < 0.7
    fixed = zero.projected_binary_tasks(jax.random.key(0), 1, 4, 100, 50, positive_class=0, negative_class=1)
    assert fixed.num_tasks == 1
    with pytest.raises(ValueError, match="data_dir"):
        zero.projected_binary_tasks(jax.random.key(0), 1, 4, 10, 5, source="cifar10")


def test_projected_binary_tasks_from_a_fake_cifar10_directory(tmp_path):
    from azjax.data import write_fake_cifar10
    write_fake_cifar10(str(tmp_path), num_per_batch=40)
    t = zero.projected_binary_tasks(jax.random.key(0), 2, 8, 20, 10, source="cifar10", data_dir=str(tmp_path),
                                    positive_class=0, negative_class=1)
    chex.assert_shape(t.train_features, (2, 20, 8))
