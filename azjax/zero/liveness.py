"""Dead-code elimination for AutoML-Zero programs (jittable, vmappable).

An instruction is live if its result can reach a prediction (`s1` after Predict). Memory persists across
examples, so liveness is a fixed point over the example loop:

    live_out(Learn)   = live_in(Predict) - {s0, v0}       (the harness rewrites s0, v0 before Predict)
    live_out(Predict) = {s1} | live_out(Learn-side) ...   (s1 is read; Learn or the next Predict follows)
    live_out(Setup)   = live_in(Predict) - {s0, v0}

In a multi-class config the prediction is the vector `v2` and the harness also writes the label vector `v1`
before every Predict and Learn, so the target is {v2} and {s0, v0, v1} are killed instead.

Walking a component backwards, a live instruction removes its output from the live set (unless it writes a
single element, VECTOR/MATRIX_CONST_SET, which keeps the rest of the old value) and adds its inputs.
`prune` moves the live instructions to the front (keeping their order and their original positions, so
random ops draw the same numbers) and shrinks the sizes: the interpreter's dynamic trip count then skips
dead code entirely. Predictions and fitness are unchanged.
"""
from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.zero import ops as ops_lib
from azjax.zero.program import (IN1_TYPE, IN2_TYPE, LABEL_VECTOR, OUT_TYPE, PREDICTION_VECTOR, Component, Program,
                                ZeroConfig)

_PARTIAL_WRITE = np.array([op.reads_output for op in ops_lib.OPS])


def _offsets(cfg: ZeroConfig):
    return np.array([0, cfg.num_scalars, cfg.num_scalars + cfg.num_vectors, 0], np.int32)


def _total(cfg: ZeroConfig) -> int:
    return cfg.num_scalars + cfg.num_vectors + cfg.num_matrices


def _backward(comp: Component, live_out: jax.Array, cfg: ZeroConfig) -> Tuple[jax.Array, jax.Array]:
    """(live_in, live flags [L]) of one component given its live-out set (bool [S + V + M])."""
    off = jnp.asarray(_offsets(cfg))
    t1, t2, to = (jnp.asarray(t)[comp.instructions[:, 0]] for t in (IN1_TYPE, IN2_TYPE, OUT_TYPE))
    partial = jnp.asarray(_PARTIAL_WRITE)[comp.instructions[:, 0]]
    used = jnp.arange(comp.instructions.shape[0]) < comp.size

    def slot(t, addr):
        return off[jnp.maximum(t, 0)] + addr

    def step(live, k):
        ins = comp.instructions[k]
        out_slot = slot(to[k], ins[3])
        is_live = used[k] & (to[k] >= 0) & live[out_slot]
        after_kill = live.at[out_slot].set(live[out_slot] & partial[k])
        new = after_kill
        new = new.at[slot(t1[k], ins[1])].set(new[slot(t1[k], ins[1])] | (t1[k] >= 0))
        new = new.at[slot(t2[k], ins[2])].set(new[slot(t2[k], ins[2])] | (t2[k] >= 0))
        return jnp.where(is_live, new, live), is_live

    L = comp.instructions.shape[0]
    live_in, flags = lax.scan(step, live_out, jnp.arange(L), reverse=True)
    return live_in, flags


def live_instructions(prog: Program, cfg: ZeroConfig) -> Program:
    """Bool flags per instruction (a Program-shaped pytree of [L] masks in the `size` leaves' place)."""
    n = _total(cfg)
    off = _offsets(cfg)
    if cfg.multiclass:  # harness: s0, v0 and the label vector v1; the prediction is v2
        harness = jnp.zeros((n,), bool).at[jnp.array([off[0], off[1], off[1] + LABEL_VECTOR])].set(True)
        s1 = jnp.zeros((n,), bool).at[off[1] + PREDICTION_VECTOR].set(True)
    else:
        harness = jnp.zeros((n,), bool).at[jnp.array([off[0] + 0, off[1] + 0])].set(True)  # s0, v0
        s1 = jnp.zeros((n,), bool).at[off[0] + 1].set(True)

    def iterate(carry):
        live_in_p, live_in_l, _ = carry
        out_l = live_in_p & ~harness
        new_in_l, _ = _backward(prog.learn, out_l, cfg)
        out_p = s1 | (new_in_l & ~harness) | (live_in_p & ~harness)
        new_in_p, _ = _backward(prog.predict, out_p, cfg)
        changed = jnp.any(new_in_p != live_in_p) | jnp.any(new_in_l != live_in_l)
        return new_in_p, new_in_l, changed

    empty = jnp.zeros((n,), bool)
    live_in_p, live_in_l, _ = lax.while_loop(lambda c: c[2], iterate, (empty, empty, jnp.ones((), bool)))
    _, flags_l = _backward(prog.learn, live_in_p & ~harness, cfg)
    _, flags_p = _backward(prog.predict, s1 | (live_in_l & ~harness) | (live_in_p & ~harness), cfg)
    _, flags_s = _backward(prog.setup, live_in_p & ~harness, cfg)
    return flags_s, flags_p, flags_l


def _compact(comp: Component, live: jax.Array) -> Tuple[Component, jax.Array]:
    L = comp.instructions.shape[0]
    order = jnp.argsort(~live, stable=True)
    n = jnp.sum(live).astype(jnp.int32)
    keep = jnp.arange(L) < n
    ins = jnp.where(keep[:, None], comp.instructions[order], 0)
    data = jnp.where(keep[:, None], comp.data[order], 0)
    positions = jnp.where(keep, order, 0).astype(jnp.int32)
    return Component(instructions=ins, data=data, size=n), positions


def prune(prog: Program, cfg: ZeroConfig) -> Tuple[Program, Tuple[jax.Array, jax.Array, jax.Array]]:
    """(pruned program, original positions of its instructions per component) for ONE program."""
    flags = live_instructions(prog, cfg)
    comps, positions = zip(*(_compact(c, f) for c, f in zip((prog.setup, prog.predict, prog.learn), flags)))
    return Program(*comps), tuple(positions)


def identity_positions(prog: Program) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """Positions of an unpruned program: 0..L-1 per component."""
    return tuple(jnp.broadcast_to(jnp.arange(c.instructions.shape[-2], dtype=jnp.int32),
                                  c.instructions.shape[:-1]) for c in (prog.setup, prog.predict, prog.learn))
