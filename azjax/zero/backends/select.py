"""The `select` backend: programs and tasks are all vmapped lanes (the accelerator default).

Under vmap the batched op index turns the interpreter's `lax.switch` into "compute every branch, select
one", so the cost grows with the number of ops in the config; lanes cannot stop individually, so the step
loop is a scan. The population is cut into chunks of programs (vmapped) mapped one after another: a whole
population's lanes at once overflow the CPU caches.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from azjax.zero import interpreter
from azjax.zero.backends.xla import XlaBackend
from azjax.zero.program import ZeroConfig


def select_chunk(num_tasks: int) -> int:
    """Programs per vmapped chunk: work is done in whole chunks (batches are padded to a multiple of it),
    so the chunk trades per-lane efficiency against the padding of the few FEC misses of a search batch."""
    return max(8, min(32, 256 // num_tasks))


class SelectBackend(XlaBackend):
    name = "select"
    stops_early = False
    # Under vmap a chunk's loops run to its longest member, so chunks of similar live lengths do less work;
    # a program's result does not depend on its chunk partners.
    sorts_by_length = True

    def memory_model(self, cfg: ZeroConfig):
        return interpreter.SelectMemory(cfg)

    def map_population(self, fn: Callable, args, num_tasks: int):
        chunk = select_chunk(num_tasks)
        P = jax.tree_util.tree_leaves(args)[0].shape[0]
        # Always whole chunks (padding with copies of the first program): every chunk then runs the same
        # compiled code whatever the batch or device count, so results do not change in the last bit with
        # the layout (XLA vectorizes differently for different lane counts).
        num_chunks = -(-P // chunk)
        pad = num_chunks * chunk - P

        def split(x):
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]) if pad else x
            return x.reshape((num_chunks, chunk) + x.shape[1:])

        out = lax.map(lambda a: jax.vmap(fn)(*a), jax.tree_util.tree_map(split, args))
        return jax.tree_util.tree_map(lambda y: y.reshape((num_chunks * chunk,) + y.shape[2:])[:P], out)

    def padded_size(self, n: int, batch: int, num_tasks: int, num_devices: int = 1) -> int:
        """Whole chunks are computed anyway, so pad to a power-of-two number of chunks (times the device
        count): little padding, and only log2(batch / chunk) compilations."""
        step = select_chunk(num_tasks) * num_devices
        chunks = -(-max(n, 1) // step)
        return step << max(chunks - 1, 0).bit_length()
