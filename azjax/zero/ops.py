"""The AutoML-Zero instruction set: 65 ops (ids 0-64) in one table.

Each op is an `OpSpec`: its id and name (the reference enum name without `_OP`), operand and result types
('s' scalar, 'v' F-vector, 'm' F×F matrix, or None), which float constants it uses, its relative cost
(train budget), and its kernel. A kernel is a pure jnp function

    kernel(a, b, c, d, key) -> result

of the two operands `a`, `b`, the current value `c` of the output address (only the single-element const
sets read it), the float constants `d = (f0, f1, f2)` and a PRNG key (only the random ops use it). It returns
the new value of the output address. Kernels follow the C++ reference exactly: IEEE inf/NaN
flow through unguarded; comparison-based ops reproduce the C++ NaN behaviour.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

Kernel = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One instruction-set entry."""

    id: int
    name: str
    in1: Optional[str]
    in2: Optional[str]
    out: Optional[str]
    data: Tuple[str, ...]
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


def _index(fraction, size):
    # The reference stores element indices as fractions in [0, 1) and truncates F * f.
    return jnp.clip(jnp.floor(size * fraction).astype(jnp.int32), 0, size - 1)


def _mean(x, axis=None):
    # A true division, as the reference: XLA rewrites a division by a constant (or a broadcast scalar, as
    # vmap makes it) into a multiplication by its rounded reciprocal, which breaks exact cases (the standard
    # deviation of a constant 0.5 vector must be exactly 0). A divisor that depends on the data - equal to n
    # when the sum is a number or ±inf, NaN when the sum is NaN anyway - cannot be rewritten.
    n = x.size if axis is None else x.shape[axis]
    total = jnp.sum(x, axis=axis)
    return total / (n + 0 * jnp.abs(jnp.sign(total)))


def _std(x):
    # One-pass formula of the reference (can give NaN for constant inputs); not jnp.std.
    return jnp.sqrt(_mean(x * x) - _mean(x) ** 2)


def _row_std(x):
    return jnp.sqrt(_mean(x * x, axis=1) - _mean(x, axis=1) ** 2)


def _uniform(key, low, high, shape, dtype):
    # abseil's Uniform(IntervalOpen, lo, hi) returns lo when the interval is empty or inverted.
    u = jax.random.uniform(key, shape, dtype)
    return jnp.where(low < high, low + (high - low) * u, jnp.broadcast_to(low, shape))


def _gaussian(key, mean, sd, shape, dtype):
    return mean + sd * jax.random.normal(key, shape, dtype)


def _k(fn):
    """Adapts a kernel written over (a, b) to the full kernel signature."""
    return lambda a, b, c, d, key: fn(a, b)


def _build_table():
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
    add("VECTOR_NORM", "v", None, "s", _k(lambda a, b: jnp.sqrt(jnp.sum(a * a))), "{o} = norm({a})",
        4810562)
    add("VECTOR_ABS", "v", None, "v", _k(lambda a, b: jnp.abs(a)), "{o} = abs({a})", 3713533)
    add("VECTOR_SUM", "v", "v", "v", _k(lambda a, b: a + b), "{o} = {a} + {b}", 4701519)
    add("VECTOR_DIFF", "v", "v", "v", _k(lambda a, b: a - b), "{o} = {a} - {b}", 4165747)
    add("VECTOR_PRODUCT", "v", "v", "v", _k(lambda a, b: a * b), "{o} = {a} * {b}", 4504555)
    add("VECTOR_DIVISION", "v", "v", "v", _k(lambda a, b: a / b), "{o} = {a} / {b}", 4556237)
    add("VECTOR_INNER_PRODUCT", "v", "v", "s", _k(lambda a, b: jnp.sum(a * b)), "{o} = dot({a}, {b})",
        4294617)
    add("VECTOR_OUTER_PRODUCT", "v", "v", "m", _k(lambda a, b: a[:, None] * b[None, :]),
        "{o} = outer({a}, {b})", 9833707)
    add("SCALAR_MATRIX_PRODUCT", "s", "m", "m", _k(lambda a, b: a * b), "{o} = {a} * {b}", 5986302)
    add("MATRIX_RECIPROCAL", "m", None, "m", _k(lambda a, b: 1 / a), "{o} = 1 / {a}", 24336141)
    add("MATRIX_VECTOR_PRODUCT", "m", "v", "v", _k(lambda a, b: jnp.sum(a * b[None, :], axis=1)),
        "{o} = dot({a}, {b})", 9310002)
    add("VECTOR_COLUMN_BROADCAST", "v", None, "m", _k(lambda a, b: jnp.broadcast_to(a[:, None],
                                                                                    (a.size, a.size))),
        "{o} = bcast({a}, axis=0)", 10993088)
    add("VECTOR_ROW_BROADCAST", "v", None, "m", _k(lambda a, b: jnp.broadcast_to(a[None, :],
                                                                                 (a.size, a.size))),
        "{o} = bcast({a}, axis=1)", 11087322)
    add("MATRIX_NORM", "m", None, "s", _k(lambda a, b: jnp.sqrt(jnp.sum(a * a))), "{o} = norm({a})",
        6422746)
    add("MATRIX_COLUMN_NORM", "m", None, "v", _k(lambda a, b: jnp.sqrt(jnp.sum(a * a, axis=0))),
        "{o} = norm({a}, axis=0)", 6682187)
    add("MATRIX_ROW_NORM", "m", None, "v", _k(lambda a, b: jnp.sqrt(jnp.sum(a * a, axis=1))),
        "{o} = norm({a}, axis=1)", 13351123)
    add("MATRIX_TRANSPOSE", "m", None, "m", _k(lambda a, b: a.T), "{o} = transpose({a})", 9394756)
    add("MATRIX_ABS", "m", None, "m", _k(lambda a, b: jnp.abs(a)), "{o} = abs({a})", 4630926)
    add("MATRIX_SUM", "m", "m", "m", _k(lambda a, b: a + b), "{o} = {a} + {b}", 5579381)
    add("MATRIX_DIFF", "m", "m", "m", _k(lambda a, b: a - b), "{o} = {a} - {b}", 5429452)
    add("MATRIX_PRODUCT", "m", "m", "m", _k(lambda a, b: a * b), "{o} = {a} * {b}", 5475227)
    add("MATRIX_DIVISION", "m", "m", "m", _k(lambda a, b: a / b), "{o} = {a} / {b}", 18234378)
    # Elementwise multiply-and-sum instead of a dot: exact float64 on every backend, and tiny F.
    add("MATRIX_MATRIX_PRODUCT", "m", "m", "m",
        _k(lambda a, b: jnp.sum(a[:, :, None] * b[None, :, :], axis=1)), "{o} = matmul({a}, {b})",
        14516296)
    # C++ comparison semantics with NaN: std::min(x, y) = y < x ? y : x, etc.
    add("SCALAR_MIN", "s", "s", "s", _k(lambda a, b: jnp.where(b < a, b, a)), "{o} = minimum({a}, {b})",
        3677265)
    # Vector min/max go through Eigen in the reference, whose NaN handling is platform dependent; we use
    # the matrix loops' semantics (x < y ? x : y) so the vector and matrix ops agree.
    add("VECTOR_MIN", "v", "v", "v", _k(lambda a, b: jnp.where(a < b, a, b)), "{o} = minimum({a}, {b})",
        3989956)
    add("MATRIX_MIN", "m", "m", "m", _k(lambda a, b: jnp.where(a < b, a, b)), "{o} = minimum({a}, {b})",
        5457728)
    add("SCALAR_MAX", "s", "s", "s", _k(lambda a, b: jnp.where(a < b, b, a)), "{o} = maximum({a}, {b})",
        4573695)
    add("VECTOR_MAX", "v", "v", "v", _k(lambda a, b: jnp.where(a > b, a, b)), "{o} = maximum({a}, {b})",
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
        3691108, ("value",))
    add("VECTOR_CONST_SET", None, None, "v",
        lambda a, b, c, d, key: c.at[_index(d[0], c.shape[0])].set(d[1].astype(c.dtype)),
        "{o}[{i}] = {y}", 3991421, ("index", "value"))
    add("MATRIX_CONST_SET", None, None, "m",
        lambda a, b, c, d, key: c.at[_index(d[0], c.shape[0]), _index(d[1], c.shape[1])].set(
            d[2].astype(c.dtype)),
        "{o}[{i}, {j}] = {z}", 3693035, ("index", "index", "value"))
    add("SCALAR_UNIFORM_SET", None, None, "s",
        lambda a, b, c, d, key: _uniform(key, d[0], d[1], c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 26610704, ("low", "high"))
    add("VECTOR_UNIFORM_SET", None, None, "v",
        lambda a, b, c, d, key: _uniform(key, d[0], d[1], c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 57817372, ("low", "high"))
    add("MATRIX_UNIFORM_SET", None, None, "m",
        lambda a, b, c, d, key: _uniform(key, d[0], d[1], c.shape, c.dtype),
        "{o} = uniform({x}, {y})", 208339446, ("low", "high"))
    add("SCALAR_GAUSSIAN_SET", None, None, "s",
        lambda a, b, c, d, key: _gaussian(key, d[0], d[1], c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 20775635, ("mean", "sd"))
    add("VECTOR_GAUSSIAN_SET", None, None, "v",
        lambda a, b, c, d, key: _gaussian(key, d[0], d[1], c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 77483018, ("mean", "sd"))
    add("MATRIX_GAUSSIAN_SET", None, None, "m",
        lambda a, b, c, d, key: _gaussian(key, d[0], d[1], c.shape, c.dtype),
        "{o} = gaussian({x}, {y})", 277690384, ("mean", "sd"))

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
