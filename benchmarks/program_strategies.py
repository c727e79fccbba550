"""RL controller vs regularized evolution vs random search over AutoML-Zero programs, at a fixed budget.

The linear-regressor space (experiments/automl_zero/configs/linear_quick.py: banks 4/3/1, F=4, Setup
{SCALAR_CONST_SET}, Predict {VECTOR_INNER_PRODUCT}, Learn {SCALAR_DIFF, SCALAR_PRODUCT,
SCALAR_VECTOR_PRODUCT, VECTOR_SUM}, sizes 5/1/4, random initial programs, the demo's mutations) seen as
fixed-length genomes by `zero.ProgramGenomeSpace` (constants on 16 levels of their range; docs/automl_zero.md §8),
so all three strategies search the same set of programs. Per seed, one draw of D=3 linear tasks (100 train /
100 valid examples) shared by the strategies; `zero.ProgramEvaluator` on the native backend with FEC.

A run *succeeds* when its best search fitness reaches `--threshold` (default 0.99: an SGD learner; the
hand-written one scores 0.9999 with the grid's learning rate 0.1875 and 0.995-0.999 with 0.0625 or 0.3125).
Printed per strategy: best fitness (mean and min/max over seeds), successes, evaluations to the first
success, wall time.

    python benchmarks/program_strategies.py --seeds=3 --budget=10000 --batch_size=100
"""
import json
import time

from absl import app, flags

import jax
import numpy as np

from azjax import search, zero

FLAGS = flags.FLAGS
STRATEGIES = ("controller", "evolution", "random")
flags.DEFINE_integer("seeds", 3, "Seeds (task draws and strategy keys).")
flags.DEFINE_integer("budget", 10_000, "Evaluations per run.")
flags.DEFINE_integer("batch_size", 100, "Genomes per ask, for every strategy.")
flags.DEFINE_list("strategies", list(STRATEGIES), f"Of {', '.join(STRATEGIES)}.")
flags.DEFINE_float("threshold", 0.99, "Search fitness that counts as a success.")
flags.DEFINE_integer("population_size", 200, "Regularized evolution: P.")
flags.DEFINE_integer("tournament_size", 10, "Regularized evolution: T.")
flags.DEFINE_enum("algorithm", "reinforce", ["reinforce", "ppo"], "Controller update.")
flags.DEFINE_float("learning_rate", 3e-3, "Controller Adam learning rate.")
flags.DEFINE_integer("hidden", 64, "Controller LSTM units.")
flags.DEFINE_float("entropy_weight", 1e-3, "Controller entropy bonus.")
flags.DEFINE_integer("constant_levels", 16, "Grid levels of each value constant.")

CFG = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                      setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                      learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                      setup_size=5, predict_size=1, learn_size=4)


def make_strategy(name: str, space):
    if name == "controller":
        return search.Controller(space, algorithm=FLAGS.algorithm, batch_size=FLAGS.batch_size,
                                 learning_rate=FLAGS.learning_rate, hidden=FLAGS.hidden,
                                 entropy_weight=FLAGS.entropy_weight)
    if name == "evolution":
        return search.RegularizedEvolution(space, population_size=FLAGS.population_size,
                                           tournament_size=FLAGS.tournament_size, batch_size=FLAGS.batch_size)
    if name == "random":
        return search.RandomSearch(space, batch_size=FLAGS.batch_size)
    raise ValueError(f"--strategies: unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")


class FirstSuccess:
    """Callback: evaluations when the best fitness first reached the threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.evaluations = None

    def __call__(self, metrics) -> None:
        if self.evaluations is None and metrics["best_fitness"] >= self.threshold:
            self.evaluations = int(metrics["evaluations"])


def run_one(name: str, seed: int, space) -> dict:
    tasks = zero.linear_regression_tasks(jax.random.key(10_000 + seed), num_tasks=3, features=CFG.features,
                                         num_train=100, num_valid=100)
    evaluator = zero.ProgramEvaluator(CFG, tasks, backend="native")
    first = FirstSuccess(FLAGS.threshold)
    start = time.monotonic()
    result = search.run(space, make_strategy(name, space), evaluator, jax.random.key(seed),
                        max_evaluations=FLAGS.budget, callbacks=[first])
    row = {"strategy": name, "seed": seed, "best_fitness": float(result.best_fitness),
           "evaluations": int(result.evaluations), "first_success": first.evaluations,
           "seconds": round(time.monotonic() - start, 1),
           "best_program": zero.format_program(jax.device_get(result.best_genome), CFG)}
    print(json.dumps(row), flush=True)
    return row


def main(argv):
    del argv
    space = zero.ProgramGenomeSpace(zero.ProgramSpace(CFG, zero.MutationConfig(), initial="RANDOM"),
                                    constant_levels=FLAGS.constant_levels)
    print(f"# {space.num_genes} genes; budget {FLAGS.budget}, batch {FLAGS.batch_size}, seeds {FLAGS.seeds}, "
          f"threshold {FLAGS.threshold}; controller {FLAGS.algorithm} lr {FLAGS.learning_rate} hidden "
          f"{FLAGS.hidden} entropy {FLAGS.entropy_weight}; evolution P={FLAGS.population_size} "
          f"T={FLAGS.tournament_size}", flush=True)
    rows = [run_one(name, seed, space) for name in FLAGS.strategies for seed in range(FLAGS.seeds)]
    print(f"\n| strategy | best fitness mean [min, max] | successes (>= {FLAGS.threshold}) | "
          "evaluations to success | seconds per run |")
    print("|---|---|---|---|---|")
    for name in FLAGS.strategies:
        mine = [r for r in rows if r["strategy"] == name]
        best = np.array([r["best_fitness"] for r in mine])
        hits = sorted(r["first_success"] for r in mine if r["first_success"] is not None)
        secs = np.mean([r["seconds"] for r in mine])
        print(f"| {name} | {best.mean():.4f} [{best.min():.4f}, {best.max():.4f}] | {len(hits)}/{len(mine)} | "
              f"{', '.join(map(str, hits)) or '-'} | {secs:.0f} |")


if __name__ == "__main__":
    app.run(main)
