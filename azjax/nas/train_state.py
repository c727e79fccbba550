"""The child network, its optimizer and its training state.

The optimizer is momentum SGD with cosine decay, L2 on conv/dense kernels only (an optax mask) and
global-norm clipping.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from azjax.nas.genotype import Genotype
from azjax.nas.network import NASNet
from azjax.nas.train_config import TrainConfig

__all__ = ["TrainState", "create_train_state", "make_model", "make_optimizer",
           "weight_decay_mask"]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (a pytree; checkpointed by
    :func:`azjax.nas.train.save_checkpoint`)."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_model(genotype: Genotype, config: TrainConfig) -> NASNet:
    """The NASNet child described by ``config``."""
    return NASNet(
        genotype=genotype, num_cells=config.num_cells, filters=config.filters, stem=config.stem,
        num_classes=config.num_classes, aux_head=config.aux_head,
        stem_multiplier=config.stem_multiplier, drop_path_keep_prob=config.drop_path_keep_prob,
        dense_dropout_keep_prob=config.dense_dropout_keep_prob,
        depthwise_impl=config.depthwise_impl)


def weight_decay_mask(params: Any) -> Any:
    """True for conv/dense kernels (leaves named ``kernel``), False for BN scales and biases."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    return flax.traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """L2 (as TF-slim: gradient += wd * w, kernels only) -> clip -> momentum SGD, cosine lr."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(1, total_steps))
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=weight_decay_mask),
        optax.clip_by_global_norm(config.clip_norm),
        optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov),
    )


def create_train_state(model: NASNet, optimizer: optax.GradientTransformation, key: jax.Array,
                       image_shape: tuple[int, int, int]) -> TrainState:
    """Initialise parameters, BN statistics and optimizer state."""
    variables = jax.jit(model.init)(key, jnp.zeros((1, *image_shape), jnp.float32))
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=optimizer.init(params))
