"""The strategy interface shared by every searcher, and small pytree helpers.

Strategies follow evosax: static structure (sizes, probabilities, the space) lives on the object,
everything that changes lives in an explicit ``flax.struct.dataclass`` state, keys are passed in,
and the public ``init / ask / tell`` are pure functions jitted with ``self`` static::

    state = strategy.init(key)
    genomes, state = strategy.ask(key, state)      # a batch of strategy.batch_size genomes
    state = strategy.tell(genomes, fitness, state)  # fitness: float [batch_size], higher is better

Every state has ``best_genome``, ``best_fitness`` (the best ever told; ``-inf`` before any tell)
and ``count`` (the number of genomes told so far), which the run loop reads.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

PyTree = Any

__all__ = [
    "Strategy",
    "sanitize_fitness",
    "tree_index",
    "tree_stack",
    "tree_where",
    "check_fitness_shape",
    "update_best",
    "zeros_genome",
]


@runtime_checkable
class Strategy(Protocol):
    """A pure ask/tell searcher over the genomes of a :class:`~azjax.search.space.SearchSpace`."""

    batch_size: int

    def init(self, key: jax.Array) -> Any:
        ...

    def ask(self, key: jax.Array, state: Any) -> tuple[PyTree, Any]:
        ...

    def tell(self, genomes: PyTree, fitness: jax.Array, state: Any) -> Any:
        ...


def sanitize_fitness(fitness: jax.Array) -> jax.Array:
    """Float32 fitness with NaN mapped to ``-inf``, so a NaN never wins a comparison.

    ``jnp.argmax`` treats NaN as the maximum, so the strategies sanitise before any selection.
    """
    fitness = jnp.asarray(fitness, dtype=jnp.float32)
    return jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)


def check_fitness_shape(fitness: jax.Array, batch_size: int) -> None:
    """Trace-time check that ``fitness`` is a vector of ``batch_size`` values."""
    if jnp.shape(fitness) != (batch_size,):
        raise ValueError(
            f"fitness: expected shape ({batch_size},) (one value per asked genome), "
            f"got {jnp.shape(fitness)}")


def tree_index(tree: PyTree, i: Any) -> PyTree:
    """Member ``i`` of a batched pytree (works with traced ``i``)."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def tree_stack(trees: list[PyTree]) -> PyTree:
    """Stacks genomes with identical structure along a new leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def tree_where(cond: jax.Array, a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``jnp.where(cond, a, b)``; ``cond`` is a scalar or broadcasts over leading axes."""

    def pick(x, y):
        c = jnp.reshape(cond, jnp.shape(cond) + (1,) * (jnp.ndim(x) - jnp.ndim(cond)))
        return jnp.where(c, x, y)

    return jax.tree_util.tree_map(pick, a, b)


def zeros_genome(space: Any, key: jax.Array) -> PyTree:
    """A placeholder genome with the structure, shapes and dtypes of ``space.sample(key)``."""
    shapes = jax.eval_shape(space.sample, key)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def update_best(best_genome: PyTree, best_fitness: jax.Array, count: jax.Array,
                genomes: PyTree, fitness: jax.Array) -> tuple[PyTree, jax.Array]:
    """Best-ever bookkeeping: keeps the first genome with the strictly highest (sanitised) fitness.

    The very first tell always installs a genome, so ``best_genome`` is a real genome even when
    every fitness so far was NaN.
    """
    j = jnp.argmax(fitness)
    better = (fitness[j] > best_fitness) | (count == 0)
    new_genome = tree_where(better, tree_index(genomes, j), best_genome)
    return new_genome, jnp.where(better, fitness[j], best_fitness)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Host-side constructor check: ``value`` is an int in ``[low, high]``, else ValueError."""
    import numpy as np  # local: only constructors need it

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_space(space: Any) -> None:
    """Host-side check that ``space`` offers the SearchSpace methods."""
    for method in ("sample", "mutate", "validate"):
        if not callable(getattr(space, method, None)):
            raise ValueError(f"space: {type(space).__name__} has no callable `{method}`")
