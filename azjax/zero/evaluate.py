"""Evaluation of programs on tasks, exactly as the reference executor (spec §4).

Per (program, task): memory zeroed, Setup run once; each epoch trains over the examples (epoch 0 in stored
order, later epochs in the task's permutation): `v0 = x, s0 = 0`, Predict, (accuracy tasks: `s1 =
sigmoid(s1)` written back), stop early if the error is NaN or > max_abs_error, `v0 = x, s0 = y`, Learn; then
validation (Predict only, `s0 = 0`, raw `s1` kept) after every epoch; the best epoch counts. A failure in the
first epoch gives fitness 0, a later one keeps the best earlier epoch.

Setup runs once, then one loop over "steps" (per epoch N train and M validation steps; step 0 stands
for Setup) with an instruction-loop site for Predict and one for Learn. Each site's switch holds only the
ops its component may contain, so e.g. Setup's costly random ops never weigh on the per-example loop. The
step loop is a `while_loop` under `cond` that ends as soon as every task of a program has failed: a program
that diverges on its first example costs one example, not the whole evaluation.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.zero import interpreter
from azjax.zero import liveness
from azjax.zero.program import COMPONENTS, Program, ZeroConfig, validate_program
from azjax.zero.tasks import Tasks, epoch_orders

_SETUP, _TRAIN, _VALID = 0, 1, 2


def _sigmoid(x):
    # The reference's 1 / (1 + exp(-x)), kept literal so that inf/NaN behave the same.
    return 1 / (1 + jnp.exp(-x))


def _rms_fitness(loss, dtype):
    rmse = jnp.sqrt(loss)
    fit = 1 - (2 / jnp.pi) * jnp.arctan(rmse)
    return jnp.where(jnp.isfinite(rmse), fit, 0).astype(dtype)


def _step_tables(num_epochs: int, num_train: int, num_valid: int):
    """Static per-step kind, epoch and 'last validation step of its epoch' flags."""
    per_epoch = np.concatenate([np.full(num_train, _TRAIN), np.full(num_valid, _VALID)])
    kind = np.concatenate([[_SETUP], np.tile(per_epoch, num_epochs)]).astype(np.int32)
    epoch_end = np.zeros_like(kind, dtype=bool)
    epoch_end[np.arange(1, num_epochs + 1) * (num_train + num_valid)] = True
    return kind, epoch_end


def make_evaluate_fn(cfg: ZeroConfig, eval_type: str, num_epochs: int, strategy: str,
                     return_predictions: bool = False, prune: bool = True):
    """Builds the pure, unjitted evaluation of a population on a task collection.

    Returns `fn(programs, train_x, train_y, valid_x, valid_y, orders, keys, active) -> fitness [P, T]` (and
    predictions when asked), with programs batched [P, ...], task arrays [T, ...] in cfg's dtype,
    orders int32 [T, E, N], keys [P, T] and `active` bool [P] (inactive programs - batch padding - stop
    at once under `cond` and get fitness 0).
    """
    mem_model = interpreter.memory_model(cfg, strategy)
    # Three switch sites, each with only its component's ops: Setup (once per task), Predict and Learn.
    run_setup = mem_model.make_run(interpreter.component_op_ids(cfg, ("setup",)))
    run_predict = mem_model.make_run(interpreter.component_op_ids(cfg, ("predict",)))
    run_learn = mem_model.make_run(interpreter.component_op_ids(cfg, ("learn",)))
    dt = cfg.jnp_dtype
    accuracy = eval_type == "accuracy"
    max_abs = cfg.max_abs_error
    LA = max(cfg.setup_size, cfg.predict_size)
    LB = cfg.learn_size

    def evaluate_one(prog: Program, positions, active, train_x, train_y, valid_x, valid_y, orders, key):
        N, M = train_x.shape[0], valid_x.shape[0]
        kind_np, epoch_end_np = _step_tables(num_epochs, N, M)
        num_steps = kind_np.shape[0]
        kinds, epoch_end = jnp.asarray(kind_np), jnp.asarray(epoch_end_np)
        # Inputs of every step, gathered once per task: setup, then per epoch the shuffled train set and
        # the validation set in stored order.
        xs = jnp.concatenate([train_x[orders], jnp.broadcast_to(valid_x, (num_epochs,) + valid_x.shape)], 1)
        ys = jnp.concatenate([train_y[orders], jnp.broadcast_to(valid_y, (num_epochs, M))], 1)
        xs = jnp.concatenate([jnp.zeros((1, xs.shape[-1]), dt), xs.reshape(-1, xs.shape[-1])])
        ys = jnp.concatenate([jnp.zeros((1,), dt), ys.reshape(-1)])

        def body(carry, k, x, y, end):
            step, mem, alive, loss, valid_bad, best, preds = carry
            is_setup, is_train, is_valid = k == _SETUP, k == _TRAIN, k == _VALID
            mem = mem_model.set_inputs(mem, x, jnp.zeros((), dt))
            # The reference's validation returns at its first bad example: later Predicts do not run.
            # (Step 0 stands for Setup, which ran before the loop.)
            skip = is_valid & valid_bad
            n_a = jnp.where(is_setup | skip, 0, prog.predict.size)
            counter = step * (LA + LB)
            mem = run_predict(mem, prog.predict.instructions, prog.predict.data, n_a, key, counter, positions[1])
            s1 = mem_model.get_s1(mem)
            if accuracy:
                p_train = _sigmoid(s1)
                mem = mem_model.set_s1(mem, jnp.where(is_train, p_train, s1))
            else:
                p_train = s1
            err = jnp.abs(y - p_train)
            failed = is_train & (jnp.isnan(err) | (err > max_abs))
            ran = jnp.where(is_valid, alive & ~skip, alive)
            new_alive = alive & ~failed
            mem = mem_model.set_inputs(mem, x, y)
            mem = run_learn(mem, prog.learn.instructions, prog.learn.data,
                      jnp.where(is_train & new_alive, prog.learn.size, 0), key, counter + LA, positions[2])
            # Validation bookkeeping.
            if accuracy:
                e = ((y > 0.5) != (_sigmoid(s1) > 0.5)).astype(dt)
                bad = jnp.zeros((), bool)
            else:
                e = y - s1
                bad = jnp.isnan(e) | (jnp.abs(e) > max_abs)
            loss = loss + jnp.where(is_valid & ~skip, e * e if not accuracy else e, 0)
            valid_bad = valid_bad | (is_valid & ~skip & bad)
            if accuracy:
                fit = (1 - loss / M).astype(dt)
            else:
                fit = _rms_fitness(loss / M, dt)
            fit = jnp.where(valid_bad, 0, fit)
            best = jnp.where(end & new_alive, jnp.maximum(best, fit), best)
            loss = jnp.where(end, 0, loss)
            valid_bad = jnp.where(end, False, valid_bad)
            if preds is not None:
                value = jnp.where(is_train, p_train, s1)
                preds = preds.at[step].set(jnp.where(ran, value, jnp.nan))
            return step + 1, mem, new_alive, loss, valid_bad, best, preds

        preds0 = jnp.full((num_steps,), jnp.nan, dt) if return_predictions else None
        mem0 = run_setup(mem_model.zeros(), prog.setup.instructions, prog.setup.data,
                         jnp.where(active, prog.setup.size, 0), key, 0, positions[0])
        init = (jnp.zeros((), jnp.int32), mem0, active, jnp.zeros((), dt),
                jnp.zeros((), bool), jnp.zeros((), dt), preds0)
        if strategy == "cond":
            # A real loop that ends when the program has failed (per program: tasks share the loop).
            def cond(carry):
                step, _, alive = carry[:3]
                return (step < num_steps) & alive

            def while_body(carry):
                step = carry[0]
                return body(carry, kinds[step], xs[step], ys[step], epoch_end[step])

            final = lax.while_loop(cond, while_body, init)
        else:
            # Vectorized lanes cannot stop individually; a scan feeds each step's inputs without gathers.
            final, _ = lax.scan(lambda c, inp: (body(c, *inp), None), init, (kinds, xs, ys, epoch_end))
        best, preds = final[5], final[6]
        if not return_predictions:
            return best
        per_epoch = preds[1:].reshape(num_epochs, N + M)
        return best, {"train": per_epoch[:, :N], "valid": per_epoch[:, N:]}

    over_tasks = jax.vmap(evaluate_one, in_axes=(None, None, None, 0, 0, 0, 0, 0, 0))

    def fn(programs, train_x, train_y, valid_x, valid_y, orders, keys, active):
        if prune:
            programs, positions = jax.vmap(lambda p: liveness.prune(p, cfg))(programs)
        else:
            positions = liveness.identity_positions(programs)

        def one_program(prog, pos, act, prog_keys):
            return over_tasks(prog, pos, act, train_x, train_y, valid_x, valid_y, orders, prog_keys)

        args = (programs, positions, active, keys)
        sort = strategy == "select" and prune
        if sort:
            # Under vmap a chunk's loops run to its longest member, so chunks of similar live lengths do
            # less work: measured 1.47x (demo space, 10 tasks) and 1.57x (linear-regressor space, 3 tasks)
            # on 1024 random programs (2-core CPU). A program's result does not depend on its chunk
            # partners (bitwise equal with and without sorting).
            length = programs.predict.size + programs.learn.size
            order = jnp.argsort(length, stable=True)
            args = jax.tree_util.tree_map(lambda x: x[order], args)
        out = interpreter.population_map(strategy, one_program, *args, chunk=select_chunk(train_x.shape[0]))
        if sort:
            out = jax.tree_util.tree_map(lambda y: y[jnp.argsort(order)], out)
        return out

    return fn


def select_chunk(num_tasks: int) -> int:
    """Programs per vmapped chunk of the select strategy.

    Work is done in whole chunks (batches are padded to a multiple of it), so the chunk trades per-lane
    efficiency against padding: measured on the 2-core CPU with the linear-regressor space at 3 tasks, a
    chunk of 32 programs costs 480-550 us per program against 430-570 us for 85, but a search batch
    usually has only ~20 FEC misses to evaluate (17.6 ms padded to 32 vs 48.4 ms padded to 85).
    """
    return max(8, min(32, 256 // num_tasks))


@functools.lru_cache(maxsize=64)
def _jitted(cfg: ZeroConfig, eval_type: str, num_epochs: int, strategy: str, return_predictions: bool,
            prune: bool):
    return jax.jit(make_evaluate_fn(cfg, eval_type, num_epochs, strategy, return_predictions, prune))


def live_instruction_count(programs: Program, cfg: ZeroConfig, num_train: int, num_valid: int,
                           num_epochs: int = 1) -> float:
    """Instructions one task's evaluation executes after pruning (no early stop), summed over programs."""
    pruned, _ = jax.jit(jax.vmap(lambda p: liveness.prune(p, cfg)))(programs)
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


@functools.partial(jax.jit, static_argnums=(1, 2))
def program_task_keys(key: jax.Array, num_programs: int, num_tasks: int) -> jax.Array:
    """Keys [P, T]: key (p, t) = fold_in(fold_in(key, p), t), so a program's draws do not depend on how many
    programs share its batch (padding, compaction, device count)."""
    per_program = jax.vmap(lambda p: jax.random.fold_in(key, p))(jnp.arange(num_programs))
    return jax.vmap(lambda k: jax.vmap(lambda t: jax.random.fold_in(k, t))(jnp.arange(num_tasks)))(per_program)


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
    dt = cfg.jnp_dtype
    orders = epoch_orders(tasks.seeds(), tasks.num_epochs, tasks.num_train)
    return (jnp.asarray(tasks.train_features, dt), jnp.asarray(tasks.train_labels, dt),
            jnp.asarray(tasks.valid_features, dt), jnp.asarray(tasks.valid_labels, dt), orders)


def evaluate(programs: Program, tasks: Tasks, cfg: ZeroConfig, *, key: jax.Array,
             strategy: Optional[str] = None, return_predictions: bool = False,
             validate: bool = True, prune: bool = True) -> Union[jax.Array, Tuple[jax.Array, Dict[str, jax.Array]]]:
    """Per-task fitness in [0, 1] of a population of programs.

    Args:
      programs: a Program with a leading population axis (see `stack_programs`), or a single program.
      tasks: the task collection.
      cfg: the program space / execution config.
      key: PRNG key; random-set ops draw from a key per (program, task).
      strategy: "select" or "cond" (identical results); default by backend.
      return_predictions: also return {"train": [P, T, E, N], "valid": [P, T, E, M]}: s1 after each
        training Predict (after the sigmoid for accuracy tasks) and each validation Predict; NaN for steps
        that never ran because training stopped early.
      validate: check program arrays against cfg first (host side).
      prune: skip dead instructions (results unchanged; see liveness.py).

    Returns:
      fitness [P, T] (or [T] for a single program), and the predictions if asked.
    """
    if not isinstance(cfg, ZeroConfig):
        raise ValueError(f"cfg: expected a zero.ZeroConfig, got {type(cfg).__name__}")
    strategy = strategy or interpreter.default_strategy(cfg, tasks.num_tasks)
    if strategy not in interpreter.STRATEGIES:
        raise ValueError(f"strategy must be one of {interpreter.STRATEGIES}, got {strategy!r}")
    programs, single = _as_population(programs, cfg)
    if validate:
        validate_program(programs, cfg)
    with jax.enable_x64(cfg.dtype == "float64"):
        task_arrays = prepare_tasks(tasks, cfg)
        programs = prepare_programs(programs, cfg)
        P, T = programs.setup.size.shape[0], tasks.num_tasks
        keys = program_task_keys(key, P, T)
        fn = _jitted(cfg, tasks.eval_type, tasks.num_epochs, strategy, return_predictions, prune)
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
