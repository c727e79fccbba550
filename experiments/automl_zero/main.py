"""Evolve learning algorithms from scratch with AutoML-Zero.

    python -m experiments.automl_zero.main --config=experiments/automl_zero/configs/linear_demo.py \
        [--workdir=/tmp/azjax_linear] [--config.seed=1] [--config.population_size=100]

Re-running with the same --workdir resumes the search where it stopped (checkpoints every
--config.checkpoint_every_seconds and on Ctrl-C). Outputs in the workdir: metrics.jsonl,
experiments.jsonl, best_program.txt, summary.json.
"""
import os
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import common
from experiments.automl_zero import search

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output and checkpoint directory (default: a new temporary one).")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU VM pods).")
flags.DEFINE_string("compilation_cache_dir", os.path.join("~", ".cache", "azjax", "jax"),
                    "JAX persistent compilation cache ('' to disable): later runs of a config skip most of "
                    "the compilation.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.initialize(FLAGS.multihost)
    if FLAGS.compilation_cache_dir:
        import jax
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    config = FLAGS.config
    if "data_dir" in config and config.data_dir:
        for t in (config.search_tasks, config.select_tasks, config.final_tasks):
            t.data_dir = config.data_dir
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="azjax_zero_")
    logging.info("workdir: %s", workdir)
    summary = search.run_experiments(config, workdir)
    if not common.is_main_process():
        return
    print("\nBest program (search fitness {search_fitness:.6f}, select fitness {select_fitness:.6f}, "
          "final fitness {final_fitness:.6f}; {experiments} experiment(s), {evaluations} evaluations in the "
          "last, {seconds:.1f} s):\n".format(**summary))
    print(summary["program"])


if __name__ == "__main__":
    app.run(main)
