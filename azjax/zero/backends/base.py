"""The interpreter backend interface and the random-op key rule every backend follows.

A backend turns (cfg, eval_type, num_epochs) into a pure function

    fn(programs, train_x, train_y, valid_x, valid_y, orders, keys, active) -> fitness [P, T]
                                                                   (, {"train", "valid"} predictions)

of a population of programs (batched `Program`, arrays already in cfg's dtype), task arrays [T, ...], epoch
orders int32 [T, E, N], lane keys [P, T] (see `KeyRule.lane_keys`) and an `active` mask [P] (inactive
programs are batch padding: fitness 0, no work where the backend can skip it). Each backend owns its memory
layout, how it maps over the population, and how a batch should be padded (`padded_size`). The semantics
(docs/backends.md) are the same for all backends.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from azjax.zero.program import ZeroConfig


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """How random ops (the uniform / Gaussian sets) get their keys; every backend draws with exactly these.

    * lane key of (program p, task t): `fold_in(fold_in(key, p), t)` - independent of the batch layout,
      padding and device count;
    * op key: `fold_in(lane_key, counter)` with `counter = step * (predict_stride + learn_stride) + offset +
      position` (uint32 arithmetic, wrapping), where step 0 is Setup and step k >= 1 the k-th example visit
      (each epoch: its training examples, then its validation examples), offset is 0 for Setup and Predict
      and `predict_stride` for Learn, and position is the instruction's index in the unpruned component
      (so pruning never changes a draw);
    * the draw itself is `jax.random.uniform` / `jax.random.normal` of the output's shape with the op key.
    """

    predict_stride: int
    learn_stride: int

    @classmethod
    def for_config(cls, cfg: ZeroConfig) -> "KeyRule":
        return cls(predict_stride=max(cfg.setup_size, cfg.predict_size), learn_stride=cfg.learn_size)

    @property
    def step_stride(self) -> int:
        return self.predict_stride + self.learn_stride

    def counter(self, step, component: str, position):
        """The counter of an instruction at `position` of `component` run at `step` (Python or traced ints)."""
        offset = self.predict_stride if component == "learn" else 0
        return step * self.step_stride + offset + position

    @staticmethod
    def lane_keys(key: jax.Array, num_programs: int, num_tasks: int) -> jax.Array:
        """Lane keys [P, T]."""
        return _lane_keys(key, num_programs, num_tasks)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _lane_keys(key, num_programs, num_tasks):
    per_program = jax.vmap(lambda p: jax.random.fold_in(key, p))(jnp.arange(num_programs))
    return jax.vmap(lambda k: jax.vmap(lambda t: jax.random.fold_in(k, t))(jnp.arange(num_tasks)))(per_program)


class Backend:
    """One way of running programs. Subclasses set `name`, `platforms` and write `make_evaluate_fn`."""

    name: str = ""
    platforms: Tuple[str, ...] = ("cpu", "gpu", "tpu")
    # Whether `make_evaluate_fn` implements eval_type "multiclass" (the vector label/prediction layout,
    # docs/automl_zero.md "Multi-class tasks"); `evaluate` and `ProgramEvaluator` refuse multi-class tasks
    # on a backend that does not.
    supports_multiclass: bool = True

    def unavailable_reason(self) -> Optional[str]:
        """None if the backend can run here, else a one-line reason."""
        return None

    def check_eval_type(self, eval_type: str) -> None:
        """Raises ValueError, naming the backend, if it cannot evaluate tasks of `eval_type`."""
        if eval_type == "multiclass" and not self.supports_multiclass:
            raise ValueError(f"backend {self.name!r} does not support multi-class tasks (eval_type 'multiclass') "
                             "yet (Backend.supports_multiclass is False); pass backend='select' or another "
                             "backend that supports them")

    def key_rule(self, cfg: ZeroConfig) -> KeyRule:
        return KeyRule.for_config(cfg)

    def make_evaluate_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                         return_predictions: bool = False, prune: bool = True) -> Callable:
        raise NotImplementedError

    def make_fingerprint_fn(self, cfg: ZeroConfig, eval_type: str, num_train_steps: int) -> Optional[Callable]:
        """Optional: a function like `make_evaluate_fn(cfg, eval_type, 1, ...)` that returns the FEC fingerprints
        (`fec.fingerprints` of the probe's errors, keyed by `num_train_steps`) instead of
        fitness and predictions, as uint32 [P, T, 4] (two little-endian uint64 words per lane, so x64 mode is
        not needed). None (the default): the evaluator computes them from the predictions."""
        return None

    def live_code_keys(self, programs, cfg: ZeroConfig):
        """Optional: (keys [P] 16-byte `np.void`, has_random [P] bool) of host programs, equal for programs
        whose pruned code is the same, so that programs without a live random op share their FEC probe
        (docs/backends.md, "The probe memo"). None (the default): every program is probed."""
        return None

    def make_host_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                     fingerprint_steps: int = 0) -> Optional[Callable]:
        """Evaluation on host (NumPy) arrays without XLA, for host-side callers (`ProgramEvaluator`), or None
        (the default: callers use the jitted functions). See `NativeBackend.make_host_fn`."""
        return None

    def lane_keys(self, key: jax.Array, num_programs: int, num_tasks: int):
        """The lane keys [P, T] this backend's evaluation function takes (KeyRule.lane_keys)."""
        return KeyRule.lane_keys(key, num_programs, num_tasks)

    def jitted(self, cfg: ZeroConfig, eval_type: str, num_epochs: int, return_predictions: bool = False,
               prune: bool = True) -> Callable:
        """`make_evaluate_fn` under `jax.jit`, built once per argument set."""
        return _jitted(self, cfg, eval_type, num_epochs, return_predictions, prune)

    def padded_size(self, n: int, batch: int, num_tasks: int, num_devices: int = 1) -> int:
        """The batch size to compile for n programs out of a batch of `batch`. Default: the batch rounded up
        to the device count (one compilation; inactive padding costs nothing)."""
        return -(-max(batch, n, 1) // num_devices) * num_devices

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __hash__(self) -> int:
        return hash(type(self))

    def __eq__(self, other) -> bool:
        return type(self) is type(other)


def check_layout(cfg: ZeroConfig, eval_type: str, num_classes: Optional[int] = None) -> None:
    """Raises ValueError when the config's memory layout does not fit the tasks' eval type."""
    if (eval_type == "multiclass") != cfg.multiclass:
        if cfg.multiclass:
            raise ValueError(f"ZeroConfig.num_classes={cfg.num_classes} (the multi-class layout) needs "
                             f"eval_type 'multiclass' tasks, got eval_type {eval_type!r}")
        raise ValueError("eval_type 'multiclass' needs a ZeroConfig with num_classes >= 2 (the multi-class "
                         "memory layout), got num_classes=0")
    if num_classes is not None and cfg.multiclass and num_classes != cfg.num_classes:
        raise ValueError(f"Tasks.num_classes={num_classes} but ZeroConfig.num_classes={cfg.num_classes}")


@functools.lru_cache(maxsize=64)
def _jitted(backend, cfg, eval_type, num_epochs, return_predictions, prune):
    return jax.jit(backend.make_evaluate_fn(cfg, eval_type, num_epochs, return_predictions, prune))
