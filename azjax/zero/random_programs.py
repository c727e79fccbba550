"""Random instructions and programs with the reference's parameter distributions.

Jittable and vmappable: a random instruction is drawn for a component by choosing the op uniformly among the
component's allowed ops, addresses uniformly over their banks (outputs never s0 or v0), and constants as
`SetOpAndRandomizeParams` does: SCALAR_CONST ~ U(-1, 1); VECTOR_CONST index ~ U[0, 1), value ~ U[-1, 1);
MATRIX_CONST two indices ~ U[0, 1), value ~ U[-1, 1); GAUSSIAN mean ~ U[-1, 1), sd ~ U[0, 1); UNIFORM low
and high ~ U[-1, 1) independently (unsorted, so about half start with low > high).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero import ops as ops_lib
from azjax.zero.program import (COMPONENTS, IN1_TYPE, IN2_TYPE, OUT_TYPE, Component, Program, ZeroConfig,
                                canonicalize)

_OP = ops_lib.OP_IDS


def _data_ranges():
    """Per-op (low, high) of each of the three constants, and which ones are index fractions."""
    low = np.zeros((ops_lib.NUM_OPS, 3), np.float64)
    high = np.zeros((ops_lib.NUM_OPS, 3), np.float64)

    def set_(name, slot, lo, hi):
        low[_OP[name], slot], high[_OP[name], slot] = lo, hi

    set_("SCALAR_CONST_SET", 0, -1, 1)
    set_("VECTOR_CONST_SET", 0, 0, 1)
    set_("VECTOR_CONST_SET", 1, -1, 1)
    set_("MATRIX_CONST_SET", 0, 0, 1)
    set_("MATRIX_CONST_SET", 1, 0, 1)
    set_("MATRIX_CONST_SET", 2, -1, 1)
    for kind in ("SCALAR", "VECTOR", "MATRIX"):
        set_(f"{kind}_GAUSSIAN_SET", 0, -1, 1)
        set_(f"{kind}_GAUSSIAN_SET", 1, 0, 1)
        set_(f"{kind}_UNIFORM_SET", 0, -1, 1)
        set_(f"{kind}_UNIFORM_SET", 1, -1, 1)
    return low, high


DATA_LOW, DATA_HIGH = _data_ranges()


def allowed_op_ids(cfg: ZeroConfig, component: str) -> np.ndarray:
    """int32 ids of the ops allowed in a component ([NO_OP] when its list is empty)."""
    ids = [ops_lib.OP_IDS[n] for n in cfg.ops(component)]
    return np.asarray(ids or [ops_lib.NO_OP], np.int32)


def _address_tables(cfg: ZeroConfig):
    """Per type code (s, v, m, none): bank size for inputs, and (low, count) for outputs."""
    sizes = np.array([cfg.num_scalars, cfg.num_vectors, max(cfg.num_matrices, 1), 1], np.int32)
    out_low = np.array([1, 1, 0, 0], np.int32)
    return jnp.asarray(sizes), jnp.asarray(out_low), jnp.asarray(np.maximum(sizes - out_low, 1))


def random_instruction(key: jax.Array, cfg: ZeroConfig, component: str, op: Optional[jax.Array] = None):
    """One random instruction `(instruction int32 [4], data [3])` for `component`.

    If `op` is given, only the parameters are randomized (the reference's SetOpAndRandomizeParams).
    """
    k_op, k_addr, k_data = jax.random.split(key, 3)
    allowed = jnp.asarray(allowed_op_ids(cfg, component))
    if op is None:
        op = allowed[jax.random.randint(k_op, (), 0, allowed.shape[0])]
    sizes, out_low, out_count = _address_tables(cfg)
    u = jax.random.uniform(k_addr, (3,))
    t1, t2, to = (jnp.asarray(IN1_TYPE)[op], jnp.asarray(IN2_TYPE)[op], jnp.asarray(OUT_TYPE)[op])
    a1 = jnp.floor(u[0] * sizes[t1]).astype(jnp.int32)
    a2 = jnp.floor(u[1] * sizes[t2]).astype(jnp.int32)
    o = out_low[to] + jnp.floor(u[2] * out_count[to]).astype(jnp.int32)
    instruction = jnp.stack([op, a1, a2, o]).astype(jnp.int32)
    lo, hi = jnp.asarray(DATA_LOW, cfg.jnp_dtype)[op], jnp.asarray(DATA_HIGH, cfg.jnp_dtype)[op]
    data = jax.random.uniform(k_data, (3,), cfg.jnp_dtype, lo, hi)
    return instruction, data


def random_component(key: jax.Array, cfg: ZeroConfig, component: str, size: int | jax.Array) -> Component:
    """A component of `size` random instructions (NO_OP padded to the configured length)."""
    length = cfg.size(component)
    keys = jax.random.split(key, length)
    ins, data = jax.vmap(lambda k: random_instruction(k, cfg, component))(keys)
    return Component(instructions=ins, data=data, size=jnp.asarray(size, jnp.int32))


def random_program(key: jax.Array, cfg: ZeroConfig, setup_size=None, predict_size=None,
                   learn_size=None) -> Program:
    """A program of random instructions (sizes default to the configured maxima), canonicalized."""
    sizes = {"setup": setup_size, "predict": predict_size, "learn": learn_size}
    keys = jax.random.split(key, 3)
    comps = []
    for k, c in zip(keys, COMPONENTS):
        size = cfg.size(c) if sizes[c] is None else sizes[c]
        if not cfg.ops(c):
            size = 0
        comps.append(random_component(k, cfg, c, size))
    return canonicalize(Program(*comps), cfg)


def random_programs(key: jax.Array, cfg: ZeroConfig, num: int, **sizes) -> Program:
    """A population of `num` random programs."""
    return jax.jit(jax.vmap(lambda k: random_program(k, cfg, **sizes)))(jax.random.split(key, num))
