"""Regularized (aging) evolution with batched ask/tell.

With ``batch_size=1`` this is exactly the reference AutoML-Zero loop (docs/automl_zero.md):
a population of ``P`` slots is filled in order by initial samples; afterwards every child comes from
a tournament of ``T`` indices drawn uniformly *with replacement*, whose parent is the first drawn
member with the strictly highest fitness; the child is a mutation of the parent with probability
``mutate_prob`` (else an exact copy) and is written over the oldest member, slot ``count mod P``.
Because slots are overwritten cyclically, that slot always holds the oldest member, and the
tournament may pick the member that is about to be replaced.

With ``batch_size=B`` one ``ask`` returns ``B`` children of ``B`` independent tournaments over the
same population, and ``tell`` writes them over the ``B`` oldest members in order.

Initial phase: while fewer than ``P`` genomes have been told, ``ask`` returns ``space.sample``
draws.
If ``B`` does not divide ``P`` the last initial batch overflows and its extra samples replace the
oldest initial members, so aging order is preserved.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from azjax.search import base

PyTree = Any

__all__ = ["EvolutionState", "RegularizedEvolution"]


@flax.struct.dataclass
class EvolutionState:
    """State of :class:`RegularizedEvolution`.

    Attributes:
        population: genomes, the space's pytree with a leading axis of ``population_size``.
        fitness: float32 [P]; NaN is stored as ``-inf``; empty slots hold ``-inf``.
        birth: int32 [P], the evaluation index (0-based) at which each member was told; -1 if empty.
            The oldest member is the one with the smallest birth.
        count: int32 scalar, number of genomes told so far (int32: valid up to 2**31 - 1).
        best_genome: the best genome ever told.
        best_fitness: its (sanitised) fitness; ``-inf`` before the first tell.
    """

    population: PyTree
    fitness: jax.Array
    birth: jax.Array
    count: jax.Array
    best_genome: PyTree
    best_fitness: jax.Array


class RegularizedEvolution(base.Strategy):
    """Regularized evolution (Real et al. 2019) as used by AutoML-Zero.

    Args:
        space: a :class:`~azjax.search.space.SearchSpace`.
        population_size: ``P``, number of members kept (>= 1).
        tournament_size: ``T``, members drawn with replacement per tournament (1 <= T <= P).
        mutate_prob: probability that a child is a mutation of its parent rather than a copy.
        batch_size: ``B``, children per ``ask`` (1 <= B <= P); B = 1 is the reference loop.

    Raises:
        ValueError: naming the bad argument, before anything is traced or compiled.
    """

    hparam_names = ("population_size", "tournament_size", "mutate_prob", "batch_size")

    def __init__(self, space: Any, population_size: int, tournament_size: int,
                 mutate_prob: float = 0.9, batch_size: int = 1):
        base.check_space(space)
        self.space = space
        self.population_size = base.check_int("population_size", population_size, 1)
        self.tournament_size = base.check_int("tournament_size", tournament_size, 1)
        if self.tournament_size > self.population_size:
            raise ValueError(
                f"tournament_size ({self.tournament_size}) must be <= population_size "
                f"({self.population_size})")
        if isinstance(mutate_prob, bool) or not isinstance(mutate_prob, (int, float)):
            raise ValueError(f"mutate_prob must be a float in [0, 1], got {mutate_prob!r}")
        if not 0.0 <= float(mutate_prob) <= 1.0:
            raise ValueError(f"mutate_prob must be in [0, 1], got {mutate_prob}")
        self.mutate_prob = float(mutate_prob)
        # P(bits < threshold) = threshold / 2**32 = mutate_prob (to within 2**-32)
        self._coin_threshold = min(int(round(self.mutate_prob * 2.0**32)), 2**32 - 1)
        self.batch_size = base.check_int("batch_size", batch_size, 1)
        if self.batch_size > self.population_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be <= population_size "
                f"({self.population_size}): one tell may not overwrite a slot twice")

    def metrics(self, state: EvolutionState) -> dict[str, jax.Array]:
        """Population statistics over filled slots with finite fitness (NaN when there are none)."""
        return self._metrics_fn(state.fitness, state.birth)

    def _init(self, key: jax.Array) -> EvolutionState:
        """An empty population; ``key`` only fixes the genome structure (nothing is drawn)."""
        template = base.zeros_genome(self.space, key)
        p = self.population_size
        population = jax.tree_util.tree_map(
            lambda x: jnp.zeros((p,) + x.shape, x.dtype), template)
        return EvolutionState(
            population=population,
            fitness=jnp.full((p,), -jnp.inf, jnp.float32),
            birth=jnp.full((p,), -1, jnp.int32),
            count=jnp.zeros((), jnp.int32),
            best_genome=template,
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: EvolutionState) -> tuple[PyTree, EvolutionState]:
        """``batch_size`` genomes to evaluate: initial samples, then tournament children."""
        keys = jax.random.split(key, self.batch_size)
        genomes = jax.lax.cond(
            state.count < self.population_size,
            lambda: jax.vmap(self.space.sample)(keys),
            lambda: jax.vmap(lambda k: self._child(k, state))(keys),
        )
        return genomes, state

    def _child(self, key: jax.Array, state: EvolutionState) -> PyTree:
        """One tournament + (maybe) one mutation; the reference's per-slot step.

        Randomness: ``k_draw, k_mut = split(key)``; ``bits = random.bits(k_draw, (T + 1,))``;
        the tournament draws ``bits[:T] % P`` (uniform with replacement, modulo bias < P / 2**32)
        and the child is mutated iff ``bits[T] < mutate_prob * 2**32``. Raw bits instead of
        randint/uniform keep the number of threefry call sites (each compiled separately) low.
        """
        k_draw, k_mut = jax.random.split(key)
        bits = jax.random.bits(k_draw, (self.tournament_size + 1,), jnp.uint32)
        drawn = (bits[:-1] % jnp.uint32(self.population_size)).astype(jnp.int32)
        # argmax returns the first maximum: "the first one with the strictly highest fitness".
        parent_index = drawn[jnp.argmax(state.fitness[drawn])]
        parent = base.tree_index(state.population, parent_index)
        if self.mutate_prob == 0.0:
            return parent
        mutated = self.space.mutate(k_mut, parent)
        if self.mutate_prob == 1.0:
            return mutated
        do_mutate = bits[-1] < jnp.uint32(self._coin_threshold)
        return base.tree_where(do_mutate, mutated, parent)

    def _tell(self, genomes: PyTree, fitness: jax.Array, state: EvolutionState) -> EvolutionState:
        """Writes the evaluated genomes over the oldest members (NaN fitness counts as worst)."""
        base.check_fitness_shape(fitness, self.batch_size)
        fitness = base.sanitize_fitness(fitness)
        offsets = jnp.arange(self.batch_size, dtype=jnp.int32)
        slots = (state.count + offsets) % self.population_size
        population = jax.tree_util.tree_map(
            lambda pop, g: pop.at[slots].set(g.astype(pop.dtype)), state.population, genomes)
        best_genome, best_fitness = base.update_best(
            state.best_genome, state.best_fitness, state.count, genomes, fitness)
        return state.replace(
            population=population,
            fitness=state.fitness.at[slots].set(fitness),
            birth=state.birth.at[slots].set(state.count + offsets),
            count=state.count + self.batch_size,
            best_genome=best_genome,
            best_fitness=best_fitness,
        )

    @staticmethod
    @jax.jit
    def _metrics_fn(fitness: jax.Array, birth: jax.Array) -> dict[str, jax.Array]:
        ok = (birth >= 0) & jnp.isfinite(fitness)
        n = jnp.sum(ok)
        mean = jnp.sum(jnp.where(ok, fitness, 0.0)) / n
        var = jnp.sum(jnp.where(ok, (fitness - mean) ** 2, 0.0)) / n
        return {
            "population_mean_fitness": mean,
            "population_std_fitness": jnp.sqrt(var),
            "population_max_fitness": jnp.max(jnp.where(ok, fitness, -jnp.inf)),
            "population_size_filled": jnp.sum(birth >= 0),
        }
