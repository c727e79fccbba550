"""The `lax.switch` executor of AutoML-Zero instructions (the XLA backends' instruction loop).

Two memory models back the two XLA backends (`azjax/zero/backends/select.py` and `cond.py`):

* `select` - memory is a tuple of typed banks (s [S], v [V, F], m [M, F, F]); programs and tasks are both
  `vmap`ped, so the batched op index turns the switch into "compute every branch, select one". Each branch
  returns only its (scalar, vector, matrix) result triple and memory is written once after the switch. Cost
  grows with the number of ops in the config; the natural choice on GPU/TPU.
* `cond` - memory is one flat buffer [S + V·F + M·F·F]; programs go through `lax.map`, tasks are `vmap`ped
  inside, so the op index is not batched and the switch stays a real conditional: only the chosen op runs,
  reading its operands and writing its result with dynamic slices.

Both run a component as a `fori_loop` over its first `n` instructions (a dynamic trip count, so pruned
programs, see `liveness.py`, run only their live instructions) with one switch per loop site.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.zero import ops as ops_lib
from azjax.zero.program import LABEL_VECTOR, PREDICTION_VECTOR, ZeroConfig


class Operands(NamedTuple):
    a: Tuple[jax.Array, jax.Array, jax.Array]  # in1 read as (scalar, vector, matrix)
    b: Tuple[jax.Array, jax.Array, jax.Array]
    c: Tuple[jax.Array, jax.Array, jax.Array]  # the current value of the output address


_TYPE_INDEX = {"s": 0, "v": 1, "m": 2}


def _branch_table(cfg: ZeroConfig, op_ids=None):
    """Static lookup from global op id to the branch index among `op_ids` (default: all the config's ops;
    NO_OP is always branch 0, and ops outside the subset map to it)."""
    used = tuple(sorted(set(op_ids if op_ids is not None else cfg.used_op_ids) | {ops_lib.NO_OP}))
    index = np.zeros(ops_lib.NUM_OPS, np.int32)
    for k, op_id in enumerate(used):
        index[op_id] = k
    return used, jnp.asarray(index)


def component_op_ids(cfg: ZeroConfig, components) -> Tuple[int, ...]:
    """Ids of the ops allowed in the given components (plus NO_OP): one switch site per loop gets only
    these branches, so e.g. Setup's random ops do not weigh on the per-example loop."""
    ids = {ops_lib.NO_OP}
    for c in components:
        ids.update(ops_lib.OP_IDS[n] for n in cfg.ops(c))
    return tuple(sorted(ids))


def _random_key(key, counter):
    # Only random branches derive their key, so deterministic ops pay nothing for randomness.
    return jax.random.fold_in(key, counter)


def _masked_read(mask, bank):
    """bank[i] for the one-hot `mask` over the leading axis, without changing the sign of a zero.

    A masked sum adds -0 to +0 (the masked-out terms and the reduction's start), which reads -0 as +0 and
    flips the sign of a later 1/x; -0 is the identity of addition for every value, +0 is not.
    """
    neg_zero = jnp.asarray(-0.0, bank.dtype)
    return lax.reduce(jnp.where(mask, bank, neg_zero), neg_zero, lax.add, (0,))


class SelectMemory:
    """Typed-bank memory for the vmapped `select` strategy."""

    def __init__(self, cfg: ZeroConfig):
        self.cfg = cfg
        self.dtype = cfg.jnp_dtype
        self.used, self.branch_index = _branch_table(cfg)
        self.out_type = jnp.asarray([_TYPE_INDEX.get(ops_lib.OPS[i].out, -1) for i in range(ops_lib.NUM_OPS)],
                                    jnp.int32)
        # A bank of size 0 still gets one (never addressed) slot so that reads have a shape.
        self.sizes = (cfg.num_scalars, cfg.num_vectors, max(cfg.num_matrices, 1))
        # Which (role, type) reads and which writes some op of the config needs: every lane pays for each
        # read and write, so the ones no op uses are left out (the demo configs never touch matrices).
        used_ops = [ops_lib.OPS[i] for i in self.used]
        self.reads = {
            "a": {_TYPE_INDEX[o.in1] for o in used_ops if o.in1},
            "b": {_TYPE_INDEX[o.in2] for o in used_ops if o.in2},
            "c": {_TYPE_INDEX[o.out] for o in used_ops if o.out and o.reads_output},
        }
        self.writes = {_TYPE_INDEX[o.out] for o in used_ops if o.out}

    def zeros(self):
        F, dt = self.cfg.features, self.dtype
        S, V, M = self.sizes
        return (jnp.zeros((S,), dt), jnp.zeros((V, F), dt), jnp.zeros((M, F, F), dt))

    def set_inputs(self, mem, x, label):
        s, v, m = mem
        return (s.at[0].set(label), v.at[0].set(x), m)

    def get_s1(self, mem):
        return mem[0][1]

    def set_s1(self, mem, value):
        return (mem[0].at[1].set(value), mem[1], mem[2])

    # The multi-class layout's label and prediction vectors (docs/automl_zero.md, "Multi-class tasks").
    def set_label_vector(self, mem, value):
        return (mem[0], mem[1].at[LABEL_VECTOR].set(value), mem[2])

    def get_prediction_vector(self, mem):
        return mem[1][PREDICTION_VECTOR]

    def set_prediction_vector(self, mem, value):
        return (mem[0], mem[1].at[PREDICTION_VECTOR].set(value), mem[2])

    def _make_branch(self, op):
        F, dt = self.cfg.features, self.dtype
        t1, t2, to = (_TYPE_INDEX.get(op.in1), _TYPE_INDEX.get(op.in2), _TYPE_INDEX.get(op.out))

        def branch(operands: Operands, d, key, counter):
            # Built at trace time, not when the branch is made: a float64 program is traced under enable_x64,
            # which may not hold where the evaluation function was built.
            zeros = (jnp.zeros((), dt), jnp.zeros((F,), dt), jnp.zeros((F, F), dt))
            if to is None:
                return zeros
            a = operands.a[t1] if t1 is not None else None
            b = operands.b[t2] if t2 is not None else None
            c = operands.c[to]
            k = _random_key(key, counter) if op.is_random else None
            result = op.kernel(a, b, c, d, k).astype(dt)
            return tuple(result if i == to else zeros[i] for i in range(3))

        return branch

    def make_run(self, op_ids=None) -> Callable:
        used, branch_index = _branch_table(self.cfg, op_ids)
        branches = [self._make_branch(ops_lib.OPS[i]) for i in used]

        def run(mem, instructions, data, n, key, counter0, positions):
            def body(i, mem):
                op, i1, i2, o = (instructions[i, j] for j in range(4))
                s, v, m = mem
                S, V, M = self.sizes
                # One-hot reads and writes instead of gathers/scatters: under vmap every lane addresses
                # different registers, and masked elementwise ops vectorize where scatters do not.
                hs = [jnp.arange(S) == a for a in (i1, i2, o)]
                hv = [jnp.arange(V) == a for a in (i1, i2, o)]
                hm = [jnp.arange(M) == a for a in (i1, i2, o)]

                F, dt = self.cfg.features, self.dtype
                dummy = (jnp.zeros((), dt), jnp.zeros((F,), dt), jnp.zeros((F, F), dt))

                def read(k, role):
                    need = self.reads[role]
                    return (_masked_read(hs[k], s) if 0 in need else dummy[0],
                            _masked_read(hv[k][:, None], v) if 1 in need else dummy[1],
                            _masked_read(hm[k][:, None, None], m) if 2 in need else dummy[2])

                operands = Operands(read(0, "a"), read(1, "b"), read(2, "c"))
                res = lax.switch(branch_index[op], branches, operands, data[i], key,
                                 counter0 + positions[i])
                t = self.out_type[op]
                if 0 in self.writes:
                    s = jnp.where(hs[2] & (t == 0), res[0], s)
                if 1 in self.writes:
                    v = jnp.where((hv[2] & (t == 1))[:, None], res[1], v)
                if 2 in self.writes:
                    m = jnp.where((hm[2] & (t == 2))[:, None, None], res[2], m)
                return (s, v, m)

            return lax.fori_loop(0, n, body, mem)

        return run


class FlatMemory:
    """One flat buffer per (program, task) for the `cond` strategy."""

    def __init__(self, cfg: ZeroConfig):
        self.cfg = cfg
        self.dtype = cfg.jnp_dtype
        self.used, self.branch_index = _branch_table(cfg)
        F = cfg.features
        self.offsets = {"s": 0, "v": cfg.num_scalars, "m": cfg.num_scalars + cfg.num_vectors * F}
        self.shapes = {"s": (), "v": (F,), "m": (F, F)}
        self.widths = {"s": 1, "v": F, "m": F * F}
        self.total = cfg.num_scalars + cfg.num_vectors * F + cfg.num_matrices * F * F

    def zeros(self):
        return jnp.zeros((self.total,), self.dtype)

    def set_inputs(self, mem, x, label):
        mem = mem.at[0].set(label)
        return lax.dynamic_update_slice(mem, x.astype(self.dtype), (self.offsets["v"],))

    def get_s1(self, mem):
        return mem[1]

    def set_s1(self, mem, value):
        return mem.at[1].set(value)

    def set_label_vector(self, mem, value):
        start = self.offsets["v"] + LABEL_VECTOR * self.cfg.features
        return lax.dynamic_update_slice(mem, value.astype(self.dtype), (start,))

    def get_prediction_vector(self, mem):
        start = self.offsets["v"] + PREDICTION_VECTOR * self.cfg.features
        return mem[start:start + self.cfg.features]

    def set_prediction_vector(self, mem, value):
        start = self.offsets["v"] + PREDICTION_VECTOR * self.cfg.features
        return lax.dynamic_update_slice(mem, value.astype(self.dtype), (start,))

    def _read(self, mem, kind, addr):
        start = self.offsets[kind] + addr * self.widths[kind]
        flat = lax.dynamic_slice(mem, (start,), (self.widths[kind],))
        return flat.reshape(self.shapes[kind])

    def _make_branch(self, op):
        dt = self.dtype

        def branch(mem, i1, i2, o, d, key, counter):
            if op.out is None:
                return mem
            a = self._read(mem, op.in1, i1) if op.in1 else None
            b = self._read(mem, op.in2, i2) if op.in2 else None
            c = self._read(mem, op.out, o)
            k = _random_key(key, counter) if op.is_random else None
            result = op.kernel(a, b, c, d, k).astype(dt).reshape(-1)
            start = self.offsets[op.out] + o * self.widths[op.out]
            return lax.dynamic_update_slice(mem, result, (start,))

        return branch

    def make_run(self, op_ids=None) -> Callable:
        used, branch_index = _branch_table(self.cfg, op_ids)
        branches = [self._make_branch(ops_lib.OPS[i]) for i in used]

        # (Unrolling the instruction loop into one conditional per slot was measured 14x slower on CPU:
        # every conditional then copies the memory buffer.)
        def run(mem, instructions, data, n, key, counter0, positions):
            def body(i, mem):
                op, i1, i2, o = (instructions[i, j] for j in range(4))
                return lax.switch(branch_index[op], branches, mem, i1, i2, o, data[i], key,
                                  counter0 + positions[i])

            return lax.fori_loop(0, n, body, mem)

        return run
