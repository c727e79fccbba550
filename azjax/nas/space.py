"""CellSpace: the NASNet search space as a :class:`SearchSpace`.

A genome is a flat int32 vector of ``2 * 5B`` decisions: the Normal Cell's ``B`` blocks, then the
Reduction Cell's, each block five genes in the controller's order::

    (input 1, input 2, op 1, op 2, combine)

Block ``j`` reads hidden states ``0 .. 1 + j`` (``0 = h_i``, ``1 = h_{i-1}``, ``2 + k`` = block k),
so its input genes have ``2 + j`` choices; op genes index the space's op list (a subset of
:data:`~azjax.nas.genotype.OP_NAMES`, all 13 by default); combine indexes the space's combiners.
Because the choice count is per position (:class:`~azjax.search.GenomeSpec`), the RL controller
masks every softmax to the valid choices, and any gene value in range is a valid cell: a block can
only read earlier states, so no genome has a cycle.

The cell output concatenates the paper's "loose ends" (block outputs no other block reads; see
:func:`~azjax.nas.genotype.loose_ends`). The last block is never read, so the list is never empty.
NASNET_A's hand-written TF-slim lists cannot be derived from the blocks, so a searched
cell uses the paper rule, as NNI's ``merge_op='loose_end'`` does.

Mutations follow AmoebaNet: exactly one input (hidden-state mutation) or one op (op
mutation) of one block of one cell is redrawn to a different value; with ``identity_prob`` the
genome is returned unchanged. Combine genes mutate too when there are two combiners.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from azjax.nas.genotype import COMBINE_NAMES, NUM_BLOCKS, OP_INDEX, OP_NAMES, Genotype, loose_ends
from azjax.search.space import GenomeSpec

__all__ = ["CellSpace", "ENAS_OPS", "AMOEBA_OPS"]

FIELDS_PER_BLOCK = 5

# ENAS's micro-search op set and AmoebaNet's 8 ops (minus the dilated
# *separable* conv, which the 13-op list does not have; its dense dilated conv stands in).
ENAS_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3",
                             "identity")
AMOEBA_OPS: tuple[str, ...] = ("identity", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
                               "avg_pool_3x3", "max_pool_3x3", "dil_conv_3x3", "conv_1x7_7x1")


def _bits_below(bits: jax.Array, n: jax.Array) -> jax.Array:
    """uint32 bits -> [0, n) (modulo bias < n / 2**32)."""
    return (bits % jnp.maximum(n, 1).astype(jnp.uint32)).astype(jnp.int32)


class CellSpace:
    """The NASNet cell space: ``2 x 5B`` categorical decisions with per-position choice counts.

    Args:
        ops: candidate op names (a subset of ``OP_NAMES``, in the order the genes index them).
        combiners: ``("add", "concat")`` (the paper's choice) or ``("add",)`` (NASNet-A, ENAS).
        num_blocks: ``B`` (5 in the paper).
        identity_prob: probability that ``mutate`` returns the parent unchanged (AmoebaNet 0.05;
            default 0 because ``RegularizedEvolution`` has its own copy probability).

    Raises:
        ValueError: naming the bad argument.
    """

    def __init__(self, ops: Sequence[str] = OP_NAMES, combiners: Sequence[str] = COMBINE_NAMES,
                 num_blocks: int = NUM_BLOCKS, identity_prob: float = 0.0):
        ops = tuple(ops)
        if not ops:
            raise ValueError("ops: need at least one op")
        for op in ops:
            if op not in OP_INDEX:
                raise ValueError(f"ops: unknown op {op!r}; expected names from {OP_NAMES}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"ops: repeated op in {ops}")
        combiners = tuple(combiners)
        if not combiners or any(c not in COMBINE_NAMES for c in combiners) or len(
                set(combiners)) != len(combiners):
            raise ValueError(f"combiners: expected a non-empty subset of {COMBINE_NAMES}, "
                             f"got {combiners}")
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, (int, np.integer)) or \
                num_blocks < 1:
            raise ValueError(f"num_blocks: must be an int >= 1, got {num_blocks!r}")
        if not 0.0 <= float(identity_prob) < 1.0:
            raise ValueError(f"identity_prob: must be in [0, 1), got {identity_prob}")
        self.ops = ops
        self.combiners = combiners
        self.num_blocks = int(num_blocks)
        self.identity_prob = float(identity_prob)
        self._op_ids = np.asarray([OP_INDEX[o] for o in ops], np.int32)
        self._combine_ids = np.asarray([COMBINE_NAMES.index(c) for c in combiners], np.int32)
        choices = []
        for _ in range(2):
            for j in range(self.num_blocks):
                choices += [2 + j, 2 + j, len(ops), len(ops), len(combiners)]
        self._choices = np.asarray(choices, np.int32)
        self._spec = GenomeSpec(tuple(int(c) for c in choices))
        self._mutable = np.flatnonzero(self._choices > 1).astype(np.int32)

    # --- static description -------------------------------------------------------------------

    @property
    def genome_spec(self) -> GenomeSpec:
        """Per-position choice counts: ``(2+j, 2+j, len(ops), len(ops), len(combiners))`` per
        block ``j``, Normal Cell first."""
        return self._spec

    @property
    def genome_length(self) -> int:
        return int(self._choices.size)

    def __repr__(self) -> str:
        return (f"CellSpace(ops={self.ops}, combiners={self.combiners}, "
                f"num_blocks={self.num_blocks}, identity_prob={self.identity_prob})")

    def __hash__(self) -> int:
        return hash((CellSpace, self.ops, self.combiners, self.num_blocks, self.identity_prob))

    def __eq__(self, other) -> bool:
        return isinstance(other, CellSpace) and (
            (self.ops, self.combiners, self.num_blocks, self.identity_prob)
            == (other.ops, other.combiners, other.num_blocks, other.identity_prob))

    def log10_size(self) -> float:
        """log10 of the number of distinct genomes (the paper counts the 13-op, 2-combiner
        space)."""
        return float(np.sum(np.log10(self._choices.astype(np.float64))))

    # --- SearchSpace --------------------------------------------------------------------------

    def sample(self, key: jax.Array) -> jax.Array:
        """A uniformly random genome (every gene uniform over its choices)."""
        choices = jnp.asarray(self._choices)
        return _bits_below(jax.random.bits(key, choices.shape, jnp.uint32), choices)

    def mutate(self, key: jax.Array, genome: jax.Array) -> jax.Array:
        """AmoebaNet mutation: redraw exactly one input/op/combine gene to a different value."""
        genome = jnp.asarray(genome, jnp.int32)
        if self._mutable.size == 0:
            return genome
        bits = jax.random.bits(key, (3,), jnp.uint32)
        mutable = jnp.asarray(self._mutable)
        pos = mutable[_bits_below(bits[0], mutable.shape[0])]
        n = jnp.asarray(self._choices)[pos]
        # An offset in [1, n) modulo n gives every *other* value with equal probability.
        new = (genome[pos] + 1 + _bits_below(bits[1], n - 1)) % n
        child = genome.at[pos].set(new)
        if self.identity_prob > 0.0:
            threshold = jnp.uint32(min(int(self.identity_prob * 2.0**32), 2**32 - 1))
            child = jnp.where(bits[2] < threshold, genome, child)
        return child

    def validate(self, genome) -> None:
        """Raise ``ValueError`` naming the cell, block and field of the first bad gene."""
        arr = np.asarray(genome)
        if arr.shape != self._choices.shape:
            raise ValueError(f"genome: expected shape {self._choices.shape}, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"genome: expected an integer dtype, got {arr.dtype}")
        bad = np.flatnonzero((arr < 0) | (arr >= self._choices))
        if bad.size:
            i = int(bad[0])
            cell, rest = divmod(i, self.num_blocks * FIELDS_PER_BLOCK)
            block, field = divmod(rest, FIELDS_PER_BLOCK)
            names = ("input 1", "input 2", "op 1", "op 2", "combine")
            raise ValueError(
                f"genome[{i}] ({('normal', 'reduce')[cell]}, block {block}, field "
                f"'{names[field]}') = {int(arr[i])} is out of range [0, {int(self._choices[i])})")

    def encode(self, genome: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(ints, floats)`` of the genome spec: the vector itself and no floats."""
        return jnp.asarray(genome, jnp.int32), jnp.zeros((0,), jnp.float32)

    def decode(self, ints: jax.Array, floats: jax.Array | None = None) -> jax.Array:
        """The genome with these genes (the controller's inverse of :meth:`encode`)."""
        del floats
        return jnp.asarray(ints, jnp.int32)

    # --- genome <-> Genotype --------------------------------------------------------------------

    def cell_arrays(self, genome: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(normal, reduce)`` int32 ``[B, 5]`` arrays in *global* ids (``OP_NAMES`` /
        ``COMBINE_NAMES``); jittable, so a supercell can take them as data."""
        g = jnp.asarray(genome, jnp.int32).reshape(2, self.num_blocks, FIELDS_PER_BLOCK)
        op_ids, comb_ids = jnp.asarray(self._op_ids), jnp.asarray(self._combine_ids)
        g = g.at[..., 2].set(op_ids[g[..., 2]]).at[..., 3].set(op_ids[g[..., 3]])
        g = g.at[..., 4].set(comb_ids[g[..., 4]])
        return g[0], g[1]

    def to_genotype(self, genome) -> Genotype:
        """The :class:`Genotype` of a genome (host side), with loose-ends concat lists."""
        self.validate(np.asarray(genome))
        normal, reduce = (np.asarray(a) for a in self.cell_arrays(np.asarray(genome)))
        return Genotype(normal=normal, reduce=reduce, normal_concat=loose_ends(
            tuple(map(tuple, normal.tolist()))), reduce_concat=loose_ends(
            tuple(map(tuple, reduce.tolist()))))

    def from_genotype(self, genotype: Genotype) -> np.ndarray:
        """The genome of a :class:`Genotype` (its concat lists are ignored: the space uses loose
        ends). Raises ``ValueError`` if an op or combiner is not in this space."""
        rows = []
        for name, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            if len(cell) != self.num_blocks:
                raise ValueError(f"{name}: expected {self.num_blocks} blocks, got {len(cell)}")
            for j, (i1, i2, o1, o2, c) in enumerate(cell):
                for field, op in (("op 1", o1), ("op 2", o2)):
                    if OP_NAMES[op] not in self.ops:
                        raise ValueError(f"{name}, block {j}, field '{field}': op "
                                         f"{OP_NAMES[op]!r} is not in this space's ops")
                if COMBINE_NAMES[c] not in self.combiners:
                    raise ValueError(f"{name}, block {j}, field 'combine': "
                                     f"{COMBINE_NAMES[c]!r} is not in this space's combiners")
                rows += [i1, i2, self.ops.index(OP_NAMES[o1]), self.ops.index(OP_NAMES[o2]),
                         self.combiners.index(COMBINE_NAMES[c])]
        return np.asarray(rows, np.int32)
