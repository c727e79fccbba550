"""The interpreter backends: one instruction-set table, the key rule, the native kernel's guarantees.

Correctness against the independent NumPy reference, op by op and on random programs, is in
test_differential.py (run for every backend); this file checks what is specific to the backends.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import zero
from azjax.zero import backends, fec, ops as ops_lib, random_programs
from azjax.zero.backends import native



def test_native_kernel_is_built():
    # The install builds it on every supported machine; a missing kernel is a broken build, not a skip.
    assert native.available(), native.reason()

DEMO_OPS = ("SCALAR_CONST_SET", "VECTOR_INNER_PRODUCT", "SCALAR_DIFF", "SCALAR_PRODUCT",
            "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")
DEMO = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4, setup_ops=DEMO_OPS,
                       predict_ops=DEMO_OPS, learn_ops=DEMO_OPS, setup_size=10, predict_size=2, learn_size=8)
SGD = zero.algorithms.linear_regression_text(learning_rate=0.1)
_CODE = {None: 0, "s": 1, "v": 2, "m": 3}


def test_native_op_table_equals_the_instruction_set():
    bits = np.asarray([1, 2, 4])
    expected = np.asarray([[_CODE[op.in1], _CODE[op.in2], _CODE[op.out], int(op.reads_output)]
                           for op in ops_lib.OPS])
    expected = np.concatenate([expected, (ops_lib.STORED_FLOAT32 @ bits)[:, None],
                               (ops_lib.IS_INDEX @ bits)[:, None]], axis=1)
    np.testing.assert_array_equal(native.op_table(), expected)


def test_registry_and_bad_names():
    assert backends.BACKENDS == ("native", "select", "cond", "pallas")
    assert backends.default_backend(platform="cpu").name == "native"
    assert backends.default_backend(platform="gpu").name == "select"
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.get_backend("fast")
    with pytest.raises(ValueError, match="disagree"):
        backends.resolve("native", strategy="cond")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow
def test_sgd_learner_agrees_on_every_backend(dtype):
    cfg = zero.ZeroConfig(**{**DEMO.__dict__, "dtype": dtype})
    prog = zero.parse_program(SGD, cfg)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 3, 4, 200, 50, dtype=dtype)
    fits = {b: np.asarray(zero.evaluate(prog, tasks, cfg, key=jax.random.key(1), backend=b))
            for b in backends.BACKENDS}
    assert fits["native"].min() > 0.99
    for b in ("select", "cond"):
        np.testing.assert_allclose(fits["native"], fits[b], rtol=1e-5 if dtype == "float32" else 1e-12)


def _population(cfg, n, seed=1):
    return random_programs.random_programs(jax.random.key(seed), cfg, n)


def test_native_is_deterministic_and_independent_of_batch_layout():
    progs = _population(DEMO, 64)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 4, 4, 60, 30)
    a = np.asarray(zero.evaluate(progs, tasks, DEMO, key=jax.random.key(2), backend="native"))
    b = np.asarray(zero.evaluate(progs, tasks, DEMO, key=jax.random.key(2), backend="native"))
    np.testing.assert_array_equal(a, b)
    perm = np.random.RandomState(0).permutation(64)
    c = np.asarray(zero.evaluate(jax.tree_util.tree_map(lambda x: x[perm], progs), tasks, DEMO,
                                 key=jax.random.key(2), backend="native"))
    # Random ops are absent here, so a program's result does not depend on its index either.
    np.testing.assert_array_equal(a[perm], c)
    assert np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()


@pytest.mark.slow
def test_native_result_does_not_depend_on_the_thread_count(tmp_path):
    script = textwrap.dedent("""
        import sys, numpy as np, jax
        from azjax import zero
        from azjax.zero import random_programs, backends
        cfg = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=4,
                              setup_ops=("VECTOR_GAUSSIAN_SET", "SCALAR_UNIFORM_SET", "MATRIX_GAUSSIAN_SET"),
                              predict_ops=("MATRIX_VECTOR_PRODUCT", "VECTOR_INNER_PRODUCT", "SCALAR_TAN"),
                              learn_ops=("SCALAR_DIFF", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM",
                                         "VECTOR_OUTER_PRODUCT", "MATRIX_SUM"),
                              setup_size=4, predict_size=4, learn_size=6)
        progs = random_programs.random_programs(jax.random.key(3), cfg, 50)
        tasks = zero.linear_regression_tasks(jax.random.key(0), 5, 4, 40, 20)
        fit = zero.evaluate(progs, tasks, cfg, key=jax.random.key(4), backend="native")
        np.save(sys.argv[1], np.asarray(fit))
        """)
    outs = []
    for threads in ("1", "3"):
        path = tmp_path / f"fit{threads}.npy"
        env = dict(os.environ, AZJAX_NATIVE_THREADS=threads, JAX_PLATFORMS="cpu")
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=300)
        outs.append(np.load(path))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_random_ops_follow_the_key_rule():
    """A uniform draw read straight into the prediction equals jax.random.uniform at the rule's key."""
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=2, num_matrices=0, features=2, setup_ops=(),
                          predict_ops=("SCALAR_UNIFORM_SET", "SCALAR_GAUSSIAN_SET"), learn_ops=(),
                          setup_size=1, predict_size=3, learn_size=2)
    prog = zero.parse_program("def Setup():\n  pass\ndef Predict():\n  s2 = gaussian(0.5, 2.0)\n"
                              "  s1 = uniform(-1.0, 3.0)\ndef Learn():\n  pass\n", cfg)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 2, 5, 3)
    key = jax.random.key(7)
    _, preds = zero.evaluate(prog, tasks, cfg, key=key, backend="native", return_predictions=True)
    rule = backends.KeyRule.for_config(cfg)
    lanes = backends.KeyRule.lane_keys(key, 1, 2)[0]
    for t in range(2):
        for step in range(1, 6):
            k = jax.random.fold_in(lanes[t], rule.counter(step, "predict", 1))
            expected = -1.0 + 4.0 * jax.random.uniform(k, (), jnp.float32)
            np.testing.assert_allclose(preds["train"][t, 0, step - 1], expected, rtol=2e-7)
    _, sel = zero.evaluate(prog, tasks, cfg, key=key, backend="select", return_predictions=True)
    np.testing.assert_allclose(preds["train"], sel["train"], rtol=2e-7)


def test_gaussian_draws_match_jax_within_ulps():
    cfg = zero.ZeroConfig(num_scalars=3, num_vectors=2, num_matrices=0, features=8, setup_ops=(),
                          predict_ops=("VECTOR_GAUSSIAN_SET", "VECTOR_INNER_PRODUCT"), learn_ops=(),
                          setup_size=1, predict_size=2, learn_size=1, dtype="float64")
    prog = zero.parse_program("def Setup():\n  pass\ndef Predict():\n  v1 = gaussian(0.0, 1.0)\n"
                              "  s1 = dot(v1, v1)\ndef Learn():\n  pass\n", cfg)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 3, 8, 40, 10, dtype="float64")
    outs = [zero.evaluate(prog, tasks, cfg, key=jax.random.key(5), backend=b, return_predictions=True)[1]
            for b in ("native", "select")]
    np.testing.assert_allclose(outs[0]["train"], outs[1]["train"], rtol=1e-12)
    # Sum of 8 squared standard normals: a chi-square with 8 degrees of freedom (mean 8).
    assert abs(float(np.mean(outs[0]["train"])) - 8.0) < 1.5


def test_inactive_programs_get_zero_and_cost_nothing():
    prog = zero.parse_program(SGD, DEMO)
    progs = zero.stack_programs([prog, prog])
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 4, 50, 20)
    task_arrays = zero.evaluate.__globals__["prepare_tasks"](tasks, DEMO)
    fn = backends.get_backend("native").jitted(DEMO, "rms", 1)
    from azjax.zero.evaluate import prepare_programs
    out = np.asarray(fn(prepare_programs(progs, DEMO), *task_arrays, jax.random.key(0), jnp.array([True, False])))
    assert out[0].min() > 0.9 and (out[1] == 0).all()


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_float64_search_evaluator_runs_on_every_backend(backend):
    cfg = zero.ZeroConfig(**{**DEMO.__dict__, "dtype": "float64", "setup_size": 3, "learn_size": 4})
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 4, 20, 10, dtype="float64")
    ev = zero.ProgramEvaluator(cfg, tasks, backend=backend)
    progs = zero.stack_programs([zero.parse_program(SGD.replace("  s3 = s0 - s1\n", ""), cfg)] * 3
                                + [zero.empty_program(cfg)])
    fit, info = ev(jax.random.key(1), progs)
    assert fit.shape == (4,) and np.isfinite(fit).all()
    assert info["duplicates"] == 2


@pytest.mark.parametrize("cache_size,forget_every,programs,steps,batch", [
    (7, 3, 12, 60, 4),  # tiny: eviction, forgetting and re-insertion of the same keys
    (3000, 5, 2500, 40, 200),  # the native table grows past its first size and shifts entries back on deletion
])
def test_fec_cache_native_and_python_agree(cache_size, forget_every, programs, steps, batch):
    rng = np.random.RandomState(0)
    cfg = zero.FECConfig(cache_size=cache_size, forget_every=forget_every)
    caches = [zero.FECCache(cfg, native=True), zero.FECCache(cfg, native=False)]
    pool = fec.fingerprints(rng.randn(programs, 2, 3), rng.randn(programs, 2, 3), 100)  # programs x 2 tasks
    for step in range(steps):
        rows = rng.randint(0, programs, size=batch)
        need = rng.rand(batch) < 0.8
        results = [c.lookup_batch(pool[rows], need) for c in caches]
        np.testing.assert_array_equal(results[0][1], results[1][1])
        np.testing.assert_array_equal(results[0][0], results[1][0])
        ins = rng.randint(0, programs, size=max(batch // 2, 2))
        fit = rng.rand(len(ins), 2)
        for c in caches:
            c.insert_batch(pool[ins], fit)
        assert len(caches[0]) == len(caches[1])
    assert caches[0].hits == caches[1].hits > 0 and caches[0].misses == caches[1].misses
    s0, s1 = (c.get_state() for c in caches)
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k])
    restored = zero.FECCache(cfg, native=True)
    restored.set_state(s1)
    for k, v in restored.get_state().items():
        np.testing.assert_array_equal(v, s0[k])


def test_native_fingerprints_equal_numpy():
    rng = np.random.RandomState(1)
    tr, va = rng.randn(5, 3, 10), rng.randn(5, 3, 7)
    tr[0, 0, 0] = np.nan
    np.testing.assert_array_equal(fec.fingerprints(tr, va, 1000), fec._fingerprints_numpy(tr, va, 1000))
    assert fec.fingerprints(tr, va, 1000)[1, 1] != fec.fingerprints(tr, va, 999)[1, 1]


def test_missing_kernel_falls_back_to_select_with_a_warning(tmp_path):
    script = textwrap.dedent("""
        import warnings
        from azjax.zero import backends
        from azjax.zero.backends import native
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            b = backends.default_backend(platform="cpu")
        assert b.name == "select", b
        assert not native.available()
        assert any("native backend unavailable" in str(x.message) and "nowhere.so" in str(x.message) for x in w), w
        try:
            backends.get_backend("native")
        except RuntimeError as e:
            assert "unavailable" in str(e)
        else:
            raise AssertionError("no error")
        print("ok")
        """)
    env = dict(os.environ, AZJAX_NATIVE_LIBRARY=str(tmp_path / "nowhere.so"), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
