"""Fixed-seed search trajectories of every strategy, recorded through ``search.run``.

:func:`record` runs a short search with each strategy and returns every asked batch of genomes, its
fitness and the final state's leaves as flat NumPy arrays; ``tests/search/data/trajectory.npz``
holds the arrays recorded by the code before the strategies were ported to the shared base class.
``test_trajectory.py`` compares a fresh recording with that file.

Regenerate (only when a change of trajectory is intended)::

    python -m tests.search.trajectory
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from azjax import search
from azjax.search.controller import Controller

FIXTURE = pathlib.Path(__file__).parent / "data" / "trajectory.npz"
ITERATIONS = 6


def _fitness(genomes) -> jax.Array:
    """Number of top choices (ints) plus the float genes; defined for both toy genome kinds."""
    if isinstance(genomes, search.MixedGenome):
        return (jnp.sum(genomes.ints, axis=-1) + jnp.sum(genomes.floats, axis=-1)).astype(
            jnp.float32)
    return jnp.sum(genomes, axis=-1).astype(jnp.float32)


def strategies() -> dict[str, object]:
    """One small instance of every strategy (and of the islands' two migration topologies)."""
    bits = search.IntVectorSpace((2,) * 12)
    mixed = search.MixedVectorSpace((3,) * 4, num_floats=2)
    small = search.IntVectorSpace((3, 2, 4, 3))
    return {
        "evolution": search.RegularizedEvolution(bits, population_size=8, tournament_size=3,
                                                 batch_size=4),
        "evolution_mixed": search.RegularizedEvolution(mixed, population_size=6,
                                                       tournament_size=2, mutate_prob=0.5,
                                                       batch_size=3),
        "islands_ring": search.IslandEvolution(bits, num_islands=3, population_size=4,
                                               tournament_size=2, batch_size=2, migrate_every=4,
                                               num_migrants=2),
        "islands_random": search.IslandEvolution(bits, num_islands=3, population_size=4,
                                                 tournament_size=2, batch_size=2,
                                                 migrate_every=4, num_migrants=2,
                                                 migration_topology="random"),
        "random_search": search.RandomSearch(mixed, batch_size=5),
        "reinforce": Controller(small, "reinforce", batch_size=4, hidden=8, embed=4,
                                learning_rate=1e-2),
        "ppo": Controller(mixed, "ppo", batch_size=4, hidden=8, embed=4, learning_rate=1e-2,
                          ppo_epochs=2),
    }


def _leaves(prefix: str, tree) -> dict[str, np.ndarray]:
    out = {}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}/{i}"] = np.asarray(leaf)
    return out


def record_one(strategy, seed: int = 0) -> dict[str, np.ndarray]:
    """Asked genomes, fitness and final state leaves of ``ITERATIONS`` iterations of ``run``."""
    asked, told = [], []

    def evaluator(key, genomes):
        del key
        fitness = _fitness(genomes)
        asked.append(jax.device_get(genomes))
        told.append(np.asarray(fitness))
        return fitness

    result = search.run(strategy.space, strategy, evaluator, jax.random.key(seed),
                        max_evaluations=ITERATIONS * strategy.batch_size)
    out = {"fitness": np.stack(told)}
    out.update(_leaves("genomes", jax.tree_util.tree_map(lambda *xs: np.stack(xs), *asked)))
    out.update(_leaves("state", result.state))
    return out


def record() -> dict[str, np.ndarray]:
    """Every strategy's recording, keys ``<strategy>/<field>/<leaf>``."""
    out = {}
    for name, strategy in strategies().items():
        out.update({f"{name}/{k}": v for k, v in record_one(strategy).items()})
    return out


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **record())
