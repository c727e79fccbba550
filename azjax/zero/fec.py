"""Functional-equivalence cache (FEC, spec §6.5).

Two programs that make the same errors on a short probe (the first `num_train` training steps of epoch 0
and the first `num_valid` validation examples of each task, random ops drawn from a fixed key) are taken to
compute the same function, so the second one reuses the first one's fitness. The cache is an LRU of
`cache_size` entries keyed by a hash of the exact error values, the task index and the number of training
steps the full evaluation would use; an entry is forgotten after serving `forget_every` hits, so popular
fingerprints are re-evaluated now and then (the reference's behaviour).
"""
from __future__ import annotations

import collections
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
    index and the number of training steps of the full evaluation. Vectorized: two independent 64-bit
    position-dependent mixes, summed (measured: ~60x faster than one blake2b per program and task).
    """
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
    return np.ascontiguousarray(np.stack([h1, h2], -1)).view(np.dtype((np.void, 16)))[..., 0]


class FECCache:
    """LRU map fingerprint -> fitness, with the reference's forget-after-k-hits rule."""

    def __init__(self, config: FECConfig = FECConfig()):
        self.config = config
        self._entries: "collections.OrderedDict[bytes, List]" = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: bytes) -> Optional[float]:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key, last=False)
        entry[1] += 1
        fitness = entry[0]
        if entry[1] >= self.config.forget_every:
            del self._entries[key]
        return fitness

    def insert(self, key: bytes, fitness: float) -> None:
        self._entries[key] = [float(fitness), 1]
        self._entries.move_to_end(key, last=False)
        while len(self._entries) > self.config.cache_size:
            self._entries.popitem(last=True)

    def items(self) -> Iterable[Tuple[bytes, float, int]]:
        return ((k, v[0], v[1]) for k, v in self._entries.items())

    def get_state(self) -> Dict[str, np.ndarray]:
        """Arrays (most recent first) for checkpoints."""
        items = list(self.items())
        keys = np.frombuffer(b"".join(k for k, _, _ in items), np.uint8).reshape(len(items), 16) \
            if items else np.zeros((0, 16), np.uint8)
        return {"keys": keys, "fitness": np.asarray([f for _, f, _ in items], np.float64),
                "count": np.asarray([c for _, _, c in items], np.int64),
                "stats": np.asarray([self.hits, self.misses], np.int64)}

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        keys = np.asarray(state["keys"], np.uint8)
        fitness = np.asarray(state["fitness"], np.float64)
        count = np.asarray(state["count"], np.int64)
        if keys.ndim != 2 or keys.shape[1:] != (16,) or not (len(keys) == len(fitness) == len(count)):
            raise ValueError("FECCache.set_state: corrupt cache state (keys/fitness/count shapes disagree)")
        self._entries = collections.OrderedDict(
            (bytes(k), [float(f), int(c)]) for k, f, c in zip(keys, fitness, count))
        self.hits, self.misses = (int(x) for x in np.asarray(state["stats"]))
