"""Small helpers shared by the launchers: multi-host start-up and the one-writer rule.

With ``--multihost`` every host runs the same program: :func:`initialize` calls
``jax.distributed.initialize()`` (coordinator, process count and id are auto-detected on TPU VMs,
Slurm and Open MPI) before any other JAX call, and only process 0 logs, prints and writes files
(:func:`is_main_process`); every process reads checkpoints from storage all hosts can see.
"""
from __future__ import annotations

import logging as pylogging

import jax
from absl import logging


def initialize(multihost: bool) -> None:
    """Start the multi-host runtime when ``multihost``; silence INFO logs off process 0."""
    if multihost:
        jax.distributed.initialize()
    if not is_main_process():
        logging.set_verbosity(logging.WARNING)
        pylogging.getLogger("azjax").setLevel(pylogging.WARNING)


def is_main_process() -> bool:
    """True on process 0 (and in every single-process run)."""
    return jax.process_index() == 0


def num_devices(value: int | None) -> int:
    """The device count a config's ``num_devices`` stands for: 0 or None -> all local devices."""
    if value is None or value == 0:
        return jax.local_device_count()
    if value < 0:
        raise ValueError(f"num_devices: must be >= 0, got {value}")
    return int(value)
