"""The `pallas` backend in Pallas interpret mode (CPU) against `select`, and its lowering for GPU.

Interpret mode compiles slowly, so the default tests read one evaluation (a module fixture) of one small
config (`MIX`: the demo ops plus a division, for NaN, and random ops in Setup and Predict), so that each
backend compiles once; the other op sets are slow tests. Predictions must agree bit for bit (within ulps
for Gaussian draws, erfinv), fitness within a few ulps (sqrt, arctan).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import zero
from azjax.zero import backends, ops as ops_lib, random_programs
from azjax.zero.backends import pallas as pallas_backend

DEMO_OPS = ("SCALAR_CONST_SET", "VECTOR_INNER_PRODUCT", "SCALAR_DIFF", "SCALAR_PRODUCT",
            "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")
MIX = zero.ZeroConfig(num_scalars=5, num_vectors=3, num_matrices=0, features=4,
                      setup_ops=("SCALAR_CONST_SET", "SCALAR_UNIFORM_SET", "VECTOR_GAUSSIAN_SET"),
                      predict_ops=("VECTOR_INNER_PRODUCT", "SCALAR_DIVISION", "SCALAR_SUM",
                                   "SCALAR_UNIFORM_SET"),
                      learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM",
                                 "SCALAR_CONST_SET"),
                      setup_size=3, predict_size=3, learn_size=4)
SGD = zero.algorithms.linear_regression_text(learning_rate=0.1)


def _tasks(cfg, num_tasks=2, num_train=12, num_valid=6, num_epochs=2, kind="linear"):
    make = {"linear": zero.linear_regression_tasks, "teacher": zero.teacher_network_tasks}[kind]
    return make(jax.random.key(0), num_tasks, cfg.features, num_train, num_valid, num_epochs=num_epochs,
                dtype=cfg.dtype)


def _run(progs, tasks, cfg, backend, key=3, prune=True):
    fit, preds = zero.evaluate(progs, tasks, cfg, key=jax.random.key(key), backend=backend,
                               return_predictions=True, prune=prune)
    return np.asarray(fit), {k: np.asarray(v) for k, v in preds.items()}


def _both(progs, tasks, cfg, key=3, prune=True, backend="select"):
    return _run(progs, tasks, cfg, "pallas", key, prune), _run(progs, tasks, cfg, backend, key, prune)


# Fitness goes through sqrt and arctan, whose XLA:CPU code depends on the surrounding fusion: a few ulps.
FIT_RTOL = 5e-7 * 4
# On a GPU the kernel is compiled by Triton and select by XLA:GPU; they may contract multiply-adds into
# fused ones differently, so there predictions compare with a tolerance (docs/backends.md, `pallas`).
ON_CPU = jax.default_backend() == "cpu"
PRED_RTOL = 0.0 if ON_CPU else 1e-4


def _assert_equal(a, b, rtol=PRED_RTOL, fit_rtol=FIT_RTOL):
    """Predictions bitwise equal (or within rtol), NaN in the same places; fitness within fit_rtol."""
    (fa, pa), (fb, pb) = a, b
    for x, y, tol in ((fa, fb, max(fit_rtol, rtol)), (pa["train"], pb["train"], rtol),
                      (pa["valid"], pb["valid"], rtol)):
        assert x.shape == y.shape
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        if tol == 0:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=tol, atol=0)


def test_registered_and_available():
    assert "pallas" in backends.BACKENDS
    b = backends.get_backend("pallas")
    assert b.name == "pallas" and b.unavailable_reason() is None


def test_threefry_bits_equal_jax_random():
    keys = jax.random.split(jax.random.key(11), 3)  # three lanes
    words = jax.random.key_data(keys)
    counter = jnp.uint32(123456789)
    f0, f1 = pallas_backend.fold_in(words[:, 0], words[:, 1], counter)
    folded = jax.vmap(lambda k: jax.random.fold_in(k, counter))(keys)
    np.testing.assert_array_equal(np.stack([f0, f1], 1), jax.random.key_data(folded))
    got = np.stack([pallas_backend.random_bits(f0, f1, i) for i in range(6)], 1).reshape(3, 2, 3)
    np.testing.assert_array_equal(got, jax.vmap(lambda k: jax.random.bits(k, (2, 3), jnp.uint32))(folded))
    with jax.enable_x64(True):
        got = np.stack([pallas_backend.random_bits(f0, f1, i, 64) for i in range(4)], 1)
        want = jax.vmap(lambda k: jax.random.bits(k, (4,), jnp.uint64))(folded)
        np.testing.assert_array_equal(got, want)


def test_random_op_kernels_element_by_element():
    """The table's uniform and Gaussian kernels evaluated element by element with the kernel's threefry bits
    equal the table's kernels under jax.random (Gaussians: erfinv, within an ulp or two)."""
    L, F = 3, 2
    keys = jax.random.split(jax.random.key(4), L)
    words = jax.random.key_data(keys)
    d = (jnp.float32(-0.5), jnp.float32(1.5), jnp.float32(0.0))
    for name in ("SCALAR_UNIFORM_SET", "VECTOR_UNIFORM_SET", "MATRIX_UNIFORM_SET", "SCALAR_GAUSSIAN_SET",
                 "VECTOR_GAUSSIAN_SET", "MATRIX_GAUSSIAN_SET"):
        op = ops_lib.OPS[ops_lib.OP_IDS[name]]
        shape = {"s": (), "v": (F,), "m": (F, F)}[op.out]
        c = jnp.zeros((L,) + shape, jnp.float32)
        want = jax.vmap(lambda k, c_: op.kernel(None, None, c_, d, jax.random.fold_in(k, 9)))(keys, c)
        got = pallas_backend._op_result(op, None, None, tuple(c.reshape(L, -1).T), d, (words[:, 0], words[:, 1]),
                                        jnp.int32(9), L, F, jnp.float32)
        got = np.asarray(jnp.stack(got, 1).reshape(want.shape))
        if "UNIFORM" in name:
            _assert_same_bits(got, np.asarray(want), name)
        else:
            np.testing.assert_allclose(got, want, rtol=4e-7, err_msg=name)


def test_every_table_kernel_element_by_element():
    """Each deterministic op, evaluated element by element on lane arrays, equals the table's kernel vmapped
    over the lanes, bit for bit, special values (NaN, inf, -0) included."""
    F, L = 3, 4
    rng = np.random.RandomState(0)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -2.5, 1e-30, 3e38], np.float32)

    def draw(kind):
        x = rng.randn(L, *{"s": (), "v": (F,), "m": (F, F)}[kind]).astype(np.float32)
        x.reshape(L, -1)[0] = rng.choice(special, x[0].size)  # lane 0: special values
        return jnp.asarray(x)

    def elements(x):
        return None if x is None else tuple(x.reshape(L, -1).T)

    cases = []
    for op in ops_lib.OPS[1:]:
        if op.is_random:
            continue
        a, b = (draw(op.in1) if op.in1 else None), (draw(op.in2) if op.in2 else None)
        cases.append((op, a, b, draw(op.out)))
    d = (jnp.float32(0.4), jnp.float32(0.7), jnp.float32(-1.5))

    @jax.jit
    def both(args):
        out = []
        for (op, _, _, _), (a, b, c) in zip(cases, args):
            want = jax.vmap(lambda a_, b_, c_: op.kernel(a_, b_, c_, d, None))(a, b, c)
            got = pallas_backend._op_result(op, elements(a), elements(b), elements(c), d, None, None, L, F,
                                            jnp.float32)
            out.append((want, jnp.stack(got, 1).reshape(want.shape)))
        return out

    results = both([(a, b, c) for _, a, b, c in cases])
    assert len(results) == 58
    for (op, *_), (want, got) in zip(cases, results):
        _assert_same_bits(np.asarray(got), np.asarray(want), op.name)


def _assert_same_bits(got, want, what=""):
    """Equal bit patterns (so -0 differs from +0), any NaN matching any NaN."""
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    ok = np.isnan(want) | (got.view(np.uint32 if got.dtype == np.float32 else np.uint64)
                           == want.view(np.uint32 if want.dtype == np.float32 else np.uint64))
    assert ok.all(), f"{what}: {got[~ok][:4]} != {want[~ok][:4]}"


NAN_AT_FIRST = """def Setup():
  pass
def Predict():
  s3 = dot(v0, v1)
  s1 = s3 / s2
def Learn():
  pass
"""
# s1 = 1 at the first example, then 2 * 81 > max_abs_error = 100 at the second.
FAILS_AT_SECOND = """def Setup():
  s2 = 0.5
def Predict():
  s1 = s2 + s2
def Learn():
  s2 = s2 * s2
  s2 = 3.0
  s3 = s2 * s2
  s2 = s3 * s3
"""
UNIFORM = "def Setup():\n  pass\ndef Predict():\n  s1 = uniform(-1.0, 3.0)\ndef Learn():\n  pass\n"
KEY = 7


@pytest.fixture(scope="module")
def mix_results():
    """One population of MIX through pallas (with the last program inactive) and select: every default test
    below reads these, so each backend compiles once."""
    from azjax.zero.evaluate import prepare_programs, prepare_tasks

    sgd = zero.parse_program(SGD.replace("s3 = s0", "s4 = s0").replace("s2 * s3", "s2 * s4"), MIX)
    rand = zero.unstack_programs(random_programs.random_programs(jax.random.key(1), MIX, 3))
    named = [zero.parse_program(t, MIX) for t in (NAN_AT_FIRST, FAILS_AT_SECOND, UNIFORM)]
    progs = zero.stack_programs(rand + [sgd] + named + [sgd])  # 8 programs; the last one inactive
    tasks = _tasks(MIX)
    active = jnp.arange(8) < 7
    fn = backends.get_backend("pallas").jitted(MIX, "rms", tasks.num_epochs, True, True)
    keys = backends.KeyRule.lane_keys(jax.random.key(KEY), 8, tasks.num_tasks)
    fit, preds = fn(prepare_programs(progs, MIX), *prepare_tasks(tasks, MIX), keys, active)
    pallas = (np.asarray(fit), {k: np.asarray(v) for k, v in preds.items()})
    select = _run(progs, tasks, MIX, "select", key=KEY)
    return pallas, select


def _rows(result, rows):
    fit, preds = result
    return fit[rows], {k: v[rows] for k, v in preds.items()}


@pytest.mark.slow
def test_mix_programs_match_select(mix_results):
    """Random programs, an SGD learner, a NaN, an early stop and a random draw (2 epochs, pruned): every
    prediction bitwise equal to select's (NaN in the same places), fitness within a few ulps."""
    pallas, select = mix_results
    _assert_equal(_rows(pallas, slice(0, 7)), _rows(select, slice(0, 7)))
    assert pallas[0][3].min() > 0.5  # the SGD learner learns in 24 steps
    assert np.isfinite(pallas[1]["train"][:3]).any()  # the random programs ran


def test_nan_and_large_errors_stop_training(mix_results):
    fit, preds = mix_results[0]
    train = preds["train"]
    assert (fit[4] == 0).all() and np.isnan(train[4, :, 0, 0]).all()  # NaN at the first example
    assert np.isnan(train[4, :, :, 1:]).all() and np.isnan(preds["valid"][4]).all()
    assert (fit[5] == 0).all()
    np.testing.assert_array_equal(train[5, :, 0, :2], [[1.0, 162.0]] * 2)  # the failing one is reported
    assert np.isnan(train[5, :, 0, 2:]).all() and np.isnan(train[5, :, 1]).all()


def test_random_ops_follow_the_key_rule(mix_results):
    """A uniform draw read straight into the prediction equals jax.random.uniform at the rule's key."""
    train = mix_results[0][1]["train"]
    rule = backends.KeyRule.for_config(MIX)
    lanes = backends.KeyRule.lane_keys(jax.random.key(KEY), 8, 2)[6]
    for t in range(2):
        for step in range(1, 4):
            k = jax.random.fold_in(lanes[t], rule.counter(step, "predict", 0))
            expected = -1.0 + 4.0 * jax.random.uniform(k, (), jnp.float32)
            assert train[6, t, 0, step - 1] == expected


def test_inactive_programs_get_zero(mix_results):
    fit, preds = mix_results[0]
    assert fit[3].min() > 0.5 and (fit[7] == 0).all()  # the same program, active and inactive
    assert np.isnan(preds["train"][7]).all() and np.isnan(preds["valid"][7]).all()


# ---------------------------------------------------------------------------------------------------------
# Slower: other op sets, pruning off, accuracy tasks, GPU lowering.

DEMO = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4, setup_ops=DEMO_OPS,
                       predict_ops=DEMO_OPS, learn_ops=DEMO_OPS, setup_size=10, predict_size=2, learn_size=8)
LINEAR = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                         setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                         learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                         setup_size=5, predict_size=1, learn_size=4)
NONLINEAR = zero.ZeroConfig(num_scalars=4, num_vectors=8, num_matrices=2, features=4,
                            setup_ops=("SCALAR_CONST_SET", "VECTOR_GAUSSIAN_SET", "MATRIX_GAUSSIAN_SET"),
                            predict_ops=("VECTOR_INNER_PRODUCT", "MATRIX_VECTOR_PRODUCT", "VECTOR_MAX"),
                            learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "VECTOR_HEAVYSIDE",
                                       "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM", "VECTOR_PRODUCT",
                                       "VECTOR_OUTER_PRODUCT", "MATRIX_DIFF"),
                            setup_size=6, predict_size=3, learn_size=6)
BASELINE = zero.ZeroConfig(num_scalars=5, num_vectors=9, num_matrices=2, features=4,
                           setup_ops=("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET", "SCALAR_UNIFORM_SET",
                                      "VECTOR_GAUSSIAN_SET", "VECTOR_UNIFORM_SET", "MATRIX_GAUSSIAN_SET",
                                      "MATRIX_UNIFORM_SET"),
                           predict_ops=("SCALAR_SUM", "MATRIX_VECTOR_PRODUCT", "VECTOR_MAX",
                                        "VECTOR_INNER_PRODUCT", "VECTOR_SUM"),
                           learn_ops=("SCALAR_SUM", "SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT",
                                      "VECTOR_SUM", "VECTOR_HEAVYSIDE", "VECTOR_PRODUCT",
                                      "VECTOR_OUTER_PRODUCT", "MATRIX_SUM"),
                           setup_size=5, predict_size=5, learn_size=6)


@pytest.mark.slow
@pytest.mark.parametrize("name,cfg,kind,rtol", [("demo", DEMO, "linear", 0.0), ("linear", LINEAR, "linear", 0.0),
                                                ("nonlinear", NONLINEAR, "teacher", 1e-5),
                                                ("baseline", BASELINE, "linear", 1e-5)])
def test_op_sets_match_select(name, cfg, kind, rtol):
    """Gaussian draws (erfinv) may differ by ulps, which training can grow: those spaces compare to 1e-5."""
    progs = random_programs.random_programs(jax.random.key(2), cfg, 5)
    pallas, select = _both(progs, _tasks(cfg, kind=kind, num_epochs=1), cfg)
    _assert_equal(pallas, select, rtol=max(rtol, PRED_RTOL))


@pytest.mark.slow
def test_pruning_changes_nothing():
    progs = random_programs.random_programs(jax.random.key(4), MIX, 4)
    tasks = _tasks(MIX)
    unpruned = _run(progs, tasks, MIX, "pallas", prune=False)
    _assert_equal(unpruned, _run(progs, tasks, MIX, "pallas", prune=True), rtol=0.0, fit_rtol=0.0)
    assert np.isfinite(unpruned[1]["train"]).any()


@pytest.mark.slow
def test_accuracy_tasks_match_select():
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 4, 12, 6, num_epochs=2)
    tasks = tasks.replace(train_labels=(tasks.train_labels > 0).astype(np.float32),
                          valid_labels=(tasks.valid_labels > 0).astype(np.float32), eval_type="accuracy")
    progs = random_programs.random_programs(jax.random.key(6), MIX, 4)
    pallas, select = _both(progs, tasks, MIX)
    _assert_equal(pallas, select)


@pytest.mark.slow
def test_lowers_for_gpu_through_triton():
    """The kernel (not interpret mode) lowers through Pallas' Triton backend for CUDA, on any machine:
    every primitive it emits has a Triton lowering. (Compiling the Triton IR to a GPU binary needs a GPU.)"""
    from azjax.zero.evaluate import prepare_programs, prepare_tasks

    fn = pallas_backend.make_pallas_evaluate_fn(MIX, "rms", 2, True, True, interpret=False)
    progs = prepare_programs(random_programs.random_programs(jax.random.key(1), MIX, 3), MIX)
    keys = backends.KeyRule.lane_keys(jax.random.key(2), 3, 2)
    lowered = jax.jit(fn).trace(progs, *prepare_tasks(_tasks(MIX), MIX), keys, jnp.ones((3,), bool)).lower(
        lowering_platforms=("cuda",))
    assert "__gpu$xla.gpu.triton" in lowered.as_text()


@pytest.mark.slow
def test_all_ops_match_cond():
    """All 65 ops in every component against `cond` (`select` compiles for minutes with every op): fixed random
    programs, so the ulp-level differences (Gaussian draws) stay small; NaN in the same places."""
    names = tuple(op.name for op in ops_lib.OPS[1:])
    cfg = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=3, features=3, setup_ops=names,
                          predict_ops=names, learn_ops=names, setup_size=4, predict_size=4, learn_size=5)
    progs = random_programs.random_programs(jax.random.key(1), cfg, 12)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 3, 6, 4, num_epochs=2)
    pallas, cond = _both(progs, tasks, cfg, key=2, backend="cond")
    _assert_equal(pallas, cond, rtol=max(1e-6, PRED_RTOL))
    assert np.isfinite(pallas[1]["train"]).mean() > 0.5
