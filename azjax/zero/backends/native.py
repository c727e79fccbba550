"""The `native` backend: a C++ XLA FFI custom call that evaluates a whole batch on the CPU.

One custom call per batch runs every (program, task) pair with one indirect dispatch per live instruction,
memory on the stack of a worker thread, liveness pruning and the early stop of the other backends, threaded
over pairs (`AZJAX_NATIVE_THREADS` caps the threads; default all). The kernel lives in
`native_kernel.cc` beside this file and is compiled by the package's install (`setup.py`). Where it could
not be built or loaded, `available()` is False, `reason()` says why and `default_backend` picks `select`.
See docs/backends.md for the exactness guarantee against the JAX backends.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero.backends.base import Backend, check_layout
from azjax.zero.program import ZeroConfig

_TARGET = "azjax_zero_evaluate"
MUTATE_TARGET = "azjax_zero_mutate"  # mutation_kernel.cc, called by azjax/zero/mutations.py
_lock = threading.Lock()
_state = {"lib": None, "reason": None, "loaded": False}


def library_path() -> Optional[str]:
    """The compiled kernel next to this file (the install builds it), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get("AZJAX_NATIVE_LIBRARY")
    if env:
        return env
    found = sorted(glob.glob(os.path.join(here, "_native_kernel*.so")))
    return found[0] if found else None


def _load():
    with _lock:
        if _state["loaded"]:
            return _state["lib"]
        _state["loaded"] = True
        path = library_path()
        if path is None:
            _state["reason"] = ("the native kernel was not built (no _native_kernel*.so in "
                                f"{os.path.dirname(os.path.abspath(__file__))}; reinstall with a C++17 compiler: "
                                "pip install -e .)")
            return None
        try:
            if not os.path.exists(path):
                raise OSError(f"no such file: {path}")
            lib = ctypes.CDLL(path)
            jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(lib.AzjaxZeroEvaluate), platform="cpu")
        except Exception as e:  # noqa: BLE001 - any load failure means "not available", with its reason
            _state["reason"] = f"loading {path} failed: {e}"
            return None
        _state["lib"] = lib
        try:  # a library built before the mutation kernel existed still evaluates
            jax.ffi.register_ffi_target(MUTATE_TARGET, jax.ffi.pycapsule(lib.AzjaxZeroMutate), platform="cpu")
            _state["mutate"] = True
        except Exception:  # noqa: BLE001
            _state["mutate"] = False
        return lib


def library():
    """The loaded kernel library (ctypes), or None where it is unavailable."""
    return _load()


def available() -> bool:
    """Whether the native kernel is built and loadable on this machine."""
    return _load() is not None


def mutations_available() -> bool:
    """Whether the library also holds the mutation kernel (`mutations.py` then uses it on the CPU)."""
    return _load() is not None and bool(_state.get("mutate"))


def reason() -> Optional[str]:
    """Why the native backend is unavailable (None when it is available)."""
    _load()
    return _state["reason"]


def op_table() -> np.ndarray:
    """The kernel's op table [NUM_OPS, 6]: in1, in2, out type codes (0 none, 1 s, 2 v, 3 m), reads_output, and
    bit masks of the constant slots stored as float32 and of the index-fraction slots."""
    lib = _load()
    if lib is None:
        raise RuntimeError(f"native backend unavailable: {reason()}")
    buf = (ctypes.c_int8 * (6 * 128))()
    n = lib.azjax_native_op_table(buf, len(buf))
    return np.frombuffer(bytes(buf), np.int8)[:6 * n].reshape(n, 6).astype(np.int32)


def num_threads() -> int:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"native backend unavailable: {reason()}")
    return int(lib.azjax_native_num_threads())


def _raw_keys(keys):
    # A base key (scalar; the kernel derives the lanes) or lane keys [P, T], typed or as raw uint32 data.
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if "threefry" not in str(jax.random.key_impl(keys)):
            raise ValueError(f"key: the native backend needs threefry2x32 keys, got {jax.random.key_impl(keys)}")
        return jax.random.key_data(keys)
    return keys.astype(jnp.uint32)


def _component_pointers(programs, dtype):
    """The kernel's view of host programs: C arrays of the three components' instruction, constant and size
    pointers, their row counts, and the arrays themselves (kept alive while the pointers are used)."""
    comps = (programs.setup, programs.predict, programs.learn)
    arrays = ([np.ascontiguousarray(c.instructions, np.int32) for c in comps],
              [np.ascontiguousarray(c.data, dtype) for c in comps],
              [np.ascontiguousarray(c.size, np.int32) for c in comps])
    pointers = tuple((ctypes.c_void_p * 3)(*(a.ctypes.data for a in group)) for group in arrays)
    lengths = np.asarray([a.shape[1] for a in arrays[0]], np.int64)
    return pointers, lengths, arrays


class NativeBackend(Backend):
    """The C++ FFI backend (CPU only)."""

    name = "native"
    platforms = ("cpu",)

    def unavailable_reason(self) -> Optional[str]:
        return reason()

    def lane_keys(self, key: jax.Array, num_programs: int, num_tasks: int):
        """The base key itself: the kernel derives the lane keys (no [P, T] key array, no extra dispatch)."""
        return key

    def make_evaluate_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                         return_predictions: bool = False, prune: bool = True) -> Callable:
        return self._make_fn(cfg, eval_type, num_epochs, return_predictions, prune, fingerprint_steps=0)

    def make_fingerprint_fn(self, cfg: ZeroConfig, eval_type: str, num_train_steps: int) -> Optional[Callable]:
        """The FEC probe with the errors hashed in the kernel: no predictions leave it (docs/backends.md)."""
        if eval_type not in ("rms", "accuracy"):
            return None
        return self._make_fn(cfg, eval_type, 1, False, True, fingerprint_steps=num_train_steps)

    def make_host_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                     fingerprint_steps: int = 0) -> Optional[Callable]:
        """The kernel called on host (NumPy) arrays without XLA, for host-side callers such as
        `ProgramEvaluator`: `fn(programs, train_x, train_y, valid_x, valid_y, orders, key_data, active)` with
        the base key's raw data (uint32 [2]; the kernel derives the lane keys by the key rule) returns fitness
        [P, T] in the config's dtype, or with `fingerprint_steps` the FEC probe's fingerprint words uint32
        [P, T, 4] (as `make_fingerprint_fn`). Any P: nothing is padded to a compiled shape. Liveness pruning is
        on. The same results as `make_evaluate_fn` / `make_fingerprint_fn` (tests/zero/test_backends.py)."""
        lib = _load()
        if lib is None:
            raise RuntimeError(f"native backend unavailable: {reason()}")
        if not hasattr(lib, "azjax_native_evaluate_host"):
            return None  # a library built before the host entry point
        if fingerprint_steps and eval_type not in ("rms", "accuracy"):
            return None
        check_layout(cfg, eval_type)
        fn = lib.azjax_native_evaluate_host
        fn.restype = ctypes.c_int
        c = ctypes
        fn.argtypes = ([c.c_void_p] * 4 + [c.c_int64] * 4 + [c.c_void_p] * 7
                       + [c.c_int64, c.c_void_p, c.c_int64, c.c_int64, c.c_int64, c.c_double, c.c_int64, c.c_int64,
                          c.c_int64, c.c_int64, c.c_void_p, c.c_void_p])
        rule = self.key_rule(cfg)
        dt = np.dtype(cfg.np_dtype)
        layout = np.asarray([cfg.num_scalars, cfg.num_vectors, cfg.num_matrices, cfg.features], np.int64)
        etype = {"rms": 0, "accuracy": 1, "multiclass": 2}[eval_type]

        def host_fn(programs, train_x, train_y, valid_x, valid_y, orders, key_data, active):
            pointers, lengths, arrays = _component_pointers(programs, dt)  # `arrays` outlives the call
            sizes = arrays[2]
            tx, ty, vx, vy = (np.ascontiguousarray(a, dt) for a in (train_x, train_y, valid_x, valid_y))
            orders = np.ascontiguousarray(orders, np.int32)
            key = np.ascontiguousarray(key_data, np.uint32).reshape(2)
            act = np.ascontiguousarray(active, np.int32)
            P, (T, N, _), M = sizes[0].shape[0], tx.shape, vx.shape[1]
            if orders.size != T * num_epochs * N:
                raise ValueError(f"native backend: orders has {orders.size} entries, expected T * num_epochs * N "
                                 f"= {T} * {num_epochs} * {N}")
            fitness = np.empty((P, T), dt)
            words = np.zeros((P, T, 4), np.uint32) if fingerprint_steps else None
            rc = fn(*pointers, lengths.ctypes.data, P, T, N, M,
                    tx.ctypes.data, ty.ctypes.data, vx.ctypes.data, vy.ctypes.data, orders.ctypes.data,
                    key.ctypes.data, act.ctypes.data, dt.itemsize, layout.ctypes.data, etype, cfg.num_classes,
                    num_epochs, cfg.max_abs_error, rule.predict_stride, rule.learn_stride, 1, fingerprint_steps,
                    fitness.ctypes.data, words.ctypes.data if words is not None else None)
            if rc:
                raise ValueError(f"native backend: the kernel refused this request (eval_type {eval_type!r}, "
                                 f"{cfg.num_classes} classes, {num_epochs} epochs)")
            return words if fingerprint_steps else fitness

        return host_fn

    def live_code_keys(self, programs, cfg: ZeroConfig):
        """(keys [P] of 16-byte `np.void`, has_random [P] bool) of host programs: a hash of what the kernel runs
        for each program with liveness pruning (docs/backends.md, "The probe memo")."""
        lib = _load()
        if lib is None:
            raise RuntimeError(f"native backend unavailable: {reason()}")
        pointers, lengths, arrays = _component_pointers(programs, cfg.np_dtype)  # `arrays` outlives the call
        _, data, sizes = arrays
        P = sizes[0].shape[0]
        keys = np.empty((P, 2), np.uint64)
        has_random = np.empty(P, np.uint8)
        lib.azjax_native_live_code_keys(*pointers, lengths.ctypes.data_as(ctypes.c_void_p),
                                        ctypes.c_int64(P), ctypes.c_int64(cfg.num_scalars),
                                        ctypes.c_int64(cfg.num_vectors), ctypes.c_int64(cfg.num_matrices),
                                        ctypes.c_int64(cfg.num_classes),
                                        ctypes.c_int64(data[0].dtype.itemsize), keys.ctypes.data_as(ctypes.c_void_p),
                                        has_random.ctypes.data_as(ctypes.c_void_p))
        return keys.view(np.dtype((np.void, 16)))[:, 0], has_random.astype(bool)

    def _make_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int, return_predictions: bool, prune: bool,
                 fingerprint_steps: int) -> Callable:
        if _load() is None:
            raise RuntimeError(f"native backend unavailable: {reason()}")
        if fingerprint_steps < 0:
            raise ValueError(f"fingerprint_steps must be >= 0, got {fingerprint_steps}")
        check_layout(cfg, eval_type)
        keys_rule = self.key_rule(cfg)
        attrs = dict(fingerprint_steps=np.int64(fingerprint_steps), num_scalars=np.int64(cfg.num_scalars), num_vectors=np.int64(cfg.num_vectors),
                     num_matrices=np.int64(cfg.num_matrices), features=np.int64(cfg.features),
                     eval_type=np.int64({"rms": 0, "accuracy": 1, "multiclass": 2}[eval_type]),
                     num_classes=np.int64(cfg.num_classes), num_epochs=np.int64(num_epochs),
                     max_abs_error=np.float64(cfg.max_abs_error), la=np.int64(keys_rule.predict_stride),
                     lb=np.int64(keys_rule.learn_stride), prune=bool(prune))

        def fn(programs, train_x, train_y, valid_x, valid_y, orders, keys, active):
            P = programs.setup.size.shape[0]
            T, N, _ = train_x.shape
            M = valid_x.shape[1]
            K = cfg.num_classes if eval_type == "multiclass" else 1
            steps = num_epochs * (N + M) * K
            dt = train_x.dtype
            second = (jax.ShapeDtypeStruct((P, T, 4), jnp.uint32) if fingerprint_steps
                      else jax.ShapeDtypeStruct((P, T, steps if return_predictions else 0), dt))
            out = (jax.ShapeDtypeStruct((P, T), dt), second)
            call = jax.ffi.ffi_call(_TARGET, out, vmap_method="sequential")
            comps = (programs.setup, programs.predict, programs.learn)
            args = []
            for c in comps:
                args += [c.instructions.astype(jnp.int32), c.data.astype(dt), c.size.astype(jnp.int32)]
            fitness, preds = call(*args, train_x, train_y, valid_x, valid_y, orders.astype(jnp.int32),
                                  _raw_keys(keys), active.astype(jnp.int32), **attrs)
            if fingerprint_steps:
                return preds
            if not return_predictions:
                return fitness
            preds = preds.reshape((P, T, num_epochs, N + M) + ((K,) if eval_type == "multiclass" else ()))
            return fitness, {"train": preds[:, :, :, :N], "valid": preds[:, :, :, N:]}

        return fn
