"""Random instructions and programs with the reference's parameter distributions.

One generator serves initial programs and mutations: an instruction is drawn for a component by choosing
the op uniformly among the component's allowed ops, addresses uniformly over their banks (outputs never s0
or v0: they hold the input and the label; in a multi-class config never v1 either, the label vector), and each constant uniformly over its range in the
instruction-set table (`ops.DATA_LOW/DATA_HIGH`), as the reference's `SetOpAndRandomizeParams` does. The
uniform-set ops draw low and high independently (unsorted, so about half start with low > high).
Jittable and vmappable.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero import ops as ops_lib
from azjax.zero.program import COMPONENTS, Component, Program, ZeroConfig, canonicalize

DRAWS_PER_INSTRUCTION = 7
"""Uniforms consumed by `instructions_from_uniforms` per instruction: op, in1, in2, out, three constants."""


def allowed_op_ids(cfg: ZeroConfig, component: str) -> np.ndarray:
    """int32 ids of the ops allowed in a component ([NO_OP] when its list is empty)."""
    ids = [ops_lib.OP_IDS[n] for n in cfg.ops(component)]
    return np.asarray(ids or [ops_lib.NO_OP], np.int32)


def allowed_op_table(cfg: ZeroConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Per component (setup, predict, learn) the allowed op ids, edge-padded to one width, and their counts."""
    lists = [allowed_op_ids(cfg, c) for c in COMPONENTS]
    width = max(len(a) for a in lists)
    table = np.stack([np.pad(a, (0, width - len(a)), mode="edge") for a in lists]).astype(np.int32)
    return table, np.array([len(a) for a in lists], np.int32)


def address_table(cfg: ZeroConfig) -> np.ndarray:
    """int32 [3, 4]: per type code (s, v, m, none) the input bank size, the lowest writable output address
    and the number of writable output addresses (`ZeroConfig.first_writable`: the vector outputs of a
    multi-class config start at v2, so that its label vector v1 is never written)."""
    sizes = np.array([cfg.num_scalars, cfg.num_vectors, max(cfg.num_matrices, 1), 1], np.int32)
    out_low = np.array([cfg.first_writable("s"), cfg.first_writable("v"), cfg.first_writable("m"), 0], np.int32)
    return np.stack([sizes, out_low, np.maximum(sizes - out_low, 1)])


def pick(u: jax.Array, n) -> jax.Array:
    """A uniform integer in [0, n) from u in [0, 1) (n may be traced; n = 0 gives 0)."""
    return jnp.clip(jnp.floor(u * n).astype(jnp.int32), 0, jnp.maximum(n - 1, 0))


def instruction_for_op(op: jax.Array, u_addresses: jax.Array, u_constants: jax.Array, cfg: ZeroConfig,
                       dtype) -> Tuple[jax.Array, jax.Array]:
    """Instructions int32 [..., 4] and constants [..., 3] for ops `op` [...] from uniforms [..., 3] each."""
    types = jnp.stack([jnp.asarray(t)[op] for t in (ops_lib.IN1_TYPE, ops_lib.IN2_TYPE, ops_lib.OUT_TYPE)])
    addr = jnp.asarray(address_table(cfg))
    a1 = pick(u_addresses[..., 0], addr[0][types[0]])
    a2 = pick(u_addresses[..., 1], addr[0][types[1]])
    o = addr[1][types[2]] + pick(u_addresses[..., 2], addr[2][types[2]])
    instruction = jnp.stack([op, a1, a2, o], axis=-1).astype(jnp.int32)
    low = jnp.asarray(ops_lib.DATA_LOW.astype(np.dtype(dtype)))[op]
    high = jnp.asarray(ops_lib.DATA_HIGH.astype(np.dtype(dtype)))[op]
    return instruction, low + (high - low) * u_constants.astype(dtype)


def instructions_from_uniforms(u: jax.Array, cfg: ZeroConfig, dtype) -> Tuple[jax.Array, jax.Array]:
    """Random instructions of every component from uniforms u [3, n, DRAWS_PER_INSTRUCTION].

    Returns int32 instructions [3, n, 4] and constants [3, n, 3] (not yet canonical).
    """
    table, counts = allowed_op_table(cfg)
    choice = pick(u[..., 0], jnp.asarray(counts)[:, None])  # [3, n]
    op = jnp.take_along_axis(jnp.asarray(table), choice, axis=1)
    return instruction_for_op(op, u[..., 1:4], u[..., 4:7], cfg, dtype)


def random_instruction(key: jax.Array, cfg: ZeroConfig, component: str, op: Optional[jax.Array] = None):
    """One random instruction `(instruction int32 [4], data [3])` for `component`.

    If `op` is given, only the parameters are randomized (the reference's SetOpAndRandomizeParams).
    """
    k_op, k_addr, k_data = jax.random.split(key, 3)
    allowed = jnp.asarray(allowed_op_ids(cfg, component))
    if op is None:
        op = allowed[jax.random.randint(k_op, (), 0, allowed.shape[0])]
    u_addresses = jax.random.uniform(k_addr, (3,))
    u_constants = jax.random.uniform(k_data, (3,), cfg.jnp_dtype)
    return instruction_for_op(jnp.asarray(op), u_addresses, u_constants, cfg, cfg.jnp_dtype)


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


@functools.lru_cache(maxsize=32)
def _random_programs_fn(cfg: ZeroConfig, sizes: Tuple) -> Callable:
    return jax.jit(jax.vmap(lambda k: random_program(k, cfg, **dict(sizes))))


def random_programs(key: jax.Array, cfg: ZeroConfig, num: int, **sizes) -> Program:
    """A population of `num` random programs (one compiled function per config and sizes)."""
    return _random_programs_fn(cfg, tuple(sorted(sizes.items())))(jax.random.split(key, num))
