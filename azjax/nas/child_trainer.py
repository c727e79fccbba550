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

Several processes (``jax.distributed``, ``global_mesh=True``; docs/scaling.md, section 4): the
children of a call are split over all processes. The supernet backend shards the children axis
over a global mesh (the first ``num_devices`` local devices of every process); the static
backend deals the children out to the processes, each trains its own on its local devices, and
the rewards are all-gathered. Either way every process returns the whole batch's rewards, and
``trained_here`` counts the children this process trained.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from azjax.nas.data_parallel import data_mesh
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
        global_mesh: split the children of every call over all processes of a multi-process
            run (every process must build the trainer alike and make the same calls); off, every
            process trains every child on its own devices. The same in a single-process run.

    ``config.num_devices`` (1: one device, None or 0: all local devices, k: k devices): with more
    than one, the supernet backend trains the children of a call in parallel, the children
    axis sharded over the devices (:meth:`SupernetSteps.train_children`; the batch is padded to a
    multiple of the device count with copies of its first child, whose results are dropped), so
    K children on K devices take about one child's wall time. The static backend compiles one
    program per genotype, so its children cannot share a step: they run one after another, each
    trained data-parallel over the devices by ``train_and_evaluate``.

    Calling it with ``(key, genomes)`` returns ``(valid_accuracy [B], info)`` with info counters
    ``child_train_steps`` and ``children_trained``. Child ``i`` of a call is seeded by
    ``fold_in(key, i)``, so results do not depend on batching, resumption, the device or the
    process count (up to float rounding). The supernet backend deals the children over the
    processes first, then over each process's devices (:meth:`placement`), so even a batch
    smaller than the mesh gives every process a share. ``trained_here`` counts the children
    (padding excluded) this process has trained, over all calls.
    """

    def __init__(self, space: CellSpace, config: Any, data: Mapping[str, np.ndarray],
                 backend: str = "supernet", global_mesh: bool = False):
        if backend not in ("supernet", "static"):
            raise ValueError(f"backend: expected 'supernet' or 'static', got {backend!r}")
        self.space, self.config, self.backend = space, as_train_config(config), backend
        self.global_mesh = bool(global_mesh)
        self.trained_here = 0
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
        processes = jax.process_count() if self.global_mesh else 1
        self.mesh: Mesh | None = sharding.make_mesh(n_dev, global_mesh=self.global_mesh) \
            if backend == "supernet" and n_dev * processes > 1 else None
        # Static backend: whole children per process (one compile per genotype, no shared step).
        self.processes = processes if backend == "static" else 1
        if backend == "static":  # each child's data mesh: a bad batch_size fails here, not later
            data_mesh(self.config.num_devices, self.config.batch_size)
        if self.mesh is not None:  # the data lives on every device once, not copied per call
            # From host copies: every process then supplies its own devices' copies.
            self._args = jax.device_put(jax.tree_util.tree_map(np.asarray, self._args),
                                        sharding.replicated(self.mesh))

    def _child_inputs(self, key: jax.Array) -> tuple[int, jax.Array]:
        """(host init seed, training key) of the child seeded by ``key``."""
        k_init, k_train = jax.random.split(key)
        return int(jax.random.randint(k_init, (), 0, 2**31 - 1)), k_train

    def placement(self, b: int) -> tuple[int, np.ndarray]:
        """``(padded, rows)``: a call of ``b`` children is padded to ``padded`` rows (a multiple
        of the mesh size) and child ``i`` occupies row ``rows[i]`` of the children axis (device
        ``d`` holds rows ``d*k .. (d+1)*k - 1``, ``k = padded / mesh size``).

        Children are dealt over the processes first, then over each process's devices, then
        over a device's ``k`` slots, so a process's share differs from another's by at most one
        child and padding (copies of child 0, results dropped) lands last."""
        if self.mesh is None:
            raise ValueError("num_devices: parallel children need the supernet backend and "
                             "more than one device")
        devices = list(self.mesh.devices.flat)
        size = len(devices)
        padded = sharding.round_up(b, self.mesh)
        k = padded // size
        seen: dict[int, int] = {}
        rank = []  # a device's position among its process's devices
        for d in devices:
            rank.append(seen.get(d.process_index, 0))
            seen[d.process_index] = rank[-1] + 1
        slots = sorted((pos, rank[d], devices[d].process_index, d * k + pos)
                       for d in range(size) for pos in range(k))
        return padded, np.asarray([s[-1] for s in slots], np.int64)

    def train_children(self, key: jax.Array, genomes: Any) -> dict[str, np.ndarray]:
        """Train the children ``genomes[i]`` (seeded by ``fold_in(key, i)``) at once on the
        device mesh (supernet backend, more than one device in the mesh); per-child metrics as
        arrays, the same on every process. A process draws fresh weights only for the children
        its own devices train."""
        genomes = np.asarray(genomes, np.int32)
        b = genomes.shape[0]
        padded, rows = self.placement(b)
        order = np.zeros(padded, np.int64)  # the child in each row; padding repeats child 0
        order[rows[:b]] = np.arange(b)
        mine = sharding.local_rows(self.mesh, padded)  # the rows of this process's devices
        steps = self._steps
        # Fresh weights drawn on the host per child (as in the sequential path), then stacked;
        # each process draws (and transfers) those of its own rows only.
        seeds, keys = zip(*(self._child_inputs(jax.random.fold_in(key, int(order[r])))
                            for r in mine))
        fresh = [init_variables(steps.shapes, seed) for seed in seeds]
        sharded = sharding.population_sharding(self.mesh)

        def rows_of(*local):  # this process's rows -> the global [padded, ...] array
            a = np.stack(local)
            return jax.make_array_from_process_local_data(sharded, a, (padded, *a.shape[1:]))

        params, batch_stats = (jax.tree_util.tree_map(rows_of, *[v[name] for v in fresh])
                               for name in ("params", "batch_stats"))
        genomes_d = rows_of(*genomes[order[mine]])
        keys_d = jax.random.wrap_key_data(rows_of(*[jax.random.key_data(k) for k in keys]),
                                          impl=jax.random.key_impl(key))
        fn = steps.train_children(self.mesh, self.steps)
        acc, loss, tacc = fn(params, batch_stats, genomes_d, keys_d, *self._args)
        self.trained_here += int(np.sum(np.isin(mine, rows[:b])))
        at = rows[:b]
        return {"valid_accuracy": np.asarray(acc)[at], "train_loss": np.asarray(loss)[at],
                "train_accuracy": np.asarray(tacc)[at]}

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

    def _static_children(self, key: jax.Array, genomes: np.ndarray) -> np.ndarray:
        """Static backend over several processes: process ``p`` trains children
        ``p, p + P, p + 2P, ...`` on its own devices; the rewards are all-gathered."""
        p = jax.process_index()
        fitness = np.zeros((genomes.shape[0],), np.float32)
        for i in range(p, genomes.shape[0], self.processes):
            fitness[i] = self.train_child(jax.random.fold_in(key, i), genomes[i])["valid_accuracy"]
            self.trained_here += 1
        gathered = np.stack(sharding.allgather(fitness))  # [processes, B]
        owner = np.arange(genomes.shape[0]) % self.processes
        return gathered[owner, np.arange(genomes.shape[0])].astype(np.float32)

    def __call__(self, key: jax.Array, genomes: Any) -> tuple[np.ndarray, dict[str, Any]]:
        genomes = np.asarray(genomes)
        if self.mesh is not None:
            fitness = self.train_children(key, genomes)["valid_accuracy"].astype(np.float32)
        elif self.processes > 1:
            fitness = self._static_children(key, genomes)
        else:
            fitness = np.zeros((genomes.shape[0],), np.float32)
            for i in range(genomes.shape[0]):
                m = self.train_child(jax.random.fold_in(key, i), genomes[i])
                fitness[i] = m["valid_accuracy"]
            self.trained_here += genomes.shape[0]
        return fitness, {"child_train_steps": self.steps * genomes.shape[0],
                         "children_trained": genomes.shape[0]}
