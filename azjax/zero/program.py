"""Programs as pytrees of fixed-length arrays, their canonical form and validation.

A program is three component functions (Setup, Predict, Learn). Each component is a fixed-length array of
instructions padded with NO_OPs, so a population of programs is a pytree of dense arrays that `vmap`,
`jit` and sharding handle directly:

* `Component.instructions`  int32 [..., L, 4]: op id (global, 0-64), in1, in2, out (bank addresses);
* `Component.data`          float [..., L, 3]: the constants f0, f1, f2 (SCALAR_CONST_SET's value is f0;
                             VECTOR_CONST_SET f0 = index fraction, f1 = value; MATRIX_CONST_SET f0, f1 index
                             fractions, f2 value; uniform f0 low, f1 high; gaussian f0 mean, f1 sd);
* `Component.size`          int32 [...]: the used length; instructions beyond it are NO_OPs.

Memory is typed banks: scalars s0..s{S-1}, vectors v0..v{V-1} (length F), matrices m0..m{M-1} (F×F).
`s0` is the label, `s1` the prediction, `v0` the features; `s0` and `v0` are never written by a program.
In a multi-class config (`ZeroConfig.num_classes >= 2`, docs/automl_zero.md "Multi-class tasks") the label
is the one-hot vector `v1` (never written by a program either) and the prediction the vector `v2`.
"""
from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from azjax.zero import ops as ops_lib
from azjax.zero.config import (  # noqa: F401 - re-exported: the config is part of a program's vocabulary
    _BANK_NAMES, COMPONENTS, LABEL_VECTOR, PREDICTION_VECTOR, ZeroConfig)

@struct.dataclass
class Component:
    """One component function: instructions int32 [..., L, 4], data float [..., L, 3], size int32 [...]."""

    instructions: jax.Array
    data: jax.Array
    size: jax.Array


@struct.dataclass
class Program:
    """An AutoML-Zero program (or a population of them, with leading axes)."""

    setup: Component
    predict: Component
    learn: Component

    def component(self, name: str) -> Component:
        return getattr(self, name)


Instruction = Tuple  # (op name or id, in1=0, in2=0, out=0, f0=0., f1=0., f2=0.)


def _component_arrays(cfg: ZeroConfig, name: str, instructions: Sequence[Instruction]):
    length = cfg.size(name)
    if len(instructions) > length:
        raise ValueError(f"{name}: {len(instructions)} instructions exceed {name}_size={length}")
    ins = np.zeros((length, 4), np.int32)
    data = np.zeros((length, 3), cfg.np_dtype)
    for k, instr in enumerate(instructions):
        instr = tuple(instr) + (0,) * (7 - len(instr))
        ins[k] = (ops_lib.op_id(instr[0]),) + tuple(int(x) for x in instr[1:4])
        data[k] = instr[4:7]
    return Component(instructions=ins, data=data, size=np.int32(len(instructions)))


def make_program(cfg: ZeroConfig, setup: Sequence[Instruction] = (), predict: Sequence[Instruction] = (),
                 learn: Sequence[Instruction] = (), validate: bool = True) -> Program:
    """Builds a program from instruction tuples `(op, in1, in2, out, f0, f1, f2)` (trailing fields optional).

    Unused fields are zeroed (canonical form) and the result is validated against `cfg`. Leaves are numpy
    arrays (so float64 constants stay exact whether or not jax_enable_x64 is on).
    """
    prog = Program(setup=_component_arrays(cfg, "setup", setup),
                   predict=_component_arrays(cfg, "predict", predict),
                   learn=_component_arrays(cfg, "learn", learn))
    prog = jax.tree_util.tree_map(np.asarray, canonicalize(prog, cfg, xp=np))
    if validate:
        validate_program(prog, cfg)
    # Host (numpy) leaves keep float64 constants exact even when jax_enable_x64 is off.
    return prog


def empty_program(cfg: ZeroConfig) -> Program:
    """The all-NO_OP program of size 0 in every component."""
    return make_program(cfg)


def stack_programs(programs: Iterable[Program]) -> Program:
    """Stacks programs into one with a leading population axis."""
    programs = list(programs)
    if not programs:
        raise ValueError("stack_programs: need at least one program")
    def stack(*xs):
        return np.stack(xs) if all(isinstance(x, np.ndarray) for x in xs) else jnp.stack(xs)

    return jax.tree_util.tree_map(stack, *programs)


def unstack_programs(programs: Program) -> List[Program]:
    """Splits a population (leading axis) into a list of programs."""
    n = programs.setup.size.shape[0]
    return [jax.tree_util.tree_map(lambda x: x[i], programs) for i in range(n)]


# Per-op tables, derived from the instruction-set table (re-exported here for validation and older imports).
IN1_TYPE, IN2_TYPE, OUT_TYPE = ops_lib.IN1_TYPE, ops_lib.IN2_TYPE, ops_lib.OUT_TYPE
NUM_DATA, IS_INDEX = ops_lib.NUM_DATA, ops_lib.IS_INDEX

# Per op: in1/in2/out used, constant slots kept, slots that are index fractions, slots stored as float32.
_CANONICAL_RULES = np.concatenate([np.stack([IN1_TYPE >= 0, IN2_TYPE >= 0, OUT_TYPE >= 0], axis=1),
                                   np.arange(3)[None, :] < NUM_DATA[:, None], IS_INDEX,
                                   ops_lib.STORED_FLOAT32], axis=1)


def canonical_rows(instructions, data, size, features: int, xp=jnp):
    """The canonical form of instruction rows [..., L, 4] / constants [..., L, 3] with sizes [...].

    Rows past the size become NO_OPs, unused fields become 0, constants the reference stores as float32
    are rounded to float32, and index fractions snap to the centre (i + 0.5) / F of the element they pick
    (truncating F * f in float32, as the reference does), so equal programs are equal arrays. `xp` is jnp
    (jittable) or np.
    """
    F, dtype = features, data.dtype
    used = xp.arange(instructions.shape[-2]) < size[..., None]
    op = xp.where(used, instructions[..., 0], 0)
    rule = xp.asarray(_CANONICAL_RULES)[op]  # [..., L, 12]
    ins = xp.concatenate([op[..., None], xp.where(rule[..., 0:3], instructions[..., 1:], 0)], axis=-1)
    narrow = data.astype(np.float32)
    stored = xp.where(rule[..., 9:12], narrow.astype(dtype), data)
    # A centre table computed by numpy and stored as float32: XLA CPU divides by multiplying with a
    # reciprocal (one ulp off). NaN would cast to an arbitrary integer, so it reads as 0 here (a NaN index
    # fails validation; other slots discard the snapped value).
    centers = xp.asarray(((np.arange(F) + 0.5) / F).astype(np.float32).astype(dtype))
    scaled = xp.where(xp.isnan(narrow), np.float32(0), narrow) * np.float32(F)
    snapped = centers[xp.clip(xp.floor(scaled), 0, F - 1).astype(np.int32)]
    data = xp.where(rule[..., 6:9], snapped, stored)
    data = xp.where(rule[..., 3:6], data, 0).astype(dtype)
    return ins.astype(np.int32), data


def canonicalize(prog: Program, cfg: ZeroConfig, xp=jnp) -> Program:
    """`canonical_rows` applied to every component: equal programs become equal arrays.

    Works on any leading batch shape; `xp` is jnp (jittable) or np.
    """
    def fix(comp: Component) -> Component:
        ins, data = canonical_rows(comp.instructions, comp.data, comp.size, cfg.features, xp)
        return Component(instructions=ins, data=data, size=comp.size)

    return Program(*(fix(prog.component(c)) for c in COMPONENTS))


def validate_program(prog: Program, cfg: ZeroConfig) -> None:
    """Checks arrays (any leading batch shape) against `cfg`; raises ValueError naming the bad field."""
    for c in COMPONENTS:
        comp = prog.component(c)
        try:
            ins = np.asarray(comp.instructions)
            data = np.asarray(comp.data)
            size = np.asarray(comp.size)
        except Exception as e:  # noqa: BLE001 - anything that is not array-like
            raise ValueError(f"program.{c}: not an array pytree ({e})") from None
        length = cfg.size(c)
        if ins.ndim < 2 or ins.shape[-2:] != (length, 4):
            raise ValueError(f"program.{c}.instructions: expected shape [..., {length}, 4], got {ins.shape}")
        if not np.issubdtype(ins.dtype, np.integer):
            raise ValueError(f"program.{c}.instructions: expected an integer dtype, got {ins.dtype}")
        batch = ins.shape[:-2]
        if data.shape != batch + (length, 3):
            raise ValueError(f"program.{c}.data: expected shape {batch + (length, 3)}, got {data.shape}")
        if not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"program.{c}.data: expected a float dtype, got {data.dtype}")
        if size.shape != batch:
            raise ValueError(f"program.{c}.size: expected shape {batch}, got {size.shape}")
        if np.any((size < 0) | (size > length)):
            raise ValueError(f"program.{c}.size: values must lie in [0, {length}], got {size.ravel()[:8]}")
        op = ins[..., 0]
        if np.any((op < 0) | (op >= ops_lib.NUM_OPS)):
            bad = op[(op < 0) | (op >= ops_lib.NUM_OPS)].ravel()[0]
            raise ValueError(f"program.{c}.instructions[..., 0] (op): id {bad} out of range [0, 64]")
        used = np.arange(length) < size[..., None]
        if np.any(~used & (op != ops_lib.NO_OP)):
            raise ValueError(f"program.{c}.instructions: ops beyond program.{c}.size must be NO_OP")
        allowed = np.zeros(ops_lib.NUM_OPS, bool)
        allowed[ops_lib.NO_OP] = True
        for name in cfg.ops(c):
            allowed[ops_lib.OP_IDS[name]] = True
        if not np.all(allowed[op]):
            bad = ops_lib.OPS[int(op[~allowed[op]].ravel()[0])].name
            raise ValueError(f"program.{c}: op {bad} is not allowed in {c} (ZeroConfig.{c}_ops)")
        for col, role, types in ((1, "in1", IN1_TYPE), (2, "in2", IN2_TYPE), (3, "out", OUT_TYPE)):
            t = types[op]
            addr = ins[..., col]
            for code, kind in enumerate("svm"):
                sel = t == code
                lo = cfg.first_writable(kind) if role == "out" else 0
                bad = sel & ((addr < lo) | (addr >= cfg.bank_size(kind)))
                if np.any(bad):
                    a = int(addr[bad].ravel()[0])
                    what = ("writes reserved " if role == "out" and a < lo else "addresses out-of-range ")
                    raise ValueError(f"program.{c}.instructions[..., {col}] ({role}): {what}{kind}{a} "
                                     f"(bank {_BANK_NAMES[kind]}={cfg.bank_size(kind)})")
        index = IS_INDEX[op]
        if np.any(index & ((data < 0) | (data >= 1) | ~np.isfinite(data))):
            raise ValueError(f"program.{c}.data: element-index fractions must lie in [0, 1)")
