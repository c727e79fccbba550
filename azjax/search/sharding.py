"""Population sharding over devices (jax.sharding; no pmap).

A population-wise function `fn(population_args..., shared_args...)` is run with `jax.shard_map` over a 1-D
mesh axis "pop": every device gets an equal slice of the population and a replicated copy of the shared
arguments, and runs `fn` on its slice. Per-individual PRNG keys are split for the whole population before
sharding, so the results do not depend on the number of devices.

In a multi-process run (`jax.distributed`, docs/scaling.md) the mesh is global: the first `num_devices`
local devices of every process, in process order. Every process holds the whole batch on the host (the
strategy state is replicated); :func:`global_array` places on this process's devices only the slices they
own, so each process computes its share, and the outputs are gathered onto every device
(`replicate_outputs`) so that every process reads the whole result.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
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


def make_mesh(num_devices: Optional[int] = None, global_mesh: bool = False) -> Mesh:
    """A 1-D Auto mesh over the first ``num_devices`` local devices (:func:`resolve_num_devices`:
    None or 0 -> all of them). With ``global_mesh`` the mesh holds those devices of every process,
    process 0's first: ``num_devices`` is then per process, and the mesh size
    ``num_devices * jax.process_count()``."""
    n = resolve_num_devices(num_devices)
    if not global_mesh:
        return Mesh(np.array(jax.local_devices()[:n]), (POP_AXIS,))
    devices = []
    for p in range(jax.process_count()):
        mine = sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
        if len(mine) < n:
            raise ValueError(f"num_devices={n} per process, but process {p} has {len(mine)} devices")
        devices += mine[:n]
    return Mesh(np.array(devices), (POP_AXIS,))


def spans_processes(mesh: Mesh) -> bool:
    """Whether the mesh holds devices of other processes (arrays on it must be global arrays)."""
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def global_array(mesh: Mesh, host: np.ndarray, sharded: bool) -> jax.Array:
    """A global array on ``mesh`` from the whole array ``host``, which every process holds: split
    on its leading axis (``sharded``) or replicated. Only the slices of this process's devices are
    transferred."""
    host = np.asarray(host)
    sh = population_sharding(mesh) if sharded else replicated(mesh)
    return jax.make_array_from_callback(host.shape, sh, lambda index: host[index])


def interleave(n: int, num_devices: int) -> np.ndarray:
    """Where row ``i`` of an ``n``-row batch goes when its rows are dealt round-robin over
    ``num_devices`` equal contiguous slices (``n`` a multiple of ``num_devices``): row ``i`` lands on
    device ``i % num_devices``. A batch whose active rows come first is then split evenly."""
    if n % num_devices:
        raise ValueError(f"n={n} is not a multiple of num_devices={num_devices}")
    i = np.arange(n)
    return (i % num_devices) * (n // num_devices) + i // num_devices


def local_rows(mesh: Mesh, n: int) -> np.ndarray:
    """The row indices of an ``n``-row population-sharded array held by this process's devices."""
    idx = population_sharding(mesh).addressable_devices_indices_map((n,))
    rows = sorted({i for sl in idx.values() for i in range(n)[sl[0]]})
    return np.asarray(rows, np.int64)


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


def allgather(tree: Any) -> list[Any]:
    """Every process's ``tree`` (same structure, shapes and dtypes everywhere), in process order:
    one all-gather of the leaves' bytes (:func:`_gather_bytes`), so 64-bit values
    travel exactly without ``jax_enable_x64``. A collective: every process must call it."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [np.asarray(jax.random.key_data(x)) if _is_key(x) else np.asarray(x)
              for x in leaves]
    if jax.process_count() == 1:
        return [jax.tree_util.tree_unflatten(treedef, leaves)]
    buf = np.concatenate([np.ascontiguousarray(x).reshape(-1).view(np.uint8) for x in leaves]
                         + [np.zeros(0, np.uint8)])
    rows = _gather_bytes(buf)
    out = []
    for row in rows:
        offset, got = 0, []
        for x in leaves:
            got.append(row[offset:offset + x.nbytes].view(x.dtype).reshape(x.shape))
            offset += x.nbytes
        out.append(jax.tree_util.tree_unflatten(treedef, got))
    return out


# Compiled all-gathers by message size: (executable, input sharding, global shape).
_GATHERS: dict[int, tuple[Any, NamedSharding, tuple[int, int]]] = {}


def _gather_bytes(buf: np.ndarray) -> np.ndarray:
    """[N, n] uint8: every process's ``buf`` ([n] uint8). What
    ``multihost_utils.process_allgather`` does (an identity with a replicated output over a
    (processes, local devices) mesh), compiled once per size: one call costs a transfer and the
    collective, not a trace, a mesh and a dispatch."""
    n = buf.size
    if n not in _GATHERS:
        devices = np.array(jax.devices()).reshape(jax.process_count(), jax.local_device_count())
        mesh = Mesh(devices, ("processes", "local"))
        sharding = NamedSharding(mesh, PartitionSpec("processes"))
        shape = (jax.process_count(), n)
        compiled = jax.jit(lambda x: x, out_shardings=NamedSharding(mesh, PartitionSpec())).lower(
            jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=sharding)).compile()
        _GATHERS[n] = (compiled, sharding, shape)
    compiled, sharding, shape = _GATHERS[n]
    row = buf.reshape(1, n)
    local = jax.make_array_from_single_device_arrays(
        shape, sharding, [jax.device_put(row, d) for d in jax.local_devices()])
    return np.asarray(compiled(local).addressable_data(0))


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
