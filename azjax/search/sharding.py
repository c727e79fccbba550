"""Population sharding over local devices (jax.sharding; no pmap).

A population-wise function `fn(population_args..., shared_args...)` is run with `jax.shard_map` over a 1-D
mesh axis "pop": every device gets an equal slice of the population and a replicated copy of the shared
arguments, and runs `fn` on its slice. Per-individual PRNG keys are split for the whole population before
sharding, so the results do not depend on the number of devices.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

POP_AXIS = "pop"


def resolve_num_devices(num_devices: Optional[int] = None) -> int:
    """The device count a ``num_devices`` setting stands for: ``None`` or 0 -> all local devices,
    ``k`` -> ``k``. The one rule of every ``num_devices`` in azjax and its launchers.

    Raises:
        ValueError: naming ``num_devices``, unless it is None or an int in [0, local devices].
    """
    local = jax.local_device_count()
    if num_devices is None or (not isinstance(num_devices, bool) and isinstance(
            num_devices, (int, np.integer)) and num_devices == 0):
        return local
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or not (
            1 <= num_devices <= local):
        raise ValueError(f"num_devices must be None, 0 (all local devices) or an integer in "
                         f"[1, {local}] (local devices), got {num_devices!r}")
    return int(num_devices)


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A 1-D Auto mesh over the first ``num_devices`` local devices (:func:`resolve_num_devices`:
    None or 0 -> all of them)."""
    n = resolve_num_devices(num_devices)
    return Mesh(np.array(jax.local_devices()[:n]), (POP_AXIS,))


def round_up(n: int, mesh: Mesh) -> int:
    """The smallest multiple of the mesh size that is >= n (population padding)."""
    d = mesh.size
    return -(-n // d) * d


def shard_population_fn(fn: Callable, mesh: Mesh, sharded: Sequence[bool],
                        replicate_outputs: bool = False) -> Callable:
    """jit(shard_map(fn)) with the arguments flagged in ``sharded`` split on their leading axis
    and the others replicated. The outputs are population-sharded, or, with
    ``replicate_outputs``, gathered onto every device (so every process of a multi-process run
    can read them all)."""
    in_specs = tuple(PartitionSpec(POP_AXIS) if s else PartitionSpec() for s in sharded)
    # check_vma=False: loop carries created inside fn (memory, counters) are per-device values.
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(POP_AXIS),
                           check_vma=False)
    if replicate_outputs:
        return jax.jit(mapped, out_shardings=replicated(mesh))
    return jax.jit(mapped)


def population_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (population) axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(POP_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device of the mesh holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())
