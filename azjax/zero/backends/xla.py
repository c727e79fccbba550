"""The XLA backends' evaluation: the reference executor's loop written once in JAX (docs/backends.md).

Per (program, task): memory zeroed, Setup run once; each epoch trains over the examples (epoch 0 in stored
order, later epochs in the task's permutation): `v0 = x, s0 = 0`, Predict, (accuracy tasks: `s1 =
sigmoid(s1)` written back), stop early if the error is NaN or > max_abs_error, `v0 = x, s0 = y`, Learn; then
validation (Predict only, `s0 = 0`, raw `s1` kept) after every epoch; the best epoch counts. A failure in the
first epoch gives fitness 0, a later one keeps the best earlier epoch. Multi-class tasks use the vector layout
instead (label vector `v1`, prediction `v2`, softmax; `multiclass_softmax`, docs/automl_zero.md).

Setup runs once, then one loop over "steps" (per epoch N train and M validation steps; step 0 stands
for Setup) with an instruction-loop site for Predict and one for Learn. Each site's switch holds only the
ops its component may contain, so e.g. Setup's costly random ops never weigh on the per-example loop. A
backend that `stops_early` runs the steps as a `while_loop` that ends as soon as every task of a program has
failed; vectorized backends scan.

`XlaBackend` subclasses (`select`, `cond`) choose the memory model (`azjax/zero/interpreter.py`) and how the
population is mapped.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.zero import interpreter
from azjax.zero import ops as ops_lib
from azjax.zero import liveness
from azjax.zero.backends.base import Backend, check_layout
from azjax.zero.program import Program, ZeroConfig

_SETUP, _TRAIN, _VALID = 0, 1, 2


class XlaBackend(Backend):
    """A backend that runs the `lax.switch` interpreter under XLA."""

    stops_early: bool = False
    sorts_by_length: bool = False

    def memory_model(self, cfg: ZeroConfig):
        raise NotImplementedError

    def map_population(self, fn: Callable, args, num_tasks: int):
        raise NotImplementedError

    def make_evaluate_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                         return_predictions: bool = False, prune: bool = True) -> Callable:
        return make_xla_evaluate_fn(self, cfg, eval_type, num_epochs, return_predictions, prune)


def _sigmoid(x):
    # The reference's 1 / (1 + exp(-x)), kept literal so that inf/NaN behave the same.
    return 1 / (1 + jnp.exp(-x))


def multiclass_softmax(logits):
    """Softmax of K logits (a sequence of equally shaped arrays) in a fixed order, written once for every
    JAX backend: m = max(z_0, ..., z_{K-1}) left to right (NaN propagates), e_k = exp(z_k - m),
    s = ((e_0 + e_1) + e_2) + ..., p_k = e_k / s. A NaN or +inf logit (or all -inf) makes every p_k NaN."""
    m = logits[0]
    for z in logits[1:]:
        m = jnp.maximum(m, z)
    e = [jnp.exp(z - m) for z in logits]
    total = e[0]
    for x in e[1:]:
        total = total + x
    return [x / total for x in e]


def multiclass_correct(logits, label):
    """Whether the first index of the largest of K logits equals `label` (a class id as a float) and every
    logit is finite (a NaN or infinite logit counts as a wrong answer)."""
    best, index = logits[0], jnp.zeros(jnp.shape(label), jnp.int32)
    finite = jnp.isfinite(logits[0])
    for k, z in enumerate(logits[1:], start=1):
        better = z > best
        index = jnp.where(better, k, index)
        best = jnp.where(better, z, best)
        finite = finite & jnp.isfinite(z)
    return finite & (index.astype(label.dtype) == label)


def _rms_fitness(loss, dtype):
    rmse = jnp.sqrt(loss)
    fit = 1 - ops_lib.product(jnp.asarray(2 / jnp.pi, rmse.dtype), jnp.arctan(rmse))  # no FMA, as the reference
    return jnp.where(jnp.isfinite(rmse), fit, 0).astype(dtype)


def _step_tables(num_epochs: int, num_train: int, num_valid: int):
    """Static per-step kind, epoch and 'last validation step of its epoch' flags."""
    per_epoch = np.concatenate([np.full(num_train, _TRAIN), np.full(num_valid, _VALID)])
    kind = np.concatenate([[_SETUP], np.tile(per_epoch, num_epochs)]).astype(np.int32)
    epoch_end = np.zeros_like(kind, dtype=bool)
    epoch_end[np.arange(1, num_epochs + 1) * (num_train + num_valid)] = True
    return kind, epoch_end


def make_xla_evaluate_fn(backend: "XlaBackend", cfg: ZeroConfig, eval_type: str, num_epochs: int,
                         return_predictions: bool = False, prune: bool = True):
    """Builds the pure, unjitted evaluation of a population on a task collection.

    Long by design: one closure per (program, task) lane whose scan body is the harness of the module
    docstring, step by step; splitting it would scatter the carry's fields over several functions.

    Returns `fn(programs, train_x, train_y, valid_x, valid_y, orders, keys, active) -> fitness [P, T]` (and
    predictions when asked), with programs batched [P, ...], task arrays [T, ...] in cfg's dtype,
    orders int32 [T, E, N], keys [P, T] and `active` bool [P] (inactive programs - batch padding - stop
    at once under `cond` and get fitness 0).
    """
    mem_model = backend.memory_model(cfg)
    # Three switch sites, each with only its component's ops: Setup (once per task), Predict and Learn.
    run_setup = mem_model.make_run(interpreter.component_op_ids(cfg, ("setup",)))
    run_predict = mem_model.make_run(interpreter.component_op_ids(cfg, ("predict",)))
    run_learn = mem_model.make_run(interpreter.component_op_ids(cfg, ("learn",)))
    dt = cfg.jnp_dtype
    check_layout(cfg, eval_type)
    accuracy = eval_type == "accuracy"
    multiclass = eval_type == "multiclass"
    K = cfg.num_classes
    max_abs = cfg.max_abs_error
    keys_rule = backend.key_rule(cfg)

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
            if multiclass:
                mem = mem_model.set_label_vector(mem, jnp.zeros((x.shape[-1],), dt))
            # The reference's validation returns at its first bad example: later Predicts do not run.
            # (Step 0 stands for Setup, which ran before the loop.)
            skip = is_valid & valid_bad
            n_a = jnp.where(is_setup | skip, 0, prog.predict.size)
            counter = keys_rule.counter(step, "predict", 0)
            mem = run_predict(mem, prog.predict.instructions, prog.predict.data, n_a, key, counter, positions[1])
            if multiclass:
                # The K logits in v2[:K]; training writes the softmax back (zeros beyond K), so Learn sees
                # probabilities and v1 - v2 is the cross-entropy gradient; validation keeps the logits.
                v2 = mem_model.get_prediction_vector(mem)
                logits = [v2[k] for k in range(K)]
                probs = multiclass_softmax(logits)
                p_vec = jnp.stack(probs + [jnp.zeros((), dt)] * (x.shape[-1] - K))
                mem = mem_model.set_prediction_vector(mem, jnp.where(is_train, p_vec, v2))
                failed = is_train & jnp.any(jnp.isnan(p_vec))
            else:
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
            if multiclass:
                mem = mem_model.set_inputs(mem, x, jnp.zeros((), dt))
                onehot = (jnp.arange(x.shape[-1]) == y.astype(jnp.int32)).astype(dt)
                mem = mem_model.set_label_vector(mem, onehot)
            else:
                mem = mem_model.set_inputs(mem, x, y)
            mem = run_learn(mem, prog.learn.instructions, prog.learn.data,
                      jnp.where(is_train & new_alive, prog.learn.size, 0), key, keys_rule.counter(step, "learn", 0), positions[2])
            # Validation bookkeeping.
            if multiclass:
                e = (~multiclass_correct(logits, y)).astype(dt)
                bad = jnp.zeros((), bool)
            elif accuracy:
                e = ((y > 0.5) != (_sigmoid(s1) > 0.5)).astype(dt)
                bad = jnp.zeros((), bool)
            else:
                e = y - s1
                bad = jnp.isnan(e) | (jnp.abs(e) > max_abs)
            counts = accuracy or multiclass
            loss = loss + jnp.where(is_valid & ~skip, ops_lib.product(e, e) if not counts else e, 0)
            valid_bad = valid_bad | (is_valid & ~skip & bad)
            if counts:
                fit = (1 - loss / M).astype(dt)
            else:
                fit = _rms_fitness(loss / M, dt)
            fit = jnp.where(valid_bad, 0, fit)
            best = jnp.where(end & new_alive, jnp.maximum(best, fit), best)
            loss = jnp.where(end, 0, loss)
            valid_bad = jnp.where(end, False, valid_bad)
            if preds is not None:
                if multiclass:  # [K]: probabilities in training, logits in validation
                    value = jnp.where(is_train, p_vec[:K], v2[:K])
                else:
                    value = jnp.where(is_train, p_train, s1)
                preds = preds.at[step].set(jnp.where(ran, value, jnp.nan))
            return step + 1, mem, new_alive, loss, valid_bad, best, preds

        pred_shape = (num_steps, K) if multiclass else (num_steps,)
        preds0 = jnp.full(pred_shape, jnp.nan, dt) if return_predictions else None
        mem0 = run_setup(mem_model.zeros(), prog.setup.instructions, prog.setup.data,
                         jnp.where(active, prog.setup.size, 0), key, 0, positions[0])
        init = (jnp.zeros((), jnp.int32), mem0, active, jnp.zeros((), dt),
                jnp.zeros((), bool), jnp.zeros((), dt), preds0)
        if backend.stops_early:
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
        per_epoch = preds[1:].reshape((num_epochs, N + M) + preds.shape[1:])
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
        sort = backend.sorts_by_length and prune
        if sort:
            # Under vmap a chunk's loops run to its longest member, so chunks of similar live lengths do
            # less work: measured 1.47x (demo space, 10 tasks) and 1.57x (linear-regressor space, 3 tasks)
            # on 1024 random programs (2-core CPU). A program's result does not depend on its chunk
            # partners (bitwise equal with and without sorting).
            length = programs.predict.size + programs.learn.size
            order = jnp.argsort(length, stable=True)
            args = jax.tree_util.tree_map(lambda x: x[order], args)
        out = backend.map_population(one_program, args, num_tasks=train_x.shape[0])
        if sort:
            out = jax.tree_util.tree_map(lambda y: y[jnp.argsort(order)], out)
        return out

    return fn
