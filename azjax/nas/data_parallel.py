"""Data parallelism for child training: a 1-D ``"data"`` mesh of local devices; the batch is split
over it, parameters, BN statistics and optimizer state are replicated (see
:func:`azjax.nas.train_steps.make_train_step` for why this is ``jit`` with shardings rather than
``shard_map``). The device count follows :func:`azjax.search.sharding.resolve_num_devices`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azjax.search.sharding import make_mesh, replicated, resolve_num_devices

__all__ = ["DATA_AXIS", "batch_sharding", "data_mesh", "replicated", "resolve_num_devices",
           "shard_batch"]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None, batch_size: int | None = None) -> Mesh | None:
    """A 1-D ``"data"`` mesh over the first ``num_devices`` local devices, or ``None`` for one.

    Raises ``ValueError`` when there are not that many local devices or when ``batch_size``
    does not split evenly over them.
    """
    n = resolve_num_devices(num_devices)  # validates n against the local devices
    if n == 1:
        return None
    devices = make_mesh(n).devices
    if batch_size is not None and batch_size % n:
        raise ValueError(f"batch_size: {batch_size} must be divisible by num_devices ({n})")
    return Mesh(devices, (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(mesh: Mesh | None, *arrays: np.ndarray) -> tuple[Any, ...]:
    """Put host batches on the mesh, split on the batch axis; each process supplies only the
    shards of its own devices (every process holds the same global batch)."""
    if mesh is None:
        return arrays  # the one-device path passes host arrays to jit, as before
    sharding = batch_sharding(mesh)
    out = []
    for a in arrays:
        a = np.asarray(a)
        out.append(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]))
    return tuple(out)
