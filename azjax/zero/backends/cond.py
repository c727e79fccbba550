"""The `cond` backend: `lax.map` over programs, tasks vmapped inside, one flat memory buffer per lane.

The op index is not batched, so the interpreter's switch stays a real conditional: only the chosen op runs.
The step loop is a `while_loop` that ends when every task of a program has failed.
"""
from __future__ import annotations

from typing import Callable

from jax import lax

from azjax.zero import interpreter
from azjax.zero.backends.xla import XlaBackend
from azjax.zero.program import ZeroConfig


class CondBackend(XlaBackend):
    name = "cond"
    stops_early = True
    sorts_by_length = False

    def memory_model(self, cfg: ZeroConfig):
        return interpreter.FlatMemory(cfg)

    def map_population(self, fn: Callable, args, num_tasks: int):
        return lax.map(lambda a: fn(*a), args)
