"""The jitted supernet steps that the NAS child evaluators share.

:class:`SupernetSteps` holds, for one (space, child config, schedule, image shape), the jitted
computations of the genotype-as-data :class:`~azjax.nas.supercell.SuperNet`: one compile serves
every child. :class:`~azjax.nas.child_trainer.ChildTrainer` trains children from scratch with them,
:class:`~azjax.nas.shared_weights.SharedWeightsTrainer` trains one set of shared weights.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from azjax.nas.augment import augment
from azjax.nas.space import CellSpace
from azjax.nas.supercell import SuperNet, init_variables, variable_shapes
from azjax.nas.train_config import TrainConfig
from azjax.nas.train_state import make_optimizer
from azjax.search import sharding

__all__ = ["SupernetSteps", "as_train_config", "device_data", "make_supernet", "padded_batches",
           "supernet_steps"]


def make_supernet(space: CellSpace, config: TrainConfig,
                  output_bn: bool = False) -> SuperNet:
    """The :class:`SuperNet` for ``space`` with the child sizes of ``config`` (CIFAR stem).

    ``output_bn``: batch-normalize the last cell's output before the classifier (shared weights:
    the output scale otherwise changes with the genotype, as ENAS's per-cell ``final_conv`` + BN
    avoids)."""
    if config.stem != "cifar":
        raise ValueError(f"stem: the supernet has the CIFAR stem only, got {config.stem!r}")
    return SuperNet(num_cells=config.num_cells, filters=config.filters, ops=space.ops,
                    num_blocks=space.num_blocks, allow_concat="concat" in space.combiners,
                    num_classes=config.num_classes, stem_multiplier=config.stem_multiplier,
                    depthwise_impl=config.depthwise_impl, output_bn=output_bn)


def as_train_config(config: Any) -> TrainConfig:
    """``config`` as a :class:`~azjax.nas.train.TrainConfig` (a dict or ConfigDict is converted)."""
    return config if isinstance(config, TrainConfig) else TrainConfig.from_config(config)


def _loss_fn(net, images, labels, normal, reduce):
    def fn(params, batch_stats):
        logits, upd = net.apply({"params": params, "batch_stats": batch_stats}, images, normal,
                                reduce, True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (upd["batch_stats"], logits)
    return fn


class SupernetSteps:
    """The jitted supernet steps of one (space, child config, schedule, image shape): fresh
    weights, training one child from scratch, training a batch of children on a device mesh,
    shared-weight training and the shared-weight reward.

    Data arrays are arguments, never closed-over constants, and instances are cached per key
    (:func:`supernet_steps`), so every evaluator with the same sizes reuses one trace and one
    compile.
    """

    def __init__(self, space: CellSpace, config: TrainConfig, total_steps: int,
                 image_shape: tuple[int, ...], output_bn: bool = False):
        self.space, self.config = space, config
        self.net = make_supernet(space, config, output_bn)
        self.optimizer = make_optimizer(config, total_steps)
        n0, r0 = space.cell_arrays(space.sample(jax.random.key(0)))
        self.shapes = variable_shapes(self.net, jnp.zeros((1, *image_shape), jnp.float32), n0, r0)
        self.train_child = jax.jit(self._train_child, static_argnames=("steps",))
        self._parallel: dict[tuple[Any, int], Any] = {}
        self.shared_train = jax.jit(self._shared_train, donate_argnums=(0, 1, 2))
        self.reward = jax.jit(self._reward, static_argnames=("batch_size",))
        self.init_opt = jax.jit(self.optimizer.init)

    def fresh(self, seed: int) -> tuple[Any, Any, Any]:
        """``(params, batch_stats, opt_state)`` drawn on the host (no compile)."""
        v = init_variables(self.shapes, seed)
        params = jax.tree_util.tree_map(jnp.asarray, v["params"])
        return params, jax.tree_util.tree_map(jnp.asarray, v["batch_stats"]), \
            self.init_opt(params)

    def _sgd_step(self, x_train, y_train):
        def step(carry, genome_and_key):
            params, batch_stats, opt_state = carry
            genome, key = genome_and_key
            normal, reduce = self.space.cell_arrays(genome)
            k_batch, k_aug = jax.random.split(key)
            # Minibatches drawn with replacement: a step's batch depends only on its key.
            idx = jax.random.randint(k_batch, (self.config.batch_size,), 0, x_train.shape[0])
            images = augment(k_aug, x_train[idx], self.config)
            (loss, (batch_stats, logits)), grads = jax.value_and_grad(
                _loss_fn(self.net, images, y_train[idx], normal, reduce), has_aux=True)(
                    params, batch_stats)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            acc = jnp.mean(jnp.argmax(logits, -1) == y_train[idx])
            return (params, batch_stats, opt_state), (loss, acc)
        return step

    def accuracy(self, params, batch_stats, genome, images, labels, weights, train_bn: bool):
        """Weighted accuracy of one genome on fixed-size batches ``[K, b, ...]``."""
        normal, reduce = self.space.cell_arrays(genome)

        def one(args):
            x, y, w = args
            logits = self.net.apply({"params": params, "batch_stats": batch_stats}, x, normal,
                                    reduce, train_bn, mutable=["batch_stats"])[0]
            return jnp.sum((jnp.argmax(logits, -1) == y) * w)

        return jnp.sum(jax.lax.map(one, (images, labels, weights))) / jnp.sum(weights)

    def _train_child(self, params, batch_stats, opt_state, genome, key, x_train, y_train,
                     valid, steps):
        keys = jax.random.split(key, steps)
        genomes = jnp.broadcast_to(genome, (steps,) + genome.shape)
        (params, batch_stats, _), (losses, accs) = jax.lax.scan(
            self._sgd_step(x_train, y_train), (params, batch_stats, opt_state), (genomes, keys))
        acc = self.accuracy(params, batch_stats, genome, *valid, train_bn=False)
        return acc, losses[-1], accs[-1]

    def train_children(self, mesh: Mesh, steps: int) -> Callable:
        """``train_child`` for a batch of children, the leading (children) axis of params, BN
        statistics, genomes and keys split over ``mesh`` (optimizer states start fresh); returns
        ``(acc, loss, train_acc)``, each ``[children]`` and replicated.

        Why ``shard_map`` + ``lax.map`` rather than ``vmap``: each device trains its slice of
        children one after another, so each child's genome is unbatched and ``nn.switch`` stays a
        real conditional that runs only the chosen op. A ``vmap`` over children would batch the
        switch index and run every candidate op of every slot. With as many
        children as devices each device trains exactly one child: one child's wall time.
        """
        cache_key = (tuple(d.id for d in mesh.devices.flat), int(steps))
        fn = self._parallel.get(cache_key)
        if fn is None:
            def local(params, batch_stats, genomes, keys, x_train, y_train, valid):
                def one(args):
                    p, b, g, k = args
                    # The optimizer state starts as in the sequential path (fresh).
                    return self._train_child(p, b, self.optimizer.init(p), g, k, x_train,
                                             y_train, valid, steps)
                return jax.lax.map(one, (params, batch_stats, genomes, keys))

            # Replicated results: every process of a multi-process run can read all rewards.
            fn = sharding.shard_population_fn(local, mesh, (True,) * 4 + (False,) * 3,
                                              replicate_outputs=True)
            self._parallel[cache_key] = fn
        return fn

    def _shared_train(self, params, batch_stats, opt_state, genomes, key, x_train, y_train,
                      order):
        keys = jax.random.split(key, order.shape[0])
        carry, (losses, accs) = jax.lax.scan(self._sgd_step(x_train, y_train),
                                             (params, batch_stats, opt_state),
                                             (genomes[order], keys))
        return carry, jnp.mean(losses), jnp.mean(accs)

    def _reward(self, params, batch_stats, genomes, key, x_valid, y_valid, batch_size):
        """Accuracy of each genome on one validation minibatch of ``batch_size`` examples drawn
        without replacement (BN in batch-statistics mode)."""
        idx = jax.random.choice(key, x_valid.shape[0], (batch_size,), replace=False)
        x, y = x_valid[idx][None], y_valid[idx][None]
        w = jnp.ones((1, batch_size))
        return jax.lax.map(lambda g: self.accuracy(params, batch_stats, g, x, y, w,
                                                   train_bn=True), genomes)


def supernet_steps(space: CellSpace, config: TrainConfig, total_steps: int,
                   image_shape: tuple[int, ...], output_bn: bool = False) -> SupernetSteps:
    """The (cached) :class:`SupernetSteps` of these sizes."""
    # The device count does not change the single-child steps: share their cache entry.
    return _cached_supernet_steps(space, dataclasses.replace(config, num_devices=1), total_steps,
                           image_shape, output_bn)


@functools.lru_cache(maxsize=8)
def _cached_supernet_steps(space: CellSpace, config: TrainConfig, total_steps: int,
                           image_shape: tuple[int, ...], output_bn: bool) -> SupernetSteps:
    return SupernetSteps(space, config, total_steps, image_shape, output_bn)


def padded_batches(images: jax.Array, labels: jax.Array, size: int):
    """Pad to a multiple of ``size`` and reshape to ``[K, size, ...]`` with 0/1 weights."""
    n = images.shape[0]
    k = -(-n // size)
    pad = k * size - n
    w = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = jnp.concatenate([labels, jnp.zeros((pad,), labels.dtype)])
    return (images.reshape(k, size, *images.shape[1:]), labels.reshape(k, size),
            w.reshape(k, size))


def device_data(data: Mapping[str, np.ndarray], batch_size: int):
    """``(x_train, y_train, x_valid, y_valid)`` as device arrays; at least one training batch."""
    x_train, y_train = jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"])
    if x_train.shape[0] < batch_size:
        raise ValueError(f"batch_size: {batch_size} exceeds {x_train.shape[0]} training examples")
    return x_train, y_train, jnp.asarray(data["valid_images"]), jnp.asarray(data["valid_labels"])
