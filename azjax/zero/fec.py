"""Functional-equivalence cache (FEC; docs/automl_zero.md).

Two programs that make the same errors on a short probe (the first `num_train` training steps of epoch 0
and the first `num_valid` validation examples of each task, random ops drawn from a fixed key) are taken to
compute the same function, so the second one reuses the first one's fitness. The cache is an LRU of
`cache_size` entries keyed by a hash of the exact error values, the task index and the number of training
steps the full evaluation would use; an entry is forgotten after serving `forget_every` hits, so popular
fingerprints are re-evaluated now and then (the reference's behaviour).
"""
from __future__ import annotations

import collections
import ctypes
import dataclasses
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class FECConfig:
    """Probe sizes and cache limits (reference defaults)."""

    num_train: int = 10
    num_valid: int = 10
    cache_size: int = 100_000
    forget_every: int = 100

    def __post_init__(self):
        for name in ("num_train", "num_valid", "cache_size", "forget_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FECConfig.{name} must be an integer >= 1, got {v!r}")
        if self.num_train > 100 or self.num_valid > 100:
            raise ValueError("FECConfig.num_train and num_valid must be <= 100 (the reference's limit)")


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def fingerprints(train_errors: np.ndarray, valid_errors: np.ndarray, num_train_steps: int) -> np.ndarray:
    """Hash keys [P, T] (16-byte `np.void`) from probe errors [P, T, n_train] and [P, T, n_valid].

    The key hashes the exact bit patterns of the errors (as the reference hashes exact doubles), the task
    index and the number of training steps of the full evaluation: two independent 64-bit position-dependent
    mixes, summed. Computed by the native library when it is built, else vectorized in NumPy (same values).
    """
    train = np.ascontiguousarray(train_errors, np.float64)
    valid = np.ascontiguousarray(valid_errors, np.float64)
    lib = _native_lib()
    if lib is not None:
        P, T, n_train = train.shape
        out = np.empty((P, T, 2), np.uint64)
        lib.azjax_fec_fingerprints(_ptr(train), _ptr(valid), P, T, n_train, valid.shape[-1], num_train_steps,
                                   _ptr(out))
        return out.view(_KEY)[..., 0]
    return _fingerprints_numpy(train, valid, num_train_steps)


def _fingerprints_numpy(train_errors: np.ndarray, valid_errors: np.ndarray, num_train_steps: int) -> np.ndarray:
    errors = np.concatenate([np.asarray(train_errors, np.float64), np.asarray(valid_errors, np.float64)], -1)
    P, T, n = errors.shape
    words = np.ascontiguousarray(errors).view(np.uint64)
    tail = np.broadcast_to(np.stack([np.arange(T, dtype=np.uint64),
                                     np.full(T, num_train_steps, np.uint64)], -1)[None], (P, T, 2))
    words = np.concatenate([words, tail], -1)
    pos = np.arange(1, n + 3, dtype=np.uint64) * _GOLDEN
    with np.errstate(over="ignore"):
        h1 = _mix(words + pos).sum(-1, dtype=np.uint64)
        h2 = _mix((words ^ _mix(pos)) * _M2 + pos).sum(-1, dtype=np.uint64)
    return np.ascontiguousarray(np.stack([h1, h2], -1)).view(_KEY)[..., 0]


class FECCache:
    """LRU map fingerprint -> fitness, with the reference's forget-after-k-hits rule.

    The map lives in the native library when it is built (`azjax/zero/backends/fec_cache.cc`: a batch of
    lookups is one call), else in a Python OrderedDict; both behave identically and save the same state.
    `native=False` forces the Python map.
    """

    def __init__(self, config: FECConfig = FECConfig(), native: Optional[bool] = None):
        self.config = config
        self._lib = _native_lib() if native is not False else None
        if native and self._lib is None:
            raise RuntimeError("FECCache(native=True): the native library is not available")
        self._entries: "collections.OrderedDict[bytes, List]" = collections.OrderedDict()
        self._hits = self._misses = 0
        self._handle = None
        if self._lib is not None:
            self._handle = ctypes.c_void_p(self._lib.azjax_fec_new(config.cache_size, config.forget_every))

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self._lib.azjax_fec_free(self._handle)
            self._handle = None

    @property
    def native(self) -> bool:
        return self._handle is not None

    def _stats(self) -> Tuple[int, int]:
        if self._handle is None:
            return self._hits, self._misses
        out = np.zeros(2, np.int64)
        self._lib.azjax_fec_stats(self._handle, _ptr(out))
        return int(out[0]), int(out[1])

    @property
    def hits(self) -> int:
        return self._stats()[0]

    @property
    def misses(self) -> int:
        return self._stats()[1]

    def __len__(self) -> int:
        return int(self._lib.azjax_fec_size(self._handle)) if self._handle is not None else len(self._entries)

    def lookup(self, key: bytes) -> Optional[float]:
        """One lookup: the fitness, or None (a hit moves the entry to the front and may forget it)."""
        fit, found = self.lookup_batch(np.frombuffer(key, _KEY)[None, :], np.ones(1, bool))
        return float(fit[0, 0]) if found[0] else None

    def lookup_all(self, keys: List[bytes]) -> Optional[List[float]]:
        """`lookup` of every key in order (each counts as a hit or miss); the fitnesses if all were found."""
        fit, found = self.lookup_batch(np.frombuffer(b"".join(keys), _KEY)[None, :], np.ones(1, bool))
        return fit[0].tolist() if found[0] else None

    def lookup_batch(self, keys: np.ndarray, need: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """For each row u of keys [U, T] (fingerprints) with need[u]: looks up its T keys in order.

        Returns (fitness [U, T] float64, found [U] bool): found where every key of the row was cached."""
        keys = np.ascontiguousarray(keys, _KEY)
        U, T = keys.shape
        fitness = np.zeros((U, T), np.float64)
        found = np.zeros(U, np.uint8)
        need = np.ascontiguousarray(need, np.uint8)
        if self._handle is not None:
            self._lib.azjax_fec_lookup_all(self._handle, _ptr(keys), U, T, _ptr(need), _ptr(fitness),
                                           _ptr(found))
            return fitness, found.astype(bool)
        raw = keys.tobytes()
        for u in np.flatnonzero(need):
            ok = True
            for t in range(T):
                i = u * T + t
                f = self._lookup_py(raw[16 * i:16 * i + 16])
                if f is None:
                    ok = False
                else:
                    fitness[u, t] = f
            found[u] = ok
        return fitness, found.astype(bool)

    def _lookup_py(self, key: bytes) -> Optional[float]:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        self._entries.move_to_end(key, last=False)
        entry[1] += 1
        fitness = entry[0]
        if entry[1] >= self.config.forget_every:
            del self._entries[key]
        return fitness

    def insert(self, key: bytes, fitness: float) -> None:
        self.insert_batch(np.frombuffer(key, _KEY), np.asarray([fitness], np.float64))

    def insert_batch(self, keys: np.ndarray, fitness: np.ndarray) -> None:
        """Inserts keys [n] (fingerprints) with their fitness [n], in order."""
        keys = np.ascontiguousarray(keys, _KEY).reshape(-1)
        fitness = np.ascontiguousarray(fitness, np.float64).reshape(-1)
        if self._handle is not None:
            self._lib.azjax_fec_insert(self._handle, _ptr(keys), _ptr(fitness), len(keys))
            return
        raw = keys.tobytes()
        for i, f in enumerate(fitness.tolist()):
            key = raw[16 * i:16 * i + 16]
            self._entries[key] = [float(f), 1]
            self._entries.move_to_end(key, last=False)
            while len(self._entries) > self.config.cache_size:
                self._entries.popitem(last=True)

    def items(self) -> Iterable[Tuple[bytes, float, int]]:
        if self._handle is None:
            return ((k, v[0], v[1]) for k, v in self._entries.items())
        state = self.get_state()
        return ((bytes(k), float(f), int(c)) for k, f, c in zip(state["keys"], state["fitness"], state["count"]))

    def get_state(self) -> Dict[str, np.ndarray]:
        """Arrays (most recent first) for checkpoints."""
        hits, misses = self._stats()
        if self._handle is not None:
            n = len(self)
            keys = np.zeros((n, 2), np.uint64)
            fitness = np.zeros(n, np.float64)
            count = np.zeros(n, np.int64)
            self._lib.azjax_fec_export(self._handle, _ptr(keys), _ptr(fitness), _ptr(count), n)
            return {"keys": keys.view(np.uint8).reshape(n, 16), "fitness": fitness, "count": count,
                    "stats": np.asarray([hits, misses], np.int64)}
        items = list(self.items())
        keys = np.frombuffer(b"".join(k for k, _, _ in items), np.uint8).reshape(len(items), 16) \
            if items else np.zeros((0, 16), np.uint8)
        return {"keys": keys, "fitness": np.asarray([f for _, f, _ in items], np.float64),
                "count": np.asarray([c for _, _, c in items], np.int64),
                "stats": np.asarray([hits, misses], np.int64)}

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        keys = np.asarray(state["keys"], np.uint8)
        fitness = np.asarray(state["fitness"], np.float64)
        count = np.asarray(state["count"], np.int64)
        if keys.ndim != 2 or keys.shape[1:] != (16,) or not (len(keys) == len(fitness) == len(count)):
            raise ValueError("FECCache.set_state: corrupt cache state (keys/fitness/count shapes disagree)")
        hits, misses = (int(x) for x in np.asarray(state["stats"]))
        if self._handle is not None:
            k = np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 2)
            f, c = np.ascontiguousarray(fitness), np.ascontiguousarray(count)
            self._lib.azjax_fec_import(self._handle, _ptr(k), _ptr(f), _ptr(c), len(k), hits, misses)
            return
        self._entries = collections.OrderedDict(
            (bytes(k), [float(f), int(c)]) for k, f, c in zip(keys, fitness, count))
        self._hits, self._misses = hits, misses


_KEY = np.dtype((np.void, 16))


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _native_lib():
    from azjax.zero.backends import native  # the kernel library also holds the cache

    lib = native.library()
    if lib is None:
        return None
    if not getattr(lib, "_azjax_fec_typed", False):
        c = ctypes
        lib.azjax_fec_new.restype = c.c_void_p
        lib.azjax_fec_new.argtypes = [c.c_int64, c.c_int64]
        lib.azjax_fec_free.argtypes = [c.c_void_p]
        lib.azjax_fec_size.restype = c.c_int64
        lib.azjax_fec_size.argtypes = [c.c_void_p]
        lib.azjax_fec_stats.argtypes = [c.c_void_p, c.c_void_p]
        lib.azjax_fec_lookup_all.argtypes = [c.c_void_p, c.c_void_p, c.c_int64, c.c_int64, c.c_void_p,
                                             c.c_void_p, c.c_void_p]
        lib.azjax_fec_insert.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64]
        lib.azjax_dedup_rows.restype = c.c_int64
        lib.azjax_dedup_rows.argtypes = [c.c_void_p, c.c_void_p, c.c_int64, c.c_int64, c.c_void_p, c.c_void_p]
        lib.azjax_memo_new.restype = c.c_void_p
        lib.azjax_memo_new.argtypes = [c.c_int64, c.c_int64]
        lib.azjax_memo_free.argtypes = [c.c_void_p]
        lib.azjax_memo_size.restype = c.c_int64
        lib.azjax_memo_size.argtypes = [c.c_void_p]
        lib.azjax_memo_lookup.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64, c.c_void_p, c.c_void_p]
        lib.azjax_memo_insert.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64]
        lib.azjax_fec_export.restype = c.c_int64
        lib.azjax_fec_export.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64]
        lib.azjax_fec_import.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64, c.c_int64,
                                         c.c_int64]
        lib.azjax_fec_fingerprints.argtypes = [c.c_void_p, c.c_void_p, c.c_int64, c.c_int64, c.c_int64,
                                               c.c_int64, c.c_int64, c.c_void_p]
        lib._azjax_fec_typed = True
    return lib
