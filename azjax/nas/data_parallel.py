"""Data parallelism for child training: a 1-D ``"data"`` mesh; the batch is split over it,
parameters, BN statistics and optimizer state are replicated (see
:func:`azjax.nas.train_steps.make_train_step` for why this is ``jit`` with shardings rather than
``shard_map``). The device count follows :func:`azjax.search.sharding.resolve_num_devices`.

The mesh holds the first ``num_devices`` local devices, or, with ``global_mesh``, those of every
process of a multi-process run (``jax.distributed``, docs/scaling.md), process 0's first. The
rows of a batch-sharded array held by one process's devices are then one contiguous block
(:func:`process_rows`), so each process feeds only its block of every global batch
(:func:`shard_local_batch`, ``jax.make_array_from_process_local_data``).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azjax.search.sharding import make_mesh, replicated, resolve_num_devices

__all__ = ["DATA_AXIS", "batch_sharding", "data_mesh", "process_rows", "replicated",
           "resolve_num_devices", "shard_batch", "shard_local_batch"]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None, batch_size: int | None = None,
              global_mesh: bool = False) -> Mesh | None:
    """A 1-D ``"data"`` mesh over the first ``num_devices`` local devices, or ``None`` for one.

    With ``global_mesh`` the mesh holds the first ``num_devices`` local devices of every process
    (``num_devices`` is then per process), process 0's first; in a single-process run that is
    the same mesh.

    Raises ``ValueError`` when there are not that many local devices or when ``batch_size``
    does not split evenly over the mesh.
    """
    n = resolve_num_devices(num_devices)  # validates n against the local devices
    processes = jax.process_count() if global_mesh else 1
    size = n * processes
    if size == 1:
        return None
    if batch_size is not None and batch_size % size:
        if processes == 1:
            raise ValueError(f"batch_size: {batch_size} must be divisible by num_devices ({n})")
        raise ValueError(f"batch_size: {batch_size} must be divisible by the global device count "
                         f"{size} (num_devices {n} per process x {processes} processes)")
    return Mesh(make_mesh(n, global_mesh=global_mesh).devices, (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def process_rows(mesh: Mesh, n: int) -> slice:
    """The rows of an ``n``-row batch-sharded array that this process's devices hold: one
    contiguous block, as the mesh lists each process's devices together.

    Raises:
        ValueError: naming ``n`` if the mesh does not split it evenly.
    """
    if n % mesh.size:
        raise ValueError(f"n: {n} rows do not split evenly over {mesh.size} devices")
    idx = batch_sharding(mesh).addressable_devices_indices_map((n,))
    rows = sorted(i for sl in idx.values() for i in range(n)[sl[0]])
    if rows != list(range(rows[0], rows[-1] + 1)):  # only a hand-built mesh can interleave
        raise ValueError("mesh: this process's devices are not contiguous on the data axis")
    return slice(rows[0], rows[-1] + 1)


def shard_local_batch(mesh: Mesh | None, n: int, *arrays: np.ndarray) -> tuple[Any, ...]:
    """Global ``n``-row batches on the mesh from this process's rows (:func:`process_rows`) of
    each: a process never needs the other processes' rows. Without a mesh the arrays (then the
    whole batch) are returned as they are."""
    if mesh is None:
        return arrays
    sharding = batch_sharding(mesh)
    return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a),
                                                        (n, *np.shape(a)[1:])) for a in arrays)


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
