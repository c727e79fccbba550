"""An independent, deliberately plain NumPy reference of the AutoML-Zero executor.

Written from the reference's documented semantics (``docs/automl_zero.md``, ``docs/instruction_set.md``), not
from the JAX implementation in ``azjax/zero``, so that differential tests compare two independent
readings of the spec. Everything is a straightforward Python loop over instructions and examples;
speed is irrelevant here, clarity and faithfulness to the C++ semantics are the point.

Conventions
-----------
* Memory is a dict of NumPy arrays: ``s`` [S], ``v`` [V, F], ``m`` [Mx, F, F], all of one float
  dtype (float64 like the C++ reference, or float32 for the reduced-precision mode of azjax).
* An instruction is a tuple ``(op, in1, in2, out, f0, f1, f2)``; ``op`` is a name (enum name
  without ``_OP``) or an id 0..64. SCALAR_CONST_SET's constant is ``f0``; VECTOR_CONST_SET uses
  ``f0`` = index fraction, ``f1`` = value; MATRIX_CONST_SET ``f0``, ``f1`` fractions, ``f2`` value;
  uniform sets ``f0`` = low, ``f1`` = high; Gaussian sets ``f0`` = mean, ``f1`` = sd.
* A program is a dict ``{"setup": [...], "predict": [...], "learn": [...]}`` of such lists.
* Reductions add in the order of the reference's x86-64 build, with no +0 start value:
  a full reduction (dot, norm, mean, std of a vector, or of a matrix read in column-major order)
  adds packets of two elements as a halving tree, then the two lanes, then a leftover element; a
  reduction along one matrix axis (row/column norms, means and stds, matrix-vector and matrix
  products) is a halving tree over its F terms.
* VECTOR_MIN / VECTOR_MAX behave as ``std::min``/``std::max`` (first operand unless the second is
  strictly smaller/greater); the matrix hand loops return the second operand when a NaN is involved.
* Constants other than SCALAR_CONST_SET's are stored as float32 (also in float64 runs); an index
  fraction is truncated as ``int(F * f)`` after float32 rounding, in float32.

Multi-class tasks (``eval_type="multiclass"``, ``num_classes=K``; azjax's docs/automl_zero.md
"Multi-class tasks", following the reserved vector addresses of the released code's unused
multi-class branch): labels are class ids; the harness zeroes the label vector v1 before every
Predict and writes the one-hot label there before every Learn (s0 stays 0); the prediction is
v2[:K], logits; during training the softmax of the logits is written back to v2 (entries >= K
set to 0) and a NaN probability stops training like a NaN error; validation keeps the logits
and counts an example right when all K logits are finite and the first largest is the label;
fitness is the accuracy.

Optional ``perturb``: a callable applied to the result of every op that is not exact in IEEE
arithmetic (everything except NO_OP, abs, heaviside, min/max, transpose, broadcasts and the
constant/random setters) and to the training-time sigmoid. Tests use it to measure how strongly
a program amplifies rounding differences (a condition-number probe), so that comparisons against
another implementation are only made where rounding cannot legitimately change the answer.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# The op table: name, in1 type, in2 type, out type ('s', 'v', 'm' or None).
# --------------------------------------------------------------------------------------------
_S, _V, _M = "s", "v", "m"
OP_TABLE: tuple[tuple[str, str | None, str | None, str | None], ...] = (
    ("NO_OP", None, None, None),  # 0
    ("SCALAR_SUM", _S, _S, _S),  # 1
    ("SCALAR_DIFF", _S, _S, _S),  # 2
    ("SCALAR_PRODUCT", _S, _S, _S),  # 3
    ("SCALAR_DIVISION", _S, _S, _S),  # 4
    ("SCALAR_ABS", _S, None, _S),  # 5
    ("SCALAR_RECIPROCAL", _S, None, _S),  # 6
    ("SCALAR_SIN", _S, None, _S),  # 7
    ("SCALAR_COS", _S, None, _S),  # 8
    ("SCALAR_TAN", _S, None, _S),  # 9
    ("SCALAR_ARCSIN", _S, None, _S),  # 10
    ("SCALAR_ARCCOS", _S, None, _S),  # 11
    ("SCALAR_ARCTAN", _S, None, _S),  # 12
    ("SCALAR_EXP", _S, None, _S),  # 13
    ("SCALAR_LOG", _S, None, _S),  # 14
    ("SCALAR_HEAVYSIDE", _S, None, _S),  # 15
    ("VECTOR_HEAVYSIDE", _V, None, _V),  # 16
    ("MATRIX_HEAVYSIDE", _M, None, _M),  # 17
    ("SCALAR_VECTOR_PRODUCT", _S, _V, _V),  # 18
    ("SCALAR_BROADCAST", _S, None, _V),  # 19
    ("VECTOR_RECIPROCAL", _V, None, _V),  # 20
    ("VECTOR_NORM", _V, None, _S),  # 21
    ("VECTOR_ABS", _V, None, _V),  # 22
    ("VECTOR_SUM", _V, _V, _V),  # 23
    ("VECTOR_DIFF", _V, _V, _V),  # 24
    ("VECTOR_PRODUCT", _V, _V, _V),  # 25
    ("VECTOR_DIVISION", _V, _V, _V),  # 26
    ("VECTOR_INNER_PRODUCT", _V, _V, _S),  # 27
    ("VECTOR_OUTER_PRODUCT", _V, _V, _M),  # 28
    ("SCALAR_MATRIX_PRODUCT", _S, _M, _M),  # 29
    ("MATRIX_RECIPROCAL", _M, None, _M),  # 30
    ("MATRIX_VECTOR_PRODUCT", _M, _V, _V),  # 31
    ("VECTOR_COLUMN_BROADCAST", _V, None, _M),  # 32
    ("VECTOR_ROW_BROADCAST", _V, None, _M),  # 33
    ("MATRIX_NORM", _M, None, _S),  # 34
    ("MATRIX_COLUMN_NORM", _M, None, _V),  # 35
    ("MATRIX_ROW_NORM", _M, None, _V),  # 36
    ("MATRIX_TRANSPOSE", _M, None, _M),  # 37
    ("MATRIX_ABS", _M, None, _M),  # 38
    ("MATRIX_SUM", _M, _M, _M),  # 39
    ("MATRIX_DIFF", _M, _M, _M),  # 40
    ("MATRIX_PRODUCT", _M, _M, _M),  # 41
    ("MATRIX_DIVISION", _M, _M, _M),  # 42
    ("MATRIX_MATRIX_PRODUCT", _M, _M, _M),  # 43
    ("SCALAR_MIN", _S, _S, _S),  # 44
    ("VECTOR_MIN", _V, _V, _V),  # 45
    ("MATRIX_MIN", _M, _M, _M),  # 46
    ("SCALAR_MAX", _S, _S, _S),  # 47
    ("VECTOR_MAX", _V, _V, _V),  # 48
    ("MATRIX_MAX", _M, _M, _M),  # 49
    ("VECTOR_MEAN", _V, None, _S),  # 50
    ("MATRIX_MEAN", _M, None, _S),  # 51
    ("MATRIX_ROW_MEAN", _M, None, _V),  # 52
    ("MATRIX_ROW_ST_DEV", _M, None, _V),  # 53
    ("VECTOR_ST_DEV", _V, None, _S),  # 54
    ("MATRIX_ST_DEV", _M, None, _S),  # 55
    ("SCALAR_CONST_SET", None, None, _S),  # 56
    ("VECTOR_CONST_SET", None, None, _V),  # 57
    ("MATRIX_CONST_SET", None, None, _M),  # 58
    ("SCALAR_UNIFORM_SET", None, None, _S),  # 59
    ("VECTOR_UNIFORM_SET", None, None, _V),  # 60
    ("MATRIX_UNIFORM_SET", None, None, _M),  # 61
    ("SCALAR_GAUSSIAN_SET", None, None, _S),  # 62
    ("VECTOR_GAUSSIAN_SET", None, None, _V),  # 63
    ("MATRIX_GAUSSIAN_SET", None, None, _M),  # 64
)
NUM_OPS = len(OP_TABLE)
OP_IDS: dict[str, int] = {name: i for i, (name, _, _, _) in enumerate(OP_TABLE)}
OP_NAMES: tuple[str, ...] = tuple(name for name, _, _, _ in OP_TABLE)
# Per-op types, keyed by id: (in1, in2, out).
OP_TYPES: dict[int, tuple[str | None, str | None, str | None]] = {
    i: (a, b, c) for i, (_, a, b, c) in enumerate(OP_TABLE)
}
RANDOM_OPS = frozenset(range(59, 65))
DETERMINISTIC_OPS = tuple(i for i in range(NUM_OPS) if i not in RANDOM_OPS)
# Ops whose result is exact whatever the summation order / libm: never perturbed.
EXACT_OPS = frozenset(
    OP_IDS[n]
    for n in (
        "NO_OP", "SCALAR_ABS", "SCALAR_HEAVYSIDE", "VECTOR_HEAVYSIDE", "MATRIX_HEAVYSIDE",
        "SCALAR_BROADCAST", "VECTOR_ABS", "VECTOR_COLUMN_BROADCAST", "VECTOR_ROW_BROADCAST",
        "MATRIX_TRANSPOSE", "MATRIX_ABS", "SCALAR_MIN", "VECTOR_MIN", "MATRIX_MIN", "SCALAR_MAX",
        "VECTOR_MAX", "MATRIX_MAX", "SCALAR_CONST_SET", "VECTOR_CONST_SET", "MATRIX_CONST_SET",
    )
) | RANDOM_OPS

Instruction = tuple  # (op, in1, in2, out, f0, f1, f2)
Program = Mapping[str, Sequence[Instruction]]
COMPONENTS = ("setup", "predict", "learn")


def op_id(op: int | str) -> int:
    """Returns the id 0..64 of an op given by id or by name (with or without ``_OP``)."""
    if isinstance(op, str):
        name = op[:-3] if op.endswith("_OP") else op
        if name not in OP_IDS:
            raise ValueError(f"op: unknown op name {op!r}")
        return OP_IDS[name]
    i = int(op)
    if not 0 <= i < NUM_OPS:
        raise ValueError(f"op: id {i} outside 0..{NUM_OPS - 1}")
    return i


def zero_memory(num_scalars: int, num_vectors: int, num_matrices: int, features: int,
                dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """Returns wiped memory (all zeros), as the executor's constructor does."""
    return {
        "s": np.zeros((num_scalars,), dtype),
        "v": np.zeros((num_vectors, features), dtype),
        "m": np.zeros((num_matrices, features, features), dtype),
    }


# --------------------------------------------------------------------------------------------
# Small helpers: sequential reductions in the memory dtype.
# --------------------------------------------------------------------------------------------
def _tree_sum(terms: list, dtype) -> Any:
    # (first half) + (second half), recursively.
    if len(terms) == 1:
        return dtype(terms[0])
    half = len(terms) // 2
    return dtype(_tree_sum(terms[:half], dtype) + _tree_sum(terms[half:], dtype))


def _full_sum(values: np.ndarray, dtype) -> Any:
    # Packets of two as a halving tree, then the two lanes, then a leftover; matrices column-major.
    x = np.asarray(values)
    flat = list((x.T if x.ndim == 2 else x).reshape(-1))
    n = len(flat)
    if n == 1:
        return dtype(flat[0])
    paired = 2 * (n // 2)
    total = dtype(_tree_sum(flat[0:paired:2], dtype) + _tree_sum(flat[1:paired:2], dtype))
    return dtype(total + flat[-1]) if n % 2 else total


def _axis_sum(values: np.ndarray, dtype) -> Any:
    # The F terms along one matrix axis, in index order, as a halving tree.
    return _tree_sum(list(np.asarray(values).reshape(-1)), dtype)


def _mean(values: np.ndarray, dtype, axis_terms: bool = False) -> Any:
    n = np.asarray(values).size
    total = _axis_sum(values, dtype) if axis_terms else _full_sum(values, dtype)
    return dtype(total / dtype(n))


def _one_pass_std(values: np.ndarray, dtype, perturb=None, axis_terms: bool = False) -> Any:
    # sqrt(E[x^2] - E[x]^2): can be NaN when rounding makes the difference negative.
    values = np.asarray(values)
    mean_sq = _mean(values * values, dtype, axis_terms)
    mean = _mean(values, dtype, axis_terms)
    diff = dtype(mean_sq - mean * mean)
    if perturb is not None and (getattr(perturb, "std_always", False)
                                or not _std_is_exact(values, mean_sq, mean, diff)):
        # The difference's rounding error is absolute (a few ulps of E[x^2]), not relative: for
        # (nearly) constant inputs its sign, hence NaN vs a small number, is decided by rounding.
        # When every step was exact (e.g. a constant 0.5 matrix) any IEEE implementation that
        # divides by n gets the same result, so there is nothing to perturb.
        diff = dtype(diff + (perturb(mean_sq) - mean_sq))
    return dtype(np.sqrt(diff))


def _std_is_exact(values, mean_sq, mean, diff) -> bool:
    from fractions import Fraction
    flat = [Fraction(float(x)) for x in np.asarray(values).reshape(-1) if np.isfinite(x)]
    if len(flat) != np.asarray(values).size or not np.isfinite(diff):
        return False
    n = len(flat)
    exact_msq = sum(x * x for x in flat) / n
    exact_mean = sum(flat) / n
    return (Fraction(float(mean_sq)) == exact_msq and Fraction(float(mean)) == exact_mean
            and Fraction(float(diff)) == exact_msq - exact_mean * exact_mean)


def _norm(values: np.ndarray, dtype, axis_terms: bool = False) -> Any:
    values = np.asarray(values)
    sq = values * values
    return dtype(np.sqrt(_axis_sum(sq, dtype) if axis_terms else _full_sum(sq, dtype)))


def _stored(value, dtype) -> Any:
    # A float32-stored constant (float_data_k), widened to the memory dtype.
    return dtype(np.float32(value))


def _index(fraction: float, features: int) -> int:
    # int(F * f) in float32 after float32 rounding, truncation; fractions in [0, 1).
    i = int(np.float32(features) * np.float32(fraction))
    if not 0 <= i < features:
        raise ValueError(f"index fraction {fraction!r} gives index {i} outside [0, {features})")
    return i


def _scalar_min(x, y):
    return y if y < x else x  # std::min: x unless y < x


def _scalar_max(x, y):
    return y if x < y else x  # std::max: x unless x < y


def _std_min(x, y):
    return y if y < x else x  # std::min elementwise (vector min)


def _std_max(x, y):
    return y if x < y else x


def _loop_min(x, y):
    return x if x < y else y  # matrix hand loop: NaN anywhere -> second operand


def _loop_max(x, y):
    return x if x > y else y


def _elementwise(fn, a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    out = np.empty(a.shape, dtype)
    for idx in np.ndindex(a.shape):
        out[idx] = fn(a[idx], b[idx])
    return out


def sigmoid(x, dtype=np.float64):
    """1 / (1 + exp(-x)) in ``dtype`` (overflow of exp gives exactly 0)."""
    with np.errstate(all="ignore"):
        one = dtype(1)
        return dtype(one / (one + np.exp(dtype(-x))))


# --------------------------------------------------------------------------------------------
# One instruction.
# --------------------------------------------------------------------------------------------
def execute_instruction(op: int | str, in1: int, in2: int, out: int, f0: float, f1: float,
                        f2: float, mem: dict[str, np.ndarray], F: int,
                        rng: np.random.Generator | None,
                        perturb: Callable[[Any], Any] | None = None) -> None:
    """Executes one instruction on ``mem`` in place with the C++ reference semantics.

    ``F`` is the feature size; ``rng`` (a ``numpy.random.Generator``) is only used by the random
    setters 59..64. IEEE inf/NaN flow through unguarded. ``perturb`` (tests only) is applied to
    the result of every inexact op.
    """
    i = op_id(op)
    if i == 0:
        return
    s, v, m = mem["s"], mem["v"], mem["m"]
    dt = s.dtype.type
    a, b, c = int(in1), int(in2), int(out)
    t_in1, t_in2, t_out = OP_TYPES[i]
    with np.errstate(all="ignore"):
        res = _compute(i, a, b, c, dt(f0), dt(f1), dt(f2), s, v, m, F, dt, rng, perturb)
        if perturb is not None and i not in EXACT_OPS:
            res = perturb(res)
        if i == 57:  # single element of a vector
            v[c, _index(f0, F)] = res
        elif i == 58:  # single element of a matrix
            m[c, _index(f0, F), _index(f1, F)] = res
        elif t_out == _S:
            s[c] = res
        elif t_out == _V:
            v[c] = res
        else:
            m[c] = res


def _compute(i, a, b, c, f0, f1, f2, s, v, m, F, dt, rng, perturb=None):
    # Returns the op's result; every array result is a fresh array (aliasing-safe).
    one = dt(1)
    if i == 1:
        return s[a] + s[b]
    if i == 2:
        return s[a] - s[b]
    if i == 3:
        return s[a] * s[b]
    if i == 4:
        return s[a] / s[b]
    if i == 5:
        return abs(s[a])
    if i == 6:
        return one / s[a]
    if 7 <= i <= 14:
        fn = (np.sin, np.cos, np.tan, np.arcsin, np.arccos, np.arctan, np.exp, np.log)[i - 7]
        return dt(fn(s[a]))
    if i == 15:
        return one if s[a] >= 0 else dt(0)  # scalar heaviside: >= 0 (NaN -> 0)
    if i == 16:
        return np.array([one if x > 0 else dt(0) for x in v[a]], dt)  # > 0 (0, NaN -> 0)
    if i == 17:
        return np.where(m[a] > 0, one, dt(0)).astype(dt)
    if i == 18:
        return (s[a] * v[b]).astype(dt)
    if i == 19:
        return np.full((F,), s[a], dt)
    if i == 20:
        return (one / v[a]).astype(dt)
    if i == 21:
        return _norm(v[a], dt)
    if i == 22:
        return np.abs(v[a])
    if i == 23:
        return v[a] + v[b]
    if i == 24:
        return v[a] - v[b]
    if i == 25:
        return v[a] * v[b]
    if i == 26:
        return v[a] / v[b]
    if i == 27:
        return _full_sum(v[a] * v[b], dt)
    if i == 28:
        out = np.empty((F, F), dt)
        for r in range(F):
            for col in range(F):
                out[r, col] = v[a][r] * v[b][col]
        return out
    if i == 29:
        return (s[a] * m[b]).astype(dt)
    if i == 30:
        return (one / m[a]).astype(dt)
    if i == 31:
        return np.array([_axis_sum(m[a][r] * v[b], dt) for r in range(F)], dt)
    if i == 32:  # every column equals v: out[r, col] = v[r]
        return np.array([[v[a][r]] * F for r in range(F)], dt)
    if i == 33:  # every row equals v: out[r, col] = v[col]
        return np.array([list(v[a]) for _ in range(F)], dt)
    if i == 34:
        return _norm(m[a], dt)
    if i == 35:
        return np.array([_norm(m[a][:, col], dt, True) for col in range(F)], dt)
    if i == 36:
        return np.array([_norm(m[a][r, :], dt, True) for r in range(F)], dt)
    if i == 37:
        return m[a].T.copy()
    if i == 38:
        return np.abs(m[a])
    if i == 39:
        return m[a] + m[b]
    if i == 40:
        return m[a] - m[b]
    if i == 41:
        return m[a] * m[b]
    if i == 42:
        return m[a] / m[b]
    if i == 43:
        out = np.empty((F, F), dt)
        for r in range(F):
            for col in range(F):
                out[r, col] = _axis_sum(m[a][r, :] * m[b][:, col], dt)
        return out
    if i == 44:
        return _scalar_min(s[a], s[b])
    if i == 45:
        return _elementwise(_std_min, v[a], v[b], dt)
    if i == 46:
        return _elementwise(_loop_min, m[a], m[b], dt)
    if i == 47:
        return _scalar_max(s[a], s[b])
    if i == 48:
        return _elementwise(_std_max, v[a], v[b], dt)
    if i == 49:
        return _elementwise(_loop_max, m[a], m[b], dt)
    if i == 50:
        return _mean(v[a], dt)
    if i == 51:
        return _mean(m[a], dt)
    if i == 52:
        return np.array([_mean(m[a][r, :], dt, True) for r in range(F)], dt)
    if i == 53:
        return np.array([_one_pass_std(m[a][r, :], dt, perturb, True) for r in range(F)], dt)
    if i == 54:
        return _one_pass_std(v[a], dt, perturb)
    if i == 55:
        return _one_pass_std(m[a], dt, perturb)
    if i == 56:
        return f0
    if i == 57:
        return _stored(f1, dt)
    if i == 58:
        return _stored(f2, dt)
    if 59 <= i <= 64:
        f0, f1 = _stored(f0, dt), _stored(f1, dt)
        shape = ((), (F,), (F, F))[(i - 59) % 3]
        degenerate = (not f0 < f1) if i <= 61 else (f1 == 0)
        if degenerate:
            # abseil Uniform(IntervalOpen, lo, hi) returns lo when the interval is empty or
            # inverted; a Gaussian with sd = 0 is its mean (mean + 0 * z for any finite z).
            return np.full(shape, f0, dt) if shape else f0
        if rng is None:
            raise ValueError("rng: a numpy Generator is needed for random ops 59..64")
        if i <= 61:
            draw = rng.uniform(float(f0), float(f1), size=shape)
            # [lo, hi) -> open: re-draw the (probability ~0) endpoint lo.
            draw = np.where(draw <= float(f0), (float(f0) + float(f1)) / 2, draw)
            return draw.astype(dt) if shape else dt(draw)
        draw = rng.normal(size=shape)
        res = f0 + f1 * np.asarray(draw, dt)
        return res.astype(dt) if shape else dt(res)
    raise ValueError(f"op: id {i} not handled")


def run_component(instructions: Sequence[Instruction], mem: dict[str, np.ndarray], F: int,
                  rng: np.random.Generator | None,
                  perturb: Callable[[Any], Any] | None = None) -> None:
    """Runs a component function (a list of instruction tuples) on ``mem`` in place."""
    for ins in instructions:
        op, in1, in2, out, f0, f1, f2 = ins
        execute_instruction(op, in1, in2, out, f0, f1, f2, mem, F, rng, perturb)


# --------------------------------------------------------------------------------------------
# Evaluation of one program on one task.
# --------------------------------------------------------------------------------------------
def flip_and_squash(rmse) -> float:
    """Regression fitness 1 - (2/pi) atan(RMSE); NaN/inf RMSE -> 0."""
    rmse = float(rmse)
    if not math.isfinite(rmse):
        return 0.0
    return 1.0 - (2.0 / math.pi) * math.atan(rmse)


def softmax(logits, dtype=np.float64):
    """Softmax of K logits, plainly: NaN everywhere if the maximum is NaN (any NaN logit) or if
    a logit minus the maximum is NaN (a +inf logit, or all -inf)."""
    dt = np.dtype(dtype).type
    z = [dt(x) for x in logits]
    with np.errstate(all="ignore"):
        top = z[0]
        for x in z[1:]:
            top = dt(np.nan) if (np.isnan(top) or np.isnan(x)) else max(top, x)
        e = [dt(np.exp(dt(x - top))) for x in z]
        total = e[0]
        for x in e[1:]:
            total = dt(total + x)
        return np.asarray([dt(x / total) for x in e], dt)


def multiclass_correct(logits, label) -> bool:
    """True when every logit is finite and the first index of the largest equals ``label``."""
    z = np.asarray(logits)
    if not np.all(np.isfinite(z)):
        return False
    return int(np.argmax(z)) == int(label)


def evaluate_program(program: Program, task: Mapping[str, Any], eval_type: str, num_epochs: int,
                     epoch_orders: np.ndarray | None, rng: np.random.Generator | None,
                     max_abs_error: float = 100.0, *,
                     bank_sizes: tuple[int, int, int] | None = None, dtype: Any = None,
                     perturb: Callable[[Any], Any] | None = None, num_classes: int = 0,
                     ) -> tuple[float, np.ndarray, np.ndarray]:
    """Evaluates ``program`` on one task exactly as the C++ Executor.

    Args:
      program: {"setup": [...], "predict": [...], "learn": [...]} of instruction tuples.
      task: dict with "train_features" [N, F], "train_labels" [N], "valid_features" [M, F],
        "valid_labels" [M]. Its dtype is the computation dtype unless ``dtype`` is given.
      eval_type: "rms", "accuracy" or "multiclass" (then ``num_classes`` >= 2; labels are class
        ids; see the module docstring).
      num_epochs: E.
      epoch_orders: int [E, N], each row a permutation of range(N) (row 0 = identity); None means
        identity for every epoch.
      rng: numpy Generator for the random setters.
      max_abs_error: training early-stop threshold (and validation early-return threshold).
      bank_sizes: (S, V, Mx); default: the smallest banks that hold every address used (>= 2/1/1).
      dtype: np.float64 or np.float32.
      perturb: tests only, see the module docstring.
      num_classes: K for "multiclass".

    Returns:
      (fitness, train_predictions [E, N], valid_predictions [E, M]); predictions of steps that
      never ran are NaN. Train predictions are s1 after Predict (after the sigmoid for accuracy
      tasks); validation predictions are the raw s1. For "multiclass" they are [E, N, K] and
      [E, M, K]: the probabilities written back in training, the logits in validation.
    """
    if eval_type not in ("rms", "accuracy", "multiclass"):
        raise ValueError(f"eval_type: {eval_type!r} is not 'rms', 'accuracy' or 'multiclass'")
    if eval_type == "multiclass":
        return _evaluate_multiclass(program, task, num_classes, num_epochs, epoch_orders, rng,
                                    bank_sizes, dtype, perturb)
    xtr = np.asarray(task["train_features"])
    dt = np.dtype(dtype if dtype is not None else xtr.dtype).type
    xtr = xtr.astype(dt)
    ytr = np.asarray(task["train_labels"]).astype(dt)
    xva = np.asarray(task["valid_features"]).astype(dt)
    yva = np.asarray(task["valid_labels"]).astype(dt)
    n, F = xtr.shape
    num_valid = xva.shape[0]
    if epoch_orders is None:
        epoch_orders = np.tile(np.arange(n), (num_epochs, 1))
    epoch_orders = np.asarray(epoch_orders)
    if epoch_orders.shape != (num_epochs, n):
        raise ValueError(f"epoch_orders: shape {epoch_orders.shape} != {(num_epochs, n)}")
    if bank_sizes is None:
        bank_sizes = _min_banks(program)
    mem = zero_memory(*bank_sizes, F, dt)
    s, v = mem["s"], mem["v"]
    accuracy = eval_type == "accuracy"
    train_pred = np.full((num_epochs, n), np.nan, dt)
    valid_pred = np.full((num_epochs, num_valid), np.nan, dt)

    def sig(x):
        # Training only (written back, feeds Learn). The validation decision p > 0.5 uses the
        # unperturbed sigmoid: sigmoid(0) = 0.5 exactly in every implementation.
        p = sigmoid(x, dt)
        return perturb(p) if perturb is not None else p

    run_component(program.get("setup", ()), mem, F, rng, perturb)
    best = 0.0
    with np.errstate(all="ignore"):
        for e in range(num_epochs):
            ok = True
            for k in range(n):
                idx = int(epoch_orders[e, k])
                v[0] = xtr[idx]
                s[0] = dt(0)
                run_component(program.get("predict", ()), mem, F, rng, perturb)
                if accuracy:
                    s[1] = sig(s[1])  # written back: Learn sees the probability
                train_pred[e, k] = s[1]
                err = abs(ytr[idx] - s[1])
                if np.isnan(err) or err > max_abs_error:
                    ok = False
                    break
                v[0] = xtr[idx]
                s[0] = ytr[idx]
                run_component(program.get("learn", ()), mem, F, rng, perturb)
            if not ok:
                if e == 0:
                    return 0.0, train_pred, valid_pred
                break
            best = max(best, _validate(program, mem, xva, yva, accuracy, max_abs_error, F, rng,
                                       perturb, valid_pred[e]))
    return best, train_pred, valid_pred


def _validate(program, mem, xva, yva, accuracy, max_abs_error, F, rng, perturb, record):
    s, v = mem["s"], mem["v"]
    dt = s.dtype.type
    loss = dt(0)
    for j in range(xva.shape[0]):
        v[0] = xva[j]
        s[0] = dt(0)
        run_component(program.get("predict", ()), mem, F, rng, perturb)
        record[j] = s[1]
        if accuracy:
            p = sigmoid(s[1], dt)  # NOT written back
            err = dt(0) if (yva[j] > 0.5) == (p > 0.5) else dt(1)
        else:
            err = dt(yva[j] - s[1])
        loss = dt(loss + err * err)
        if np.isnan(abs(err)) or abs(err) > max_abs_error:
            return 0.0
    loss = loss / dt(xva.shape[0])  # full valid size
    if accuracy:
        return float(1 - loss)
    return flip_and_squash(np.sqrt(loss))


def _evaluate_multiclass(program, task, K, num_epochs, epoch_orders, rng, bank_sizes, dtype,
                         perturb):
    """The multi-class loop (module docstring): label vector v1, prediction v2[:K], softmax."""
    if K < 2:
        raise ValueError(f"num_classes: need >= 2 for multiclass, got {K}")
    xtr = np.asarray(task["train_features"])
    dt = np.dtype(dtype if dtype is not None else xtr.dtype).type
    xtr = xtr.astype(dt)
    ytr = np.asarray(task["train_labels"]).astype(np.int64)
    xva = np.asarray(task["valid_features"]).astype(dt)
    yva = np.asarray(task["valid_labels"]).astype(np.int64)
    n, F = xtr.shape
    num_valid = xva.shape[0]
    if epoch_orders is None:
        epoch_orders = np.tile(np.arange(n), (num_epochs, 1))
    if bank_sizes is None:
        bank_sizes = _min_banks(program)
    bank_sizes = (bank_sizes[0], max(bank_sizes[1], 3), bank_sizes[2])
    mem = zero_memory(*bank_sizes, F, dt)
    s, v = mem["s"], mem["v"]
    train_pred = np.full((num_epochs, n, K), np.nan, dt)
    valid_pred = np.full((num_epochs, num_valid, K), np.nan, dt)

    def onehot(label):
        out = np.zeros(F, dt)
        out[int(label)] = 1
        return out

    run_component(program.get("setup", ()), mem, F, rng, perturb)
    best = 0.0
    with np.errstate(all="ignore"):
        for e in range(num_epochs):
            ok = True
            for k in range(n):
                idx = int(epoch_orders[e, k])
                v[0] = xtr[idx]
                s[0] = dt(0)
                v[1] = 0
                run_component(program.get("predict", ()), mem, F, rng, perturb)
                probs = softmax(v[2][:K], dt)
                if perturb is not None:
                    probs = np.asarray([perturb(p) for p in probs], dt)
                v[2] = 0
                v[2][:K] = probs  # written back: Learn sees probabilities
                train_pred[e, k] = probs
                if np.any(np.isnan(probs)):
                    ok = False
                    break
                v[0] = xtr[idx]
                s[0] = dt(0)
                v[1] = onehot(ytr[idx])
                run_component(program.get("learn", ()), mem, F, rng, perturb)
            if not ok:
                if e == 0:
                    return 0.0, train_pred, valid_pred
                break
            wrong = 0
            for j in range(num_valid):
                v[0] = xva[j]
                s[0] = dt(0)
                v[1] = 0
                run_component(program.get("predict", ()), mem, F, rng, perturb)
                valid_pred[e, j] = v[2][:K]  # NOT normalized
                wrong += 0 if multiclass_correct(v[2][:K], yva[j]) else 1
            best = max(best, float(1 - dt(wrong) / dt(num_valid)))
    return best, train_pred, valid_pred


def _min_banks(program: Program) -> tuple[int, int, int]:
    need = {"s": 2, "v": 1, "m": 1}
    for comp in COMPONENTS:
        for ins in program.get(comp, ()):
            i = op_id(ins[0])
            for addr, typ in zip(ins[1:4], OP_TYPES[i]):
                if typ is not None:
                    need[typ] = max(need[typ], int(addr) + 1)
    return need["s"], need["v"], need["m"]


# --------------------------------------------------------------------------------------------
# Conversion from the azjax Program pytree.
# --------------------------------------------------------------------------------------------
def from_arrays(instructions: np.ndarray, data: np.ndarray, size: int) -> list[Instruction]:
    """One component from arrays: instructions int [L, 4], data float [L, 3], used length."""
    instructions = np.asarray(instructions)
    data = np.asarray(data)
    out = []
    for r in range(int(size)):
        op, a, b, c = (int(x) for x in instructions[r])
        f0, f1, f2 = (float(x) for x in data[r])
        out.append((op, a, b, c, f0, f1, f2))
    return out


def from_azjax_program(program: Any, index: int | tuple[int, ...] | None = None) -> dict:
    """Converts an azjax ``zero.Program`` (fields setup/predict/learn, each a Component with
    ``instructions`` [.., L, 4], ``data`` [.., L, 3], ``size`` [..]) to the reference's dict.

    ``index`` selects one program from a stacked (batched) Program.
    """
    result = {}
    for comp in COMPONENTS:
        c = getattr(program, comp)
        ins, dat, size = np.asarray(c.instructions), np.asarray(c.data), np.asarray(c.size)
        if index is not None:
            ins, dat, size = ins[index], dat[index], size[index]
        result[comp] = from_arrays(ins, dat, int(size))
    return result
