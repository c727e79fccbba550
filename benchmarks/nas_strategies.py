"""RL (PPO controller) vs regularized evolution vs random search on digits, equal budgets.

    python benchmarks/nas_strategies.py [--children 16] [--seeds 3] [--batch 4] [--steps 20]

Every strategy asks batches of ``--batch`` cells from the same CellSpace (ENAS ops, add, B=5) and
every child is a NASNet-style proxy: a fresh supernet child (num_cells 1, F 8) trained
``--steps`` SGD steps on digits, reward = accuracy on 300 held-out training images. The table
prints mean +- sd over seeds of the best reward after k children. CPU budgets are tiny (the
papers used 20k children of 20-epoch CIFAR training), so differences here are mostly noise;
the point is the machinery: one compile serves all strategies and seeds.
"""
import argparse
import time

import jax
import numpy as np

from azjax import data as azdata
from azjax import nas, search
from azjax.nas.space import ENAS_OPS, CellSpace
from azjax.search.controller import Controller


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=16)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    k_test, k_valid = jax.random.split(jax.random.key(0))
    d = azdata.load_digits_split(k_test, num_test=297)
    data = azdata.split_train_valid(d["train_images"], d["train_labels"], num_valid=300,
                                    key=k_valid)
    space = CellSpace(ops=ENAS_OPS, combiners=("add",))
    child = nas.TrainConfig(num_cells=1, filters=8, batch_size=32, num_steps=args.steps,
                            learning_rate=0.05, pad_crop=1, flip=False, eval_batch_size=100,
                            depthwise_impl="dense")
    t0 = time.perf_counter()
    evaluator = nas.ChildTrainer(space, child, data)
    evaluator(jax.random.key(0), np.asarray(space.sample(jax.random.key(0)))[None])
    print(f"device: {jax.devices()[0].device_kind}; supernet compile + first child "
          f"{time.perf_counter() - t0:.1f} s; {args.children} children x {args.seeds} seeds, "
          f"batch {args.batch}, {args.steps} SGD steps per child")
    strategies = {
        "ppo": lambda: Controller(space, "ppo", batch_size=args.batch),
        "reinforce": lambda: Controller(space, "reinforce", batch_size=args.batch),
        "evolution": lambda: search.RegularizedEvolution(space, 2 * args.batch, 3, 1.0,
                                                          batch_size=args.batch),
        "random": lambda: search.RandomSearch(space, batch_size=args.batch),
    }
    marks = sorted({k for k in (args.batch * 2, args.children // 2, args.children)
                    if k >= args.batch})
    header = "".join(f"{'best@' + str(k):>16}" for k in marks)
    print(f"{'strategy':<10}{header}{'s/child':>10}")
    for name, make in strategies.items():
        best = np.zeros((args.seeds, len(marks)))
        t = time.perf_counter()
        for seed in range(args.seeds):
            hist = search.History()
            search.run(space, make(), evaluator, jax.random.key(100 + seed),
                       max_evaluations=args.children, callbacks=[hist])
            evals, bests = hist.column("evaluations"), hist.column("best_fitness")
            for m, k in enumerate(marks):
                best[seed, m] = bests[np.searchsorted(evals, k)]
        per_child = (time.perf_counter() - t) / (args.seeds * args.children)
        cells = "".join(f"{100 * best[:, m].mean():>9.1f} +- {100 * best[:, m].std():>3.1f}"
                        for m in range(len(marks)))
        print(f"{name:<10}{cells}{per_child:>10.2f}")


if __name__ == "__main__":
    main()
