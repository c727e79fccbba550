"""ENAS-style child evaluator: one set of supernet weights lives across the whole search.

Each call trains them for ``steps_per_call`` minibatches, minibatch ``t`` using the architecture
``genomes[t % B]`` just asked from the strategy (a fresh architecture per batch), then rewards
every genome with its accuracy on one validation minibatch with the shared weights (BN in
batch-statistics mode, as ENAS searches). The weights, BN statistics and optimizer state are an
:class:`~azjax.search.ExtraState`, so they are checkpointed and resumed with the search.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from azjax.nas.space import CellSpace
from azjax.nas.supernet_steps import as_train_config, device_data, supernet_steps
from azjax.nas.train import prepare_data

__all__ = ["SharedWeightsTrainer"]


class SharedWeightsTrainer:
    """ENAS-style evaluator with supernet weights shared across all children (an ExtraState).

    Args:
        space, config, data: as :class:`ChildTrainer` (``config.batch_size`` is the training
            minibatch; ``config.eval_batch_size`` the reward minibatch).
        steps_per_call: shared-weight SGD steps per call (each on a minibatch with one of the
            asked architectures).
        total_steps: the length of the cosine lr schedule (e.g. the expected calls times
            ``steps_per_call``).
        seed: initial weights.
        output_bn: batch-normalize the last cell's output before the classifier (default on:
            without it the logits' scale changes with every sampled genotype and the shared
            weights barely learn; ``False`` gives the NASNet-mode child network).

    The supernet's cells emit their loose ends in per-block channel slots (``SuperCell``'s
    ``output_layout="slots"``), so a channel keeps its meaning across sampled genotypes.
    """

    def __init__(self, space: CellSpace, config: Any, data: Mapping[str, np.ndarray],
                 steps_per_call: int = 20, total_steps: int = 10_000, seed: int = 0,
                 output_bn: bool = True):
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call: must be >= 1, got {steps_per_call}")
        self.space, self.config = space, as_train_config(config)
        self.steps_per_call = int(steps_per_call)
        self.data = prepare_data(data)
        self._steps = supernet_steps(space, self.config, int(total_steps),
                                 tuple(self.data["train_images"].shape[1:]), bool(output_bn))
        self._data = device_data(self.data, self.config.batch_size)
        self.params, self.batch_stats, self.opt_state = self._steps.fresh(seed)
        # Every genome's reward is its accuracy on one validation minibatch of this size.
        self.reward_batch_size = min(self.config.eval_batch_size, self._data[2].shape[0])

    def __call__(self, key: jax.Array, genomes: Any) -> tuple[jax.Array, dict[str, Any]]:
        genomes = jnp.asarray(genomes)
        k_train, k_valid = jax.random.split(key)
        order = jnp.arange(self.steps_per_call) % genomes.shape[0]
        x_train, y_train, x_valid, y_valid = self._data
        (self.params, self.batch_stats, self.opt_state), loss, _ = self._steps.shared_train(
            self.params, self.batch_stats, self.opt_state, genomes, k_train, x_train, y_train,
            order)
        fitness = self._steps.reward(self.params, self.batch_stats, genomes, k_valid,
                                       x_valid, y_valid, batch_size=self.reward_batch_size)
        return fitness, {"shared_train_steps": self.steps_per_call,
                         "shared_train_loss_sum": float(loss)}

    def get_state(self) -> Any:
        return {"params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state}

    def set_state(self, state: Any) -> None:
        self.params = jax.tree_util.tree_map(jnp.asarray, state["params"])
        self.batch_stats = jax.tree_util.tree_map(jnp.asarray, state["batch_stats"])
        self.opt_state = jax.tree_util.tree_map(jnp.asarray, state["opt_state"])
