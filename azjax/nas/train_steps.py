"""The jitted train and eval steps of child training (each compiles once; a retrace is an
error), and :func:`evaluate` over a whole split."""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from azjax.nas.augment import augment
from azjax.nas.data_parallel import batch_sharding, process_rows, replicated, shard_local_batch
from azjax.nas.network import NASNet
from azjax.nas.train_config import TrainConfig
from azjax.nas.train_state import TrainState

__all__ = ["evaluate", "make_eval_step", "make_train_step", "train_step_fn"]


def _max_traces(fn: Callable, n: int) -> Callable:
    """Raise ``AssertionError`` if ``fn`` is traced more than ``n`` times.

    Like ``chex.assert_max_traces`` but counted per wrapper object: chex keys its counter on the
    definition site, so two children built by the same factory would share one budget.
    """
    count = [0]

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] > n:
            raise AssertionError(f"{fn.__name__} traced {count[0]} times (max {n}): an input "
                                 "shape, dtype or static value changed between calls")
        return fn(*args, **kwargs)

    return wrapped


def train_step_fn(model: NASNet, optimizer: optax.GradientTransformation, config: TrainConfig,
                  total_steps: int) -> Callable:
    """The un-jitted ``(state, images, labels, key) -> (state, metrics)`` (see
    :func:`make_train_step`)."""

    def step_fn(state: TrainState, images: jax.Array, labels: jax.Array, key: jax.Array):
        k_aug, k_drop, k_dp = jax.random.split(key, 3)
        images = augment(k_aug, images, config)
        progress = state.step.astype(jnp.float32) / max(1, total_steps)

        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, images, train=True,
                drop_path_progress=progress, rngs={"dropout": k_drop, "drop_path": k_dp},
                mutable=["batch_stats", "intermediates"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            aux_loss = jnp.zeros(())
            if config.aux_head:
                aux_logits = updates["intermediates"]["aux_logits"][0]
                aux_loss = optax.softmax_cross_entropy_with_integer_labels(
                    aux_logits, labels).mean()
            total = loss + config.aux_weight * aux_loss
            return total, (loss, aux_loss, logits, updates["batch_stats"])

        grads, (loss, aux_loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(
            state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "aux_loss": aux_loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "grad_norm": optax.tree.norm(grads),
        }
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        return new_state, metrics

    return step_fn


def make_train_step(model: NASNet, optimizer: optax.GradientTransformation, config: TrainConfig,
                    total_steps: int, max_traces: int = 1, mesh: Mesh | None = None) -> Callable:
    """A jitted ``(state, images, labels, key) -> (state, metrics)`` that donates ``state``.

    Augmentation runs inside the step. The drop-path progress ``step / total_steps`` is computed
    from ``state.step`` inside the graph, so the step compiles once; a retrace raises
    ``AssertionError`` (at most ``max_traces`` traces).

    With a ``mesh`` (:func:`data_mesh`) the step is data-parallel: images and labels are split on
    the batch axis, the state, key and metrics are replicated. This is ``jit`` with in/out
    shardings rather than ``shard_map`` + ``pmean`` on purpose: the traced program is exactly the
    single-device one, and the partitioner turns every reduction over the batch (BN mean and
    variance, the loss mean, hence the gradients) into a cross-device all-reduce. So BN uses the
    global-batch statistics without threading an ``axis_name`` through every BatchNorm of the
    static and super networks, and the result equals the one-device step up to float rounding.
    Random augmentation is device-count independent too (threefry is partitionable).
    """
    fn = _max_traces(train_step_fn(model, optimizer, config, total_steps), max_traces)
    if mesh is None:
        return jax.jit(fn, donate_argnums=(0,))
    rep, batch = replicated(mesh), batch_sharding(mesh)
    return jax.jit(fn, in_shardings=(rep, batch, batch, rep), out_shardings=(rep, rep),
                   donate_argnums=(0,))


def make_eval_step(model: NASNet, max_traces: int = 1, mesh: Mesh | None = None,
                   batch_size: int | None = None) -> Callable:
    """A jitted ``(state, images, labels, weights) -> (sum correct, sum loss)``; padded rows get
    weight 0 so every batch has one shape.

    With a ``mesh`` the batch is split over it when ``batch_size`` divides evenly (else every
    device evaluates the whole batch); the sums are replicated.
    """

    def eval_fn(state: TrainState, images, labels, weights):
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, images,
                             train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return jnp.sum(correct * weights), jnp.sum(loss * weights)

    if mesh is None:
        return jax.jit(_max_traces(eval_fn, max_traces))
    rep = replicated(mesh)
    batch = batch_sharding(mesh) if _eval_split(mesh, batch_size) else rep
    return jax.jit(_max_traces(eval_fn, max_traces), in_shardings=(rep, batch, batch, batch),
                   out_shardings=(rep, rep))


def _eval_split(mesh: Mesh, batch_size: int | None) -> bool:
    """Whether evaluation batches of ``batch_size`` are split over ``mesh`` (else replicated)."""
    return bool(batch_size) and batch_size % mesh.size == 0


def evaluate(eval_step: Callable, state: TrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int, mesh: Mesh | None = None) -> dict[str, float]:
    """Accuracy and mean loss over all of ``images`` (last batch padded, not dropped).

    With the ``mesh`` of :func:`make_eval_step` each batch goes onto the mesh as that step
    expects it: split (each process transfers only its own rows of the batch,
    :func:`~azjax.nas.data_parallel.shard_local_batch`, so the mesh may span processes) or
    replicated. Every process gets the same sums.
    """
    n = images.shape[0]
    if n == 0:
        raise ValueError("images: empty evaluation set")
    split = mesh is not None and _eval_split(mesh, batch_size)
    rows = process_rows(mesh, batch_size) if split else slice(None)
    correct = loss = 0.0
    for start in range(0, n, batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        m = x.shape[0]
        w = np.ones(batch_size, np.float32)
        if m < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - m, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(batch_size - m, y.dtype)])
            w[m:] = 0.0
        if split:
            x, y, w = shard_local_batch(mesh, batch_size, x[rows], y[rows], w[rows])
        elif mesh is not None:  # replicated: a global array, so the mesh may span processes
            x, y, w = jax.device_put((x, y, w), replicated(mesh))
        c, lsum = eval_step(state, x, y, w)
        correct += float(c)
        loss += float(lsum)
    return {"accuracy": correct / n, "loss": loss / n}
