"""Evaluation of programs on tasks, exactly as the reference executor (docs/backends.md).

`evaluate` checks its inputs, picks a backend (`azjax/zero/backends/`: `native` on CPU, `select` on
accelerators, or the one asked for) and runs the whole population under one `jit`. The evaluation loop
itself is written once per backend family: `backends/xla.py` for the XLA backends, `backends/native_kernel.cc`
for the C++ one.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero import backends
from azjax.zero import liveness
from azjax.zero.backends import Backend, KeyRule
from azjax.zero.backends.base import check_layout
from azjax.zero.program import COMPONENTS, Program, ZeroConfig, validate_program
from azjax.zero.tasks import Tasks, epoch_orders


def make_evaluate_fn(cfg: ZeroConfig, eval_type: str, num_epochs: int, backend: Union[str, Backend],
                     return_predictions: bool = False, prune: bool = True):
    """The pure, unjitted evaluation function of a backend (see `backends.base`)."""
    return backends.get_backend(backend).make_evaluate_fn(cfg, eval_type, num_epochs, return_predictions, prune)


def _jitted(cfg: ZeroConfig, eval_type: str, num_epochs: int, backend: Union[str, Backend],
            return_predictions: bool, prune: bool):
    return backends.get_backend(backend).jitted(cfg, eval_type, num_epochs, return_predictions, prune)


@functools.lru_cache(maxsize=64)
def _pruner(cfg: ZeroConfig):
    return jax.jit(jax.vmap(lambda p: liveness.prune(p, cfg)))


def live_instruction_count(programs: Program, cfg: ZeroConfig, num_train: int, num_valid: int,
                           num_epochs: int = 1) -> float:
    """Instructions one task's evaluation executes after pruning (no early stop), summed over programs."""
    pruned, _ = _pruner(cfg)(programs)
    s, p, l_ = (np.asarray(pruned.component(c).size, np.float64) for c in COMPONENTS)
    return float(np.sum(s + num_epochs * ((num_train + num_valid) * p + num_train * l_)))


def _as_population(programs: Program, cfg: ZeroConfig) -> Tuple[Program, bool]:
    single = np.ndim(programs.setup.size) == 0
    if single:
        # numpy, not jnp: a float64 program must keep its constants outside an x64 context.
        programs = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], programs)
    if np.ndim(programs.setup.size) != 1:
        raise ValueError(f"programs: expected one program or a population with one leading axis, got "
                         f"size shape {np.shape(programs.setup.size)}")
    return programs, single


def program_task_keys(key: jax.Array, num_programs: int, num_tasks: int) -> jax.Array:
    """Lane keys [P, T] of the key rule (`backends.KeyRule.lane_keys`)."""
    return KeyRule.lane_keys(key, num_programs, num_tasks)


def prepare_programs(programs: Program, cfg: ZeroConfig) -> Program:
    """Casts a (validated) population's arrays to the dtypes the evaluator compiles for."""
    dt = cfg.jnp_dtype

    def cast(comp):
        return type(comp)(instructions=jnp.asarray(comp.instructions, jnp.int32),
                          data=jnp.asarray(comp.data, dt), size=jnp.asarray(comp.size, jnp.int32))

    return Program(*(cast(programs.component(c)) for c in COMPONENTS))


def prepare_tasks(tasks: Tasks, cfg: ZeroConfig):
    """Validated task arrays in cfg's dtype plus the epoch orders: the evaluator's task inputs."""
    if not isinstance(tasks, Tasks):
        raise ValueError(f"tasks: expected a zero.Tasks, got {type(tasks).__name__}")
    tasks.validate(features=cfg.features)
    check_layout(cfg, tasks.eval_type, tasks.num_classes)
    dt = cfg.jnp_dtype
    orders = epoch_orders(tasks.seeds(), tasks.num_epochs, tasks.num_train)
    return (jnp.asarray(tasks.train_features, dt), jnp.asarray(tasks.train_labels, dt),
            jnp.asarray(tasks.valid_features, dt), jnp.asarray(tasks.valid_labels, dt), orders)


def evaluate(programs: Program, tasks: Tasks, cfg: ZeroConfig, *, key: jax.Array,
             backend: Union[None, str, Backend] = None, return_predictions: bool = False,
             validate: bool = True, prune: bool = True, strategy: Optional[str] = None) -> Union[jax.Array, Tuple[jax.Array, Dict[str, jax.Array]]]:
    """Per-task fitness in [0, 1] of a population of programs.

    Args:
      programs: a Program with a leading population axis (see `stack_programs`), or a single program.
      tasks: the task collection.
      cfg: the program space / execution config.
      key: PRNG key; random-set ops draw from a key per (program, task).
      backend: "native", "select", "cond" or "pallas" (or a Backend); default: `native` on CPU, `select` on
        accelerators and for multi-class tasks where `native` does not support them (docs/backends.md says
        how their results compare). A backend whose `supports_multiclass` is False raises ValueError on
        multi-class tasks.
      return_predictions: also return {"train": [P, T, E, N], "valid": [P, T, E, M]}: s1 after each
        training Predict (after the sigmoid for accuracy tasks) and each validation Predict; NaN for steps
        that never ran because training stopped early. Multi-class tasks add a trailing axis K: the softmax
        probabilities (training) and the logits v2[:K] (validation).
      validate: check program arrays against cfg first (host side).
      prune: skip dead instructions (results unchanged; see liveness.py).
      strategy: deprecated alias of `backend`.

    Returns:
      fitness [P, T] (or [T] for a single program), and the predictions if asked.
    """
    if not isinstance(cfg, ZeroConfig):
        raise ValueError(f"cfg: expected a zero.ZeroConfig, got {type(cfg).__name__}")
    if not isinstance(tasks, Tasks):
        raise ValueError(f"tasks: expected a zero.Tasks, got {type(tasks).__name__}")
    backend = backends.resolve(backend, cfg, tasks.num_tasks, strategy=strategy, eval_type=tasks.eval_type)
    programs, single = _as_population(programs, cfg)
    if validate:
        validate_program(programs, cfg)
    with jax.enable_x64(cfg.dtype == "float64"):
        task_arrays = prepare_tasks(tasks, cfg)
        programs = prepare_programs(programs, cfg)
        P, T = programs.setup.size.shape[0], tasks.num_tasks
        keys = backend.lane_keys(key, P, T)
        fn = backend.jitted(cfg, tasks.eval_type, tasks.num_epochs, return_predictions, prune)
        out = fn(programs, *task_arrays, keys, jnp.ones((P,), bool))
    if single:
        out = jax.tree_util.tree_map(lambda x: x[0], out)
    return out


def combine_fitness(per_task: jax.Array, mode: str = "mean") -> jax.Array:
    """Combines per-task fitness [..., T] into one number per program: "mean" or "median".

    "median" is the reference's: the element at index floor(T/2) after sorting (the upper median).
    """
    if mode == "mean":
        return jnp.mean(per_task, axis=-1)
    if mode == "median":
        return jnp.sort(per_task, axis=-1)[..., per_task.shape[-1] // 2]
    raise ValueError(f"combine mode must be 'mean' or 'median', got {mode!r}")
