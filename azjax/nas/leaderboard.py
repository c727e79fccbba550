"""Every genome a search evaluated, with its reward; the top distinct genotypes."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["Leaderboard"]


class Leaderboard:
    """Every evaluated genome with its reward (an ExtraState; grows, stored as two arrays).

    Wrap an evaluator with :meth:`wrap` so each call records its batch.
    """

    def __init__(self, genome_length: int):
        self.genomes = np.zeros((0, genome_length), np.int32)
        self.fitness = np.zeros((0,), np.float32)

    def wrap(self, evaluator: Callable) -> Callable:
        """``evaluator`` that also records every batch it evaluates."""
        def wrapped(key, genomes):
            out = evaluator(key, genomes)
            fitness, info = out if isinstance(out, tuple) else (out, {})
            self.genomes = np.concatenate([self.genomes, np.asarray(genomes, np.int32)])
            self.fitness = np.concatenate([self.fitness, np.asarray(fitness, np.float32)])
            return fitness, info
        return wrapped

    def top(self, k: int) -> list[tuple[np.ndarray, float]]:
        """The ``k`` best distinct genomes (first occurrence on ties) with their best reward."""
        f = np.where(np.isnan(self.fitness), -np.inf, self.fitness)
        order = np.argsort(-f, kind="stable")
        seen, out = set(), []
        for i in order:
            key = self.genomes[i].tobytes()
            if key in seen:
                continue
            seen.add(key)
            out.append((self.genomes[i], float(self.fitness[i])))
            if len(out) == k:
                break
        return out

    def get_state(self) -> Any:
        """The recorded genomes and rewards (ExtraState)."""
        return {"genomes": self.genomes, "fitness": self.fitness}

    def set_state(self, state: Any) -> None:
        """Restores what :meth:`get_state` returned."""
        self.genomes = np.asarray(state["genomes"], np.int32).reshape(-1, self.genomes.shape[1])
        self.fitness = np.asarray(state["fitness"], np.float32).reshape(-1)
