"""The exactness battery: edge cases where the reference executor's float64 results are known exactly.

Each case is a minimal program on a fixed task, asserting the reference's value (docs/backends.md,
"Exactness") on every backend: vector min/max as std::min/std::max, reductions in the reference's order with
no +0 start (sign of zero, exact sums of equal values), register reads that keep -0, and constants stored
as float32. The NumPy reference in tests/zero/reference.py is checked on the same cases.
"""
import jax
import numpy as np
import pytest

from azjax import zero
from azjax.zero import backends
from tests.zero import reference as R

# The ops of the battery only (every backend compiles each op of the config).
OPS = ("VECTOR_MAX", "VECTOR_MIN", "VECTOR_NORM", "VECTOR_DIVISION", "SCALAR_BROADCAST", "VECTOR_INNER_PRODUCT",
       "SCALAR_DIVISION", "SCALAR_RECIPROCAL", "SCALAR_CONST_SET", "VECTOR_MEAN", "VECTOR_COLUMN_BROADCAST",
       "MATRIX_ROW_ST_DEV", "VECTOR_ST_DEV", "SCALAR_HEAVYSIDE", "SCALAR_VECTOR_PRODUCT", "SCALAR_PRODUCT",
       "VECTOR_CONST_SET", "SCALAR_SUM", "SCALAR_GAUSSIAN_SET", "SCALAR_UNIFORM_SET")
CFG = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=4, setup_ops=OPS,
                      predict_ops=OPS, learn_ops=OPS, setup_size=3, predict_size=4, learn_size=2,
                      dtype="float64", max_abs_error=1e300)


def _available(name):
    try:
        backends.get_backend(name)
    except RuntimeError:
        return False
    return True


BACKENDS = [b for b in backends.BACKENDS if _available(b)]

NEG = [(-1.0, -2.0, -0.5, -3.0), (-0.25, -1.0, -2.0, -4.0)]
F32_03 = float(np.float32(0.3))


def _task(xs, ys, eval_type="rms", epochs=1):
    # Two examples in every case, so each backend compiles one function per eval type.
    pairs = list(zip(xs, ys)) * (2 // len(xs))
    return zero.fixed_tasks(pairs, pairs, eval_type=eval_type, num_epochs=epochs)


# name: (program text, task, expected validation predictions s1 (each example), expected fitness or None)
CASES = {
    # std::max(0, NaN) = 0: the vector max keeps its first operand (the old loop rule gave NaN and fitness 0).
    "vector max(x, NaN) = x": (
        "def Setup():\ndef Predict():\n  v2 = maximum(v1, v3)\n  s1 = norm(v2)\n"
        "def Learn():\n  v3 = v1 / v1\n",
        _task([(1.0, 2.0, 3.0, 4.0), (0.5, -1.0, 2.0, 1.0)], [0.0, 1.0], "accuracy"), [0.0, 0.0], 0.5),
    # std::min(NaN, x) = NaN: the norm is NaN and heaviside gives 0 (the old loop rule gave x, hence 1).
    "vector min(NaN, y) = NaN": (
        "def Setup():\ndef Predict():\n  v3 = bcast(s3)\n  v2 = minimum(v3, v0)\n  s2 = norm(v2)\n"
        "  s1 = heaviside(s2)\ndef Learn():\n  s3 = s4 / s4\n",
        _task([(1.0, 2.0, 3.0, 4.0)], [0.0]), [0.0], 1.0),
    # A row-constant matrix: the std of each row is exactly 0 for F = 4 (equal terms sum exactly).
    "std of a constant row is 0": (
        "def Setup():\ndef Predict():\n  s1 = mean(v3)\n  m0 = bcast(v0, axis=0)\n"
        "def Learn():\n  v3 = std(m0, axis=1)\n",
        _task([(0.1, 0.7, 1.3, 0.3), (0.3, 0.1, 0.9, 2.1)], [0.0, 0.0]), [0.0, 0.0], 1.0),
    "std of a constant vector is 0": (
        "def Setup():\ndef Predict():\n  v2 = bcast(s2)\n  s1 = std(v2)\ndef Learn():\n  s2 = 0.1\n",
        _task([(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)], [0.0, 0.0]), [0.0, 0.0], 1.0),
    # +0 * negative x = -0 in every term; a sum of -0 terms is -0, so 1/s is -inf and heaviside gives 0.
    "sum of -0 terms is -0": (
        "def Setup():\ndef Predict():\n  s2 = dot(v3, v0)\n  s3 = 1 / s2\n  s1 = heaviside(s3)\n"
        "def Learn():\n",
        _task(NEG, [0.0, 0.0]), [0.0, 0.0], 1.0),
    "mean of a -0 vector is -0": (
        "def Setup():\n  s4 = -1.0\ndef Predict():\n  v2 = s4 * v3\n  s2 = mean(v2)\n  s3 = 1 / s2\n"
        "  s1 = heaviside(s3)\ndef Learn():\n",
        _task([(1.0, 2.0, 3.0, 4.0)], [0.0]), [0.0], 1.0),
    # A register holding -0 reads as -0 (every backend, including the masked reads of `select`).
    "register -0 is read as -0": (
        "def Setup():\n  s3 = -1.0\n  s2 = s2 * s3\ndef Predict():\n  s4 = 1 / s2\n  s1 = heaviside(s4)\n"
        "def Learn():\n",
        _task([(1.0, 2.0, 3.0, 4.0)], [0.0]), [0.0], 1.0),
    # Stored constants: VECTOR_CONST_SET's value is float32, SCALAR_CONST_SET's is float64.
    "vector const value is float32": (
        "def Setup():\n  v1[0] = 0.3\ndef Predict():\n  s1 = dot(v1, v0)\ndef Learn():\n",
        _task([(1.0, 0.0, 0.0, 0.0)], [0.0]), [F32_03], None),
    "scalar const value is float64": (
        "def Setup():\n  s1 = 0.3\ndef Predict():\n  s1 = s1 + s0\ndef Learn():\n",
        _task([(1.0, 0.0, 0.0, 0.0)], [0.0]), [0.3], None),
    "gaussian mean is float32": (
        "def Setup():\n  s2 = gaussian(0.3, 0.0)\ndef Predict():\n  s1 = s2 + s0\ndef Learn():\n",
        _task([(1.0, 0.0, 0.0, 0.0)], [0.0]), [F32_03], None),
    "uniform low > high gives float32 low": (
        "def Setup():\n  s2 = uniform(0.3, -0.5)\ndef Predict():\n  s1 = s2 + s0\ndef Learn():\n",
        _task([(1.0, 0.0, 0.0, 0.0)], [0.0]), [F32_03], None),
}


_RESULTS = {}


def _results(backend):
    """Every case's (fitness, last validation predictions) on one backend, computed once per backend."""
    if backend not in _RESULTS:
        out = {}
        for name, (text, task, _, _) in CASES.items():
            prog = zero.parse_program(text, CFG)
            fit, preds = zero.evaluate(prog, task, CFG, key=jax.random.key(0), backend=backend,
                                       return_predictions=True)
            out[name] = (float(np.asarray(fit)[0]), np.asarray(preds["valid"])[0, -1])
        _RESULTS[backend] = out
    return _RESULTS[backend]


# The pallas interpret-mode kernels take minutes to compile on the 2-core CPU: a slow test (CI's second step).
BACKEND_PARAMS = [pytest.param(b, marks=pytest.mark.slow) if b == "pallas" else b for b in BACKENDS]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", list(CASES))
def test_battery_case_gives_the_reference_value(name, backend):
    _, _, want_preds, want_fitness = CASES[name]
    fitness, preds = _results(backend)[name]
    want = np.resize(np.asarray(want_preds, np.float64), preds.shape)
    if name.startswith("std of a constant row"):
        want = np.zeros_like(preds)  # s1 before Learn of the first example is mean(v3 = 0) = 0 too
    np.testing.assert_array_equal(preds, want, err_msg=f"{name} on {backend}")
    # Bitwise, including the sign of zero.
    assert np.array_equal(np.signbit(preds), np.signbit(want)), (name, backend, preds)
    if want_fitness is not None:
        assert fitness == want_fitness, (name, backend, fitness)


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_reference_agrees_on_the_battery(name):
    text, task, want_preds, want_fitness = CASES[name]
    prog = zero.parse_program(text, CFG)
    ref_prog = R.from_azjax_program(prog)
    tk = {"train_features": np.asarray(task.train_features)[0], "train_labels": np.asarray(task.train_labels)[0],
          "valid_features": np.asarray(task.valid_features)[0], "valid_labels": np.asarray(task.valid_labels)[0]}
    fit, _, valid = R.evaluate_program(ref_prog, tk, task.eval_type, task.num_epochs, None,
                                       np.random.default_rng(0), bank_sizes=(5, 4, 2), max_abs_error=1e300)
    preds = np.asarray(valid)[-1]
    want = np.resize(np.asarray(want_preds, np.float64), preds.shape)
    np.testing.assert_array_equal(preds, want, err_msg=name)
    assert np.array_equal(np.signbit(preds), np.signbit(want))
    if want_fitness is not None:
        assert fit == want_fitness


@pytest.mark.slow
def test_index_fraction_truncates_after_float32_rounding():
    # 0.2499999999 rounds to 0.25 in float32: element 1 of 4, also when the program is not canonical.
    prog = zero.parse_program("def Setup():\n  v1[1] = 2.0\ndef Predict():\n  s1 = dot(v1, v0)\n"
                              "def Learn():\n", CFG)
    data = np.asarray(prog.setup.data).copy()
    data[0, 0] = 0.2499999999
    raw = prog.replace(setup=prog.setup.replace(data=data))
    task = _task([(0.0, 1.0, 0.0, 0.0)], [0.0])
    canonical = zero.canonicalize(raw, CFG, xp=np)
    assert float(np.asarray(canonical.setup.data)[0, 0]) == 0.375  # the centre of element 1
    for b in BACKENDS:
        for p in (raw, canonical):
            _, preds = zero.evaluate(p, task, CFG, key=jax.random.key(0), backend=b, return_predictions=True)
            assert np.all(np.asarray(preds["valid"])[0, -1] == 2.0), b


def test_canonical_form_stores_float32_constants():
    prog = zero.parse_program("def Setup():\n  v1[0] = 0.3\n  s2 = 0.3\n  s3 = gaussian(0.3, 0.1)\n"
                              "def Predict():\ndef Learn():\n", CFG)
    data = np.asarray(prog.setup.data)
    assert data[0, 1] == F32_03 and data[1, 0] == 0.3
    assert data[2, 0] == F32_03 and data[2, 1] == float(np.float32(0.1))


@pytest.mark.slow
def test_subnormals_native_keeps_them_xla_flushes_them():
    # 1e-310 / 1e-310 = 1 in the reference; XLA on CPU flushes subnormals to zero (0 / 0 = NaN), a documented
    # platform difference of the XLA backends.
    prog = zero.parse_program("def Setup():\n  s2 = 1e-310\ndef Predict():\n  s1 = s2 / s2\ndef Learn():\n", CFG)
    task = _task([(1.0, 0.0, 0.0, 0.0)], [0.0])
    programs = zero.stack_programs([prog] * 16)  # several programs: the native kernel's worker threads too
    for b in BACKENDS:
        _, preds = zero.evaluate(programs, task, CFG, key=jax.random.key(0), backend=b, return_predictions=True)
        got = np.asarray(preds["valid"])[:, 0, -1]
        if b == "native":
            assert np.all(got == 1.0), got
        elif b in ("select", "cond"):
            assert np.all(np.isnan(got)), (b, got)
