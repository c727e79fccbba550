"""Evolve learning algorithms from scratch with AutoML-Zero.

    python -m experiments.automl_zero.main --config=experiments/automl_zero/configs/linear_demo.py \
        [--workdir=/tmp/azjax_linear] [--config.seed=1] [--config.population_size=100]

(or `python experiments/automl_zero/main.py ...`: it runs as a plain script too, from any directory)

Re-running with the same --workdir resumes the search where it stopped (checkpoints every
--config.checkpoint_every_seconds and on Ctrl-C). Outputs in the workdir: metrics.jsonl,
experiments.jsonl, best_program.txt, summary.json, config.json (the config it was started with).
Optional fields take `None` from the command line, e.g. `--config.max_seconds=None`.
"""
import os
import pathlib
import sys
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments import common
from experiments.automl_zero import search

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output and checkpoint directory (default: a new temporary one).")
common.define_multihost_flags()
flags.DEFINE_string("compilation_cache_dir", os.path.join("~", ".cache", "azjax", "jax"),
                    "JAX persistent compilation cache ('' to disable): later runs of a config skip most of "
                    "the compilation.")
flags.mark_flags_as_required(["config"])
_NONE_FIELDS = []  # --config.FIELD=None flags, taken off argv before absl parses it


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.initialize_from_flags()
    if FLAGS.compilation_cache_dir:
        import jax
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    config = FLAGS.config
    try:
        common.apply_none_overrides(config, _NONE_FIELDS)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if "data_dir" in config and config.data_dir:
        for t in (config.search_tasks, config.select_tasks, config.final_tasks):
            t.data_dir = config.data_dir
            if t.kind.startswith("projected_"):
                t.source = "cifar10"  # the one source read from a directory
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="azjax_zero_")
    logging.info("workdir: %s", workdir)
    try:
        summary = search.run_experiments(config, workdir)
    except KeyboardInterrupt:
        # The search saved a checkpoint and said which; no traceback for a Ctrl-C.
        logging.warning("interrupted; rerun with --workdir=%s to resume", workdir)
        sys.exit(130)
    if not common.is_main_process():
        return
    print("\nBest program (search fitness {search_fitness:.6f}, select fitness {select_fitness:.6f}, "
          "final fitness {final_fitness:.6f}; {experiments} experiment(s), {evaluations} evaluations in the "
          "last, {seconds:.1f} s):\n".format(**summary))
    print(summary["program"])
    tuning = summary.get("tuning")
    if tuning:
        print("Constants tuned ({num_constants} constant(s), {num_trials} trials): final fitness "
              "{final_fitness_tuned:.6f} tuned vs {untuned:.6f} untuned (tuning tasks: {tuning_fitness_tuned:.6f} vs "
              "{tuning_fitness_untuned:.6f}):\n".format(untuned=summary["final_fitness"], **tuning))
        print(tuning["program"])


if __name__ == "__main__":
    _argv, _NONE_FIELDS[:] = common.pop_none_overrides(sys.argv)
    app.run(main, argv=_argv)
