"""Initial programs of a search (the reference's HardcodedAlgorithmID): empty, random, or hand-written.

RANDOM programs take their rows from the same generator as mutations
(`random_programs.instructions_from_uniforms`, drawn the way `mutations` draws them), so a RANDOM initial
program and a RANDOMIZE_ALGORITHM mutation give the same distribution.
"""
from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero import algorithms
from azjax.zero.mutations import _canonical_stacked, _draws, _fresh_from_draws, _unstack_components
from azjax.zero.program import COMPONENTS, Component, Program, ZeroConfig, make_program
from azjax.zero.program_text import parse_program

__all__ = ["INITIAL_KINDS", "initial_program", "check_sizes"]

# The reference's HardcodedAlgorithmID for initial programs.
INITIAL_KINDS = ("NO_OP", "RANDOM", "LINEAR", "NEURAL_NET", "DAMAGED_NEURAL_NET")




def check_sizes(cfg: ZeroConfig, sizes, field: str = "sizes") -> Tuple[int, int, int]:
    if sizes is None:
        return tuple(cfg.size(c) for c in COMPONENTS)
    if isinstance(sizes, dict):
        unknown = set(sizes) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"{field}: unknown component(s) {sorted(unknown)}")
        sizes = tuple(sizes.get(c, cfg.size(c)) for c in COMPONENTS)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(
            f"{field} must be None or (setup, predict, learn) sizes, got {sizes!r}"
        ) from None
    if len(sizes) != 3:
        raise ValueError(f"{field} must have 3 entries (setup, predict, learn), got {sizes!r}")
    out = []
    for c, s in zip(COMPONENTS, sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"{field}: the {c} size must be an integer, got {s!r}")
        if not 0 <= s <= cfg.size(c):
            raise ValueError(
                f"{field}: the {c} size {s} must lie in [0, ZeroConfig.{c}_size={cfg.size(c)}]"
            )
        out.append(int(s))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _hand_written(cfg: ZeroConfig, kind: str, sizes: Tuple[int, int, int]) -> Program:
    """The hand-written program (numpy leaves), NO_OP-padded up to `sizes` as the reference pads."""
    # Multi-class configs (vector label and prediction) get the multi-class versions: softmax regression
    # and the network with a matrix output layer.
    if kind == "LINEAR":
        text = algorithms.softmax_regression_text() if cfg.multiclass else algorithms.linear_regression_text()
    elif cfg.multiclass:
        text = algorithms.multiclass_neural_network_text(damaged=kind == "DAMAGED_NEURAL_NET")
    else:
        text = algorithms.neural_network_text(damaged=kind == "DAMAGED_NEURAL_NET")
    try:
        prog = parse_program(text, cfg)
    except ValueError as e:
        raise ValueError(
            f"initial={kind}: the hand-written program does not fit this ZeroConfig ({e})"
        ) from None
    comps = {}
    for c, target in zip(COMPONENTS, sizes):
        comp = prog.component(c)
        n = int(comp.size)
        # Padding with NO_OPs leaves the arrays as they are (rows beyond the size already are
        # NO_OPs).
        comps[c] = Component(
            instructions=np.asarray(comp.instructions),
            data=np.asarray(comp.data),
            size=np.int32(max(n, target)),
        )
    return Program(**comps)


def initial_program(key: jax.Array, cfg: ZeroConfig, kind: str = "RANDOM", sizes=None) -> Program:
    """One initial program (the reference's HardcodedAlgorithmID); jittable in `key`.

    Args:
      key: PRNG key (only RANDOM uses it).
      cfg: the program config.
      kind: NO_OP (`sizes` NO_OPs per component), RANDOM (`sizes` random instructions; components
        with an empty op list get NO_OPs), LINEAR, NEURAL_NET or DAMAGED_NEURAL_NET (the
        hand-written programs of `algorithms`, padded with NO_OPs up to `sizes`; in a multi-class
        config LINEAR is softmax regression and the networks have a matrix output layer).
      sizes: the reference's *_size_init as (setup, predict, learn) or a dict; None = the array
        lengths.

    Raises:
      ValueError: unknown kind, sizes out of range, or a hand-written program the config cannot
        hold.
    """
    if kind not in INITIAL_KINDS:
        raise ValueError(f"initial kind {kind!r} unknown; valid: {', '.join(INITIAL_KINDS)}")
    sizes = check_sizes(cfg, sizes)
    if kind == "NO_OP":
        prog = make_program(cfg, validate=False)
        return Program(
            *(
                Component(
                    instructions=comp.instructions, data=comp.data, size=jnp.asarray(s, jnp.int32)
                )
                for comp, s in zip((prog.setup, prog.predict, prog.learn), sizes)
            )
        )
    if kind == "RANDOM":
        ins3, data3 = _fresh_from_draws(_draws(key, cfg), cfg, cfg.jnp_dtype)
        stacked = _canonical_stacked(ins3, data3, jnp.asarray(sizes, jnp.int32), cfg.features)
        return _unstack_components(*stacked, cfg)
    return jax.tree_util.tree_map(jnp.asarray, _hand_written(cfg, kind, sizes))
