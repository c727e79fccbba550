"""NASNet-style child evaluator: every child is trained from scratch on the proxy split and
rewarded with its validation accuracy (an ``evaluator(key, genomes) -> (fitness, info)`` for
:func:`azjax.search.run` over a :class:`~azjax.nas.space.CellSpace`).

``backend="supernet"`` (default) trains the genotype-as-data supernet
(:mod:`~azjax.nas.supernet_steps`) with fresh weights per child: one compile serves every child,
and training + validation of a child is one jitted call. ``backend="static"`` calls
:func:`azjax.nas.train.train_and_evaluate` on the static network (exactly the final-training code
path, but one XLA compile per distinct child). On one device the children of a batch run one
after another: ``vmap`` over children would batch the ``lax.switch`` index and run every op. With
``config.num_devices > 1`` the supernet backend trains the children of a batch at once, the
children axis sharded over devices (each device trains its share one after another, so the switch
stays a real conditional); the static backend cannot (one compile per genotype) and trains each
child data-parallel over the devices instead.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from azjax.nas.space import CellSpace
from azjax.nas.supercell import init_variables
from azjax.nas.supernet_steps import (
    as_train_config,
    device_data,
    padded_batches,
    supernet_steps,
)
from azjax.nas.train import prepare_data, train_and_evaluate
from azjax.search import sharding

__all__ = ["ChildTrainer"]


class ChildTrainer:
    """NASNet-style evaluator: train each child from scratch, reward = validation accuracy.

    Args:
        space: the :class:`CellSpace`.
        config: a :class:`~azjax.nas.train.TrainConfig` (or dict/ConfigDict) for the child:
            ``num_cells``, ``filters``, ``batch_size``, ``num_epochs`` / ``num_steps``, lr, ...
        data: ``train_*`` and ``valid_*`` arrays (the proxy split; valid is the reward set).
        backend: ``"supernet"`` (one compile for all children) or ``"static"``
            (``train.train_and_evaluate``; one compile per child).

    ``config.num_devices`` (1: one device, None or 0: all local devices, k: k devices): with more
    than one, the supernet backend trains the children of a call in parallel, the children
    axis sharded over the devices (:meth:`SupernetSteps.train_children`; the batch is padded to a
    multiple of the device count with copies of its first child, whose results are dropped), so
    K children on K devices take about one child's wall time. The static backend compiles one
    program per genotype, so its children cannot share a step: they run one after another, each
    trained data-parallel over the devices by ``train_and_evaluate``.

    Calling it with ``(key, genomes)`` returns ``(valid_accuracy [B], info)`` with info counters
    ``child_train_steps`` and ``children_trained``. Child ``i`` of a call is seeded by
    ``fold_in(key, i)``, so results do not depend on batching, resumption or the device count
    (up to float rounding).
    """

    def __init__(self, space: CellSpace, config: Any, data: Mapping[str, np.ndarray],
                 backend: str = "supernet"):
        if backend not in ("supernet", "static"):
            raise ValueError(f"backend: expected 'supernet' or 'static', got {backend!r}")
        self.space, self.config, self.backend = space, as_train_config(config), backend
        self.data = prepare_data(data)
        n = self.data["train_images"].shape[0]
        self.steps = self.config.num_steps or self.config.num_epochs * (
            n // self.config.batch_size)
        if backend == "supernet":
            self._steps = supernet_steps(space, self.config, self.steps,
                                     tuple(self.data["train_images"].shape[1:]))
            x_train, y_train, x_valid, y_valid = device_data(self.data, self.config.batch_size)
            self._args = (x_train, y_train,
                          padded_batches(x_valid, y_valid, min(self.config.eval_batch_size,
                                                         x_valid.shape[0])))
        n_dev = sharding.resolve_num_devices(self.config.num_devices)
        self.mesh: Mesh | None = sharding.make_mesh(n_dev) if backend == "supernet" and n_dev > 1 \
            else None
        if self.mesh is not None:  # the data lives on every device once, not copied per call
            self._args = jax.device_put(self._args, sharding.replicated(self.mesh))

    def _child_inputs(self, key: jax.Array) -> tuple[int, jax.Array]:
        """(host init seed, training key) of the child seeded by ``key``."""
        k_init, k_train = jax.random.split(key)
        return int(jax.random.randint(k_init, (), 0, 2**31 - 1)), k_train

    def train_children(self, key: jax.Array, genomes: Any) -> dict[str, np.ndarray]:
        """Train the children ``genomes[i]`` (seeded by ``fold_in(key, i)``) at once on the
        device mesh (supernet backend, ``num_devices > 1``); per-child metrics as arrays."""
        if self.mesh is None:
            raise ValueError("num_devices: parallel children need the supernet backend and "
                             "more than one device")
        genomes = np.asarray(genomes, np.int32)
        b = genomes.shape[0]
        padded = sharding.round_up(b, self.mesh)
        order = list(range(b)) + [0] * (padded - b)  # pad with copies of child 0
        seeds, keys = zip(*(self._child_inputs(jax.random.fold_in(key, i)) for i in order))
        steps = self._steps
        # Fresh weights drawn on the host per child (as in the sequential path), then stacked.
        fresh = [init_variables(steps.shapes, seed) for seed in seeds]
        stack = lambda *xs: np.stack(xs)
        params = jax.tree_util.tree_map(stack, *[v["params"] for v in fresh])
        batch_stats = jax.tree_util.tree_map(stack, *[v["batch_stats"] for v in fresh])
        sharded = sharding.population_sharding(self.mesh)
        params, batch_stats = jax.device_put((params, batch_stats), sharded)
        genomes_d, keys_d = jax.device_put((genomes[order], jnp.stack(keys)), sharded)
        fn = steps.train_children(self.mesh, self.steps)
        acc, loss, tacc = fn(params, batch_stats, genomes_d, keys_d, *self._args)
        return {"valid_accuracy": np.asarray(acc)[:b], "train_loss": np.asarray(loss)[:b],
                "train_accuracy": np.asarray(tacc)[:b]}

    def train_child(self, key: jax.Array, genome: Any) -> dict[str, float]:
        """Train one child and return ``valid_accuracy``, ``train_loss``, ``train_accuracy``."""
        if self.backend == "static":
            m = train_and_evaluate(self.space.to_genotype(np.asarray(genome)),
                                             self.config, self.data, key)
            return {"valid_accuracy": m["valid_accuracy"], "train_loss": m["train_loss"],
                    "train_accuracy": m["train_accuracy"]}
        seed, k_train = self._child_inputs(key)
        acc, loss, tacc = self._steps.train_child(
            *self._steps.fresh(seed), jnp.asarray(genome), k_train, *self._args,
            steps=self.steps)
        return {"valid_accuracy": float(acc), "train_loss": float(loss),
                "train_accuracy": float(tacc)}

    def __call__(self, key: jax.Array, genomes: Any) -> tuple[np.ndarray, dict[str, Any]]:
        genomes = np.asarray(genomes)
        if self.mesh is not None:
            fitness = self.train_children(key, genomes)["valid_accuracy"].astype(np.float32)
        else:
            fitness = np.zeros((genomes.shape[0],), np.float32)
            for i in range(genomes.shape[0]):
                m = self.train_child(jax.random.fold_in(key, i), genomes[i])
                fitness[i] = m["valid_accuracy"]
        return fitness, {"child_train_steps": self.steps * genomes.shape[0],
                         "children_trained": genomes.shape[0]}
