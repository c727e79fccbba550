"""Toy problems shared by the search tests: OneMax over bits and a mixed int/float genome."""
import functools

import jax
import jax.numpy as jnp

from azjax import search

# Shared by several test modules: jit caches are per strategy instance, so sharing saves compiles.
SPACE = search.IntVectorSpace((2,) * 16)
EVO = search.RegularizedEvolution(SPACE, population_size=8, tournament_size=3, batch_size=4)


def onemax(genomes: jax.Array) -> jax.Array:
    """Fitness = number of ones (float32 [B])."""
    return jnp.sum(genomes, axis=-1).astype(jnp.float32)


def mixed_fitness(genomes: search.MixedGenome) -> jax.Array:
    """Ints should all be at their top choice, floats at 1.0."""
    return (jnp.sum(genomes.ints, axis=-1) + jnp.sum(genomes.floats, axis=-1)).astype(jnp.float32)


@jax.jit
def onemax_evaluator(key, genomes):
    del key
    f = onemax(genomes)
    return f, {"train_steps": jnp.full(f.shape, 10, jnp.int32)}


def run_python_loop(strategy, fitness_fn, key, iterations):
    """ask/eval/tell in a Python loop with the same key schedule as `scan_loop`."""
    state = strategy.init(key)
    best = []
    for i in range(iterations):
        genomes, state = strategy.ask(jax.random.fold_in(key, i), state)
        state = strategy.tell(genomes, fitness_fn(genomes), state)
        best.append(state.best_fitness)
    return state, jnp.stack(best)


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def scan_loop(strategy, fitness_fn, key, iterations):
    """The same loop as one `lax.scan` under one jit (cached per strategy/fitness/length)."""

    def step(state, i):
        genomes, state = strategy.ask(jax.random.fold_in(key, i), state)
        state = strategy.tell(genomes, fitness_fn(genomes), state)
        return state, state.best_fitness

    return jax.lax.scan(step, strategy.init(key), jnp.arange(iterations))
