"""Search NASNet cells with an RNN controller (PPO/REINFORCE), regularized evolution or random
search, NASNet-style (children trained from scratch) or ENAS-style (shared weights).

    python -m experiments.nas_search.main \
        --config=experiments/nas_search/configs/digits_smoke.py --workdir=/tmp/nas_smoke \
        [--config.strategy=evolution] [--config.mode=enas] [--config.seed=1]

(or `python experiments/nas_search/main.py ...`: it runs as a plain script too, from any directory)

Re-running with the same --workdir resumes the search. ``--config.num_devices`` (default 0: all
local devices) trains several children at once, one share per device. ``--multihost`` calls
jax.distributed.initialize() first; every host runs the same search, the children of each batch
are split over all hosts (NASNet mode; each host trains its share, every host sees all rewards),
and process 0 alone logs, prints and writes (the workdir must be visible to all hosts).

Outputs: best_genotype.json (retrain it
with experiments/nasnet/main.py --genotype_json=WORKDIR/best_genotype.json), leaderboard.json,
best_normal.png / best_reduce.png (matplotlib, optional), metrics.jsonl, summary.json.
Search rewards are proxy accuracies, not final accuracies: retrain the best cell.
"""
import logging as pylogging
import pathlib
import sys
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments import common
from experiments.nas_search import search

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output and checkpoint directory (default: a new temp one).")
common.define_multihost_flags()
flags.mark_flags_as_required(["config"])


def _log(m: dict) -> None:
    logging.info("iter %d | children %d | best %.4f | batch mean %.4f | %.1f s",
                 m["iteration"], m["evaluations"], m["best_fitness"], m["batch_mean_fitness"],
                 m["elapsed_seconds"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.initialize_from_flags()
    main_process = common.is_main_process()
    if main_process:
        pylogging.getLogger("azjax.search").setLevel(pylogging.INFO)
    if FLAGS.multihost and not FLAGS.workdir:
        raise app.UsageError("--multihost needs --workdir on storage that every host can see")
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="azjax_nas_")
    logging.info("workdir: %s", workdir)
    summary = search.run(FLAGS.config, workdir, log_fn=_log if main_process else None)
    if not main_process:
        return
    print(f"\nbest search reward {summary['best_reward']:.4f} after {summary['evaluations']} "
          f"children ({summary['strategy']}, {summary['mode']}, "
          f"{summary['search_seconds']:.0f} s); outputs in {workdir}")
    print(summary["best_genotype"])


if __name__ == "__main__":
    app.run(main)
