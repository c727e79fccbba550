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
import hashlib
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


def fingerprints(train_errors: np.ndarray, valid_errors: np.ndarray, num_train_steps: int) -> List[List[bytes]]:
    """Hash keys [P][T] from probe errors [P, T, n_train] and [P, T, n_valid]."""
    P, T = train_errors.shape[:2]
    out = []
    for p in range(P):
        row = []
        for t in range(T):
            h = hashlib.blake2b(digest_size=16)
            h.update(np.ascontiguousarray(train_errors[p, t]).tobytes())
            h.update(np.ascontiguousarray(valid_errors[p, t]).tobytes())
            h.update(np.asarray([t, num_train_steps], np.int64).tobytes())
            row.append(h.digest())
        out.append(row)
    return out


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
