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


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A 1-D Auto mesh over the first `num_devices` local devices (default: all of them)."""
    devices = jax.local_devices()
    n = len(devices) if num_devices is None else num_devices
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(devices):
        raise ValueError(f"num_devices must be an integer in [1, {len(devices)}] (local devices), got "
                         f"{num_devices!r}")
    return Mesh(np.array(devices[:n]), (POP_AXIS,))


def round_up(n: int, mesh: Mesh) -> int:
    """The smallest multiple of the mesh size that is >= n (population padding)."""
    d = mesh.size
    return -(-n // d) * d


def shard_population_fn(fn: Callable, mesh: Mesh, sharded: Sequence[bool]) -> Callable:
    """jit(shard_map(fn)) with the arguments flagged in `sharded` split on their leading axis and the others
    replicated; outputs are population-sharded."""
    in_specs = tuple(PartitionSpec(POP_AXIS) if s else PartitionSpec() for s in sharded)
    # check_vma=False: loop carries created inside fn (memory, counters) are per-device values.
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(POP_AXIS),
                           check_vma=False)
    return jax.jit(mapped)


def population_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(POP_AXIS))
