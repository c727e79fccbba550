"""Regularized evolution vs random search at equal budgets on the linear-regressor space (paper Fig. 4).

Setting "learn_only" (paper: "linear backprop"): Setup (s2 = learning rate) and Predict (s1 = dot(v0, v1))
are fixed to the correct solution and Learn is searched from random instructions over {SCALAR_DIFF,
SCALAR_PRODUCT, SCALAR_VECTOR_PRODUCT, VECTOR_SUM}. Setting "full": the whole linear-regressor space.
A run succeeds when its best program reaches the hand-written SGD program's fitness on the search tasks
(minus 1e-4). Prints the fraction of successful runs per method (the paper reports evolution ~2.9x (learn
only) and ~5x (full) more efficient than random search).

    python benchmarks/evolution_vs_random.py [--setting=learn_only] [--runs=10] [--budget=20000]
"""
import dataclasses
import os
import platform
import time

from absl import app, flags

import jax
import numpy as np

from azjax import search, zero

FLAGS = flags.FLAGS
flags.DEFINE_enum("setting", "learn_only", ["learn_only", "full"], "Search space.")
flags.DEFINE_integer("runs", 10, "Runs per method.")
flags.DEFINE_integer("budget", 20000, "Programs evaluated per run.")
flags.DEFINE_integer("population_size", 1000, "Evolution population (P).")
flags.DEFINE_integer("tournament_size", 10, "Evolution tournament (T).")
flags.DEFINE_integer("batch_size", 100, "Programs per ask.")
flags.DEFINE_integer("num_tasks", 3, "Search tasks (paper: D=3).")

LEARN_OPS = ("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")


@dataclasses.dataclass(frozen=True)
class LearnOnlySpace:
    """ProgramSpace whose Setup and Predict are pinned to the linear-regression solution."""

    inner: zero.ProgramSpace
    fixed: zero.Program = dataclasses.field(hash=False, compare=False)

    def __hash__(self):
        return hash(self.inner)

    def _pin(self, program):
        return program.replace(setup=self.fixed.setup, predict=self.fixed.predict)

    def sample(self, key):
        return self._pin(self.inner.sample(key))

    def mutate(self, key, genome):
        return self._pin(self.inner.mutate(key, genome))

    def validate(self, genome):
        self.inner.validate(genome)


def main(argv):
    del argv
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                          learn_ops=LEARN_OPS, setup_size=5, predict_size=1, learn_size=4)
    mutation = zero.MutationConfig(types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION",
                                          "RANDOMIZE_COMPONENT_FUNCTION"))
    space = zero.ProgramSpace(cfg, mutation, initial="RANDOM")
    reference = zero.parse_program(
        "def Setup():\n  s2 = 0.1\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  s3 = s0 - s1\n"
        "  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n", cfg)
    if FLAGS.setting == "learn_only":
        space = LearnOnlySpace(space, jax.tree_util.tree_map(jax.numpy.asarray, reference))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__}; setting "
          f"{FLAGS.setting}, {FLAGS.runs} runs x {FLAGS.budget} programs, P={FLAGS.population_size}, "
          f"T={FLAGS.tournament_size}, {FLAGS.num_tasks} tasks of 100/100 examples")
    print(f"{'method':10s} {'successes':>9s} {'rate':>6s} {'mean_best':>9s} {'evals_to_success':>16s} {'wall_s':>7s}")
    for method in ("evolution", "random"):
        successes, bests, first_hits = 0, [], []
        t0 = time.perf_counter()
        for run in range(FLAGS.runs):
            key = jax.random.key(1000 * run + 7)
            tasks = zero.linear_regression_tasks(jax.random.fold_in(key, 0), FLAGS.num_tasks, 4, 100, 100)
            evaluator = zero.ProgramEvaluator(cfg, tasks)
            target = float(zero.combine_fitness(zero.evaluate(reference, tasks, cfg, key=key))) - 1e-4
            if method == "evolution":
                strategy = search.RegularizedEvolution(space, population_size=FLAGS.population_size,
                                                       tournament_size=FLAGS.tournament_size, mutate_prob=0.9,
                                                       batch_size=FLAGS.batch_size)
            else:
                strategy = search.RandomSearch(space, batch_size=FLAGS.batch_size)
            history = search.History()
            result = search.run(space, strategy, evaluator, jax.random.fold_in(key, 1),
                                max_evaluations=FLAGS.budget, sufficient_fitness=target, callbacks=[history])
            bests.append(result.best_fitness)
            if result.best_fitness > target:
                successes += 1
                first_hits.append(result.evaluations)
        wall = time.perf_counter() - t0
        hits = f"{np.median(first_hits):.0f}" if first_hits else "-"
        print(f"{method:10s} {successes:9d} {successes / FLAGS.runs:6.2f} {np.mean(bests):9.4f} {hits:>16s} "
              f"{wall:7.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
