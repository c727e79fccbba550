"""Interpreter backends: one interface (`base.Backend`), several ways to run programs.

* `native` - a C++ XLA FFI custom call, threaded over (program, task) pairs: the CPU default;
* `select` - every program and task a vmapped lane under XLA: the GPU/TPU default;
* `cond`   - `lax.map` over programs with a real conditional per instruction (XLA);
* `pallas` - one Pallas kernel per batch, a program's tasks as lanes (GPU; interpret mode on CPU).

`get_backend(name)` returns the backend object; `default_backend(cfg, num_tasks)` picks one for the current
JAX platform. See docs/backends.md.
"""
from __future__ import annotations

import warnings
from typing import Optional, Union

import jax

from azjax.zero.backends.base import Backend, KeyRule
from azjax.zero.backends.cond import CondBackend
from azjax.zero.backends.native import NativeBackend
from azjax.zero.backends.pallas import PallasBackend
from azjax.zero.backends.select import SelectBackend, select_chunk

_BACKENDS = {"native": NativeBackend(), "select": SelectBackend(), "cond": CondBackend(),
             "pallas": PallasBackend()}
BACKENDS = tuple(_BACKENDS)
_warned = set()


def get_backend(backend: Union[str, Backend]) -> Backend:
    """The backend named `backend` (one of `BACKENDS`); a Backend object is returned as is.

    Raises ValueError for an unknown name and RuntimeError (with the reason) for one that cannot run here.
    """
    if isinstance(backend, Backend):
        return backend
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    b = _BACKENDS[backend]
    why = b.unavailable_reason()
    if why is not None:
        raise RuntimeError(f"backend {backend!r} is unavailable: {why}")
    return b


def default_backend(cfg=None, num_tasks: int = 10, platform: Optional[str] = None) -> Backend:
    """`native` on CPU (falling back to `select`, with a one-time warning naming the reason, where the kernel
    is not built); `select` on accelerators."""
    platform = platform or jax.default_backend()
    if platform != "cpu":
        return _BACKENDS["select"]
    native = _BACKENDS["native"]
    why = native.unavailable_reason()
    if why is None:
        return native
    if why not in _warned:
        _warned.add(why)
        warnings.warn(f"azjax: native backend unavailable, using 'select': {why}", RuntimeWarning, stacklevel=2)
    return _BACKENDS["select"]


def resolve(backend: Union[None, str, Backend], cfg=None, num_tasks: int = 10,
            strategy: Optional[str] = None, eval_type: Optional[str] = None) -> Backend:
    """The backend for a `backend=` argument (None: the default), accepting the deprecated `strategy=`.

    With `eval_type` given, the default is one that supports it (`select` for multi-class tasks where the
    platform default does not), and an explicitly named backend that does not raises ValueError."""
    if strategy is not None:
        warnings.warn("`strategy=` is deprecated (it means the search strategy elsewhere); pass `backend=`",
                      DeprecationWarning, stacklevel=3)
        if backend is not None and backend != strategy:
            raise ValueError(f"backend={backend!r} and the deprecated strategy={strategy!r} disagree")
        backend = strategy
    if backend is None:
        chosen = default_backend(cfg, num_tasks)
        if eval_type == "multiclass" and not chosen.supports_multiclass:
            chosen = _BACKENDS["select"]
        return chosen
    chosen = get_backend(backend)
    if eval_type is not None:
        chosen.check_eval_type(eval_type)
    return chosen


__all__ = ["Backend", "KeyRule", "BACKENDS", "get_backend", "default_backend", "resolve", "select_chunk",
           "NativeBackend", "SelectBackend", "CondBackend", "PallasBackend"]
