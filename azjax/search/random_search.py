"""Random search: every asked genome is a fresh ``space.sample`` draw; the best ever is kept.

This is the paper's baseline (docs/automl_zero.md): same space, same number of evaluations as
evolution, keep the best.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from azjax.search import base

PyTree = Any

__all__ = ["RandomSearchState", "RandomSearch"]


@flax.struct.dataclass
class RandomSearchState:
    """State of :class:`RandomSearch`.

    Attributes:
        count: int32 scalar, number of genomes told so far.
        best_genome: the best genome ever told (a zero placeholder before the first tell).
        best_fitness: its fitness (NaN stored as ``-inf``); ``-inf`` before the first tell.
    """

    count: jax.Array
    best_genome: PyTree
    best_fitness: jax.Array


class RandomSearch(base.Strategy):
    """Uniform sampling from ``space`` in batches of ``batch_size``, keeping the best ever.

    Raises:
        ValueError: naming the bad argument, before anything is traced or compiled.
    """

    hparam_names = ("batch_size",)

    def __init__(self, space: Any, batch_size: int = 1):
        base.check_space(space)
        self.space = space
        self.batch_size = base.check_int("batch_size", batch_size, 1)

    def _init(self, key: jax.Array) -> RandomSearchState:
        """Empty state; ``key`` only fixes the genome structure (nothing is drawn)."""
        return RandomSearchState(
            count=jnp.zeros((), jnp.int32),
            best_genome=base.zeros_genome(self.space, key),
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: RandomSearchState) -> tuple[PyTree, RandomSearchState]:
        """``batch_size`` independent ``space.sample`` draws."""
        keys = jax.random.split(key, self.batch_size)
        return jax.vmap(self.space.sample)(keys), state

    def _tell(self, genomes: PyTree, fitness: jax.Array,
              state: RandomSearchState) -> RandomSearchState:
        """Updates the best ever (NaN fitness counts as the worst)."""
        base.check_fitness_shape(fitness, self.batch_size)
        fitness = base.sanitize_fitness(fitness)
        best_genome, best_fitness = base.update_best(
            state.best_genome, state.best_fitness, state.count, genomes, fitness)
        return state.replace(count=state.count + self.batch_size, best_genome=best_genome,
                             best_fitness=best_fitness)
