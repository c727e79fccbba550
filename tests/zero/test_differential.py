"""Differential tests: azjax's JAX evaluator against the independent NumPy reference.

Random programs over all 65 ops (hypothesis) are evaluated by both; fitness and the per-step
predictions must agree.

Rounding. The two implementations may legitimately differ in the last bits (summation order of
dot products and norms, XLA's own exp/log/sin, fused multiply-adds), and a random program can
amplify such differences without bound (cancellation, tan near pi/2, exp of a large number,
heaviside of a value that is almost 0). Before comparing, each example is run through the
reference two more times with every inexact op result multiplied by (1 + k eps), |k| <= 4 (the
reference's ``perturb`` hook). The chronological sequence of predictions (epoch 0 train, epoch 0
valid, epoch 1 train, ...) is compared only up to the first entry where a perturbed run moves by
more than a stability tolerance 100x tighter than the comparison tolerance, and fitness only when
the whole run is stable. So a failure means a difference that a few ulps of rounding cannot
explain. Random ops (59..64) appear in the exact tests only with degenerate parameters that make
them deterministic (uniform with low >= high -> low; Gaussian with sd = 0 -> mean) and are tested
by distribution separately.

Compile count: every hypothesis example reuses one config and fixed array shapes (programs are
padded to the config's maximum sizes), so the jitted evaluator compiles once per
(config, shapes, strategy, eval type).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.zero import reference as R

jax = pytest.importorskip("jax")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from azjax import zero  # noqa: E402

ALL_OPS = tuple(R.OP_NAMES[1:])  # NO_OP is always allowed (and not accepted in op lists)
S, V, MX, F = 5, 4, 3, 3
LS, LP, LL = 4, 4, 5
P, T, N, M, E = 3, 2, 5, 3, 2
STRATEGIES = ("native", "select", "cond")
# With all 65 ops the 'select' backend compiles for minutes on a 2-core CPU (it runs every
# branch), so its all-op variants are slow tests; 'native' and 'cond' carry the default suite.
# The accelerator backends compile slowly on the CPU: their cases run in CI's second step (`.ci/run`).
STRATEGY_PARAMS = ["native", pytest.param("select", marks=pytest.mark.slow),
                   pytest.param("cond", marks=pytest.mark.slow)]


def make_cfg(dtype, features=F, ops=ALL_OPS, sizes=(LS, LP, LL), banks=(S, V, MX)):
    return zero.ZeroConfig(num_scalars=banks[0], num_vectors=banks[1], num_matrices=banks[2],
                           features=features, setup_ops=ops, predict_ops=ops, learn_ops=ops,
                           setup_size=sizes[0], predict_size=sizes[1], learn_size=sizes[2],
                           dtype=dtype)


CFG64 = make_cfg("float64")
CFG32 = make_cfg("float32")

# Tolerances: (stability rtol, stability atol, comparison rtol, comparison atol, perturbation eps).
TOL = {
    "float64": (1e-11, 1e-13, 1e-9, 1e-11, float(np.finfo(np.float64).eps)),
    "float32": (2e-6, 1e-7, 2e-4, 1e-5, float(np.finfo(np.float32).eps)),
}
NP_DTYPE = {"float64": np.float64, "float32": np.float32}


# ------------------------------------------------------------------------------------------------
# Hypothesis strategies: programs and tasks.
# ------------------------------------------------------------------------------------------------
CONSTS = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 0.001, -3.0]),
    st.floats(-3.0, 3.0, width=32, allow_subnormal=False),
).map(lambda x: float(np.float32(x)))  # exact in both precisions


@st.composite
def instructions(draw, banks=(S, V, MX), features=F, deterministic=True):
    """One valid instruction tuple over all 65 ops; outputs never s0 / v0."""
    op = draw(st.integers(0, R.NUM_OPS - 1))
    size = dict(zip("svm", banks))
    low_out = {"s": 1, "v": 1, "m": 0}
    t1, t2, to = R.OP_TYPES[op]
    in1 = draw(st.integers(0, size[t1] - 1)) if t1 else 0
    in2 = draw(st.integers(0, size[t2] - 1)) if t2 else 0
    out = draw(st.integers(low_out[to], size[to] - 1)) if to else 0

    def frac():
        # (i + u) / F with u away from 0 and 1: int(F * f) = i in any precision.
        return (draw(st.integers(0, features - 1)) + draw(st.sampled_from([0.25, 0.5, 0.75]))) \
            / features

    f0 = f1 = f2 = 0.0
    if op == 56:
        f0 = draw(CONSTS)
    elif op == 57:
        f0, f1 = frac(), draw(CONSTS)
    elif op == 58:
        f0, f1, f2 = frac(), frac(), draw(CONSTS)
    elif op in (59, 60, 61):
        f0 = draw(CONSTS)
        if deterministic:  # low >= high -> exactly low
            f1 = min(f0, float(np.float32(f0 - abs(draw(CONSTS)))))
        else:
            f1 = float(np.float32(f0 + abs(draw(CONSTS)) + 0.5))
    elif op in (62, 63, 64):
        f0 = draw(CONSTS)
        f1 = 0.0 if deterministic else abs(draw(CONSTS))
    return (op, in1, in2, out, f0, f1, f2)


@st.composite
def programs(draw, sizes=(LS, LP, LL), **kw):
    comps = {}
    for name, length in zip(R.COMPONENTS, sizes):
        n = draw(st.integers(0, length))
        comps[name] = [draw(instructions(**kw)) for _ in range(n)]
    return comps


def make_tasks(seed, eval_type, dtype, num_tasks=T, n=N, m=M, features=F, num_epochs=E):
    """Random tasks; every value is exact in float32 so both precisions see the same data."""
    rng = np.random.default_rng(seed)
    xtr = rng.normal(size=(num_tasks, n, features)).astype(np.float32)
    xva = rng.normal(size=(num_tasks, m, features)).astype(np.float32)
    if eval_type == "rms":
        ytr = (2 * rng.normal(size=(num_tasks, n))).astype(np.float32)
        yva = (2 * rng.normal(size=(num_tasks, m))).astype(np.float32)
    else:
        ytr = rng.integers(0, 2, size=(num_tasks, n)).astype(np.float32)
        yva = rng.integers(0, 2, size=(num_tasks, m)).astype(np.float32)
    dt = NP_DTYPE[dtype]
    with jax.enable_x64(dtype == "float64"):
        tasks = zero.Tasks(xtr.astype(dt), ytr.astype(dt), xva.astype(dt), yva.astype(dt),
                           eval_type=eval_type, num_epochs=num_epochs)
    return tasks, {"train_features": xtr, "train_labels": ytr, "valid_features": xva,
                   "valid_labels": yva}


# ------------------------------------------------------------------------------------------------
# Running both sides.
# ------------------------------------------------------------------------------------------------
def build_population(cfg, progs):
    with jax.enable_x64(cfg.dtype == "float64"):
        return zero.stack_programs([
            zero.make_program(cfg, setup=p["setup"], predict=p["predict"], learn=p["learn"])
            for p in progs])


def run_azjax(cfg, population, tasks, strategy, seed=0):
    fit, preds = zero.evaluate(population, tasks, cfg, key=jax.random.key(seed),
                               backend=strategy, return_predictions=True)
    return np.asarray(fit), np.asarray(preds["train"]), np.asarray(preds["valid"])


def chrono(train, valid):
    """[E, N], [E, M] -> the predictions in the order they were made."""
    return np.concatenate([np.concatenate([train[e], valid[e]]) for e in range(train.shape[0])])


def _perturber(dtype, eps, seed):
    rng = np.random.default_rng(seed)
    dt = NP_DTYPE[dtype]

    def perturb(x):
        k = rng.integers(-4, 5, size=np.shape(x))
        with np.errstate(all="ignore"):
            return (np.asarray(x, dt) * (1 + k * eps).astype(dt)).astype(dt)[()]

    perturb.std_always = False
    return perturb


def reference_with_stability(prog, task, eval_type, orders, dtype, banks=(S, V, MX)):
    """Runs the reference and measures which prefix of its predictions is rounding-stable.

    Returns (fitness, train [E, N], valid [E, M], stable_prefix_length, fitness_is_stable).
    """
    srtol, satol, _, _, eps = TOL[dtype]
    num_epochs = orders.shape[0]
    kw = dict(bank_sizes=banks, dtype=NP_DTYPE[dtype])
    fit, tr, va = R.evaluate_program(prog, task, eval_type, num_epochs, orders, None, **kw)
    base = chrono(tr, va)
    prefix, fit_stable = base.size, True
    for seed in (1, 2):
        pfit, ptr, pva = R.evaluate_program(prog, task, eval_type, num_epochs, orders, None,
                                            perturb=_perturber(dtype, eps, seed), **kw)
        ok = np.isclose(chrono(ptr, pva), base, rtol=srtol, atol=satol, equal_nan=True)
        bad = np.flatnonzero(~ok)
        if bad.size:
            prefix = min(prefix, int(bad[0]))
        fit_stable &= bool(np.isclose(pfit, fit, rtol=srtol, atol=satol))
    fit_stable &= prefix == base.size
    return fit, tr, va, prefix, fit_stable




def task_slice(task, t):
    return {k: v[t] for k, v in task.items()}


def compare_population(cfg, progs, tasks, task_np, eval_type, strategy, stats=None):
    """Evaluates ``progs`` with azjax and the reference; asserts agreement where it is defined."""
    dtype = cfg.dtype
    _, _, crtol, catol, _ = TOL[dtype]
    population = build_population(cfg, progs)
    fit, train, valid = run_azjax(cfg, population, tasks, strategy)
    orders = np.asarray(tasks.epoch_orders())
    assert fit.shape == (len(progs), orders.shape[0])
    for p in range(len(progs)):
        # The reference runs exactly what azjax stores (canonicalized, dtype-rounded constants).
        ref_prog = R.from_azjax_program(population, p)
        for t in range(orders.shape[0]):
            rfit, rtr, rva, prefix, fit_stable = reference_with_stability(
                ref_prog, task_slice(task_np, t), eval_type, orders[t], dtype,
                banks=(cfg.num_scalars, cfg.num_vectors, cfg.num_matrices))
            got = chrono(train[p, t], valid[p, t])
            want = chrono(rtr, rva)
            assert got.shape == want.shape
            msg = (f"program {p}, task {t}, strategy {strategy}, {eval_type}, {dtype}; compared "
                   f"the first {prefix} of {want.size} predictions\n{describe(ref_prog)}")
            np.testing.assert_allclose(got[:prefix], want[:prefix], rtol=crtol, atol=catol,
                                       equal_nan=True, err_msg="predictions: " + msg)
            if fit_stable:
                np.testing.assert_allclose(fit[p, t], rfit, rtol=crtol, atol=catol,
                                           err_msg="fitness: " + msg)
            assert 0.0 <= fit[p, t] <= 1.0
            if stats is not None:
                stats["entries"] += want.size
                stats["compared"] += prefix
                stats["fitness_compared"] += int(fit_stable)
                stats["runs"] += 1


def describe(prog):
    lines = []
    for comp in R.COMPONENTS:
        lines.append(f"{comp}:")
        for ins in prog[comp]:
            lines.append(f"  {R.OP_NAMES[R.op_id(ins[0])]} {tuple(ins[1:])}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Random programs, float64: exact up to rounding.
# ------------------------------------------------------------------------------------------------
# Coverage counters (how much of each run the stability probe let us compare); for debugging.
STATS = {"entries": 0, "compared": 0, "fitness_compared": 0, "runs": 0}


@pytest.mark.parametrize("eval_type", ["rms", "accuracy"])
@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(progs=st.lists(programs(), min_size=P, max_size=P), seed=st.integers(0, 2**16))
def test_float64_random_programs_match_reference(strategy, eval_type, progs, seed):
    tasks, task_np = make_tasks(seed, eval_type, "float64")
    compare_population(CFG64, progs, tasks, task_np, eval_type, strategy, STATS)


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(progs=st.lists(programs(), min_size=P, max_size=P), seed=st.integers(0, 2**16))
def test_float32_random_programs_match_reference(strategy, progs, seed):
    tasks, task_np = make_tasks(seed, "rms", "float32", num_epochs=1)
    compare_population(CFG32, progs, tasks, task_np, "rms", strategy)


@pytest.mark.slow
@pytest.mark.parametrize("eval_type", ["rms", "accuracy"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(progs=st.lists(programs(), min_size=P, max_size=P), seed=st.integers(0, 2**16))
def test_float64_random_programs_match_reference_sweep(strategy, eval_type, progs, seed):
    tasks, task_np = make_tasks(seed, eval_type, "float64")
    compare_population(CFG64, progs, tasks, task_np, eval_type, strategy)


@pytest.mark.slow
@pytest.mark.parametrize("features", [1, 2, 5])
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_float64_other_feature_sizes(features, data, seed):
    cfg = make_cfg("float64", features=features)
    progs = [data.draw(programs(features=features)) for _ in range(P)]
    eval_type = data.draw(st.sampled_from(["rms", "accuracy"]))
    tasks, task_np = make_tasks(seed, eval_type, "float64", features=features)
    compare_population(cfg, progs, tasks, task_np, eval_type, "select")


# ------------------------------------------------------------------------------------------------
# Targeted edge cases, through the same compiled evaluator as the random tests.
# Each probe's Predict ends by writing the probed value into s1; Learn is empty. The first
# training prediction then shows the value (a NaN or |value| > 100 is still recorded there).
# ------------------------------------------------------------------------------------------------
def _i(name, a=0, b=0, c=0, f0=0.0, f1=0.0, f2=0.0):
    return (name, a, b, c, f0, f1, f2)


ONE_HOT_V2 = _i("VECTOR_CONST_SET", c=2, f0=0.5 / F, f1=1.0)  # v2 = e_0
NAN_S4 = [_i("SCALAR_DIVISION", 0, 0, 4)]  # s0 / s0 in Setup: s0 = 0 there -> NaN
EDGE_PROBES = {
    "scalar heaviside(0) = 1": ([], [_i("SCALAR_HEAVYSIDE", 2, 0, 1)]),
    "scalar heaviside(NaN) = 0": (NAN_S4, [_i("SCALAR_HEAVYSIDE", 4, 0, 1)]),
    "vector heaviside(0) = 0": ([], [_i("VECTOR_HEAVYSIDE", 1, 0, 1),
                                     _i("VECTOR_NORM", 1, 0, 1)]),
    "vector heaviside(features)": ([], [_i("VECTOR_HEAVYSIDE", 0, 0, 1),
                                        _i("VECTOR_NORM", 1, 0, 1)]),
    "matrix heaviside(0) = 0": ([], [_i("MATRIX_HEAVYSIDE", 0, 0, 0),
                                     _i("MATRIX_NORM", 0, 0, 1)]),
    "vector heaviside(NaN) = 0": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1)],
                                  [_i("VECTOR_HEAVYSIDE", 1, 0, 3), _i("VECTOR_NORM", 3, 0, 1)]),
    "matrix heaviside(NaN) = 0": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                            _i("VECTOR_ROW_BROADCAST", 1, 0, 0)],
                                  [_i("MATRIX_HEAVYSIDE", 0, 0, 1), _i("MATRIX_NORM", 1, 0, 1)]),
    "one-pass vector std of 0.1s is NaN": (
        [_i("SCALAR_CONST_SET", c=2, f0=0.1), _i("SCALAR_BROADCAST", 2, 0, 1)],
        [_i("VECTOR_ST_DEV", 1, 0, 1)]),
    "one-pass matrix row std of 0.1s is NaN": (
        [_i("SCALAR_CONST_SET", c=2, f0=0.1), _i("SCALAR_BROADCAST", 2, 0, 1),
         _i("VECTOR_ROW_BROADCAST", 1, 0, 0)],
        [_i("MATRIX_ROW_ST_DEV", 0, 0, 1), _i("VECTOR_NORM", 1, 0, 1)]),
    "scalar min(NaN, 1) = NaN": (NAN_S4 + [_i("SCALAR_CONST_SET", c=3, f0=1.0)],
                                 [_i("SCALAR_MIN", 4, 3, 1)]),
    "scalar min(1, NaN) = 1": (NAN_S4 + [_i("SCALAR_CONST_SET", c=3, f0=1.0)],
                               [_i("SCALAR_MIN", 3, 4, 1)]),
    "scalar max(NaN, 1) = NaN": (NAN_S4 + [_i("SCALAR_CONST_SET", c=3, f0=1.0)],
                                 [_i("SCALAR_MAX", 4, 3, 1)]),
    "scalar max(1, NaN) = 1": (NAN_S4 + [_i("SCALAR_CONST_SET", c=3, f0=1.0)],
                               [_i("SCALAR_MAX", 3, 4, 1)]),
    "matrix min(NaN, x) = x": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                         _i("VECTOR_ROW_BROADCAST", 1, 0, 0),
                                         _i("MATRIX_CONST_SET", c=1, f0=0.1, f1=0.1, f2=-2.0)],
                               [_i("MATRIX_MIN", 0, 1, 2), _i("MATRIX_NORM", 2, 0, 1)]),
    "matrix max(x, NaN) = NaN": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                           _i("VECTOR_ROW_BROADCAST", 1, 0, 0),
                                           _i("MATRIX_CONST_SET", c=1, f0=0.1, f1=0.1, f2=-2.0)],
                                 [_i("MATRIX_MAX", 1, 0, 2), _i("MATRIX_MEAN", 2, 0, 1)]),
    "matrix max(NaN, x) = x": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                         _i("VECTOR_ROW_BROADCAST", 1, 0, 0),
                                         _i("MATRIX_CONST_SET", c=1, f0=0.1, f1=0.1, f2=-2.0)],
                               [_i("MATRIX_MAX", 0, 1, 2), _i("MATRIX_NORM", 2, 0, 1)]),
    # VECTOR_MIN / VECTOR_MAX with NaN: platform-dependent in C++; the reference uses the
    # matrix-loop rule (second operand wins).
    "vector min(NaN, x) = x": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                         _i("VECTOR_CONST_SET", c=3, f0=0.1, f1=-2.0)],
                               [_i("VECTOR_MIN", 1, 3, 3), _i("VECTOR_NORM", 3, 0, 1)]),
    "vector max(NaN, x) = NaN (std::max)": (NAN_S4 + [_i("SCALAR_BROADCAST", 4, 0, 1),
                                         _i("VECTOR_CONST_SET", c=3, f0=0.1, f1=-2.0)],
                               [_i("VECTOR_MAX", 1, 3, 3), _i("VECTOR_NORM", 3, 0, 1)]),
    "uniform low > high -> low (scalar)": ([], [_i("SCALAR_UNIFORM_SET", c=1, f0=0.75, f1=-0.5)]),
    "uniform low == high -> low (vector)": (
        [ONE_HOT_V2], [_i("VECTOR_UNIFORM_SET", c=1, f0=0.25, f1=0.25),
                       _i("VECTOR_INNER_PRODUCT", 1, 2, 1)]),
    "uniform low > high -> low (matrix)": (
        [ONE_HOT_V2], [_i("MATRIX_UNIFORM_SET", c=0, f0=1.5, f1=1.0),
                       _i("MATRIX_VECTOR_PRODUCT", 0, 2, 3), _i("VECTOR_INNER_PRODUCT", 3, 2, 1)]),
    "index int(F f): vector const at last index": (
        [_i("VECTOR_CONST_SET", c=1, f0=0.99, f1=2.0), _i("VECTOR_CONST_SET", c=2, f0=0.7, f1=1.0)],
        [_i("VECTOR_INNER_PRODUCT", 1, 2, 1)]),
    "matrix const set single element": (
        [_i("MATRIX_CONST_SET", c=2, f0=0.4, f1=0.9, f2=3.0), _i("VECTOR_CONST_SET", c=2, f0=0.9,
                                                                 f1=1.0)],
        [_i("MATRIX_VECTOR_PRODUCT", 2, 2, 3), _i("VECTOR_SUM", 3, 3, 3),
         _i("VECTOR_CONST_SET", c=1, f0=0.4, f1=1.0), _i("VECTOR_INNER_PRODUCT", 3, 1, 1)]),
    "transpose in place": (
        [_i("VECTOR_CONST_SET", c=1, f0=0.1, f1=1.0), _i("VECTOR_CONST_SET", c=2, f0=0.9, f1=1.0),
         _i("VECTOR_OUTER_PRODUCT", 1, 2, 0), _i("MATRIX_TRANSPOSE", 0, 0, 0)],
        [_i("MATRIX_VECTOR_PRODUCT", 0, 1, 3), _i("VECTOR_NORM", 3, 0, 1)]),
    "matmul aliased": (
        [_i("VECTOR_CONST_SET", c=1, f0=0.1, f1=2.0), _i("VECTOR_OUTER_PRODUCT", 1, 1, 0),
         _i("MATRIX_CONST_SET", c=0, f0=0.9, f1=0.1, f2=5.0),
         _i("MATRIX_MATRIX_PRODUCT", 0, 0, 0)],
        [_i("MATRIX_MEAN", 0, 0, 1)]),
    "column vs row broadcast": (
        [_i("VECTOR_CONST_SET", c=1, f0=0.1, f1=1.0), _i("VECTOR_CONST_SET", c=2, f0=0.9, f1=1.0),
         _i("VECTOR_COLUMN_BROADCAST", 1, 0, 0), _i("VECTOR_ROW_BROADCAST", 2, 0, 1)],
        [_i("MATRIX_PRODUCT", 0, 1, 2), _i("MATRIX_MEAN", 2, 0, 1)]),
    "column norm vs row norm": (
        [_i("MATRIX_CONST_SET", c=0, f0=0.1, f1=0.9, f2=3.0),
         _i("VECTOR_CONST_SET", c=2, f0=0.9, f1=1.0)],
        [_i("MATRIX_COLUMN_NORM", 0, 0, 3), _i("VECTOR_INNER_PRODUCT", 3, 2, 1)]),
    "row mean orientation": (
        [_i("MATRIX_CONST_SET", c=0, f0=0.1, f1=0.9, f2=3.0),
         _i("VECTOR_CONST_SET", c=2, f0=0.1, f1=1.0)],
        [_i("MATRIX_ROW_MEAN", 0, 0, 3), _i("VECTOR_INNER_PRODUCT", 3, 2, 1)]),
    "exp overflow": ([_i("SCALAR_CONST_SET", c=2, f0=1000.0)], [_i("SCALAR_EXP", 2, 0, 1)]),
    "log(0) = -inf": ([], [_i("SCALAR_LOG", 0, 0, 1)]),
    "division by zero": ([_i("SCALAR_CONST_SET", c=2, f0=-3.0)], [_i("SCALAR_DIVISION", 2, 0, 1)]),
    "0 / 0 and inf - inf": ([_i("SCALAR_CONST_SET", c=2, f0=1000.0), _i("SCALAR_EXP", 2, 0, 3)],
                            [_i("SCALAR_DIFF", 3, 3, 1)]),
    "arcsin out of domain": ([_i("SCALAR_CONST_SET", c=2, f0=2.0)], [_i("SCALAR_ARCSIN", 2, 0, 1)]),
    "gaussian sd = 0 -> mean": ([], [_i("SCALAR_GAUSSIAN_SET", c=1, f0=-1.5, f1=0.0)]),
}


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
@pytest.mark.parametrize("eval_type", ["rms", "accuracy"])
def test_edge_case_probes_match_reference(strategy, eval_type):
    names = list(EDGE_PROBES)
    tasks, task_np = make_tasks(123, eval_type, "float64")
    for start in range(0, len(names), P):
        group = names[start:start + P]
        group += [group[-1]] * (P - len(group))
        progs = [{"setup": EDGE_PROBES[g][0], "predict": EDGE_PROBES[g][1], "learn": []}
                 for g in group]
        compare_population(CFG64, progs, tasks, task_np, eval_type, strategy)


def test_edge_probe_values_are_what_the_spec_says():
    # Pins a few probes to their hand-computed first prediction, so the probes really probe.
    x = np.zeros((2, F))
    task = {"train_features": x, "train_labels": np.zeros(2), "valid_features": x,
            "valid_labels": np.zeros(2)}
    expected = {
        "scalar heaviside(0) = 1": 1.0, "scalar heaviside(NaN) = 0": 0.0,
        "vector heaviside(0) = 0": 0.0, "matrix heaviside(NaN) = 0": 0.0,
        "one-pass vector std of 0.1s is NaN": float("nan"), "scalar min(1, NaN) = 1": 1.0,
        "scalar max(NaN, 1) = NaN": float("nan"), "matrix min(NaN, x) = x": 2.0,
        "vector max(NaN, x) = NaN (std::max)": float("nan"), "uniform low > high -> low (scalar)": 0.75,
        "uniform low == high -> low (vector)": 0.25, "uniform low > high -> low (matrix)": 1.5,
        "index int(F f): vector const at last index": 2.0,
        "matrix const set single element": 6.0, "transpose in place": 1.0,
        "exp overflow": float("inf"), "log(0) = -inf": -float("inf"),
        "division by zero": -float("inf"), "0 / 0 and inf - inf": float("nan"),
        "gaussian sd = 0 -> mean": -1.5, "arcsin out of domain": float("nan"),
    }
    for name, want in expected.items():
        setup, predict = EDGE_PROBES[name]
        _, tr, _ = R.evaluate_program({"setup": setup, "predict": predict, "learn": []}, task,
                                      "rms", 1, None, np.random.default_rng(0),
                                      bank_sizes=(S, V, MX), max_abs_error=1e300)
        np.testing.assert_equal(tr[0, 0], want, err_msg=name)


# ------------------------------------------------------------------------------------------------
# The README linear SGD program: same fitness and predictions on a realistic task.
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
def test_linear_sgd_program_matches_reference(strategy):
    sgd = {"setup": [_i("SCALAR_CONST_SET", c=2, f0=0.01)],
           "predict": [_i("VECTOR_INNER_PRODUCT", 0, 1, 1)],
           "learn": [_i("SCALAR_DIFF", 0, 1, 3), _i("SCALAR_PRODUCT", 3, 2, 4),
                     _i("SCALAR_VECTOR_PRODUCT", 4, 0, 2), _i("VECTOR_SUM", 1, 2, 1)]}
    rng = np.random.default_rng(7)
    w = rng.normal(size=(T, F)).astype(np.float32)
    xtr = rng.normal(size=(T, N, F)).astype(np.float32)
    xva = rng.normal(size=(T, M, F)).astype(np.float32)
    ytr = np.einsum("tnf,tf->tn", xtr.astype(np.float64), w).astype(np.float32)
    yva = np.einsum("tnf,tf->tn", xva.astype(np.float64), w).astype(np.float32)
    with jax.enable_x64(True):
        tasks = zero.Tasks(xtr.astype(np.float64), ytr.astype(np.float64),
                           xva.astype(np.float64), yva.astype(np.float64), eval_type="rms",
                           num_epochs=E)
    task_np = {"train_features": xtr, "train_labels": ytr, "valid_features": xva,
               "valid_labels": yva}
    compare_population(CFG64, [sgd] * P, tasks, task_np, "rms", strategy)


# ------------------------------------------------------------------------------------------------
# Random ops by distribution.
# ------------------------------------------------------------------------------------------------
# These reuse CFG64 and the shapes of the random-program tests (no extra compile); the key is an
# argument of the compiled evaluator, so several calls with different keys give more samples.
RF, RP, RT, RN, RM, CALLS = F, P, T, N, M, 12


def _random_eval(progs, seed=0, strategy="cond", calls=CALLS):
    rng = np.random.default_rng(0)
    xtr = rng.normal(size=(RT, RN, RF))
    xva = rng.normal(size=(RT, RM, RF))
    with jax.enable_x64(True):
        tasks = zero.Tasks(xtr, np.zeros((RT, RN)), xva, np.zeros((RT, RM)), eval_type="rms",
                           num_epochs=E)
    pop = build_population(CFG64, progs)
    outs = [run_azjax(CFG64, pop, tasks, strategy, seed=1000 * seed + c) for c in range(calls)]
    # [P, calls * T, E, N], [P, calls * T, E, M]
    return (np.concatenate([o[1] for o in outs], axis=1),
            np.concatenate([o[2] for o in outs], axis=1))


def _samples(train, valid, p):
    return np.concatenate([train[p].reshape(-1), valid[p].reshape(-1)])


E0 = _i("VECTOR_CONST_SET", c=2, f0=0.5 / RF, f1=1.0)  # v2 = e_0
ELAST = _i("VECTOR_CONST_SET", c=3, f0=(RF - 0.5) / RF, f1=1.0)  # v3 = e_{F-1}
RANDOM_PROGS = [
    # 0: s1 ~ U(-0.5, 1.5)
    {"setup": [], "predict": [_i("SCALAR_UNIFORM_SET", c=1, f0=-0.5, f1=1.5)], "learn": []},
    # 1: s1 ~ N(2, 0.5)
    {"setup": [], "predict": [_i("SCALAR_GAUSSIAN_SET", c=1, f0=2.0, f1=0.5)], "learn": []},
    # 2: s1 = last element of v1 ~ U(0.25, 0.75)
    {"setup": [ELAST], "predict": [_i("VECTOR_UNIFORM_SET", c=1, f0=0.25, f1=0.75),
                                   _i("VECTOR_INNER_PRODUCT", 1, 3, 1)], "learn": []},
    # 3: s1 = m1[F-1, 0] ~ N(-1, 2): m @ e_0 gives column 0, dot with e_{F-1}.
    {"setup": [E0, ELAST], "predict": [_i("MATRIX_GAUSSIAN_SET", c=1, f0=-1.0, f1=2.0),
                                       _i("MATRIX_VECTOR_PRODUCT", 1, 2, 1),
                                       _i("VECTOR_INNER_PRODUCT", 1, 3, 1)], "learn": []},
]


def _check_uniform(x, lo, hi):
    assert np.all(x >= lo) and np.all(x < hi)
    sd = (hi - lo) / math.sqrt(12)
    assert abs(x.mean() - (lo + hi) / 2) < 4 * sd / math.sqrt(x.size)


def _check_gaussian(x, mu, sd):
    assert abs(x.mean() - mu) < 4 * sd / math.sqrt(x.size)
    # sd of the sample sd is about sd / sqrt(2 n) for a Gaussian.
    assert abs(x.std() - sd) < 4 * sd / math.sqrt(2 * x.size)


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
def test_random_ops_by_distribution(strategy):
    tr1, va1 = _random_eval(RANDOM_PROGS[:3], strategy=strategy)
    tr2, va2 = _random_eval(RANDOM_PROGS[3:] * P, strategy=strategy)
    samples = [_samples(tr1, va1, 0), _samples(tr1, va1, 1), _samples(tr1, va1, 2),
               _samples(tr2, va2, 0)]
    for x in samples:
        assert x.size == CALLS * RT * E * (RN + RM) and not np.isnan(x).any()
    _check_uniform(samples[0], -0.5, 1.5)
    _check_gaussian(samples[1], 2.0, 0.5)
    _check_uniform(samples[2], 0.25, 0.75)
    _check_gaussian(samples[3], -1.0, 2.0)
    # Draws differ between tasks, steps and calls (a key per (program, task), advanced per op).
    for x in samples:
        assert len(np.unique(x)) == x.size
    # Identical programs in one population: each (program, task) has its own key.
    assert not np.array_equal(_samples(tr2, va2, 0), _samples(tr2, va2, 1))


def test_random_ops_whole_array_and_low_ge_high():
    progs = [
        # Vector Gaussian: std over its F elements is > 0 (elements differ), mean ~ N(0, 1/F).
        {"setup": [], "predict": [_i("VECTOR_GAUSSIAN_SET", c=1, f0=0.0, f1=1.0),
                                  _i("VECTOR_MEAN", 1, 0, 1)], "learn": []},
        {"setup": [], "predict": [_i("MATRIX_UNIFORM_SET", c=0, f0=-1.0, f1=1.0),
                                  _i("MATRIX_MEAN", 0, 0, 1)], "learn": []},
        {"setup": [ELAST], "predict": [_i("VECTOR_UNIFORM_SET", c=1, f0=0.5, f1=-0.5),
                                       _i("VECTOR_INNER_PRODUCT", 1, 3, 1)], "learn": []},
        {"setup": [E0], "predict": [_i("MATRIX_UNIFORM_SET", c=1, f0=0.25, f1=0.25),
                                    _i("MATRIX_VECTOR_PRODUCT", 1, 2, 1),
                                    _i("VECTOR_INNER_PRODUCT", 1, 2, 1)], "learn": []},
    ]
    train, valid = _random_eval(progs[:3])
    train2, valid2 = _random_eval(progs[3:] * P, calls=1)
    _check_gaussian(_samples(train, valid, 0), 0.0, 1.0 / math.sqrt(RF))
    _check_gaussian(_samples(train, valid, 1), 0.0, (2 / math.sqrt(12)) / RF)
    np.testing.assert_array_equal(_samples(train, valid, 2), 0.5)  # low > high -> exactly low
    np.testing.assert_array_equal(_samples(train2, valid2, 0), 0.25)  # low == high -> low


def test_random_ops_key_determinism():
    a = _random_eval(RANDOM_PROGS[:3], seed=3, calls=1)
    b = _random_eval(RANDOM_PROGS[:3], seed=3, calls=1)
    c = _random_eval(RANDOM_PROGS[:3], seed=4, calls=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# ------------------------------------------------------------------------------------------------
# Two disagreements these tests found in the engine (both fixed): regression tests.
# ------------------------------------------------------------------------------------------------
def test_validation_stops_at_first_large_error():
    # Predict counts its own executions in s2 and predicts the count. Validation label 1000:
    # |e| > 100 at the first validation example, so the reference's validate() returns there and the
    # other M - 1 Predicts never run: epoch 1 training must continue counting from N + 2.
    prog = {"setup": [_i("SCALAR_CONST_SET", c=3, f0=1.0)],
            "predict": [_i("SCALAR_SUM", 2, 3, 2), _i("SCALAR_SUM", 2, 4, 1)], "learn": []}
    x = np.zeros((T, N, F))
    xv = np.zeros((T, M, F))
    ytr = np.tile(np.arange(1.0, N + 1), (T, 1))
    yva = np.full((T, M), 1000.0)
    with jax.enable_x64(True):
        tasks = zero.Tasks(x, ytr, xv, yva, eval_type="rms", num_epochs=E)
    _, train, valid = run_azjax(CFG64, build_population(CFG64, [prog] * P), tasks, "cond")
    np.testing.assert_array_equal(valid[0, 0, 0, 0], N + 1)
    assert np.isnan(valid[0, 0, 0, 1:]).all()
    np.testing.assert_array_equal(train[0, 0, 1], np.arange(N + 2, 2 * N + 2))


def test_std_of_exactly_representable_constant_is_zero():
    # m0 = v1 = 0.5 everywhere: sum(x^2) / n = 0.25 and (sum(x) / n)^2 = 0.25 exactly in IEEE
    # double, so the C++ one-pass std is exactly 0 (NaN only when rounding makes the
    # difference negative). Three programs: MATRIX_ST_DEV, MATRIX_ROW_ST_DEV (norm), VECTOR_ST_DEV.
    setup = [_i("MATRIX_UNIFORM_SET", c=0, f0=0.5, f1=0.5), _i("VECTOR_UNIFORM_SET", c=1, f0=0.5,
                                                               f1=0.5)]
    progs = [{"setup": setup, "predict": [_i("MATRIX_ST_DEV", 0, 0, 1)], "learn": []},
             {"setup": setup, "predict": [_i("MATRIX_ROW_ST_DEV", 0, 0, 2),
                                          _i("VECTOR_NORM", 2, 0, 1)], "learn": []},
             {"setup": setup, "predict": [_i("VECTOR_ST_DEV", 1, 0, 1)], "learn": []}]
    for prog in progs:
        _, tr, _ = R.evaluate_program(prog, task_slice(make_tasks(0, "rms", "float64")[1], 0),
                                      "rms", E, None, None, bank_sizes=(S, V, MX))
        assert tr[0, 0] == 0.0  # the reference agrees with the hand computation
    tasks, _ = make_tasks(0, "rms", "float64")
    _, train, _ = run_azjax(CFG64, build_population(CFG64, progs), tasks, "cond")
    np.testing.assert_array_equal(train[:, :, 0, 0], 0.0, err_msg=str(train[:, :, 0, :3]))
