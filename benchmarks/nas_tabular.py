"""A tabular NAS benchmark on digits: every cell of a reduced space trained once, cached, then
RL controllers, regularized evolution and random search compared over many seeds.

    python benchmarks/nas_tabular.py --build          # train every cell once -> nas_tabular_digits.npz
    python benchmarks/nas_tabular.py [--seeds 20] [--budget 300] [--batch 10]

The space: B = 2 blocks, ops (sep_conv_3x3, max_pool_3x3), ``add``, the same cell used as the
normal and the reduction cell. A genome is 8 genes, per block ``(input 1, input 2, op 1, op 2)``:
2 x 2 x 2 x 2 x 3 x 3 x 2 x 2 = 576 genomes. Swapping the two (input, op) pairs of a block gives
the same network, so only the 210 canonical cells are trained (NASNet-style children
through ``nas.ChildTrainer``: one normal cell per stack, 8 filters, ``--steps`` SGD steps of batch
32, reward = accuracy on 300 held-out training images). The table (``benchmarks/
nas_tabular_digits.npz``) then answers every evaluation by lookup, so a strategy can evaluate
thousands of children in seconds.

For each strategy and seed the benchmark reports the number of evaluations until the first
top-1% genome (by table reward) and the rank of the best genome found within ``--budget``
evaluations (1 = the best genome of the space), as median and interquartile range over seeds.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

import jax
import numpy as np

from azjax import data as azdata
from azjax import nas, search
from azjax.search.controller import Controller

OPS = ("sep_conv_3x3", "max_pool_3x3")
NUM_BLOCKS = 2
TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nas_tabular_digits.npz")
# Block j: input 1, input 2 (2 + j choices each), op 1, op 2.
CHOICES = tuple(c for j in range(NUM_BLOCKS) for c in (2 + j, 2 + j, len(OPS), len(OPS)))


def genome_space() -> search.IntVectorSpace:
    """The strategies' space: the 8 genes of one cell."""
    return search.IntVectorSpace(CHOICES)


def all_genomes() -> np.ndarray:
    """Every genome, int32 ``[2916, 8]``, in row-major order of the genes."""
    return np.asarray(list(itertools.product(*[range(c) for c in CHOICES])), np.int32)


def canonical(genomes: np.ndarray) -> np.ndarray:
    """Each block's two (input, op) pairs sorted, so equal networks get equal rows."""
    g = np.asarray(genomes, np.int32).reshape(-1, NUM_BLOCKS, 4).copy()
    a, b = g[..., [0, 2]], g[..., [1, 3]]  # (input, op) of the left and right slot
    swap = (a[..., 0] > b[..., 0]) | ((a[..., 0] == b[..., 0]) & (a[..., 1] > b[..., 1]))
    left = np.where(swap[..., None], b, a)
    right = np.where(swap[..., None], a, b)
    g[..., 0], g[..., 2], g[..., 1], g[..., 3] = left[..., 0], left[..., 1], right[..., 0], \
        right[..., 1]
    return g.reshape(-1, NUM_BLOCKS * 4)


def index_of(genomes: np.ndarray) -> np.ndarray:
    """Row-major index of each genome in :func:`all_genomes`."""
    g = np.asarray(genomes, np.int64).reshape(-1, len(CHOICES))
    idx = np.zeros(g.shape[0], np.int64)
    for i, c in enumerate(CHOICES):
        idx = idx * c + g[:, i]
    return idx


def cell_space_genome(genomes: np.ndarray) -> np.ndarray:
    """The ``nas.CellSpace`` genome (normal = reduce, combine ``add``) of each table genome."""
    g = np.asarray(genomes, np.int32).reshape(-1, NUM_BLOCKS, 4)
    cell = np.concatenate([g, np.zeros(g.shape[:2] + (1,), np.int32)], -1)
    return np.concatenate([cell, cell], 1).reshape(g.shape[0], -1)


def build(path: str, steps: int, seed: int) -> None:
    k_test, k_valid = jax.random.split(jax.random.key(seed))
    d = azdata.load_digits_split(k_test, num_test=297)
    data = azdata.split_train_valid(d["train_images"], d["train_labels"], num_valid=300,
                                    key=k_valid)
    space = nas.CellSpace(ops=OPS, combiners=("add",), num_blocks=NUM_BLOCKS)
    child = nas.TrainConfig(num_cells=1, filters=8, batch_size=32, num_steps=steps,
                            learning_rate=0.05, pad_crop=1, flip=False, eval_batch_size=100,
                            depthwise_impl="dense")
    trainer = nas.ChildTrainer(space, child, data)
    genomes = all_genomes()
    cells, inverse = np.unique(canonical(genomes), axis=0, return_inverse=True)
    t0 = time.perf_counter()
    rewards = np.zeros(len(cells), np.float32)
    for i, cell in enumerate(cells):
        m = trainer.train_child(jax.random.fold_in(jax.random.key(seed + 1), i),
                                cell_space_genome(cell[None])[0])
        rewards[i] = m["valid_accuracy"]
        if i % 100 == 0:
            print(f"{i}/{len(cells)} cells, {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez_compressed(path, genomes=genomes, reward=rewards[inverse.reshape(-1)],
                        cells=cells, cell_reward=rewards, steps=steps, seed=seed,
                        ops=np.asarray(OPS))
    print(f"{len(cells)} cells trained in {time.perf_counter() - t0:.0f} s -> {path}")


def load_table(path: str = TABLE) -> np.ndarray:
    """Reward of every genome, indexed by :func:`index_of`."""
    with np.load(path) as z:
        return np.asarray(z["reward"], np.float32)


def lookup_evaluator(table: np.ndarray):
    def evaluate(key, genomes):
        del key
        return table[index_of(np.asarray(genomes))], {}
    return evaluate


def make_strategies(space, batch: int) -> dict:
    """One instance per strategy, reused across seeds (their jitted steps compile once)."""
    return {
        "reinforce": Controller(space, "reinforce", batch_size=batch, learning_rate=3.5e-3,
                                hidden=32),
        "ppo": Controller(space, "ppo", batch_size=batch, learning_rate=3.5e-3, hidden=32),
        "evolution": search.RegularizedEvolution(space, population_size=20, tournament_size=5,
                                                 mutate_prob=1.0, batch_size=batch),
        "random": search.RandomSearch(space, batch_size=batch),
    }


def run_strategy(strategy, table: np.ndarray, budget: int, seed: int) -> tuple[int, int]:
    """``(evaluations to the first top-1% genome (budget + 1 if none), best rank found)``."""
    space = genome_space()
    order = np.argsort(-table, kind="stable")
    rank = np.empty(len(table), np.int64)
    rank[order] = np.arange(1, len(table) + 1)
    threshold = np.quantile(table, 0.99)
    seen = []

    def evaluate(key, genomes):
        idx = index_of(np.asarray(genomes))
        seen.extend(idx.tolist())
        return table[idx], {}

    search.run(space, strategy, evaluate, jax.random.key(seed), max_evaluations=budget)
    seen = np.asarray(seen[:budget])
    hits = np.flatnonzero(table[seen] >= threshold)
    first = int(hits[0]) + 1 if hits.size else budget + 1
    # Best rank: ties share the best (smallest) rank of their reward.
    best_reward = table[seen].max()
    return first, int(np.sum(table > best_reward) + 1)


def compare(table: np.ndarray, seeds: int, budget: int, batch: int) -> dict:
    space = genome_space()
    out = {}
    for name, strategy in make_strategies(space, batch).items():
        t = time.perf_counter()
        res = np.asarray([run_strategy(strategy, table, budget, 1000 + s) for s in range(seeds)])
        out[name] = {"first_top1": res[:, 0], "best_rank": res[:, 1],
                     "seconds": time.perf_counter() - t}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", action="store_true", help="train every cell and write the table")
    p.add_argument("--steps", type=int, default=30, help="--build: SGD steps per child")
    p.add_argument("--table", default=TABLE)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--batch", type=int, default=10)
    args = p.parse_args()
    if args.build:
        build(args.table, args.steps, 0)
        return
    table = load_table(args.table)
    top = np.sort(table)[::-1]
    print(f"table: {len(table)} genomes, reward max {top[0]:.3f}, top-1% threshold "
          f"{np.quantile(table, 0.99):.3f}, median {np.median(table):.3f}; "
          f"{args.seeds} seeds, budget {args.budget}, batch {args.batch}")
    print(f"{'strategy':<10} {'evals to top-1% (median [IQR])':>32} {'found <=budget':>15} "
          f"{'best rank (median [IQR])':>26} {'s/seed':>7}")
    for name, r in compare(table, args.seeds, args.budget, args.batch).items():
        f, b = r["first_top1"], r["best_rank"]
        q = lambda a: f"{np.median(a):6.0f} [{np.quantile(a, 0.25):4.0f}, {np.quantile(a, 0.75):4.0f}]"
        print(f"{name:<10} {q(f):>32} {np.mean(f <= args.budget):>14.0%} {q(b):>26} "
              f"{r['seconds'] / args.seeds:>7.2f}")


if __name__ == "__main__":
    main()
