"""Data loading and one training run for the NASNet launcher (the library stays flag-free)."""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
from absl import logging

from azjax import data as azdata
from azjax import nas
from azjax.nas.train import CHECKPOINT_NAME
from azjax.search import sharding
from experiments import common


def load_data(config: Any) -> dict:
    """Train/valid(/test) arrays for ``config.dataset`` ("digits" or "cifar10")."""
    key = jax.random.key(config.seed)
    k_test, k_valid = jax.random.split(key)
    if config.dataset == "digits":
        d = azdata.load_digits_split(k_test, num_test=config.num_test)
    elif config.dataset == "cifar10":
        if not config.data_dir:
            raise ValueError("data_dir: set --config.data_dir to the cifar-10-batches-py folder")
        d = azdata.load_cifar10(config.data_dir)
    else:
        raise ValueError(f"dataset: expected 'digits' or 'cifar10', got {config.dataset!r}")
    split = azdata.split_train_valid(
        d["train_images"], d["train_labels"], num_valid=config.num_valid,
        key=k_valid if config.get("random_split", True) else None)
    split["test_images"], split["test_labels"] = d["test_images"], d["test_labels"]
    return split


def check_genotype(workdir: str, genotype: nas.Genotype) -> None:
    """A workdir holding a checkpoint trains the genotype of its ``genotype.json`` only: another
    one is a ``ValueError`` (raised before anything in the workdir is written)."""
    saved = os.path.join(workdir, "genotype.json")
    checkpoint = os.path.join(workdir, CHECKPOINT_NAME)
    if not (os.path.exists(saved) and os.path.exists(checkpoint)):
        return
    if nas.load_genotype(saved) != genotype:
        raise ValueError(f"--genotype_json: the genotype differs from the genotype {saved} of the "
                         f"run whose checkpoint is in {workdir}; rerun without --genotype_json (or "
                         "with that file) to resume it, or use another --workdir")


def run(config: Any, workdir: str, genotype_json: str | None = None,
        log_fn: Callable[[dict], None] | None = None) -> dict:
    """Train ``genotype_json`` (default NASNet-A) under ``config``; resume from ``workdir``.

    Writes ``genotype.json`` and ``metrics.json`` to ``workdir`` (process 0 only); returns the
    metrics. ``config.num_devices`` (0: all local devices) > 1 trains data-parallel. With several
    processes (``--multihost``) the data mesh spans ``num_devices`` devices of every process and
    each process feeds its share of every batch (docs/scaling.md, section 4); the metrics are
    the same on every process.
    """
    writer = common.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    saved = os.path.join(workdir, "genotype.json")
    if genotype_json:
        genotype = nas.load_genotype(genotype_json)
        check_genotype(workdir, genotype)  # before genotype.json is written
    elif os.path.exists(saved):
        genotype = nas.load_genotype(saved)  # a resumed run keeps its genotype
    else:
        genotype = nas.NASNET_A
    if writer:
        nas.save_genotype(genotype, saved)
    datasets = load_data(config)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    config_dict["num_classes"] = config.num_classes
    config_dict["num_devices"] = sharding.resolve_num_devices(config_dict.get("num_devices", 0))
    logging.info("data-parallel over %d device(s): %d per process x %d process(es)",
                 config_dict["num_devices"] * jax.process_count(), config_dict["num_devices"],
                 jax.process_count())
    metrics = nas.train_and_evaluate(genotype, config_dict, datasets,
                                     jax.random.fold_in(jax.random.key(config.seed), 1),
                                     workdir=workdir, log_fn=log_fn, global_mesh=True)
    if writer:
        common.write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics
