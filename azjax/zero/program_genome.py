"""A fixed-length integer genome view of AutoML-Zero programs, so the RL controller can search them.

    space = zero.ProgramGenomeSpace(zero.ProgramSpace(cfg, mutation_config, initial="RANDOM"))
    strategy = search.Controller(space, algorithm="ppo", batch_size=100)
    result = search.run(space, strategy, zero.ProgramEvaluator(cfg, tasks), key, max_evaluations=20_000)

The genome is still a `Program` (so `ProgramEvaluator`, FEC, `format_program` and export work unchanged);
`genome_spec`, `encode` and `decode` map it to and from one int32 vector with a fixed choice count per
position. Per component (setup, predict, learn), at its array length L:

    [size] + L x [op, in1, in2, out, c0, c1, c2]

* size: the sizes the wrapped space can reach (its initial size, and with INSERT/REMOVE mutations the
  mutation config's bounds); gene g is size `lo + g`.
* op: NO_OP (0) or one of the component's ops (1 + its index in `ZeroConfig.<component>_ops`).
* in1, in2, out: an address. The operand type depends on the op, so the gene has the lcm of the bank
  sizes the component's ops can address in that role, and address = g * n // lcm for the op's bank of n
  addresses (outputs count from the first writable address): every address gets the same number of
  genes, and the gene stays uniform whatever the op.
* c0, c1, c2: a constant on a grid, the same way: an element index has F choices (the element's centre
  fraction, as `canonicalize` stores it); a value constant has `constant_levels` choices, the centres of
  `constant_levels` equal cells of the op's constant range (`ops.Constant.low/high`, where random
  instructions draw it), e.g. -0.9375, -0.8125, ..., 0.9375 for a value in [-1, 1) at 16 levels.

`decode` is many-to-one (genes that the decoded program ignores: rows past the size, operands an op does
not have, the unused part of a gene block); `encode` returns the smallest genes of a program, so
`decode(encode(p)) == p` for every program on the grid and `encode(decode(g))` is `g` with ignored genes
zeroed. A constant off the grid encodes to its grid cell (clipped to the range). The controller scores
the programs it asked for through `encode`, so its policy-gradient update credits each program's smallest
genes rather than the ignored values it happened to sample; the ignored genes do not change the program.

`sample` and `mutate` are the wrapped space's (its initial kind, the AutoML-Zero mutations) followed by a
snap onto the grid (`decode(encode(.))`), so evolution and random search over this space search the same
set of programs as the controller. A hand-written initial program's constants move to the grid too.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax.search.space import GenomeSpec
from azjax.zero import ops as ops_lib
from azjax.zero.program import COMPONENTS, Component, Program, ZeroConfig, canonicalize
from azjax.zero.random_programs import address_table, allowed_op_ids
from azjax.zero.space import ProgramSpace

__all__ = ["ProgramGenomeSpace"]

GENES_PER_INSTRUCTION = 7
"""op, in1, in2, out and three constants."""

_SIZE_CHANGING = ("INSERT_INSTRUCTION", "REMOVE_INSTRUCTION")


def _lcm(values) -> int:
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


@dataclasses.dataclass(frozen=True)
class _ComponentLayout:
    """Static tables of one component's genes (numpy; hashable through the space's fields only)."""

    length: int
    size_low: int
    size_choices: int
    op_ids: np.ndarray  # int32 [n_ops + 1]: gene -> op id (gene 0 is NO_OP)
    op_gene: np.ndarray  # int32 [NUM_OPS]: op id -> gene (0 for ops not allowed)
    choices: np.ndarray  # int64 [6]: lcm of in1, in2, out, c0, c1, c2
    counts: np.ndarray  # int32 [NUM_OPS, 6]: per op, the number of distinct values of each role


def _role_counts(cfg: ZeroConfig, levels: int) -> np.ndarray:
    """int32 [NUM_OPS, 6]: distinct addresses of in1/in2/out and distinct grid values of c0/c1/c2 per op."""
    table = address_table(cfg)  # rows: input bank size, lowest writable, writable count (per type, 3 = none)
    counts = np.ones((ops_lib.NUM_OPS, 6), np.int32)
    for col, types, row in ((0, ops_lib.IN1_TYPE, 0), (1, ops_lib.IN2_TYPE, 0), (2, ops_lib.OUT_TYPE, 2)):
        counts[:, col] = np.where(types >= 0, table[row][np.maximum(types, 0)], 1)
    used = np.arange(3)[None, :] < ops_lib.NUM_DATA[:, None]
    counts[:, 3:] = np.where(used, np.where(ops_lib.IS_INDEX, cfg.features, levels), 1)
    return counts


@functools.lru_cache(maxsize=32)
def _layout(space: ProgramSpace, levels: int) -> Tuple[_ComponentLayout, ...]:
    cfg = space.cfg
    counts = _role_counts(cfg, levels)
    bounds = space.mutation_config.size_bounds(cfg)
    weights = dict(space.mutation_config.type_weights)
    resizes = any(weights.get(t, 0) > 0 for t in _SIZE_CHANGING)
    out = []
    for c, init in zip(COMPONENTS, space.sizes_init):
        length = cfg.size(c)
        if resizes and cfg.ops(c):
            lo, hi = bounds[c]
            # Insertion stops at max - 1 (the reference's guard); the initial size is reachable anyway.
            low, high = min(init, lo), max(init, min(hi - 1, length))
        else:
            low = high = init
        allowed = allowed_op_ids(cfg, c) if cfg.ops(c) else np.zeros((0,), np.int32)
        op_ids = np.concatenate([[ops_lib.NO_OP], allowed]).astype(np.int32)
        op_gene = np.zeros(ops_lib.NUM_OPS, np.int32)
        op_gene[op_ids] = np.arange(op_ids.size, dtype=np.int32)
        choices = np.array([_lcm(counts[op_ids, k]) for k in range(6)], np.int64)
        out.append(_ComponentLayout(length, low, high - low + 1, op_ids, op_gene, choices, counts))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ProgramGenomeSpace:
    """`space`'s programs as fixed-length int32 genomes (see the module docstring for the layout).

    Attributes:
      space: the wrapped `ProgramSpace` (config, mutations, initial kind and sizes).
      constant_levels: grid cells of each value constant's range (>= 1).

    Raises:
      ValueError: naming the field, for a space that is not a ProgramSpace or a bad level count.
    """

    space: ProgramSpace
    constant_levels: int = 16

    def __post_init__(self):
        if not isinstance(self.space, ProgramSpace):
            raise ValueError(f"ProgramGenomeSpace.space must be a zero.ProgramSpace, got "
                             f"{type(self.space).__name__}")
        levels = self.constant_levels
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValueError(f"ProgramGenomeSpace.constant_levels must be an integer >= 1, got {levels!r}")
        object.__setattr__(self, "constant_levels", int(levels))

    @property
    def cfg(self) -> ZeroConfig:
        return self.space.cfg

    @property
    def layout(self) -> Tuple[_ComponentLayout, ...]:
        """Static per-component gene tables."""
        return _layout(self.space, self.constant_levels)

    @property
    def genome_spec(self) -> GenomeSpec:
        """Choice counts of every gene, component by component: size, then 7 genes per row."""
        choices = []
        for lay in self.layout:
            choices.append(lay.size_choices)
            row = [lay.op_ids.size] + [int(c) for c in lay.choices]
            choices.extend(row * lay.length)
        return GenomeSpec(tuple(choices))

    @property
    def num_genes(self) -> int:
        return sum(1 + GENES_PER_INSTRUCTION * lay.length for lay in self.layout)

    # -- genome <-> program ------------------------------------------------------------------------

    def decode(self, ints: jax.Array, floats: jax.Array | None = None) -> Program:
        """The program of genes `ints` int32 [num_genes] (jittable, unbatched; canonical)."""
        del floats
        ints = jnp.asarray(ints, jnp.int32)
        cfg, dt = self.cfg, self.cfg.jnp_dtype
        low = jnp.asarray(ops_lib.DATA_LOW.astype(np.dtype(dt)))
        high = jnp.asarray(ops_lib.DATA_HIGH.astype(np.dtype(dt)))
        out_low = jnp.asarray(address_table(cfg)[1])
        comps, start = [], 0
        for lay in self.layout:
            size = lay.size_low + jnp.clip(ints[start], 0, lay.size_choices - 1)
            rows = ints[start + 1:start + 1 + GENES_PER_INSTRUCTION * lay.length]
            rows = rows.reshape(lay.length, GENES_PER_INSTRUCTION)
            start += 1 + GENES_PER_INSTRUCTION * lay.length
            op = jnp.asarray(lay.op_ids)[jnp.clip(rows[:, 0], 0, lay.op_ids.size - 1)]
            n = jnp.asarray(lay.counts)[op]  # [L, 6]
            choices = jnp.asarray(lay.choices.astype(np.int32))
            value = jnp.clip(rows[:, 1:], 0, choices - 1) * n // choices  # [L, 6] in [0, n)
            out_type = jnp.asarray(ops_lib.OUT_TYPE)[op]
            address_out = value[:, 2] + out_low[jnp.maximum(out_type, 0)]
            ins = jnp.stack([op, value[:, 0], value[:, 1], address_out], axis=1)
            centre = (value[:, 3:].astype(dt) + 0.5) / n[:, 3:].astype(dt)  # [L, 3] in (0, 1)
            is_index = jnp.asarray(ops_lib.IS_INDEX)[op]
            data = jnp.where(is_index, centre, low[op] + (high[op] - low[op]) * centre)
            comps.append(Component(instructions=ins.astype(jnp.int32), data=data.astype(dt),
                                   size=size.astype(jnp.int32)))
        return canonicalize(Program(*comps), cfg)

    def encode(self, genome: Program) -> Tuple[jax.Array, jax.Array]:
        """`(ints int32 [num_genes], floats [0])`: the smallest genes of `genome` (jittable, unbatched)."""
        cfg, dt = self.cfg, self.cfg.jnp_dtype
        low = jnp.asarray(ops_lib.DATA_LOW.astype(np.dtype(dt)))
        high = jnp.asarray(ops_lib.DATA_HIGH.astype(np.dtype(dt)))
        out_low = jnp.asarray(address_table(cfg)[1])
        genes = []
        for c, lay in zip(COMPONENTS, self.layout):
            comp = genome.component(c)
            ins = jnp.asarray(comp.instructions, jnp.int32)
            data = jnp.asarray(comp.data).astype(dt)
            size = jnp.asarray(comp.size, jnp.int32)
            used = jnp.arange(lay.length) < size
            op = jnp.where(used, ins[:, 0], ops_lib.NO_OP)
            n = jnp.asarray(lay.counts)[op]  # [L, 6]
            out_type = jnp.asarray(ops_lib.OUT_TYPE)[op]
            address = jnp.stack([ins[:, 1], ins[:, 2], ins[:, 3] - out_low[jnp.maximum(out_type, 0)]], axis=1)
            is_index = jnp.asarray(ops_lib.IS_INDEX)[op]
            span = jnp.where(high[op] > low[op], high[op] - low[op], 1)
            fraction = jnp.where(is_index, data, (data - low[op]) / span)
            fraction = jnp.where(jnp.isnan(fraction), 0, fraction)
            # Clipped in floating point first: a constant far outside its range must not overflow int32.
            cell = jnp.floor(jnp.clip(fraction, 0, 1) * n[:, 3:].astype(dt))
            value = jnp.concatenate([address, cell.astype(jnp.int32)], axis=1)
            value = jnp.clip(value, 0, n - 1)
            block = jnp.asarray(lay.choices.astype(np.int32)) // n
            row_genes = jnp.concatenate([jnp.asarray(lay.op_gene)[op][:, None], value * block], axis=1)
            row_genes = jnp.where(used[:, None], row_genes, 0)
            size_gene = jnp.clip(size - lay.size_low, 0, lay.size_choices - 1)
            genes.append(jnp.concatenate([size_gene[None], row_genes.reshape(-1)]))
        return jnp.concatenate(genes).astype(jnp.int32), jnp.zeros((0,), jnp.float32)

    def snap(self, genome: Program) -> Program:
        """The program on the grid nearest `genome`: `decode(encode(genome))` (jittable, unbatched)."""
        return self.decode(self.encode(genome)[0])

    # -- SearchSpace -------------------------------------------------------------------------------

    def sample(self, key: jax.Array) -> Program:
        """The wrapped space's initial program, snapped onto the grid (jittable, vmappable)."""
        return self.snap(self.space.sample(key))

    def mutate(self, key: jax.Array, genome: Program) -> Program:
        """One AutoML-Zero mutation of the wrapped space, snapped onto the grid (jittable, vmappable)."""
        return self.snap(self.space.mutate(key, genome))

    def validate(self, genome: Program) -> None:
        """Raises ValueError if `genome` is not a valid program of the space or not on the grid."""
        self.space.validate(genome)
        if np.ndim(genome.setup.size) != 0:
            raise ValueError("genome: expected one program, got a batch")
        with jax.enable_x64(self.cfg.dtype == "float64"):
            snapped = _snap_fn(self)(genome)
        for c in COMPONENTS:
            for field in ("instructions", "data", "size"):
                a = np.asarray(getattr(genome.component(c), field))
                b = np.asarray(getattr(snapped.component(c), field))
                if not np.array_equal(a.astype(b.dtype), b):
                    raise ValueError(f"program.{c}.{field}: not on the genome grid of this space (constants on "
                                     f"{self.constant_levels} levels of their range, sizes in the reachable "
                                     "range); use space.snap")


@functools.lru_cache(maxsize=16)
def _snap_fn(space: ProgramGenomeSpace):
    return jax.jit(space.snap)
