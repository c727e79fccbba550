"""AutoML-Zero mutations, with the reference code's semantics (initial programs: `initial_programs.py`).

`mutate(key, program, cfg, mcfg)` applies exactly ONE mutation, as the reference
`Mutator::MutateImpl`:

* the mutation type is drawn uniformly from `MutationConfig.types` (a type listed twice is twice as
  likely, as in the reference's `allowed_actions` vector);
* the component function is drawn uniformly among those whose op list is non-empty (an empty op list
  freezes a component);
* ALTER_PARAM changes one parameter of one uniformly drawn instruction: ops with one input re-draw
  in1 or out, ops with two inputs in1, in2 or out, data ops (56-64) re-draw out or alter a constant,
  NO_OP nothing. Data alterations: constants are multiplied by exp(N(0, 1)) or, with probability
  0.1, sign-flipped (0 stays 0); element indices are re-drawn from U[0, 1); a Gaussian's sd is only
  log-scaled (never flipped); a uniform's low or high is altered and the pair re-sorted;
* RANDOMIZE_INSTRUCTION replaces one instruction by a fresh random one; RANDOMIZE_COMPONENT_FUNCTION
  replaces every instruction of the component (size kept); RANDOMIZE_ALGORITHM does that to every
  mutable component; IDENTITY does nothing;
* INSERT_INSTRUCTION inserts a fresh instruction at a uniform position in [0, size] unless
  size >= max - 1 (the reference's guard, so the reachable maximum is max - 1); REMOVE_INSTRUCTION
  removes a uniform instruction if size > min; TRADE_INSTRUCTION inserts then removes, with no size
  checks.

`MutationConfig(paper_variant=True)` instead follows the paper (Suppl. S3): three classes drawn
uniformly, (i) insert or remove with removal twice as likely as insertion, (ii) randomize a
component function, (iii) modify one argument, where constants are multiplied by U[0.5, 2] (sign
flipped with probability 0.1).

Everything is a pure function of fixed-shape arrays: the type is a `lax.switch`, insertion and
removal are masked shifts, and all randomness comes from ONE `jax.random.uniform` draw that is
sliced (every threefry call site costs XLA CPU compile time). Fresh instructions follow the
reference distributions of `random_programs` (ops uniform over the component's list, addresses
uniform over their banks with s0/v0 never written, constants as `SetOpAndRandomizeParams`), drawn
from those uniforms by `random_programs.instructions_from_uniforms`; constants change by the
alteration their instruction-set entry names. Results are canonical.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.extend.backend
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from azjax.zero import ops as ops_lib
from azjax.zero.program import (
    _CANONICAL_RULES,
    COMPONENTS,
    Component,
    Program,
    ZeroConfig,
    canonical_rows,
)
from azjax.zero.random_programs import (
    DRAWS_PER_INSTRUCTION,
    address_table,
    allowed_op_table,
    instructions_from_uniforms,
    pick,
)

__all__ = [
    "MUTATION_TYPES",
    "MutationConfig",
    "mutate",
    "apply_mutation",
    "draw_mutation_type",
]

# The reference's MutationAction enum, in its order (ids 0-7).
MUTATION_TYPES = (
    "ALTER_PARAM",
    "RANDOMIZE_INSTRUCTION",
    "RANDOMIZE_COMPONENT_FUNCTION",
    "IDENTITY",
    "INSERT_INSTRUCTION",
    "REMOVE_INSTRUCTION",
    "TRADE_INSTRUCTION",
    "RANDOMIZE_ALGORITHM",
)
_TYPE_ID = {name: i for i, name in enumerate(MUTATION_TYPES)}

# The reference demo's list, used when `types` is not given.
DEFAULT_TYPES = ("ALTER_PARAM", "RANDOMIZE_INSTRUCTION", "RANDOMIZE_COMPONENT_FUNCTION")
# Paper S3: three classes with probability 1/3 each; inside "insert or remove", removal is twice as
# likely.
PAPER_WEIGHTS = (
    ("ALTER_PARAM", 1 / 3),
    ("RANDOMIZE_COMPONENT_FUNCTION", 1 / 3),
    ("INSERT_INSTRUCTION", 1 / 9),
    ("REMOVE_INSTRUCTION", 2 / 9),
)

_FLIP_PROBABILITY = 0.1  # sign flips of constants (code and paper)
_PAPER_SCALE = (0.5, 2.0)  # the paper's U[0.5, 2] factor


def _canonical_type(name) -> str:
    if not isinstance(name, str):
        raise ValueError(f"MutationConfig.types: expected mutation type names, got {name!r}")
    n = name.upper()
    if n.endswith("_MUTATION_ACTION"):  # the reference proto spelling
        n = n[: -len("_MUTATION_ACTION")]
    if n not in _TYPE_ID:
        raise ValueError(
            f"MutationConfig.types: unknown mutation type {name!r}; "
            f"valid: {', '.join(MUTATION_TYPES)}"
        )
    return n


@dataclasses.dataclass(frozen=True)
class MutationConfig:
    """Which mutations to apply and the component size bounds (static, hashable).

    Attributes:
      types: mutation type names from `MUTATION_TYPES`, drawn uniformly (duplicates weigh more, as
        in the reference); None means the demo's (ALTER_PARAM, RANDOMIZE_INSTRUCTION,
        RANDOMIZE_COMPONENT_FUNCTION), or the paper's fixed distribution when `paper_variant` is set
        (then `types` must stay None).
      setup_size_min, predict_size_min, learn_size_min: REMOVE only when size > min; None = the
        config's array length (so no removal from a full component).
      setup_size_max, predict_size_max, learn_size_max: INSERT only when size < max - 1 (the
        reference guard: the reachable maximum is max - 1); None = the config's array length. max
        may be at most the array length + 1 (then insertion can fill the array).
      paper_variant: the paper's S3 mutation distribution and U[0.5, 2] constant steps instead of
        the code's.
    """

    types: Optional[Tuple[str, ...]] = None
    setup_size_min: Optional[int] = None
    predict_size_min: Optional[int] = None
    learn_size_min: Optional[int] = None
    setup_size_max: Optional[int] = None
    predict_size_max: Optional[int] = None
    learn_size_max: Optional[int] = None
    paper_variant: bool = False

    def __post_init__(self):
        if not isinstance(self.paper_variant, (bool, np.bool_)):
            raise ValueError(
                f"MutationConfig.paper_variant must be a bool, got {self.paper_variant!r}"
            )
        object.__setattr__(self, "paper_variant", bool(self.paper_variant))
        if self.types is not None:
            if isinstance(self.types, str):
                raise ValueError("MutationConfig.types must be a sequence of names, got a string")
            types = tuple(_canonical_type(t) for t in self.types)
            if not types:
                raise ValueError("MutationConfig.types must list at least one mutation type")
            if self.paper_variant:
                raise ValueError(
                    "MutationConfig.types must be None when paper_variant=True (the paper's "
                    "distribution over ALTER_PARAM, RANDOMIZE_COMPONENT_FUNCTION, INSERT and "
                    "REMOVE is fixed)"
                )
            object.__setattr__(self, "types", types)
        for c in COMPONENTS:
            for bound in ("min", "max"):
                field = f"{c}_size_{bound}"
                v = getattr(self, field)
                if v is None:
                    continue
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(
                        f"MutationConfig.{field} must be None or an integer >= 0, got {v!r}"
                    )
                object.__setattr__(self, field, int(v))
            lo, hi = getattr(self, f"{c}_size_min"), getattr(self, f"{c}_size_max")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(
                    f"MutationConfig.{c}_size_min ({lo}) must be <= {c}_size_max ({hi})"
                )

    @property
    def type_weights(self) -> Tuple[Tuple[str, float], ...]:
        """(type, probability) over the distinct types, in first-listed order."""
        if self.paper_variant:
            return PAPER_WEIGHTS
        types = self.types if self.types is not None else DEFAULT_TYPES
        distinct = tuple(dict.fromkeys(types))
        return tuple((t, types.count(t) / len(types)) for t in distinct)

    def size_bounds(self, cfg: ZeroConfig) -> Dict[str, Tuple[int, int]]:
        """{component: (min, max)} with defaults filled from `cfg`; ValueError names a bad field."""
        bounds = {}
        for c in COMPONENTS:
            length = cfg.size(c)
            lo = getattr(self, f"{c}_size_min")
            hi = getattr(self, f"{c}_size_max")
            lo = length if lo is None else lo
            hi = length if hi is None else hi
            if hi > length + 1:
                raise ValueError(
                    f"MutationConfig.{c}_size_max ({hi}) exceeds ZeroConfig.{c}_size + 1 "
                    f"({length + 1}); insertion stops at max - 1, which must fit the array"
                )
            if lo > length:
                raise ValueError(
                    f"MutationConfig.{c}_size_min ({lo}) exceeds ZeroConfig.{c}_size ({length})"
                )
            if lo > hi:
                raise ValueError(
                    f"MutationConfig.{c}_size_min ({lo}) must be <= {c}_size_max ({hi})"
                )
            bounds[c] = (lo, hi)
        return bounds

    def check(self, cfg: ZeroConfig) -> None:
        """Raises ValueError (naming the field) if this config cannot mutate programs of `cfg`."""
        self.size_bounds(cfg)
        needs_component = any(t != "IDENTITY" for t, _ in self.type_weights)
        if needs_component and not _mutable_components(cfg):
            raise ValueError(
                "ZeroConfig.setup_ops/predict_ops/learn_ops: all empty, so no component can be "
                "mutated (MutationConfig.types may then only be IDENTITY)"
            )


def _mutable_components(cfg: ZeroConfig) -> Tuple[int, ...]:
    return tuple(i for i, c in enumerate(COMPONENTS) if cfg.ops(c))


# --------------------------------------------------------------------------------------------------
# Static tables. One row per op so each lookup is a single gather (fewer HLO ops, faster
# XLA compiles).

# Columns of _OP_INFO.
_T_IN1, _T_IN2, _T_OUT, _N_PARAMS, _FIELD0, _N_SUB, _SLOT0, _KIND0, _IS_UNIFORM = (
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    11,
    14,
)


def _op_info() -> np.ndarray:
    """int32 [NUM_OPS, 15]: operand types, ALTER_PARAM choices and constant-alteration rules per op,
    derived from the instruction-set table.

    field k (k < num_params): the instruction column re-drawn by choice k (1 in1, 2 in2, 3 out), or
    -1 = alter a constant. Constant sub-choice k (k < num_sub) alters slot[k] in the way kind[k] (an index
    into `ops.ALTERATIONS`: 0 re-draw an index fraction, 1 scale or (p = 0.1) flip, 2 scale only).
    """
    info = np.zeros((ops_lib.NUM_OPS, 15), np.int32)
    info[:, _T_IN1], info[:, _T_IN2], info[:, _T_OUT] = ops_lib.IN1_TYPE, ops_lib.IN2_TYPE, ops_lib.OUT_TYPE
    info[:, _N_SUB] = 1
    info[:, _KIND0 : _KIND0 + 3] = 1
    for op in ops_lib.OPS:
        row = info[op.id]
        if op.id == ops_lib.NO_OP:
            continue
        if op.data:
            fields = (3, -1)
        elif op.in2 is not None:
            fields = (1, 2, 3)
        else:
            fields = (1, 3)
        row[_N_PARAMS] = len(fields)
        row[_FIELD0 : _FIELD0 + len(fields)] = fields
        if op.data:
            row[_N_SUB] = len(op.data)
            for k, constant in enumerate(op.data):
                row[_SLOT0 + k], row[_KIND0 + k] = k, ops_lib.ALTERATIONS.index(constant.alteration)
        row[_IS_UNIFORM] = int(op.sorts_range)
    return info


_OP_INFO = _op_info()

# Layout of the single uniform draw: scalar draws first, then 7 per fresh-instruction row.
(
    _U_TYPE,
    _U_COMPONENT,
    _U_POS,
    _U_REMOVE,
    _U_PARAM,
    _U_SUB,
    _U_ADDR,
    _U_INDEX,
    _U_FLIP,
    _U_N1,
    _U_N2,
    _U_PAPER,
) = range(12)
_NUM_SCALAR_DRAWS = 12
_ROW_DRAWS = DRAWS_PER_INSTRUCTION


# Row reads/updates at a traced position use one-hot masks over the (short) row axis instead of
# dynamic gathers/scatters, which vmap turns into separate XLA loop kernels. Table lookups by op id
# stay gathers: a one-hot over all 65 ops made 1000 mutations 30x slower to run (5 ms -> 160 ms on
# the 2-core CPU).


def _lookup(table, index):
    """table[index] for a static numpy table [n] or [n, k] and an int array `index` of any shape."""
    return jnp.asarray(np.asarray(table))[index]


def _get_row(x, pos):
    """x[pos] along the leading axis (pos traced)."""
    hot = (jnp.arange(x.shape[0]) == pos).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.sum(jnp.where(hot, x, 0), axis=0).astype(x.dtype)


def _set_row(x, pos, value):
    """x with x[pos] = value along the leading axis (pos traced)."""
    hot = (jnp.arange(x.shape[0]) == pos).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(hot, value, x)


def _max_length(cfg: ZeroConfig) -> int:
    return max(max(cfg.size(c) for c in COMPONENTS), 1)


def _num_draws(cfg: ZeroConfig) -> int:
    return _NUM_SCALAR_DRAWS + _ROW_DRAWS * 3 * _max_length(cfg)


def _fresh_from_draws(u: jax.Array, cfg: ZeroConfig, dtype):
    rows = _max_length(cfg)
    block = u[_NUM_SCALAR_DRAWS : _NUM_SCALAR_DRAWS + 3 * rows * _ROW_DRAWS].reshape(
        3, rows, _ROW_DRAWS
    )
    return instructions_from_uniforms(block, cfg, dtype)


# --------------------------------------------------------------------------------------------------
# Mutations of ONE component, padded to the longest component: (instructions [L, 4], data
# [L, 3], size). `r` are the scalar draws, `fresh` = (instructions, data) of fresh random rows for
# this component.


def _scale_factor(r, paper):
    """The factor a scaled constant is multiplied by: exp(N(0, 1)) (the reference's
    MutateActivationLogScaleOrFlip) or the paper's U[0.5, 2]."""
    if paper:
        lo, hi = _PAPER_SCALE
        return lo + (hi - lo) * r[_U_PAPER]
    # Box-Muller from two uniforms (1 - u lies in (0, 1], so the log is finite).
    normal = jnp.sqrt(-2.0 * jnp.log1p(-r[_U_N1])) * jnp.cos(2.0 * np.pi * r[_U_N2])
    return jnp.exp(normal)


def _alter_value(v, r, allow_flip, paper):
    """A constant scaled (sign(v) * exp(log|v| + N): 0 stays 0) or, with probability 0.1, sign-flipped."""
    flip = allow_flip & (r[_U_FLIP] < _FLIP_PROBABILITY)
    return jnp.where(flip, -v, v * _scale_factor(r, paper).astype(v.dtype))


def _alter_param(ins, data, size, r, addr, paper):
    pos = pick(r[_U_POS], size)
    row, d = _get_row(ins, pos), _get_row(data, pos)
    op = row[0]
    info = _lookup(_OP_INFO, op)
    col = jnp.arange(info.shape[0])

    def at(i):  # info[i] for a traced column i
        return jnp.sum(jnp.where(col == i, info, 0))

    field = at(_FIELD0 + pick(r[_U_PARAM], info[_N_PARAMS]))
    # Re-draw the address of the chosen column with that column's bank rules.
    t = at(jnp.clip(field - 1, 0, 2))
    bank = _lookup(addr.T, t)  # (input size, output low, output count)
    new_addr = jnp.where(
        field == 3, bank[1] + pick(r[_U_ADDR], bank[2]), pick(r[_U_ADDR], bank[0])
    )
    new_row = jnp.where(jnp.arange(4) == field, new_addr, row)
    # Or alter the data: a sub-choice picks the slot and how it changes.
    sub = pick(r[_U_SUB], info[_N_SUB])
    slot, kind = at(_SLOT0 + sub), at(_KIND0 + sub)
    slots = jnp.arange(3) == slot
    value = jnp.sum(jnp.where(slots, d, 0))
    altered = jnp.where(
        kind == 0, r[_U_INDEX].astype(d.dtype), _alter_value(value, r, kind == 1, paper)
    )
    new_d = jnp.where(slots, altered, d)
    # Uniform sets re-sort (low, high) after a data alteration.
    low, high = jnp.minimum(new_d[0], new_d[1]), jnp.maximum(new_d[0], new_d[1])
    new_d = jnp.where(info[_IS_UNIFORM] == 1, jnp.stack([low, high, new_d[2]]), new_d)
    is_data = field < 0
    # NO_OP has no parameters; an empty component has no instruction to alter.
    change_row = (size > 0) & (op != ops_lib.NO_OP) & ~is_data
    change_data = (size > 0) & is_data
    return (
        _set_row(ins, pos, jnp.where(change_row, new_row, row)),
        _set_row(data, pos, jnp.where(change_data, new_d, d)),
        size,
    )


def _randomize_instruction(ins, data, size, r, fresh):
    pos = pick(r[_U_POS], size)
    ok = size > 0
    pos = jnp.where(ok, pos, -1)  # -1 matches no row
    return _set_row(ins, pos, fresh[0][0]), _set_row(data, pos, fresh[1][0]), size


def _insert_at(ins, data, pos, new_ins, new_data):
    """Arrays one row longer with (new_ins, new_data) at `pos` and the tail shifted down by one."""
    i = jnp.arange(ins.shape[0] + 1)[:, None]

    def shift(x, new):
        pad = jnp.zeros((1, x.shape[1]), x.dtype)
        same, down = jnp.concatenate([x, pad]), jnp.concatenate([pad, x])
        return jnp.where(i < pos, same, jnp.where(i == pos, new, down))

    return shift(ins, new_ins), shift(data, new_data)


def _remove_at(ins, data, pos):
    """Same-length arrays without row `pos` (tail shifted up; the last row lies beyond the size)."""
    i = jnp.arange(ins.shape[0])[:, None]

    def shift(x):
        up = jnp.concatenate([x[1:], x[-1:]])
        return jnp.where(i < pos, x, up)

    return shift(ins), shift(data)


def _insert(ins, data, size, r, fresh, max_size):
    length = ins.shape[0]
    pos = pick(r[_U_POS], size + 1)
    new_ins, new_data = _insert_at(ins, data, pos, fresh[0][0], fresh[1][0])
    ok = size < max_size - 1  # the reference: `if (size >= max - 1) return;`
    return (
        jnp.where(ok, new_ins[:length], ins),
        jnp.where(ok, new_data[:length], data),
        jnp.where(ok, size + 1, size),
    )


def _remove(ins, data, size, r, min_size):
    pos = pick(r[_U_REMOVE], size)
    new_ins, new_data = _remove_at(ins, data, pos)
    ok = size > min_size
    return jnp.where(ok, new_ins, ins), jnp.where(ok, new_data, data), jnp.where(ok, size - 1, size)


def _trade(ins, data, size, r, fresh):
    # Insert then remove with no size checks: the intermediate may be one row longer than the array.
    length = ins.shape[0]
    pos = pick(r[_U_POS], size + 1)
    long_ins, long_data = _insert_at(ins, data, pos, fresh[0][0], fresh[1][0])
    long_ins, long_data = _remove_at(long_ins, long_data, pick(r[_U_REMOVE], size + 1))
    return long_ins[:length], long_data[:length], size


# --------------------------------------------------------------------------------------------------
# Program-level dispatch.


def _stack_components(program: Program, length: int):
    def pad(x):
        return jnp.pad(x, ((0, length - x.shape[0]), (0, 0)))

    comps = [program.component(c) for c in COMPONENTS]
    return (
        jnp.stack([pad(c.instructions) for c in comps]),
        jnp.stack([pad(c.data) for c in comps]),
        jnp.stack([jnp.asarray(c.size, jnp.int32) for c in comps]),
    )


def _canonical_stacked(ins, data, size, features: int):
    """`program.canonical_rows` on stacked components [3, L, ...]."""
    ins, data = canonical_rows(ins, data, size, features)
    return ins, data, size


def _unstack_components(ins, data, size, cfg: ZeroConfig) -> Program:
    return Program(
        *(
            Component(instructions=ins[i, : cfg.size(c)], data=data[i, : cfg.size(c)], size=size[i])
            for i, c in enumerate(COMPONENTS)
        )
    )


def _draws(key: jax.Array, cfg: ZeroConfig) -> jax.Array:
    # One threefry call site; float64 programs get float64 draws for their constants.
    return jax.random.uniform(key, (_num_draws(cfg),), cfg.jnp_dtype)


def _partitionable_threefry(key: jax.Array) -> bool:
    """Whether `key`'s draws follow the counter rule that `_scalar_draws` and the native kernel restate."""
    return bool(jax.config.jax_threefry_partitionable) and "threefry" in str(jax.random.key_impl(key))


def _scalar_draws(key: jax.Array, cfg: ZeroConfig, indices: Sequence[int] | None = None) -> jax.Array:
    """`_draws(key, cfg)[indices]` (default: the first `_NUM_SCALAR_DRAWS`), the same bits, without drawing the
    rest.

    Partitionable threefry (JAX's default) gives element i of a uniform draw the words
    threefry(key, (0, i)): 32-bit draws use their xor, 64-bit draws the two words as high and low
    halves, each turned into [0, 1) as `jax.random.uniform` does. The native mutation kernel draws the
    scalar draws and fresh rows it reads in the same way (docs/backends.md, "Native mutations")."""
    indices = tuple(range(_NUM_SCALAR_DRAWS)) if indices is None else tuple(indices)
    if not _partitionable_threefry(key):  # other key types: take them from the whole draw
        return _draws(key, cfg)[np.asarray(indices)]
    n = len(indices)
    words = threefry_2x32(
        jax.random.key_data(key), jnp.concatenate([jnp.zeros(n, jnp.uint32), jnp.asarray(indices, jnp.uint32)]))
    hi, lo = words[:n], words[n:]
    if jax.dtypes.canonicalize_dtype(cfg.jnp_dtype) == jnp.float64:  # float64 draws only with x64 enabled
        bits = (hi.astype(jnp.uint64) << 32 | lo.astype(jnp.uint64)) >> 12 | jnp.uint64(0x3FF0000000000000)
        return jax.lax.bitcast_convert_type(bits, jnp.float64) - 1.0
    bits = (hi ^ lo) >> 9 | jnp.uint32(0x3F800000)
    return (jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0).astype(cfg.jnp_dtype)


def _factor_from_key(key: jax.Array, cfg: ZeroConfig, paper: bool) -> jax.Array:
    """`_scale_factor(_scalar_draws(key, cfg), paper)`, drawing only the one or two uniforms it reads."""
    indices = (_U_PAPER,) if paper else (_U_N1, _U_N2)
    u = _scalar_draws(key, cfg, indices)
    return _scale_factor({i: u[j] for j, i in enumerate(indices)}, paper)


def draw_mutation_type(u: jax.Array, mcfg: MutationConfig) -> jax.Array:
    """Index into `mcfg.type_weights` of the type drawn from a uniform `u` in [0, 1)."""
    weights = np.array([w for _, w in mcfg.type_weights], np.float64)
    cumulative = jnp.asarray(np.cumsum(weights)[:-1] / weights.sum(), u.dtype)
    return jnp.sum(u >= cumulative).astype(jnp.int32)


def _apply_xla(u, program: Program, cfg: ZeroConfig, mcfg: MutationConfig, type_index) -> Program:
    types = [t for t, _ in mcfg.type_weights]
    bounds = mcfg.size_bounds(cfg)
    mutable = _mutable_components(cfg)
    paper = mcfg.paper_variant
    dtype = program.setup.data.dtype
    u = u.astype(dtype)
    length = _max_length(cfg)
    ins3, data3, size3 = _stack_components(program, length)
    fresh3 = _fresh_from_draws(u, cfg, dtype)
    addr = address_table(cfg)
    comp = _lookup(
        np.asarray(mutable or (0,), np.int32), pick(u[_U_COMPONENT], max(len(mutable), 1))
    )
    lo = _lookup(np.asarray([bounds[c][0] for c in COMPONENTS], np.int32), comp)
    hi = _lookup(np.asarray([bounds[c][1] for c in COMPONENTS], np.int32), comp)
    fresh = (_get_row(fresh3[0], comp), _get_row(fresh3[1], comp))

    impl = {
        "ALTER_PARAM": lambda i, d, s: _alter_param(i, d, s, u, addr, paper),
        "RANDOMIZE_INSTRUCTION": lambda i, d, s: _randomize_instruction(i, d, s, u, fresh),
        "RANDOMIZE_COMPONENT_FUNCTION": lambda i, d, s: (fresh[0], fresh[1], s),
        "IDENTITY": lambda i, d, s: (i, d, s),
        "INSERT_INSTRUCTION": lambda i, d, s: _insert(i, d, s, u, fresh, hi),
        "REMOVE_INSTRUCTION": lambda i, d, s: _remove(i, d, s, u, lo),
        "TRADE_INSTRUCTION": lambda i, d, s: _trade(i, d, s, u, fresh),
    }
    # RANDOMIZE_ALGORITHM shares the component branch and then randomizes the other mutable
    # components too.
    branch_types = list(
        dict.fromkeys(
            "RANDOMIZE_COMPONENT_FUNCTION" if t == "RANDOMIZE_ALGORITHM" else t for t in types
        )
    )
    branch_of_type = np.asarray(
        [
            branch_types.index("RANDOMIZE_COMPONENT_FUNCTION" if t == "RANDOMIZE_ALGORITHM" else t)
            for t in types
        ],
        np.int32,
    )
    type_index = jnp.clip(type_index, 0, len(types) - 1)
    operands = (_get_row(ins3, comp), _get_row(data3, comp), _get_row(size3, comp))
    if len(branch_types) == 1:
        ins, data, size = impl[branch_types[0]](*operands)
    else:
        ins, data, size = jax.lax.switch(
            _lookup(branch_of_type, type_index), [impl[t] for t in branch_types], *operands
        )
    ins3, data3, size3 = (
        _set_row(ins3, comp, ins),
        _set_row(data3, comp, data),
        _set_row(size3, comp, size),
    )
    if "RANDOMIZE_ALGORITHM" in types:
        is_all = (
            _lookup(np.asarray([t == "RANDOMIZE_ALGORITHM" for t in types]), type_index)
            & jnp.asarray([i in mutable for i in range(3)])
        )[:, None, None]
        ins3, data3 = jnp.where(is_all, fresh3[0], ins3), jnp.where(is_all, fresh3[1], data3)
    return _unstack_components(*_canonical_stacked(ins3, data3, size3, cfg.features), cfg)


@functools.lru_cache(maxsize=64)
def _native_tables(cfg: ZeroConfig, mcfg: MutationConfig) -> Dict[str, np.ndarray]:
    """The tables the native kernel reads, as FFI attributes (the same ones `_apply_xla` reads)."""
    bounds = mcfg.size_bounds(cfg)
    mutable = _mutable_components(cfg)
    as64 = lambda x: np.ascontiguousarray(np.asarray(x, np.int64).reshape(-1))  # noqa: E731
    table, counts = allowed_op_table(cfg)
    return dict(info=as64(_OP_INFO), rules=as64(_CANONICAL_RULES), address=as64(address_table(cfg)),
                op_table=as64(table), op_counts=as64(counts),
                data_low=np.ascontiguousarray(ops_lib.DATA_LOW, np.float64).reshape(-1),
                data_high=np.ascontiguousarray(ops_lib.DATA_HIGH, np.float64).reshape(-1),
                mutable_components=as64(mutable or (0,)), size_min=as64([bounds[c][0] for c in COMPONENTS]),
                size_max=as64([bounds[c][1] for c in COMPONENTS]),
                type_ids=as64([_TYPE_ID[t] for t, _ in mcfg.type_weights]),
                is_mutable=as64([i in mutable for i in range(3)]), features=np.int64(cfg.features))


def _apply_native(key, program: Program, cfg: ZeroConfig, mcfg: MutationConfig, type_index) -> Program:
    """`_apply_xla` with its control part (picks, row shifts, canonical form) in the native kernel
    (`backends/mutation_kernel.cc`), fresh rows included. XLA computes only the scaling factor (a
    transcendental function, so its bits are XLA's) from the one or two uniforms it reads; the kernel draws the
    other uniforms it reads from the key itself (only a few of the hundreds of uniforms `_apply_xla` draws are
    ever read), so the results are the same bits (tested in tests/zero/test_native_mutations.py). The
    components go in and out as they are (the kernel pads them to one length itself), and a batch (a vmap)
    is one call, spread over the kernel's threads."""
    from azjax.zero.backends import native

    dtype = program.setup.data.dtype
    if dtype == cfg.jnp_dtype and _partitionable_threefry(key):
        draws = jax.random.key_data(key).astype(jnp.uint32)
        factor = _factor_from_key(key, cfg, mcfg.paper_variant)
    else:  # the kernel draws threefry uniforms in the programs' precision; otherwise XLA draws them all
        draws = _draws(key, cfg).astype(dtype)
        factor = _scale_factor(draws, mcfg.paper_variant)
    F = cfg.features
    centers = jnp.asarray(((np.arange(F) + 0.5) / F).astype(np.float32).astype(dtype))
    comps = [program.component(c) for c in COMPONENTS]
    out, args = [], []
    for c in comps:
        out += [jax.ShapeDtypeStruct(c.instructions.shape, jnp.int32), jax.ShapeDtypeStruct(c.data.shape, dtype),
                jax.ShapeDtypeStruct((), jnp.int32)]
        args += [c.instructions.astype(jnp.int32), c.data.astype(dtype), jnp.asarray(c.size, jnp.int32)]
    call = jax.ffi.ffi_call(native.MUTATE_TARGET, tuple(out), vmap_method="expand_dims")
    res = call(*args, draws, factor.astype(dtype), jnp.asarray(type_index, jnp.int32), centers,
               **_native_tables(cfg, mcfg))
    return Program(*(Component(instructions=res[3 * i], data=res[3 * i + 1], size=res[3 * i + 2])
                     for i in range(len(COMPONENTS))))


IMPLEMENTATIONS = ("auto", "xla", "native")

# The native kernel draws fresh constants as low + (high - low) * u: bitwise XLA's only when every range
# width is 0 or a power of two (the product is then exact, fused or not). A table that breaks this keeps
# mutations in XLA.
_WIDTHS = ops_lib.DATA_HIGH - ops_lib.DATA_LOW
_NATIVE_EXACT = bool(np.all((_WIDTHS == 0) | (np.frexp(_WIDTHS)[0] == 0.5)))


def _apply(key, program: Program, cfg: ZeroConfig, mcfg: MutationConfig, type_index,
           implementation: str = "auto") -> Program:
    """One mutation by the chosen implementation. "auto": the native kernel when the computation runs on
    the CPU and the kernel is built, else XLA; both give the same bits, so this is a speed choice only."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "xla":
        return _apply_xla(_draws(key, cfg), program, cfg, mcfg, type_index)
    from azjax.zero.backends import native

    if implementation == "native":
        if not _NATIVE_EXACT:
            raise RuntimeError("native mutations: a constant range of the instruction set is not a power of two wide")
        if not native.mutations_available():
            raise RuntimeError(f"native mutations unavailable: {native.reason() or 'the kernel library predates them'}")
        return _apply_native(key, program, cfg, mcfg, type_index)
    if not (_NATIVE_EXACT and native.mutations_available()):
        return _apply_xla(_draws(key, cfg), program, cfg, mcfg, type_index)
    if set(jax.extend.backend.backends()) == {"cpu"}:
        # Only CPU devices exist, so the computation runs on the CPU: tracing the XLA branch as well (most of
        # a search's first-iteration time) would buy nothing.
        return _apply_native(key, program, cfg, mcfg, type_index)
    return jax.lax.platform_dependent(
        key, program, type_index,
        cpu=lambda k_, p_, t_: _apply_native(k_, p_, cfg, mcfg, t_),
        default=lambda k_, p_, t_: _apply_xla(_draws(k_, cfg), p_, cfg, mcfg, t_))


def apply_mutation(
    key: jax.Array, program: Program, cfg: ZeroConfig, mcfg: MutationConfig, type_index: jax.Array,
    implementation: str = "auto",
) -> Program:
    """Applies the mutation `mcfg.type_weights[type_index]` (may be traced), randomness from `key`.

    `mutate` is `apply_mutation` with a drawn type; this entry point lets tests and tools force a
    type while sharing one compiled function across types.
    """
    mcfg.check(cfg)
    return _apply(key, program, cfg, mcfg, type_index, implementation)


def mutate_with_type(
    key: jax.Array, program: Program, cfg: ZeroConfig, mcfg: MutationConfig, implementation: str = "auto"
) -> Tuple[Program, jax.Array]:
    """`mutate`, also returning the index into `mcfg.type_weights` of the applied type."""
    mcfg.check(cfg)
    type_index = draw_mutation_type(_scalar_draws(key, cfg, (_U_TYPE,))[0], mcfg)
    return _apply(key, program, cfg, mcfg, type_index, implementation), type_index


def mutate(key: jax.Array, program: Program, cfg: ZeroConfig, mcfg: MutationConfig,
           implementation: str = "auto") -> Program:
    """Applies exactly one mutation (type and component drawn as the reference does).

    Jittable and vmappable.

    `program` must be a valid, unbatched program of `cfg` (vmap for populations). The result is
    canonical and valid. Raises ValueError (at trace time) if `mcfg` does not fit `cfg`.
    `implementation`: "xla", "native" (the CPU kernel, `backends/mutation_kernel.cc`) or "auto" (native
    where the computation runs on the CPU and the kernel is built); all give the same bits.
    """
    return mutate_with_type(key, program, cfg, mcfg, implementation)[0]

