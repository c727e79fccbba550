"""Time to solution of the AutoML-Zero demo: per seed, experiments, programs evaluated, CPU and wall seconds
until the select fitness passes the config's sufficient_fitness (0.9999).

    python benchmarks/time_to_solution.py [--config=linear_demo] [--seeds=5] [--max_seconds=1800]

The C++ reference (docs/backends.md): a median of 57 CPU-seconds over seeds 0-4 on the project's 2-core machine.
"""
import importlib
import json
import os
import platform
import sys
import tempfile
import time

from absl import app, flags, logging

import jax
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `experiments` lives at the repository root, it is not an installed package
    sys.path.insert(0, _ROOT)
from experiments.automl_zero import search  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "linear_demo", "Config module under experiments/automl_zero/configs.")
flags.DEFINE_integer("seeds", 5, "Number of seeds (0..seeds-1).")
flags.DEFINE_integer("first_seed", 0, "First seed.")
flags.DEFINE_float("max_seconds", 1800.0, "Wall-time cap per seed (a seed that hits it counts as failed).")
flags.DEFINE_multi_string("override", [], "Config overrides as field=value (e.g. search_tasks.num_tasks=3).")
flags.DEFINE_bool("print_programs", True, "Print each successful seed's program.")


def _apply(config, override):
    field, value = override.split("=", 1)
    node = config
    *path, last = field.split(".")
    for p in path:
        node = node[p]
    node[last] = type(node[last])(json.loads(value)) if not isinstance(node[last], str) else value


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__} "
          f"({jax.default_backend()}); config {FLAGS.config} {FLAGS.override}")
    print(f"{'seed':>4s} {'success':>7s} {'experiments':>11s} {'programs':>10s} {'cpu_s':>8s} {'wall_s':>8s} "
          f"{'select_fitness':>14s}")
    rows = []
    for seed in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds):
        config = importlib.import_module(f"experiments.automl_zero.configs.{FLAGS.config}").get_config()
        for o in FLAGS.override:
            _apply(config, o)
        config.seed = seed
        config.max_seconds = FLAGS.max_seconds
        with tempfile.TemporaryDirectory() as workdir:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            summary = search.run_experiments(config, workdir, log_fn=lambda s: None)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            programs = sum(json.loads(line)["evaluations"]
                           for line in open(os.path.join(workdir, "experiments.jsonl")))
        success = summary["select_fitness"] > config.sufficient_fitness
        rows.append((success, cpu, wall, programs))
        print(f"{seed:4d} {str(success):>7s} {summary['experiments']:11d} {programs:10d} {cpu:8.1f} {wall:8.1f} "
              f"{summary['select_fitness']:14.6f}", flush=True)
        if success and FLAGS.print_programs:
            print("     " + summary["program"].replace("\n", "\n     "), flush=True)
    ok = [r for r in rows if r[0]]
    if ok:
        print(f"successes {len(ok)}/{len(rows)}; median over successes: cpu_s "
              f"{np.median([r[1] for r in ok]):.1f}, wall_s {np.median([r[2] for r in ok]):.1f}, "
              f"programs {np.median([r[3] for r in ok]):.0f}")
    else:
        print(f"successes 0/{len(rows)}")
    print(f"median over all seeds (a failure counts as its cap): wall_s {np.median([r[2] for r in rows]):.1f}, "
          f"max wall_s {max(r[2] for r in rows):.1f}")


if __name__ == "__main__":
    app.run(main)
