"""How rare are good programs? Random search's hit counts on the linear-regressor space (paper §4.1).

Samples N random programs (the space's RANDOM initial programs, as random search draws them), evaluates
them with the search evaluator (FEC on) on D linear tasks of 100/100 examples, and prints how many beat
fitness thresholds, next to the fitness of the program that predicts 0 and of hand-written SGD.

    python benchmarks/space_difficulty.py [--setting=full|learn_only] [--num_programs=400000]
"""
import os
import platform
import time

from absl import app, flags

import jax
import numpy as np

from azjax import zero

FLAGS = flags.FLAGS
flags.DEFINE_enum("setting", "full", ["full", "learn_only"],
                  "full: the whole linear-regressor space; learn_only: Setup/Predict fixed to SGD's.")
flags.DEFINE_integer("num_programs", 400_000, "Random programs to evaluate.")
flags.DEFINE_integer("num_tasks", 3, "Search tasks.")
flags.DEFINE_integer("batch", 2000, "Programs per evaluator call.")
flags.DEFINE_integer("seed", 0, "Seed of the tasks and the samples.")

SGD = ("def Setup():\n  s2 = 0.15\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  s3 = s0 - s1\n"
       "  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n")


def main(argv):
    del argv
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                          learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                          setup_size=5, predict_size=1, learn_size=4)
    space = zero.ProgramSpace(cfg, zero.MutationConfig(), initial="RANDOM")
    sgd = zero.parse_program(SGD, cfg)
    key = jax.random.key(FLAGS.seed)
    tasks = zero.linear_regression_tasks(jax.random.fold_in(key, 0), FLAGS.num_tasks, 4, 100, 100)
    evaluator = zero.ProgramEvaluator(cfg, tasks)
    sample = jax.jit(jax.vmap(space.sample))
    B = FLAGS.batch
    fits = []
    t0 = time.perf_counter()
    for i in range(-(-FLAGS.num_programs // B)):
        programs = jax.tree_util.tree_map(np.asarray, sample(jax.random.split(jax.random.fold_in(key, 1 + i), B)))
        if FLAGS.setting == "learn_only":
            programs = programs.replace(
                setup=jax.tree_util.tree_map(lambda a: np.broadcast_to(a, (B,) + a.shape), sgd.setup),
                predict=jax.tree_util.tree_map(lambda a: np.broadcast_to(a, (B,) + a.shape), sgd.predict))
        fits.append(np.asarray(evaluator(jax.random.fold_in(key, 10**6 + i), programs)[0]))
    fits = np.concatenate(fits)[:FLAGS.num_programs]
    wall = time.perf_counter() - t0
    mean = lambda p: float(zero.combine_fitness(zero.evaluate(p, tasks, cfg, key=key)))  # noqa: E731
    zero_fit, sgd_fit = mean(zero.empty_program(cfg)), mean(sgd)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__}; setting "
          f"{FLAGS.setting}, {len(fits)} random programs, {FLAGS.num_tasks} tasks of 100/100, {wall:.0f} s")
    print(f"predict-0 program fitness {zero_fit:.4f}; hand-written SGD (lr 0.15) {sgd_fit:.6f}")
    print(f"{'threshold':>10s} {'programs':>9s} {'rate':>9s}")
    for name, thr in (("0 + 0.02", zero_fit + 0.02), ("0.5", 0.5), ("0.8", 0.8), ("0.99", 0.99),
                      ("SGD-1e-4", sgd_fit - 1e-4)):
        n = int(np.sum(fits > thr))
        print(f"{name:>10s} {n:9d} {n / len(fits):9.2e}")


if __name__ == "__main__":
    app.run(main)
