"""A tabular NAS benchmark on digits: every cell of a reduced space trained once, cached, then
RL controllers, regularized evolution and random search compared over many seeds.

    python benchmarks/nas_tabular.py --build [--steps 30] [--repeats 1]  # -> the table file
    python benchmarks/nas_tabular.py [--seeds 20] [--budget 300] [--batch 5]

The space (``azjax.nas.tabular``): B = 2 blocks, ops (sep_conv_3x3, max_pool_3x3), ``add``, the
same cell used as the normal and the reduction cell. A genome is 8 genes, per block
``(input 1, input 2, op 1, op 2)``: 2 x 2 x 2 x 2 x 3 x 3 x 2 x 2 = 576 genomes. Swapping the
two (input, op) pairs of a block gives the same network, so only the 210 canonical cells are
trained (NASNet-style children through ``nas.ChildTrainer``: one normal cell per stack, 8
filters, ``--steps`` SGD steps of batch 32, reward = accuracy on 300 held-out training images).
The table then answers every evaluation by lookup, so a strategy can evaluate thousands of
children in seconds.

For each strategy and seed the benchmark reports the number of evaluations until the first
top-1% genome (by table reward; ``--budget + 1`` when none is found) and the rank of the best
genome found within ``--rank-budget`` evaluations (1 = the best genome of the space), as median,
mean and interquartile range over seeds. The strategies' settings are ``make_strategies``'s;
docs/nas.md explains the choice and the measurements behind it.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from azjax import data as azdata
from azjax import nas, search
from azjax.nas import tabular

OPS = ("sep_conv_3x3", "max_pool_3x3")
NUM_BLOCKS = 2
TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nas_tabular_digits.npz")


def build(path: str, steps: int, seed: int, repeats: int = 1) -> None:
    """Train every canonical cell ``repeats`` times (seeds ``fold_in(cell, r)``) and store the
    mean validation accuracy per genome."""
    k_test, k_valid = jax.random.split(jax.random.key(seed))
    d = azdata.load_digits_split(k_test, num_test=297)
    data = azdata.split_train_valid(d["train_images"], d["train_labels"], num_valid=300,
                                    key=k_valid)
    space = nas.CellSpace(ops=OPS, combiners=("add",), num_blocks=NUM_BLOCKS)
    child = nas.TrainConfig(num_cells=1, filters=8, batch_size=32, num_steps=steps,
                            learning_rate=0.05, pad_crop=1, flip=False, eval_batch_size=100,
                            depthwise_impl="dense")
    trainer = nas.ChildTrainer(space, child, data)
    genomes = tabular.all_genomes(tabular.choices(NUM_BLOCKS, len(OPS)))
    cells, inverse = np.unique(tabular.canonical(genomes, NUM_BLOCKS), axis=0,
                               return_inverse=True)
    t0 = time.perf_counter()
    runs = np.full((len(cells), repeats), np.nan, np.float32)
    partial = path + ".partial.npy"  # progress, so an interrupted build resumes
    if os.path.exists(partial):
        runs = np.load(partial)
    for i, cell in enumerate(cells):
        for r in range(repeats):
            if not np.isnan(runs[i, r]):
                continue
            # Repeat 0 uses the key of a single-repeat build, so repeats only add runs.
            key = jax.random.fold_in(jax.random.key(seed + 1), i)
            m = trainer.train_child(key if r == 0 else jax.random.fold_in(key, r),
                                    tabular.cell_space_genome(cell[None], NUM_BLOCKS)[0])
            runs[i, r] = m["valid_accuracy"]
            np.save(partial, runs)
        if i % 10 == 0:
            print(f"{i}/{len(cells)} cells, {time.perf_counter() - t0:.0f} s", flush=True)
    rewards = runs.mean(axis=1)
    np.savez_compressed(path, genomes=genomes, reward=rewards[inverse.reshape(-1)],
                        cells=cells, cell_reward=rewards, cell_runs=runs, steps=steps, seed=seed,
                        ops=np.asarray(OPS), num_blocks=NUM_BLOCKS)
    os.remove(partial)
    print(f"{len(cells)} cells trained in {time.perf_counter() - t0:.0f} s -> {path}")


def make_strategies(space, batch: int) -> dict:
    """One instance per strategy, reused across seeds (their jitted steps compile once)."""
    return {
        "reinforce": search.Controller(space, "reinforce", batch_size=batch, learning_rate=3e-2,
                                       hidden=32),
        "ppo": search.Controller(space, "ppo", batch_size=batch, learning_rate=3e-2, hidden=32),
        "evolution": search.RegularizedEvolution(space, population_size=10, tournament_size=5,
                                                 mutate_prob=1.0, batch_size=batch),
        "random": search.RandomSearch(space, batch_size=batch),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", action="store_true", help="train every cell and write the table")
    p.add_argument("--steps", type=int, default=30, help="--build: SGD steps per child")
    p.add_argument("--repeats", type=int, default=1,
                   help="--build: trainings per cell (different seeds), rewards averaged")
    p.add_argument("--table", default=TABLE)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--rank-budget", type=int, default=100,
                   help="evaluations within which the best rank is taken")
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--synthetic", type=float, default=None, metavar="NOISE",
                   help="instead of the digits table, tabular.additive_table (B=2, 3 ops, 2916 "
                        "genomes) with this noise sd: a table with known structure")
    args = p.parse_args()
    if args.build:
        build(args.table, args.steps, 0, args.repeats)
        return
    if args.synthetic is not None:
        table = tabular.additive_table(jax.random.key(0), 2, 3, args.synthetic)
    else:
        table = tabular.Table.load(args.table)
    n_top = int(np.sum(table.reward >= table.threshold(0.01)))
    print(f"table: {table.reward.size} genomes, reward max {table.reward.max():.3f}, top-1% "
          f"threshold {table.threshold(0.01):.3f} ({n_top} genomes), median "
          f"{np.median(table.reward):.3f}, additive R^2 {table.additive_r2():.2f}; "
          f"{args.seeds} seeds, budget {args.budget}, "
          f"batch {args.batch}")
    print(f"{'strategy':<10} {'evals to top-1%: median':>24} {'mean':>6} {'[IQR]':>11} "
          f"{'found':>6} | {'best rank @' + str(args.rank_budget) + ': median':>24} {'mean':>5} "
          f"{'[IQR]':>9} | {'s/seed':>6}")
    strategies = make_strategies(table.space, args.batch)
    for name, strategy in strategies.items():
        t = time.perf_counter()
        traces = tabular.compare(table, {name: strategy}, args.seeds, args.budget)[name]
        seconds = (time.perf_counter() - t) / args.seeds
        f = tabular.summarize(table, traces)["first_top"]
        b = tabular.summarize(table, traces, budget=args.rank_budget)["best_rank"]
        iqr = lambda a: f"[{np.quantile(a, 0.25):.0f}, {np.quantile(a, 0.75):.0f}]"
        print(f"{name:<10} {np.median(f):>24.0f} {f.mean():>6.1f} {iqr(f):>11} "
              f"{np.mean(f <= args.budget):>6.0%} | {np.median(b):>24.0f} {b.mean():>5.1f} "
              f"{iqr(b):>9} | {seconds:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
