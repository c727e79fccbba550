"""Constant tuning of a found program: its constants treated as hyperparameters (the paper's S7 protocol).

    result = zero.tune_constants(program, tuning_tasks, cfg, key=jax.random.key(0), num_trials=1000)
    result.program, result.fitness, result.untuned_fitness, result.trial_fitness

The tunable constants are the value constants (`ops.Constant` roles value, low, high, mean, sd; never
element-index fractions) of the instructions that can reach a prediction (`liveness.live_instructions`),
and only nonzero finite ones (a factor cannot change 0, inf or NaN). Each trial multiplies every tunable
constant by its own log-uniform factor in [`min_factor`, `max_factor`] (default [0.001, 1000], as the
paper); the sign is kept. The trials form one population that `zero.evaluate` runs on the chosen backend,
in chunks of `batch_size` programs. The best trial (by combined fitness on the tuning tasks) is
re-evaluated on its own, so `result.fitness` is exactly what `zero.evaluate(result.program, tasks, cfg,
key=key)` combines to; the untuned program is kept if no trial beats it there.

Trial constants are canonicalized like every program (`program.canonicalize`): slots the reference stores
as float32 (`Constant.float32`) are rounded to float32, so the tuned program evaluates, formats, parses
and exports to the same values. Pick the trial on tuning tasks and report it on other, unseen tasks (the
launcher's `tune_constants.num_trials` does that on its final tasks; docs/automl_zero.md).
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from azjax.zero import liveness
from azjax.zero import ops as ops_lib
from azjax.zero.backends import Backend
from azjax.zero.evaluate import combine_fitness, evaluate
from azjax.zero.program import COMPONENTS, Component, Program, ZeroConfig, canonicalize, validate_program
from azjax.zero.tasks import Tasks

__all__ = ["TuningResult", "tunable_constants", "tune_constants"]

# Per op and slot: a value constant (not an element-index fraction) that the op reads.
_VALUE_SLOT = (np.arange(3)[None, :] < ops_lib.NUM_DATA[:, None]) & ~ops_lib.IS_INDEX


@struct.dataclass
class TuningResult:
    """What `tune_constants` found.

    Attributes:
      program: the tuned program (the untuned one when no trial beat it on the tuning tasks).
      fitness: float, its combined fitness on the tuning tasks.
      untuned_fitness: float, the untuned program's combined fitness on the tuning tasks.
      trial_fitness: float [num_trials], each trial's combined fitness on the tuning tasks (as run in its
        batch; [0] when the program has no tunable constant).
      factors: float64 [num_trials, num_constants], each trial's multiplicative factors, in the order of
        `tunable_constants`'s mask (setup, predict, learn; row by row; slot by slot).
      best_trial: int, the trial `program` comes from, or -1 for the untuned program.
      num_constants: the number of tuned constants (static).
    """

    program: Program
    fitness: jax.Array
    untuned_fitness: jax.Array
    trial_fitness: jax.Array
    factors: jax.Array
    best_trial: jax.Array
    num_constants: int = struct.field(pytree_node=False, default=0)


@functools.lru_cache(maxsize=32)
def _live_fn(cfg: ZeroConfig):
    return jax.jit(lambda p: liveness.live_instructions(p, cfg))


def _check_single(program: Program, cfg: ZeroConfig) -> Program:
    if not isinstance(program, Program):
        raise ValueError(f"program: expected a zero.Program, got {type(program).__name__}")
    if np.ndim(program.setup.size) != 0:
        raise ValueError(f"program: expected one program, got a batch (size shape "
                         f"{np.shape(program.setup.size)}); tune its members one at a time")
    validate_program(program, cfg)
    dt = cfg.np_dtype
    return Program(*(Component(instructions=np.asarray(c.instructions, np.int32), data=np.asarray(c.data, dt),
                               size=np.asarray(c.size, np.int32)) for c in (program.setup, program.predict,
                                                                            program.learn)))


def tunable_constants(program: Program, cfg: ZeroConfig, live_only: bool = True) -> Tuple[np.ndarray, ...]:
    """Bool masks [L, 3] per component (setup, predict, learn) of the constants `tune_constants` scales.

    A slot is tunable if its instruction lies within the component's size, its op reads the slot as a
    value (not an element index), the value is finite and nonzero, and (with `live_only`) the instruction
    can reach a prediction.
    """
    program = _check_single(program, cfg)
    with jax.enable_x64(cfg.dtype == "float64"):  # float64 constants pass through unchanged
        flags = _live_fn(cfg)(program) if live_only else None
    masks = []
    for i, c in enumerate(COMPONENTS):
        comp = program.component(c)
        ins, data = comp.instructions, comp.data
        used = np.arange(ins.shape[0]) < int(comp.size)
        if flags is not None:
            used &= np.asarray(flags[i])
        mask = used[:, None] & _VALUE_SLOT[ins[:, 0]] & np.isfinite(data) & (data != 0)
        masks.append(mask)
    return tuple(masks)


def _trial_programs(program: Program, masks, factors: np.ndarray, cfg: ZeroConfig) -> Program:
    """The population of `program` with its masked constants scaled by `factors` [N, K] (canonical)."""
    n = factors.shape[0]
    comps, start = [], 0
    for c, mask in zip(COMPONENTS, masks):
        comp = program.component(c)
        k = int(mask.sum())
        scale = np.ones((n,) + mask.shape, np.float64)
        scale[:, mask] = factors[:, start:start + k]
        start += k
        data = (comp.data.astype(np.float64)[None] * scale).astype(cfg.np_dtype)
        comps.append(Component(instructions=np.broadcast_to(comp.instructions, (n,) + comp.instructions.shape),
                               data=data, size=np.full((n,), comp.size, np.int32)))
    with np.errstate(over="ignore", invalid="ignore"):
        return jax.tree_util.tree_map(np.asarray, canonicalize(Program(*comps), cfg, xp=np))


def _fitness(programs: Program, tasks: Tasks, cfg: ZeroConfig, key: jax.Array, backend, combine: str):
    per_task = evaluate(programs, tasks, cfg, key=key, backend=backend, validate=False)
    with jax.enable_x64(cfg.dtype == "float64"):
        return np.asarray(combine_fitness(per_task, combine), np.float64)


def tune_constants(program: Program, tasks: Tasks, cfg: ZeroConfig, *, key: jax.Array, num_trials: int = 100,
                   backend: Union[None, str, Backend] = None, combine: str = "mean",
                   min_factor: float = 1e-3, max_factor: float = 1e3, batch_size: int = 1000,
                   live_only: bool = True, eval_key: Optional[jax.Array] = None) -> TuningResult:
    """Random search over the constants of one program (the paper's S7 constant tuning).

    Args:
      program: one (unbatched) program of `cfg`.
      tasks: the tuning tasks (keep the tasks you report on out of them).
      cfg: the program config.
      key: PRNG key of the factors; the same key gives the same result.
      num_trials: trials (>= 1), each scaling every tunable constant by its own factor.
      backend: interpreter backend for every evaluation (as `zero.evaluate`; default: native on CPU).
      combine: "mean" or "median" over tasks.
      min_factor, max_factor: the log-uniform factor range (0 < min_factor <= max_factor).
      batch_size: trials evaluated per call (the last batch is padded to the same shape).
      live_only: tune only the constants of instructions that reach a prediction.
      eval_key: the key of the evaluations (random ops), as `zero.evaluate`'s; default `key`.

    Returns:
      A `TuningResult`. A program without tunable constants comes back unchanged (`num_constants` 0, no
      trials run, `trial_fitness` empty).

    Raises:
      ValueError: naming the argument, for a batch of programs, an invalid program, num_trials < 1,
        a bad factor range, batch size or combine mode.
    """
    if isinstance(num_trials, bool) or not isinstance(num_trials, (int, np.integer)) or num_trials < 1:
        raise ValueError(f"num_trials must be an integer >= 1, got {num_trials!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (np.isfinite(min_factor) and np.isfinite(max_factor) and 0 < min_factor <= max_factor):
        raise ValueError(f"min_factor, max_factor must satisfy 0 < min_factor <= max_factor (finite), got "
                         f"{min_factor!r}, {max_factor!r}")
    if combine not in ("mean", "median"):
        raise ValueError(f"combine must be 'mean' or 'median', got {combine!r}")
    if not isinstance(tasks, Tasks):
        raise ValueError(f"tasks: expected a zero.Tasks, got {type(tasks).__name__}")
    program = _check_single(program, cfg)
    eval_key = key if eval_key is None else eval_key
    masks = tunable_constants(program, cfg, live_only)
    k = int(sum(m.sum() for m in masks))
    untuned = float(_fitness(program, tasks, cfg, eval_key, backend, combine))
    if k == 0:
        return TuningResult(program=program, fitness=untuned, untuned_fitness=untuned,
                            trial_fitness=np.zeros((0,), np.float64), factors=np.zeros((0, 0), np.float64),
                            best_trial=-1, num_constants=0)
    # Factors in float64 on the host from float32 uniforms: the same on every platform and x64 setting.
    u = np.asarray(jax.random.uniform(jax.random.fold_in(key, 0), (num_trials, k), jnp.float32), np.float64)
    lo, hi = np.log(min_factor), np.log(max_factor)
    factors = np.exp(lo + (hi - lo) * u)
    trials = _trial_programs(program, masks, factors, cfg)
    chunk = min(batch_size, num_trials)
    trial_fitness = np.empty((num_trials,), np.float64)
    for start in range(0, num_trials, chunk):
        # Every call has `chunk` programs (one compilation); the tail is padded with copies of the last
        # trial.
        idx = np.minimum(np.arange(start, start + chunk), num_trials - 1)
        batch = jax.tree_util.tree_map(lambda x: x[idx], trials)
        fit = _fitness(batch, tasks, cfg, jax.random.fold_in(eval_key, start), backend, combine)
        n = min(chunk, num_trials - start)
        trial_fitness[start:start + n] = fit[:n]
    ranked = np.where(np.isnan(trial_fitness), -np.inf, trial_fitness)
    best = int(np.argmax(ranked))
    candidate = jax.tree_util.tree_map(lambda x: x[best], trials)
    # Re-evaluated alone with the untuned program's key: the reported fitness is what a re-run gives.
    tuned = float(_fitness(candidate, tasks, cfg, eval_key, backend, combine))
    if not tuned > untuned:
        return TuningResult(program=program, fitness=untuned, untuned_fitness=untuned, trial_fitness=trial_fitness,
                            factors=factors, best_trial=-1, num_constants=k)
    return TuningResult(program=candidate, fitness=tuned, untuned_fitness=untuned, trial_fitness=trial_fitness,
                        factors=factors, best_trial=best, num_constants=k)
