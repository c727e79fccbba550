"""Train a NASNet genotype.

    python -m experiments.nasnet.main --config=experiments/nasnet/configs/digits_tiny.py \
        --workdir=/tmp/nasnet_digits [--genotype_json=cell.json] [--config.num_devices=1]

(or `python experiments/nasnet/main.py ...`: it runs as a plain script too, from any directory)

Re-running with the same --workdir resumes from its checkpoint. ``--config.num_devices``
(default 0: all local devices) trains data-parallel, the batch split over the devices.
``--multihost`` calls jax.distributed.initialize() first; every host runs the same program, the
data-parallel mesh spans ``num_devices`` devices of every host (each host feeds its share of every
batch; ``batch_size`` must be divisible by the global device count), and process 0 alone logs and
writes (the workdir must be visible to all hosts).
"""
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments import common
from experiments.nasnet import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, genotype.json and metrics.json go here.")
flags.DEFINE_string("genotype_json", None, "Genotype JSON (default: NASNet-A).")
common.define_multihost_flags()
flags.mark_flags_as_required(["config", "workdir"])


def _log(metrics: dict) -> None:
    logging.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.items()))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.initialize_from_flags()
    main_process = common.is_main_process()
    try:
        metrics = train.run(FLAGS.config, FLAGS.workdir, FLAGS.genotype_json,
                            log_fn=_log if main_process else None)
    except KeyboardInterrupt:
        # Checkpoints are written every config.checkpoint_every steps (default: once per epoch).
        logging.warning("interrupted; rerun with the same --workdir=%s to resume from its last "
                        "checkpoint", FLAGS.workdir)
        sys.exit(130)
    if main_process:
        logging.info("done: valid_accuracy=%.4f test_accuracy=%.4f",
                     metrics.get("valid_accuracy", float("nan")),
                     metrics.get("test_accuracy", float("nan")))


if __name__ == "__main__":
    app.run(main)
