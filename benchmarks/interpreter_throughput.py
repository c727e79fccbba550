"""Interpreter throughput: compile seconds and programs/instructions evaluated per second.

Configs (random programs, --num_tasks tasks (default 10) x 100 train / 100 valid examples, 1 epoch):
  demo      the reference demo: banks 4/3/1, F=4, its 6 ops, sizes 10/2/8, 1000 programs
  baseline  the reference baseline space: banks 5/9/2, F=16, its 21 ops, sizes 7/11/23
  all_ops   all 65 ops, banks 8/14/3, F=8, sizes 10/10/10
  quick     the linear-regressor space: banks 4/3/1, F=4, 5 ops, sizes 5/1/4, 1000 programs

Run:  python benchmarks/interpreter_throughput.py [--configs=demo,baseline,all_ops] [--repeats=3]
      python benchmarks/interpreter_throughput.py --configs=demo,quick --backends=pallas,select   # GPU
"""
import os
import platform
import time

from absl import app, flags

import jax
import jax.numpy as jnp
import numpy as np

from azjax import zero
from azjax.zero import ops as ops_lib
from azjax.zero import random_programs

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["demo", "quick", "baseline", "all_ops"], "Configs to run.")
flags.DEFINE_list("backends", ["native", "select", "cond"],
                  "Interpreter backends (native, select, cond, pallas; pallas runs in interpret mode on CPU).")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer("num_programs", 0, "Override the population size (0: per-config default).")
flags.DEFINE_bool("prune", True, "Prune dead instructions before evaluation.")
flags.DEFINE_integer("num_tasks", 10, "Tasks per program (100 train / 100 valid examples each).")

DEMO_OPS = ("SCALAR_CONST_SET", "VECTOR_INNER_PRODUCT", "SCALAR_DIFF", "SCALAR_PRODUCT",
            "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")
CONFIGS = {
    "demo": (dict(num_scalars=4, num_vectors=3, num_matrices=1, features=4, setup_ops=DEMO_OPS,
                  predict_ops=DEMO_OPS, learn_ops=DEMO_OPS, setup_size=10, predict_size=2, learn_size=8),
             1000),
    "quick": (dict(num_scalars=4, num_vectors=3, num_matrices=1, features=4, setup_ops=("SCALAR_CONST_SET",),
                   predict_ops=("VECTOR_INNER_PRODUCT",),
                   learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                   setup_size=5, predict_size=1, learn_size=4), 1000),
    "baseline": (dict(num_scalars=5, num_vectors=9, num_matrices=2, features=16,
                      setup_ops=("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET", "SCALAR_UNIFORM_SET",
                                 "VECTOR_GAUSSIAN_SET", "VECTOR_UNIFORM_SET", "MATRIX_GAUSSIAN_SET",
                                 "MATRIX_UNIFORM_SET"),
                      predict_ops=("SCALAR_SUM", "MATRIX_VECTOR_PRODUCT", "VECTOR_MAX",
                                   "VECTOR_INNER_PRODUCT", "VECTOR_SUM"),
                      learn_ops=("SCALAR_SUM", "SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT",
                                 "VECTOR_SUM", "VECTOR_HEAVYSIDE", "VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT",
                                 "MATRIX_SUM"),
                      setup_size=7, predict_size=11, learn_size=23), 200),
    "all_ops": (dict(num_scalars=8, num_vectors=14, num_matrices=3, features=8,
                     setup_ops=tuple(op.name for op in ops_lib.OPS[1:]),
                     predict_ops=tuple(op.name for op in ops_lib.OPS[1:]),
                     learn_ops=tuple(op.name for op in ops_lib.OPS[1:]),
                     setup_size=10, predict_size=10, learn_size=10), 200),
}


def main(argv):
    del argv
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus, "
          f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    print(f"{'config':9s} {'backend':8s} {'P':>5s} {'compile_s':>9s} {'run_s':>7s} {'programs/s':>11s} "
          f"{'instr/s':>10s} {'live_instr/s':>12s}")
    for name in FLAGS.configs:
        kw, P = CONFIGS[name]
        P = FLAGS.num_programs or P
        cfg = zero.ZeroConfig(**kw)
        tasks = zero.linear_regression_tasks(jax.random.key(0), FLAGS.num_tasks, cfg.features, 100, 100)
        progs = random_programs.random_programs(jax.random.key(1), cfg, P)
        T, N, M = FLAGS.num_tasks, 100, 100
        # Instructions the reference would execute: setup once, predict per train+valid example, learn per
        # train example (stopping early is not credited).
        sizes = {c: np.asarray(progs.component(c).size) for c in ("setup", "predict", "learn")}
        nominal = float(np.sum(sizes["setup"] + (N + M) * sizes["predict"] + N * sizes["learn"]) * T)
        for backend in FLAGS.backends:
            fn = lambda: zero.evaluate(progs, tasks, cfg, key=jax.random.key(2),  # noqa: E731
                                               backend=backend, validate=False, prune=FLAGS.prune)
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            first = time.perf_counter() - t0
            times = []
            for _ in range(FLAGS.repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times.append(time.perf_counter() - t0)
            run = float(np.median(times))
            live = zero.live_instruction_count(progs, cfg, N, M) * T if FLAGS.prune else nominal
            print(f"{name:9s} {backend:8s} {P:5d} {first - run:9.2f} {run:7.3f} {P / run:11.0f} "
                  f"{nominal / run:10.3g} {live / run:12.3g}", flush=True)


if __name__ == "__main__":
    app.run(main)
