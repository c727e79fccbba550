"""The AutoML-Zero instruction set: 65 ops (ids 0-64) in one table.

This module is the single source of truth for the instruction set: every other per-op fact in azjax (the
NumPy tables below, validation and canonical form in `program`, random instructions and mutations, liveness,
the interpreters, the native kernel's table, `docs/instruction_set.md`) is derived from `OPS` or checked
against it by a test.

Each op is an `OpSpec`: its id and name (the reference enum name without `_OP`), operand and result types
('s' scalar, 'v' F-vector, 'm' F×F matrix, or None), its constants (`Constant`: role, the range random
instructions draw from, how ALTER_PARAM changes it, whether the reference stores it as float32), its
relative cost (train budget), its program-text template and its kernel. A kernel is a pure jnp function

    kernel(a, b, c, d, key) -> result

of the two operands `a`, `b`, the current value `c` of the output address (only the single-element const
sets read it), the float constants `d = (f0, f1, f2)` and a PRNG key (only the random ops use it). It returns
the new value of the output address. Kernels follow the C++ reference exactly (docs/backends.md, "Exactness"):
IEEE inf/NaN flow through unguarded; comparison-based ops reproduce the C++ NaN behaviour; reductions add in
the reference's order with no +0 start; constants stored as float32 by the reference are read as float32.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Kernel = Callable[..., jax.Array]


ALTERATIONS = ("redraw", "scale_or_flip", "scale")
"""How ALTER_PARAM changes a constant: re-draw an index fraction, scale by a log-normal factor or (p = 0.1)
flip the sign, or scale only (a standard deviation stays positive)."""


@dataclasses.dataclass(frozen=True)
class Constant:
    """One constant slot of an op (the reference's activation_data / float_data_k)."""

    role: str  # 'value', 'index' (element-index fraction), 'low', 'high', 'mean' or 'sd'
    low: float  # random instructions draw the constant from U[low, high)
    high: float
    alteration: str  # one of ALTERATIONS
    float32: bool = True  # stored as float32 by the reference, also in float64 runs

    @property
    def is_index(self) -> bool:
        return self.role == "index"


_VALUE = Constant("value", -1.0, 1.0, "scale_or_flip")
_INDEX = Constant("index", 0.0, 1.0, "redraw")
_LOW = Constant("low", -1.0, 1.0, "scale_or_flip")
_HIGH = Constant("high", -1.0, 1.0, "scale_or_flip")
_MEAN = Constant("mean", -1.0, 1.0, "scale_or_flip")
_SD = Constant("sd", 0.0, 1.0, "scale")


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One instruction-set entry."""

    id: int
    name: str
    in1: Optional[str]
    in2: Optional[str]
    out: Optional[str]
    data: Tuple[Constant, ...]
    cost: int
    kernel: Kernel
    text: str  # the program-text template (program_text.md)

    @property
    def is_random(self) -> bool:
        return self.id >= 59

    @property
    def reads_output(self) -> bool:
        """Single-element const sets keep the rest of the output, so the output is also an input."""
        return self.name in ("VECTOR_CONST_SET", "MATRIX_CONST_SET")

    @property
    def sorts_range(self) -> bool:
        """Uniform sets re-sort (low, high) after ALTER_PARAM changes one of them."""
        return tuple(c.role for c in self.data) == ("low", "high")


def _stored(value, dtype):
    """A constant as the reference stores it: float32 (then widened again in a float64 run)."""
    return value.astype(jnp.float32).astype(dtype)


def _index(fraction, size):
    # The reference stores element indices as float32 fractions in [0, 1) and truncates F * f (in float32).
    scaled = fraction.astype(jnp.float32) * jnp.float32(size)
    return jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, size - 1)


def product(a, b):
    """a * b that the compiler cannot fuse with a following addition into a fused multiply-add.

    XLA on CPU contracts `x + a * b` into an FMA (one rounding instead of two), which the reference never
    does: the standard deviation of a constant vector would come out as 1e-9 instead of 0. A select on
    the product (NaN stays NaN) sits between the multiply and the add, so the product is rounded on its own.
    """
    p = a * b
    return jnp.where(p == p, p, jnp.asarray(jnp.nan, p.dtype))


def _halving_tree(term, n):
    """term(0) + ... + term(n - 1) added as a halving tree: (first half) + (second half), recursively."""
    if n == 1:
        return term(0)
    half = n // 2
    return _halving_tree(term, half) + _halving_tree(lambda k: term(half + k), n - half)


def full_sum(x):
    """The sum of all elements of a vector, or of a matrix in column-major order, in the reference's order.

    The reference (Eigen, SSE2 doubles) adds packets of two elements as a halving tree, then the two lanes,
    then a leftover element; there is no +0 start value. So a sum of -0 terms is -0, and a sum of 2^k equal
    values is exact (the standard deviation of a constant vector is exactly 0). See docs/backends.md.
    """
    flat = (x.T if x.ndim == 2 else x).reshape(-1)
    n = flat.shape[0]
    if n == 1:
        return flat[0]
    lanes = _halving_tree(lambda k: flat[2 * k : 2 * k + 2], n // 2)
    total = lanes[0] + lanes[1]
    return total + flat[n - 1] if n % 2 else total


def axis_sum(x, axis):
    """Sums of a matrix along `axis` (per row or column): a halving tree over the F terms, no +0 start."""
    return _halving_tree(lambda k: jnp.take(x, k, axis=axis), x.shape[axis])


def _mean(x, axis=None):
    # A true division, as the reference: XLA rewrites a division by a constant (or a broadcast scalar, as
    # vmap makes it) into a multiplication by its rounded reciprocal, which breaks exact cases. A divisor
    # that depends on the data - equal to n when the sum is a number or ±inf, NaN when the sum is NaN
    # anyway - cannot be rewritten.
    n = x.size if axis is None else x.shape[axis]
    total = full_sum(x) if axis is None else axis_sum(x, axis)
    return total / (n + 0 * jnp.abs(jnp.sign(total)))


def _std(x):
    # One-pass formula of the reference (can give NaN for constant inputs); not jnp.std.
    return jnp.sqrt(_mean(product(x, x)) - product(_mean(x), _mean(x)))


def _row_std(x):
    return jnp.sqrt(_mean(product(x, x), axis=1) - product(_mean(x, axis=1), _mean(x, axis=1)))


def _uniform(key, low, high, shape, dtype):
    # abseil's Uniform(IntervalOpen, lo, hi) returns lo when the interval is empty or inverted.
    u = jax.random.uniform(key, shape, dtype)
    return jnp.where(low < high, low + product(high - low, u), jnp.broadcast_to(low, shape))


def _gaussian(key, mean, sd, shape, dtype):
    return mean + product(sd, jax.random.normal(key, shape, dtype))


def _k(fn):
    """Adapts a kernel written over (a, b) to the full kernel signature."""
    return lambda a, b, c, d, key: fn(a, b)


def _build_table():
    # Long by design: one `add` line per op of the instruction set, in id order (a table, not logic).
    ops = []

    def add(name, in1, in2, out, kernel, text, cost, data=()):
        ops.append((name, in1, in2, out, kernel, text, cost, data))

    add("NO_OP", None, None, None, _k(lambda a, b: a), "no_op", 3013921)
    add("SCALAR_SUM", "s", "s", "s", _k(lambda a, b: a + b), "{o} = {a} + {b}", 4703759)
    add("SCALAR_DIFF", "s", "s", "s", _k(lambda a, b: a - b), "{o} = {a} - {b}", 5102027)
    add("SCALAR_PRODUCT", "s", "s", "s", _k(lambda a, b: a * b), "{o} = {a} * {b}", 4418347)
    add("SCALAR_DIVISION", "s", "s", "s", _k(lambda a, b: a / b), "{o} = {a} / {b}", 3963916)
    add("SCALAR_ABS", "s", None, "s", _k(lambda a, b: jnp.abs(a)), "{o} = abs({a})", 3684352)
    add("SCALAR_RECIPROCAL", "s", None, "s", _k(lambda a, b: 1 / a), "{o} = 1 / {a}", 4212086)
    add("SCALAR_SIN", "s", None, "s", _k(lambda a, b: jnp.sin(a)), "{o} = sin({a})", 7538523)
    add("SCALAR_COS", "s", None, "s", _k(lambda a, b: jnp.cos(a)), "{o} = cos({a})", 7452807)
    add("SCALAR_TAN", "s", None, "s", _k(lambda a, b: jnp.tan(a)), "{o} = tan({a})", 7583203)
    add("SCALAR_ARCSIN", "s", None, "s", _k(lambda a, b: jnp.arcsin(a)), "{o} = arcsin({a})", 9145616)
    add("SCALAR_ARCCOS", "s", None, "s", _k(lambda a, b: jnp.arccos(a)), "{o} = arccos({a})", 7673039)
    add("SCALAR_ARCTAN", "s", None, "s", _k(lambda a, b: jnp.arctan(a)), "{o} = arctan({a})", 9273978)
    add("SCALAR_EXP", "s", None, "s", _k(lambda a, b: jnp.exp(a)), "{o} = exp({a})", 11755929)
    add("SCALAR_LOG", "s", None, "s", _k(lambda a, b: jnp.log(a)), "{o} = log({a})", 11627725)
    # Scalar heaviside is >= 0 but vector/matrix heaviside is > 0 in the reference; NaN gives 0 in all.
    add("SCALAR_HEAVYSIDE", "s", None, "s", _k(lambda a, b: jnp.where(a >= 0, 1.0, 0.0).astype(a.dtype)),
        "{o} = heaviside({a})", 4057075)
    add("VECTOR_HEAVYSIDE", "v", None, "v", _k(lambda a, b: jnp.where(a > 0, 1.0, 0.0).astype(a.dtype)),
        "{o} = heaviside({a})", 3965743)
    add("MATRIX_HEAVYSIDE", "m", None, "m", _k(lambda a, b: jnp.where(a > 0, 1.0, 0.0).astype(a.dtype)),
        "{o} = heaviside({a})", 6728311)
    add("SCALAR_VECTOR_PRODUCT", "s", "v", "v", _k(lambda a, b: a * b), "{o} = {a} * {b}", 3705015)
    add("SCALAR_BROADCAST", "s", None, "v",
        lambda a, b, c, d, key: jnp.broadcast_to(a, c.shape).astype(c.dtype), "{o} = bcast({a})", 4165814)
    add("VECTOR_RECIPROCAL", "v", None, "v", _k(lambda a, b: 1 / a), "{o} = 1 / {a}", 6311851)
    add("VECTOR_NORM", "v", None, "s", _k(lambda a, b: jnp.sqrt(full_sum(product(a, a)))), "{o} = norm({a})",
        4810562)
    add("VECTOR_ABS", "v", None, "v", _k(lambda a, b: jnp.abs(a)), "{o} = abs({a})", 3713533)
    add("VECTOR_SUM", "v", "v", "v", _k(lambda a, b: a + b), "{o} = {a} + {b}", 4701519)
    add("VECTOR_DIFF", "v", "v", "v", _k(lambda a, b: a - b), "{o} = {a} - {b}", 4165747)
    add("VECTOR_PRODUCT", "v", "v", "v", _k(lambda a, b: a * b), "{o} = {a} * {b}", 4504555)
    add("VECTOR_DIVISION", "v", "v", "v", _k(lambda a, b: a / b), "{o} = {a} / {b}", 4556237)
    add("VECTOR_INNER_PRODUCT", "v", "v", "s", _k(lambda a, b: full_sum(product(a, b))), "{o} = dot({a}, {b})",
        4294617)
    add("VECTOR_OUTER_PRODUCT", "v", "v", "m", _k(lambda a, b: a[:, None] * b[None, :]),
        "{o} = outer({a}, {b})", 9833707)
    add("SCALAR_MATRIX_PRODUCT", "s", "m", "m", _k(lambda a, b: a * b), "{o} = {a} * {b}", 5986302)
    add("MATRIX_RECIPROCAL", "m", None, "m", _k(lambda a, b: 1 / a), "{o} = 1 / {a}", 24336141)
    add("MATRIX_VECTOR_PRODUCT", "m", "v", "v", _k(lambda a, b: axis_sum(product(a, b[None, :]), 1)),
        "{o} = dot({a}, {b})", 9310002)
    add("VECTOR_COLUMN_BROADCAST", "v", None, "m", _k(lambda a, b: jnp.broadcast_to(a[:, None],
                                                                                    (a.size, a.size))),
        "{o} = bcast({a}, axis=0)", 10993088)
    add("VECTOR_ROW_BROADCAST", "v", None, "m", _k(lambda a, b: jnp.broadcast_to(a[None, :],
                                                                                 (a.size, a.size))),
        "{o} = bcast({a}, axis=1)", 11087322)
    add("MATRIX_NORM", "m", None, "s", _k(lambda a, b: jnp.sqrt(full_sum(product(a, a)))), "{o} = norm({a})",
        6422746)
    add("MATRIX_COLUMN_NORM", "m", None, "v", _k(lambda a, b: jnp.sqrt(axis_sum(product(a, a), 0))),
        "{o} = norm({a}, axis=0)", 6682187)
    add("MATRIX_ROW_NORM", "m", None, "v", _k(lambda a, b: jnp.sqrt(axis_sum(product(a, a), 1))),
        "{o} = norm({a}, axis=1)", 13351123)
    add("MATRIX_TRANSPOSE", "m", None, "m", _k(lambda a, b: a.T), "{o} = transpose({a})", 9394756)
    add("MATRIX_ABS", "m", None, "m", _k(lambda a, b: jnp.abs(a)), "{o} = abs({a})", 4630926)
    add("MATRIX_SUM", "m", "m", "m", _k(lambda a, b: a + b), "{o} = {a} + {b}", 5579381)
    add("MATRIX_DIFF", "m", "m", "m", _k(lambda a, b: a - b), "{o} = {a} - {b}", 5429452)
    add("MATRIX_PRODUCT", "m", "m", "m", _k(lambda a, b: a * b), "{o} = {a} * {b}", 5475227)
    add("MATRIX_DIVISION", "m", "m", "m", _k(lambda a, b: a / b), "{o} = {a} / {b}", 18234378)
    # Elementwise multiply-and-sum instead of a dot: the reference's order on every backend, and tiny F.
    add("MATRIX_MATRIX_PRODUCT", "m", "m", "m",
        _k(lambda a, b: axis_sum(product(a[:, :, None], b[None, :, :]), 1)), "{o} = matmul({a}, {b})",
        14516296)
    # C++ comparison semantics with NaN: std::min(x, y) = y < x ? y : x, etc.
    add("SCALAR_MIN", "s", "s", "s", _k(lambda a, b: jnp.where(b < a, b, a)), "{o} = minimum({a}, {b})",
        3677265)
    # Vector min/max (Eigen in the reference) behave as std::min/std::max on x86-64; the matrix ops are
    # hand loops that return the second operand when a comparison involves NaN.
    add("VECTOR_MIN", "v", "v", "v", _k(lambda a, b: jnp.where(b < a, b, a)), "{o} = minimum({a}, {b})",
        3989956)
    add("MATRIX_MIN", "m", "m", "m", _k(lambda a, b: jnp.where(a < b, a, b)), "{o} = minimum({a}, {b})",
        5457728)
    add("SCALAR_MAX", "s", "s", "s", _k(lambda a, b: jnp.where(a < b, b, a)), "{o} = maximum({a}, {b})",
        4573695)
    add("VECTOR_MAX", "v", "v", "v", _k(lambda a, b: jnp.where(a < b, b, a)), "{o} = maximum({a}, {b})",
        3974229)
    add("MATRIX_MAX", "m", "m", "m", _k(lambda a, b: jnp.where(a > b, a, b)), "{o} = maximum({a}, {b})",
        5840952)
    add("VECTOR_MEAN", "v", None, "s", _k(lambda a, b: _mean(a)), "{o} = mean({a})", 4280443)
    add("MATRIX_MEAN", "m", None, "s", _k(lambda a, b: _mean(a)), "{o} = mean({a})", 4595196)
    add("MATRIX_ROW_MEAN", "m", None, "v", _k(lambda a, b: _mean(a, axis=1)), "{o} = mean({a}, axis=1)",
        9763956)
    add("MATRIX_ROW_ST_DEV", "m", None, "v", _k(lambda a, b: _row_std(a)), "{o} = std({a}, axis=1)",
        16766477)
    add("VECTOR_ST_DEV", "v", None, "s", _k(lambda a, b: _std(a)), "{o} = std({a})", 5585730)
    add("MATRIX_ST_DEV", "m", None, "s", _k(lambda a, b: _std(a)), "{o} = std({a})", 10640216)
    add("SCALAR_CONST_SET", None, None, "s", lambda a, b, c, d, key: d[0].astype(c.dtype), "{o} = {x}",
        3691108, (dataclasses.replace(_VALUE, float32=False),))
    add("VECTOR_CONST_SET", None, None, "v",
        lambda a, b, c, d, key: c.at[_index(d[0], c.shape[0])].set(_stored(d[1], c.dtype)),
        "{o}[{i}] = {y}", 3991421, (_INDEX, _VALUE))
    add("MATRIX_CONST_SET", None, None, "m",
        lambda a, b, c, d, key: c.at[_index(d[0], c.shape[0]), _index(d[1], c.shape[1])].set(
            _stored(d[2], c.dtype)),
        "{o}[{i}, {j}] = {z}", 3693035, (_INDEX, _INDEX, _VALUE))
    add("SCALAR_UNIFORM_SET", None, None, "s",
        lambda a, b, c, d, key: _uniform(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 26610704, (_LOW, _HIGH))
    add("VECTOR_UNIFORM_SET", None, None, "v",
        lambda a, b, c, d, key: _uniform(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 57817372, (_LOW, _HIGH))
    add("MATRIX_UNIFORM_SET", None, None, "m",
        lambda a, b, c, d, key: _uniform(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 208339446, (_LOW, _HIGH))
    add("SCALAR_GAUSSIAN_SET", None, None, "s",
        lambda a, b, c, d, key: _gaussian(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 20775635, (_MEAN, _SD))
    add("VECTOR_GAUSSIAN_SET", None, None, "v",
        lambda a, b, c, d, key: _gaussian(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 77483018, (_MEAN, _SD))
    add("MATRIX_GAUSSIAN_SET", None, None, "m",
        lambda a, b, c, d, key: _gaussian(key, _stored(d[0], c.dtype), _stored(d[1], c.dtype), c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 277690384, (_MEAN, _SD))

    table = []
    for op_id, (name, in1, in2, out, kernel, text, cost, data) in enumerate(ops):
        table.append(OpSpec(op_id, name, in1, in2, out, tuple(data), cost, kernel, text))
    return tuple(table)


OPS: Tuple[OpSpec, ...] = _build_table()
"""All 65 ops, indexed by id."""

OP_IDS = {op.name: op.id for op in OPS}
"""Op name -> id. Names are the reference enum names without `_OP`."""

NO_OP = 0
NUM_OPS = len(OPS)
assert NUM_OPS == 65


def op_id(name_or_id) -> int:
    """The id of an op given by name (e.g. 'SCALAR_SUM' or 'SCALAR_SUM_OP') or id."""
    if isinstance(name_or_id, (int,)) or hasattr(name_or_id, "__index__"):
        i = int(name_or_id)
        if not 0 <= i < NUM_OPS:
            raise ValueError(f"op id {i} out of range [0, {NUM_OPS})")
        return i
    name = str(name_or_id).upper()
    if name.endswith("_OP"):
        name = name[:-3]
    if name not in OP_IDS:
        raise ValueError(f"unknown op name {name_or_id!r}; valid names are e.g. "
                         f"{', '.join(list(OP_IDS)[:4])}, ... (see azjax.zero.ops.OPS)")
    return OP_IDS[name]


# Per-op NumPy tables derived from OPS (validation, canonical form, random instructions, mutations, liveness
# and the interpreters all read these; none keeps a per-op list of its own).
def _type_code(t: Optional[str]) -> int:
    return {"s": 0, "v": 1, "m": 2, None: -1}[t]


IN1_TYPE = np.array([_type_code(op.in1) for op in OPS], np.int32)
"""int32 [NUM_OPS]: type code of in1 (0 scalar, 1 vector, 2 matrix, -1 unused)."""
IN2_TYPE = np.array([_type_code(op.in2) for op in OPS], np.int32)
OUT_TYPE = np.array([_type_code(op.out) for op in OPS], np.int32)
READS_OUTPUT = np.array([op.reads_output for op in OPS])
NUM_DATA = np.array([len(op.data) for op in OPS], np.int32)
"""int32 [NUM_OPS]: how many of the three constant slots the op uses."""


def _slot_table(field, fill, dtype):
    return np.array([[getattr(op.data[k], field) if k < len(op.data) else fill for k in range(3)]
                     for op in OPS], dtype)


IS_INDEX = np.array([[k < len(op.data) and op.data[k].is_index for k in range(3)] for op in OPS])
"""bool [NUM_OPS, 3]: which constant slots hold element-index fractions."""
STORED_FLOAT32 = _slot_table("float32", False, bool)
"""bool [NUM_OPS, 3]: which constant slots the reference stores as float32."""
DATA_LOW = _slot_table("low", 0.0, np.float64)
"""float64 [NUM_OPS, 3]: random instructions draw slot k from U[DATA_LOW, DATA_HIGH) (0 for unused)."""
DATA_HIGH = _slot_table("high", 0.0, np.float64)
ALTERATION = np.array([[ALTERATIONS.index(op.data[k].alteration) if k < len(op.data) else -1 for k in range(3)]
                       for op in OPS], np.int32)
"""int32 [NUM_OPS, 3]: index into ALTERATIONS of how ALTER_PARAM changes slot k (-1 unused)."""
SORTS_RANGE = np.array([op.sorts_range for op in OPS])
COST = np.array([op.cost for op in OPS], np.float64)


def instruction_set_markdown() -> str:
    """docs/instruction_set.md, generated from OPS (a test keeps the file equal to this)."""
    names = {"s": "scalar", "v": "vector", "m": "matrix", None: "-"}
    lines = [
        "# The instruction set",
        "",
        "Generated from `azjax/zero/ops.py` (`OPS`), the single source of truth for every op; regenerate with",
        "`python -c \"from azjax.zero import ops; open('docs/instruction_set.md', 'w').write("
        "ops.instruction_set_markdown())\"`.",
        "",
        "Memory: scalars `s0..`, F-vectors `v0..`, F x F matrices `m0..`; Predict and Learn read the example in",
        "`v0` and (Learn only) its label in `s0`; the prediction is `s1`. Constants: `value`, `index` (an",
        "element-index fraction in [0, 1): element `int(F * f)`), `low`/`high` (uniform), `mean`/`sd`",
        "(Gaussian); random instructions draw each from U[low, high) of its range; ALTER_PARAM re-draws an",
        "index, scales a value by a log-normal factor or flips its sign (p = 0.1), or only scales it (`sd`).",
        "Constants marked f32 are stored as float32 by the reference, also in float64 runs. Cost is the",
        "reference's relative op cost (train budget). Exactness rules: docs/backends.md.",
        "",
        "| id | name | in1 | in2 | out | text | constants (range, alteration) | cost |",
        "|---:|---|---|---|---|---|---|---:|",
    ]
    for op in OPS:
        consts = "; ".join(
            f"{c.role} [{c.low:g}, {c.high:g}) {c.alteration}{' f32' if c.float32 else ''}" for c in op.data)
        text = op.text.replace("|", "\\|")
        lines.append(f"| {op.id} | {op.name} | {names[op.in1]} | {names[op.in2]} | {names[op.out]} | `{text}` | "
                     f"{consts or '-'} | {op.cost} |")
    return "\n".join(lines) + "\n"
