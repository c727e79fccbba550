"""A tabular NAS benchmark: every cell of a small space trained once, then looked up.

A *table* holds the reward of every genome of a reduced cell space, so a search strategy can be
run for thousands of evaluations in seconds and compared with others over many seeds (the idea
of NAS-Bench-101). ``benchmarks/nas_tabular.py`` builds one on digits
(``benchmarks/nas_tabular_digits.npz``) and compares the strategies of :mod:`azjax.search` on it;
docs/nas.md gives the numbers.

The space: ``num_blocks`` blocks, each with two (input, op) pairs combined by ``add``; the same
cell serves as the normal and the reduction cell. A genome is ``4 * num_blocks`` genes, per block
``(input 1, input 2, op 1, op 2)``; block ``j`` reads one of ``2 + j`` states. Swapping a block's
two (input, op) pairs gives the same network (:func:`canonical`), so only the canonical cells need
training.

Metrics of a run (:func:`trace_strategy`, :func:`summarize`): the number of evaluations until the
first genome in the top ``top_fraction`` of the table (by reward; ties at the threshold count as
top), and the rank of the best genome found (1 = best of the space; ties share the best rank).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Mapping

import jax
import numpy as np

from azjax import search

__all__ = ["Table", "additive_table", "all_genomes", "canonical", "cell_space_genome",
           "choices", "compare", "index_of", "summarize", "trace_strategy"]


def choices(num_blocks: int, num_ops: int) -> tuple[int, ...]:
    """Choice count of each gene: per block ``j``, ``(2 + j, 2 + j, num_ops, num_ops)``."""
    return tuple(c for j in range(num_blocks) for c in (2 + j, 2 + j, num_ops, num_ops))


def all_genomes(num_choices: tuple[int, ...]) -> np.ndarray:
    """Every genome, int32 ``[prod(num_choices), len(num_choices)]``, in row-major order."""
    return np.asarray(list(itertools.product(*[range(c) for c in num_choices])), np.int32)


def index_of(genomes: Any, num_choices: tuple[int, ...]) -> np.ndarray:
    """Row-major index of each genome in :func:`all_genomes` (int64 ``[N]``)."""
    g = np.asarray(genomes, np.int64).reshape(-1, len(num_choices))
    idx = np.zeros(g.shape[0], np.int64)
    for i, c in enumerate(num_choices):
        idx = idx * c + g[:, i]
    return idx


def canonical(genomes: Any, num_blocks: int) -> np.ndarray:
    """Each block's two (input, op) pairs sorted, so equal networks get equal rows."""
    g = np.asarray(genomes, np.int32).reshape(-1, num_blocks, 4).copy()
    a, b = g[..., [0, 2]], g[..., [1, 3]]  # (input, op) of the left and right slot
    swap = (a[..., 0] > b[..., 0]) | ((a[..., 0] == b[..., 0]) & (a[..., 1] > b[..., 1]))
    left = np.where(swap[..., None], b, a)
    right = np.where(swap[..., None], a, b)
    g[..., 0], g[..., 1] = left[..., 0], right[..., 0]
    g[..., 2], g[..., 3] = left[..., 1], right[..., 1]
    return g.reshape(-1, num_blocks * 4)


def cell_space_genome(genomes: Any, num_blocks: int) -> np.ndarray:
    """The :class:`~azjax.nas.CellSpace` genome (normal = reduce, combiner ``add``, op ids local
    to the space's op list) of each table genome."""
    g = np.asarray(genomes, np.int32).reshape(-1, num_blocks, 4)
    cell = np.concatenate([g, np.zeros(g.shape[:2] + (1,), np.int32)], -1)
    return np.concatenate([cell, cell], 1).reshape(g.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Table:
    """The reward of every genome of a ``(num_blocks, ops)`` space.

    Attributes:
        reward: float32 ``[prod(choices)]``, indexed by :func:`index_of`.
        num_blocks: ``B``.
        ops: the op names (gene value ``i`` is ``ops[i]``).
    """

    reward: np.ndarray
    num_blocks: int
    ops: tuple[str, ...]

    def __post_init__(self):
        n = int(np.prod(self.num_choices))
        if np.shape(self.reward) != (n,):
            raise ValueError(f"reward: expected shape ({n},) for {self.num_blocks} blocks and "
                             f"{len(self.ops)} ops, got {np.shape(self.reward)}")

    @classmethod
    def load(cls, path: str) -> "Table":
        """A table written by ``benchmarks/nas_tabular.py --build`` (``reward``, ``ops``,
        ``num_blocks``)."""
        with np.load(path) as z:
            ops = tuple(str(o) for o in z["ops"])
            num_blocks = int(z["num_blocks"]) if "num_blocks" in z else 2
            return cls(np.asarray(z["reward"], np.float32), num_blocks, ops)

    @property
    def num_choices(self) -> tuple[int, ...]:
        return choices(self.num_blocks, len(self.ops))

    @property
    def space(self) -> search.IntVectorSpace:
        """The strategies' space: the ``4 * num_blocks`` genes of one cell."""
        return search.IntVectorSpace(self.num_choices)

    def lookup(self, genomes: Any) -> np.ndarray:
        """Reward of each genome."""
        return self.reward[index_of(genomes, self.num_choices)]

    def threshold(self, top_fraction: float = 0.01) -> float:
        """The reward a genome needs to be in the top ``top_fraction`` of the table."""
        return float(np.quantile(self.reward, 1.0 - top_fraction))

    def additive_r2(self) -> float:
        """Share of the reward variance that a sum of per-gene effects explains (least squares
        on one-hot genes): near 0 for a table of noise, near 1 for a purely additive one."""
        genomes = all_genomes(self.num_choices)
        x = np.concatenate([np.eye(c)[genomes[:, i]] for i, c in enumerate(self.num_choices)],
                           axis=1)
        r = self.reward.astype(np.float64)
        coef, *_ = np.linalg.lstsq(x, r, rcond=None)
        return float(1.0 - np.var(r - x @ coef) / np.var(r))

    def rank(self, reward: Any) -> np.ndarray:
        """1 + the number of genomes with a strictly higher reward (1 = the best)."""
        top = np.sort(self.reward)[::-1]
        return 1 + np.searchsorted(-top, -np.asarray(reward), side="left")


def additive_table(key: jax.Array, num_blocks: int = 2, num_ops: int = 3,
                   noise: float = 0.3) -> Table:
    """A synthetic table with known structure: a sum of per-gene effects (standard normal, one
    per gene value) plus independent noise of standard deviation ``noise`` per genome.

    One mutation or a per-gene policy can climb it, random search cannot use it, so it shows
    whether a strategy exploits structure at all; ``noise`` sets how much structure there is.
    The op names are placeholders (``op0``, ``op1``, ...).
    """
    num_choices = choices(num_blocks, num_ops)
    genomes = all_genomes(num_choices)
    k_gene, k_noise = jax.random.split(key)
    reward = np.zeros(len(genomes), np.float32)
    for i, c in enumerate(num_choices):
        effect = np.asarray(jax.random.normal(jax.random.fold_in(k_gene, i), (c,)))
        reward += effect[genomes[:, i]]
    reward += noise * np.asarray(jax.random.normal(k_noise, (len(genomes),)))
    return Table(reward.astype(np.float32), num_blocks, tuple(f"op{i}" for i in range(num_ops)))


def trace_strategy(table: Table, strategy: Any, key: jax.Array, budget: int) -> np.ndarray:
    """Rewards of the first ``budget`` genomes a strategy evaluates on the table, in order.

    Runs ``search.run`` with a lookup evaluator; duplicates count as evaluations (a real search
    would train them again).
    """
    seen: list[np.ndarray] = []

    def evaluate(k, genomes):
        del k
        r = table.lookup(np.asarray(genomes))
        seen.append(r)
        return r, {}

    search.run(table.space, strategy, evaluate, key, max_evaluations=budget,
               metrics_every=10**9)
    return np.concatenate(seen)[:budget]


def summarize(table: Table, traces: np.ndarray, top_fraction: float = 0.01,
              budget: int | None = None) -> dict[str, np.ndarray]:
    """Per-run metrics of ``traces`` (``[runs, evaluations]`` rewards).

    Returns ``first_top`` (evaluations until the first top-``top_fraction`` genome, 1-based;
    ``budget + 1`` if none) and ``best_rank`` (rank of the best genome within ``budget``).
    """
    traces = np.asarray(traces)
    if budget is not None:
        traces = traces[:, :budget]
    hit = traces >= table.threshold(top_fraction)
    first = np.where(hit.any(1), hit.argmax(1) + 1, traces.shape[1] + 1)
    return {"first_top": first, "best_rank": table.rank(traces.max(1))}


def compare(table: Table, strategies: Mapping[str, Any], seeds: int, budget: int,
            seed0: int = 1000, progress: Callable[[str], Any] | None = None
            ) -> dict[str, np.ndarray]:
    """Traces ``[seeds, budget]`` of each strategy, run ``seeds`` times with keys
    ``key(seed0 + s)``."""
    out = {}
    for name, strategy in strategies.items():
        out[name] = np.stack([trace_strategy(table, strategy, jax.random.key(seed0 + s), budget)
                              for s in range(seeds)])
        if progress is not None:
            progress(name)
    return out
