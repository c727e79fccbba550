"""The strategy interface shared by every searcher, and small pytree helpers.

Strategies follow evosax: static structure (sizes, probabilities, the space) lives on the object,
everything that changes lives in an explicit ``flax.struct.dataclass`` state, keys are passed in,
and the public ``init / ask / tell`` (owned by the :class:`Strategy` base class) are pure functions
jitted with ``self`` static::

    state = strategy.init(key)
    genomes, state = strategy.ask(key, state)      # a batch of strategy.batch_size genomes
    state = strategy.tell(genomes, fitness, state)  # fitness: float [batch_size], higher is better

Every state has ``best_genome``, ``best_fitness`` (the best ever told; ``-inf`` before any tell)
and ``count`` (the number of genomes told so far), which the run loop reads. The run loop
accepts any object with this interface; subclassing :class:`Strategy` is the easy way to get it.
"""
from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar

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


class Strategy(abc.ABC):
    """Base class of the ask/tell searchers over the genomes of a
    :class:`~azjax.search.space.SearchSpace` (the evosax layout).

    The base owns the public API: ``init / ask / tell`` are pure functions jitted with ``self``
    static (the object is hashed by identity, so each instance compiles once per shape), and
    ``hparams`` / ``__repr__`` are built from ONE declaration, the class attribute
    ``hparam_names``: the constructor arguments that change the trajectory. :func:`~azjax.search.run`
    stores ``hparams`` in every checkpoint and refuses to resume when any of them differs, so every
    such argument must be listed there.

    A subclass sets ``space`` and ``batch_size`` in its constructor and writes ``_init / _ask /
    _tell`` (plain methods, so tests can wrap them, e.g. with ``chex.assert_max_traces``), and
    optionally ``metrics``.
    """

    #: Attribute names of the hyperparameters that change the trajectory, in ``__repr__`` order.
    hparam_names: ClassVar[tuple[str, ...]] = ()
    space: Any
    batch_size: int

    def hparam_value(self, name: str) -> Any:
        """The value stored for hyperparameter ``name`` (default: the attribute of that name)."""
        return getattr(self, name)

    @property
    def hparams(self) -> dict[str, Any]:
        """Hyperparameters, stored in checkpoints so a resumed run can check it is the same run."""
        return {"strategy": type(self).__name__,
                **{name: self.hparam_value(name) for name in self.hparam_names}}

    def __repr__(self) -> str:
        args = "".join(f", {name}={self.hparam_value(name)!r}" for name in self.hparam_names)
        return f"{type(self).__name__}(space={self.space!r}{args})"

    @functools.partial(jax.jit, static_argnames=("self",))
    def init(self, key: jax.Array) -> Any:
        """A fresh state; ``key`` fixes the genome structure (and whatever the strategy draws)."""
        return self._init(key)

    @functools.partial(jax.jit, static_argnames=("self",))
    def ask(self, key: jax.Array, state: Any) -> tuple[PyTree, Any]:
        """``batch_size`` genomes to evaluate, and the state to pass to :meth:`tell`."""
        return self._ask(key, state)

    @functools.partial(jax.jit, static_argnames=("self",))
    def tell(self, genomes: PyTree, fitness: jax.Array, state: Any) -> Any:
        """The state after the asked ``genomes`` were evaluated (``fitness`` float
        [batch_size], higher is better, NaN counts as the worst)."""
        return self._tell(genomes, fitness, state)

    def metrics(self, state: Any) -> dict[str, jax.Array]:
        """Strategy statistics for the run loop's callbacks (none by default)."""
        del state
        return {}

    @abc.abstractmethod
    def _init(self, key: jax.Array) -> Any:
        ...

    @abc.abstractmethod
    def _ask(self, key: jax.Array, state: Any) -> tuple[PyTree, Any]:
        ...

    @abc.abstractmethod
    def _tell(self, genomes: PyTree, fitness: jax.Array, state: Any) -> Any:
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
