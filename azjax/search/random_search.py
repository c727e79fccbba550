"""Random search: every asked genome is a fresh ``space.sample`` draw; the best ever is kept.

This is the paper's baseline (spec automl_zero.md §6.8): same space, same number of evaluations as
evolution, keep the best.
"""
from __future__ import annotations

import functools
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


class RandomSearch:
    """Uniform sampling from ``space`` in batches of ``batch_size``, keeping the best ever.

    Raises:
        ValueError: naming the bad argument, before anything is traced or compiled.
    """

    def __init__(self, space: Any, batch_size: int = 1):
        base.check_space(space)
        self.space = space
        self.batch_size = base.check_int("batch_size", batch_size, 1)

    def __repr__(self) -> str:
        return f"RandomSearch(space={self.space!r}, batch_size={self.batch_size})"

    @property
    def hparams(self) -> dict[str, Any]:
        """Hyperparameters, stored in checkpoints so a resumed run can check it is the same run."""
        return {"strategy": "RandomSearch", "batch_size": self.batch_size}

    @functools.partial(jax.jit, static_argnames=("self",))
    def init(self, key: jax.Array) -> RandomSearchState:
        """Empty state; ``key`` only fixes the genome structure (nothing is drawn)."""
        return self._init(key)

    @functools.partial(jax.jit, static_argnames=("self",))
    def ask(self, key: jax.Array, state: RandomSearchState) -> tuple[PyTree, RandomSearchState]:
        """``batch_size`` independent ``space.sample`` draws."""
        return self._ask(key, state)

    @functools.partial(jax.jit, static_argnames=("self",))
    def tell(self, genomes: PyTree, fitness: jax.Array,
             state: RandomSearchState) -> RandomSearchState:
        """Updates the best ever (NaN fitness counts as the worst)."""
        return self._tell(genomes, fitness, state)

    def metrics(self, state: RandomSearchState) -> dict[str, jax.Array]:
        """Random search has no population; the loop reports batch statistics."""
        del state
        return {}

    def _init(self, key: jax.Array) -> RandomSearchState:
        return RandomSearchState(
            count=jnp.zeros((), jnp.int32),
            best_genome=base.zeros_genome(self.space, key),
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: RandomSearchState) -> tuple[PyTree, RandomSearchState]:
        keys = jax.random.split(key, self.batch_size)
        return jax.vmap(self.space.sample)(keys), state

    def _tell(self, genomes: PyTree, fitness: jax.Array,
              state: RandomSearchState) -> RandomSearchState:
        base.check_fitness_shape(fitness, self.batch_size)
        fitness = base.sanitize_fitness(fitness)
        best_genome, best_fitness = base.update_best(
            state.best_genome, state.best_fitness, state.count, genomes, fitness)
        return state.replace(count=state.count + self.batch_size, best_genome=best_genome,
                             best_fitness=best_fitness)
