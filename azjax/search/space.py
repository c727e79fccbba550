"""Search spaces: what a genome is, how to draw one and how to mutate one.

A *genome* is any pytree of arrays (a plain int32 vector, or a ``flax.struct.dataclass`` such as an
AutoML-Zero ``Program``). A *batch* (population) is the same pytree with a leading axis. The search
harness only ever touches genomes through a :class:`SearchSpace`, so it never needs to know what a
genome means.

Spaces whose genome is (or contains) a fixed-length vector of categorical genes describe it with a
:class:`GenomeSpec`; the RL controller reads that spec to build one softmax head per position.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Genome = PyTree

__all__ = [
    "Genome",
    "GenomeSpec",
    "SearchSpace",
    "IntVectorSpace",
    "MixedGenome",
    "MixedVectorSpace",
]


@dataclasses.dataclass(frozen=True)
class GenomeSpec:
    """Static description of a fixed-length genome of categorical (and optional float) genes.

    Attributes:
        num_choices: per-position number of choices of the categorical genes; gene ``i`` takes
            values in ``[0, num_choices[i])``. Stored as int32.
        num_floats: number of real-valued genes (0 when there are none).
        float_low: lower bound of every float gene (``-inf`` for unbounded).
        float_high: upper bound of every float gene (``+inf`` for unbounded).
    """

    num_choices: tuple[int, ...]
    num_floats: int = 0
    float_low: float = -np.inf
    float_high: float = np.inf

    def __post_init__(self):
        choices = tuple(int(c) for c in self.num_choices)
        if not choices and self.num_floats == 0:
            raise ValueError("num_choices: a genome needs at least one gene")
        for i, c in enumerate(choices):
            if c < 1:
                raise ValueError(f"num_choices[{i}] must be >= 1, got {c}")
        if int(self.num_floats) < 0:
            raise ValueError(f"num_floats must be >= 0, got {self.num_floats}")
        if not float(self.float_low) < float(self.float_high):
            raise ValueError(
                f"float_low ({self.float_low}) must be < float_high ({self.float_high})")
        object.__setattr__(self, "num_choices", choices)
        object.__setattr__(self, "num_floats", int(self.num_floats))
        object.__setattr__(self, "float_low", float(self.float_low))
        object.__setattr__(self, "float_high", float(self.float_high))

    @property
    def num_ints(self) -> int:
        """Number of categorical genes."""
        return len(self.num_choices)


@runtime_checkable
class SearchSpace(Protocol):
    """What the harness needs from a space of genomes.

    ``sample`` and ``mutate`` must be pure, jittable and vmappable (the strategies call them under
    ``jit`` and ``vmap`` them over a batch); ``validate`` runs on the host. A space may also expose
    a ``genome_spec`` property (a :class:`GenomeSpec`) when its genome is a fixed-length vector of
    categorical genes; strategies that need it (the RL controller) check for it. Such a space
    should then also offer ``encode(genome) -> (ints, floats)`` and ``decode(ints, floats) ->
    genome`` (jittable, unbatched; ``ints`` int32 [num_ints], ``floats`` float32 [num_floats]),
    so a policy over the spec's genes can produce and score genomes.
    """

    def sample(self, key: jax.Array) -> Genome:
        """One member of an initial population."""
        ...

    def mutate(self, key: jax.Array, genome: Genome) -> Genome:
        """One child of ``genome`` (same structure, shapes and dtypes)."""
        ...

    def validate(self, genome: Genome) -> None:
        """Raise ``ValueError`` naming the offending field if ``genome`` is not in the space."""
        ...


def _mutable_positions(num_choices: np.ndarray) -> np.ndarray:
    return np.flatnonzero(num_choices > 1)


def _uniform_below(bits: jax.Array, n: jax.Array) -> jax.Array:
    """Maps uint32 random bits to ``[0, n)``.

    Modulo bias is below ``n / 2**32`` (< 1e-6 for any realistic choice count). We draw raw bits
    instead of calling ``jax.random.randint`` because every PRNG call site is a separately
    compiled threefry hash (each adds XLA compile time) and randint costs three.
    """
    return (bits % jnp.maximum(n, 1).astype(jnp.uint32)).astype(jnp.int32)


def _mutate_int_position(bits: jax.Array, genes: jax.Array, num_choices: jax.Array,
                         position: jax.Array) -> jax.Array:
    """Sets ``genes[position]`` to a uniformly drawn *different* value (when one exists)."""
    genes = jnp.asarray(genes)  # also accept host (numpy) genomes when called eagerly
    n = num_choices[position]
    # Adding an offset in [1, n) modulo n yields every other value with equal probability.
    offset = 1 + _uniform_below(bits, n - 1)
    new = jnp.where(n > 1, (genes[position] + offset) % n, genes[position])
    return genes.at[position].set(new.astype(genes.dtype))


def _validate_ints(genes: Any, num_choices: np.ndarray, name: str) -> None:
    arr = np.asarray(genes)
    if arr.shape != num_choices.shape:
        raise ValueError(f"{name}: expected shape {num_choices.shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer dtype, got {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= num_choices))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}[{i}] = {int(arr[i])} is out of range [0, {int(num_choices[i])})")


class IntVectorSpace:
    """Fixed-length int32 vectors with per-position choice counts.

    ``sample`` draws every gene uniformly; ``mutate`` picks one position uniformly among those
    with more than one choice and sets it to a uniformly drawn different value.
    """

    def __init__(self, num_choices: tuple[int, ...] | list[int]):
        self._spec = GenomeSpec(tuple(num_choices))
        if not self._spec.num_choices:
            raise ValueError("num_choices: an IntVectorSpace needs at least one position")
        self._choices_np = np.asarray(self._spec.num_choices, dtype=np.int64)
        self._mutable_np = _mutable_positions(self._choices_np)

    @property
    def genome_spec(self) -> GenomeSpec:
        return self._spec

    def __repr__(self) -> str:
        return f"IntVectorSpace(num_choices={self._spec.num_choices})"

    def sample(self, key: jax.Array) -> jax.Array:
        choices = jnp.asarray(self._choices_np, dtype=jnp.int32)
        return _uniform_below(jax.random.bits(key, choices.shape, jnp.uint32), choices)

    def mutate(self, key: jax.Array, genome: jax.Array) -> jax.Array:
        if self._mutable_np.size == 0:
            return genome  # every position has a single choice: nothing can change
        bits = jax.random.bits(key, (2,), jnp.uint32)
        mutable = jnp.asarray(self._mutable_np, dtype=jnp.int32)
        position = mutable[_uniform_below(bits[0], mutable.shape[0])]
        return _mutate_int_position(
            bits[1], genome, jnp.asarray(self._choices_np, dtype=jnp.int32), position)

    def encode(self, genome: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(ints, floats)`` of the genome spec: the vector itself and no floats."""
        return jnp.asarray(genome, jnp.int32), jnp.zeros((0,), jnp.float32)

    def decode(self, ints: jax.Array, floats: jax.Array | None = None) -> jax.Array:
        """The genome with these genes (inverse of :meth:`encode`)."""
        del floats
        return jnp.asarray(ints, jnp.int32)

    def validate(self, genome: jax.Array) -> None:
        _validate_ints(genome, self._choices_np, "genome")


@flax.struct.dataclass
class MixedGenome:
    """Categorical genes ``ints`` (int32 [n]) and real genes ``floats`` (float32 [m])."""

    ints: jax.Array
    floats: jax.Array


class MixedVectorSpace:
    """Categorical genes plus bounded real genes, as a :class:`MixedGenome` pytree.

    ``sample`` draws ints uniformly and floats uniformly in ``[float_low, float_high]``.
    ``mutate`` picks one gene uniformly among all mutable genes; an int gene gets a different value,
    a float gene gets Gaussian noise of scale ``float_sigma * (float_high - float_low)``, clipped
    to the bounds.
    """

    def __init__(self, num_choices: tuple[int, ...] | list[int], num_floats: int,
                 float_low: float = 0.0, float_high: float = 1.0, float_sigma: float = 0.1):
        if not np.isfinite(float_low) or not np.isfinite(float_high):
            raise ValueError("float_low/float_high must be finite for MixedVectorSpace")
        if not float_sigma > 0:
            raise ValueError(f"float_sigma must be > 0, got {float_sigma}")
        self._spec = GenomeSpec(tuple(num_choices), num_floats, float_low, float_high)
        self._choices_np = np.asarray(self._spec.num_choices, dtype=np.int64)
        self._mutable_np = _mutable_positions(self._choices_np)
        self._sigma = float(float_sigma) * (self._spec.float_high - self._spec.float_low)

    @property
    def genome_spec(self) -> GenomeSpec:
        return self._spec

    def __repr__(self) -> str:
        s = self._spec
        return (f"MixedVectorSpace(num_choices={s.num_choices}, num_floats={s.num_floats}, "
                f"float_low={s.float_low}, float_high={s.float_high})")

    def sample(self, key: jax.Array) -> MixedGenome:
        k_int, k_float = jax.random.split(key)
        s = self._spec
        choices = jnp.asarray(self._choices_np, dtype=jnp.int32)
        ints = _uniform_below(jax.random.bits(k_int, choices.shape, jnp.uint32), choices)
        floats = jax.random.uniform(k_float, (s.num_floats,), jnp.float32, s.float_low,
                                    s.float_high)
        return MixedGenome(ints=ints, floats=floats)

    def mutate(self, key: jax.Array, genome: MixedGenome) -> MixedGenome:
        n_int = int(self._mutable_np.size)
        n_total = n_int + self._spec.num_floats
        if n_total == 0:
            return genome
        k_bits, k_float = jax.random.split(key)
        bits = jax.random.bits(k_bits, (2,), jnp.uint32)
        gene = _uniform_below(bits[0], n_total)
        ints, floats = genome.ints, genome.floats
        if n_int:
            mutable = jnp.asarray(self._mutable_np, dtype=jnp.int32)
            pos = mutable[jnp.minimum(gene, n_int - 1)]
            new_ints = _mutate_int_position(
                bits[1], ints, jnp.asarray(self._choices_np, dtype=jnp.int32), pos)
            ints = jnp.where(gene < n_int, new_ints, ints)
        if self._spec.num_floats:
            fpos = jnp.maximum(gene - n_int, 0)
            step = self._sigma * jax.random.normal(k_float, (), floats.dtype)
            moved = jnp.clip(floats[fpos] + step, self._spec.float_low, self._spec.float_high)
            floats = jnp.where(gene >= n_int, floats.at[fpos].set(moved), floats)
        return MixedGenome(ints=ints, floats=floats)

    def encode(self, genome: MixedGenome) -> tuple[jax.Array, jax.Array]:
        """``(ints, floats)`` of the genome spec."""
        return jnp.asarray(genome.ints, jnp.int32), jnp.asarray(genome.floats, jnp.float32)

    def decode(self, ints: jax.Array, floats: jax.Array) -> MixedGenome:
        """The genome with these genes (inverse of :meth:`encode`)."""
        return MixedGenome(ints=jnp.asarray(ints, jnp.int32),
                           floats=jnp.asarray(floats, jnp.float32))

    def validate(self, genome: MixedGenome) -> None:
        if not isinstance(genome, MixedGenome):
            raise ValueError(f"genome: expected a MixedGenome, got {type(genome).__name__}")
        _validate_ints(genome.ints, self._choices_np, "ints")
        floats = np.asarray(genome.floats)
        if floats.shape != (self._spec.num_floats,):
            raise ValueError(
                f"floats: expected shape {(self._spec.num_floats,)}, got {floats.shape}")
        if not np.issubdtype(floats.dtype, np.floating):
            raise ValueError(f"floats: expected a float dtype, got {floats.dtype}")
        bad = np.flatnonzero(~np.isfinite(floats) | (floats < self._spec.float_low)
                             | (floats > self._spec.float_high))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"floats[{i}] = {floats[i]} is outside "
                             f"[{self._spec.float_low}, {self._spec.float_high}]")
