"""Child evaluators for NAS on the shared harness (``search.run``), plus a leaderboard.

Two search modes, each an ``evaluator(key, genomes) -> (fitness,
info)`` for :func:`azjax.search.run` over a :class:`~azjax.nas.space.CellSpace`:

* :class:`ChildTrainer` (NASNet-style): every child is trained from scratch for a few epochs on
  the proxy split and rewarded with its validation accuracy. ``backend="supernet"`` (default)
  trains the genotype-as-data :class:`~azjax.nas.supercell.SuperNet` with fresh weights per child:
  one compile serves every child, and training + validation of a child is one jitted call.
  ``backend="static"`` calls :func:`azjax.nas.train.train_and_evaluate` on the static network
  (exactly the final-training code path, but one XLA compile per distinct child, about a minute
  on CPU). On one device the children of a batch run one after another: ``vmap`` over children
  would batch the ``lax.switch`` index and run every op. With
  ``config.num_devices > 1`` the supernet backend trains the children of a batch at once, the
  children axis sharded over devices (each device trains its share one after another, so the
  switch stays a real conditional); the static backend cannot (one compile per genotype) and
  trains each child data-parallel over the devices instead.
* :class:`SharedWeightsTrainer` (ENAS-style): one set of supernet weights lives across the whole
  search. Each call trains them for ``steps_per_call`` minibatches, minibatch ``t`` using the
  architecture ``genomes[t % B]`` just asked from the strategy (a fresh architecture per batch),
  then rewards every genome with its accuracy on one validation minibatch with the shared weights
  (BN in batch-statistics mode, as ENAS searches). The weights, BN statistics and optimizer state
  are an :class:`~azjax.search.ExtraState`, so they are checkpointed and resumed with the search.

:class:`Leaderboard` records every evaluated genome and reward (also an ``ExtraState``) and
reports the top genotypes; :class:`CombinedState` bundles several extra states.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azjax.nas import train as nas_train
from azjax.nas.space import CellSpace
from azjax.nas.supercell import SuperNet, init_variables, variable_shapes
from azjax.search.sharding import POP_AXIS, make_mesh, round_up

__all__ = ["ChildTrainer", "SharedWeightsTrainer", "Leaderboard", "CombinedState",
           "make_supernet", "prepare_data"]


def make_supernet(space: CellSpace, config: nas_train.TrainConfig,
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


def prepare_data(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 NHWC images (uint8 ones standardized with training statistics), int32 labels."""
    for k in ("train_images", "train_labels", "valid_images", "valid_labels"):
        if k not in data:
            raise ValueError(f"data: missing {k!r}")
    return nas_train._prepare_images(data)  # noqa: SLF001 - same package, same rules


def _config(config: Any) -> nas_train.TrainConfig:
    return config if isinstance(config, nas_train.TrainConfig) else \
        nas_train.TrainConfig.from_config(config)


def _loss_fn(net, images, labels, normal, reduce):
    def fn(params, batch_stats):
        logits, upd = net.apply({"params": params, "batch_stats": batch_stats}, images, normal,
                                reduce, True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (upd["batch_stats"], logits)
    return fn


class _Program:
    """The jitted supernet computations of one (space, child config, schedule, image shape).

    Data arrays are arguments, never closed-over constants, and programs are cached per key
    (:func:`_program`), so every evaluator with the same sizes reuses one trace and one compile.
    """

    def __init__(self, space: CellSpace, config: nas_train.TrainConfig, total_steps: int,
                 image_shape: tuple[int, ...], output_bn: bool = False):
        self.space, self.config = space, config
        self.net = make_supernet(space, config, output_bn)
        self.optimizer = nas_train.make_optimizer(config, total_steps)
        n0, r0 = space.cell_arrays(space.sample(jax.random.key(0)))
        self.shapes = variable_shapes(self.net, jnp.zeros((1, *image_shape), jnp.float32), n0, r0)
        self.train_child = jax.jit(self._train_child, static_argnames=("steps",))
        self._parallel: dict[tuple[Any, int], Any] = {}
        self.shared_train = jax.jit(self._shared_train, donate_argnums=(0, 1, 2))
        self.reward = jax.jit(self._reward)
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
            images = nas_train.augment(k_aug, x_train[idx], self.config)
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

    def train_children(self, mesh: Mesh, steps: int):
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
                    # The optimizer state starts as in the sequential path (Program.fresh).
                    return self._train_child(p, b, self.optimizer.init(p), g, k, x_train,
                                             y_train, valid, steps)
                return jax.lax.map(one, (params, batch_stats, genomes, keys))

            pop, rep = PartitionSpec(POP_AXIS), PartitionSpec()
            # check_vma=False: the scan carries are created per device inside the map.
            mapped = jax.shard_map(local, mesh=mesh, in_specs=(pop,) * 4 + (rep,) * 3,
                                   out_specs=pop, check_vma=False)
            # Replicated results: every process of a multi-process run can read all rewards.
            fn = jax.jit(mapped, out_shardings=NamedSharding(mesh, rep))
            self._parallel[cache_key] = fn
        return fn

    def _shared_train(self, params, batch_stats, opt_state, genomes, key, x_train, y_train,
                      order):
        keys = jax.random.split(key, order.shape[0])
        carry, (losses, accs) = jax.lax.scan(self._sgd_step(x_train, y_train),
                                             (params, batch_stats, opt_state),
                                             (genomes[order], keys))
        return carry, jnp.mean(losses), jnp.mean(accs)

    def _reward(self, params, batch_stats, genomes, key, x_valid, y_valid, size):
        idx = jax.random.choice(key, x_valid.shape[0], (size.shape[0],), replace=False)
        x, y = x_valid[idx][None], y_valid[idx][None]
        w = jnp.ones((1, size.shape[0]))
        return jax.lax.map(lambda g: self.accuracy(params, batch_stats, g, x, y, w,
                                                   train_bn=True), genomes)


def _program(space: CellSpace, config: nas_train.TrainConfig, total_steps: int,
             image_shape: tuple[int, ...], output_bn: bool = False) -> _Program:
    # The device count does not change the single-child program: share its cache entry.
    return _cached_program(space, dataclasses.replace(config, num_devices=1), total_steps,
                           image_shape, output_bn)


@functools.lru_cache(maxsize=8)
def _cached_program(space: CellSpace, config: nas_train.TrainConfig, total_steps: int,
                    image_shape: tuple[int, ...], output_bn: bool) -> _Program:
    return _Program(space, config, total_steps, image_shape, output_bn)


def _batches(images: jnp.ndarray, labels: jnp.ndarray, size: int):
    """Pad to a multiple of ``size`` and reshape to ``[K, size, ...]`` with 0/1 weights."""
    n = images.shape[0]
    k = -(-n // size)
    pad = k * size - n
    w = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = jnp.concatenate([labels, jnp.zeros((pad,), labels.dtype)])
    return (images.reshape(k, size, *images.shape[1:]), labels.reshape(k, size),
            w.reshape(k, size))


def _device_data(data: dict, batch_size: int):
    x_train, y_train = jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"])
    if x_train.shape[0] < batch_size:
        raise ValueError(f"batch_size: {batch_size} exceeds {x_train.shape[0]} training examples")
    return x_train, y_train, jnp.asarray(data["valid_images"]), jnp.asarray(data["valid_labels"])


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
    axis sharded over the devices (:meth:`_Program.train_children`; the batch is padded to a
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
        self.space, self.config, self.backend = space, _config(config), backend
        self.data = prepare_data(data)
        n = self.data["train_images"].shape[0]
        self.steps = self.config.num_steps or self.config.num_epochs * (
            n // self.config.batch_size)
        if backend == "supernet":
            self._program = _program(space, self.config, self.steps,
                                     tuple(self.data["train_images"].shape[1:]))
            x_train, y_train, x_valid, y_valid = _device_data(self.data, self.config.batch_size)
            self._args = (x_train, y_train,
                          _batches(x_valid, y_valid, min(self.config.eval_batch_size,
                                                         x_valid.shape[0])))
        n_dev = nas_train.resolve_num_devices(self.config.num_devices)
        self.mesh: Mesh | None = make_mesh(n_dev) if backend == "supernet" and n_dev > 1 \
            else None
        if self.mesh is not None:  # the data lives on every device once, not copied per call
            self._args = jax.device_put(self._args, NamedSharding(self.mesh, PartitionSpec()))

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
        padded = round_up(b, self.mesh)
        order = list(range(b)) + [0] * (padded - b)  # pad with copies of child 0
        seeds, keys = zip(*(self._child_inputs(jax.random.fold_in(key, i)) for i in order))
        prog = self._program
        # Fresh weights drawn on the host per child (as in the sequential path), then stacked.
        fresh = [init_variables(prog.shapes, seed) for seed in seeds]
        stack = lambda *xs: np.stack(xs)
        params = jax.tree_util.tree_map(stack, *[v["params"] for v in fresh])
        batch_stats = jax.tree_util.tree_map(stack, *[v["batch_stats"] for v in fresh])
        sharded = NamedSharding(self.mesh, PartitionSpec(POP_AXIS))
        params, batch_stats = jax.device_put((params, batch_stats), sharded)
        genomes_d, keys_d = jax.device_put((genomes[order], jnp.stack(keys)), sharded)
        fn = prog.train_children(self.mesh, self.steps)
        acc, loss, tacc = fn(params, batch_stats, genomes_d, keys_d, *self._args)
        return {"valid_accuracy": np.asarray(acc)[:b], "train_loss": np.asarray(loss)[:b],
                "train_accuracy": np.asarray(tacc)[:b]}

    def train_child(self, key: jax.Array, genome: Any) -> dict[str, float]:
        """Train one child and return ``valid_accuracy``, ``train_loss``, ``train_accuracy``."""
        if self.backend == "static":
            m = nas_train.train_and_evaluate(self.space.to_genotype(np.asarray(genome)),
                                             self.config, self.data, key)
            return {"valid_accuracy": m["valid_accuracy"], "train_loss": m["train_loss"],
                    "train_accuracy": m["train_accuracy"]}
        seed, k_train = self._child_inputs(key)
        acc, loss, tacc = self._program.train_child(
            *self._program.fresh(seed), jnp.asarray(genome), k_train, *self._args,
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
        self.space, self.config = space, _config(config)
        self.steps_per_call = int(steps_per_call)
        self.data = prepare_data(data)
        self._program = _program(space, self.config, int(total_steps),
                                 tuple(self.data["train_images"].shape[1:]), bool(output_bn))
        self._data = _device_data(self.data, self.config.batch_size)
        self.params, self.batch_stats, self.opt_state = self._program.fresh(seed)
        # A static-size marker (its length is the reward minibatch size).
        self._reward_size = jnp.zeros((min(self.config.eval_batch_size,
                                           self._data[2].shape[0]),))

    def __call__(self, key: jax.Array, genomes: Any) -> tuple[jax.Array, dict[str, Any]]:
        genomes = jnp.asarray(genomes)
        k_train, k_valid = jax.random.split(key)
        order = jnp.arange(self.steps_per_call) % genomes.shape[0]
        x_train, y_train, x_valid, y_valid = self._data
        (self.params, self.batch_stats, self.opt_state), loss, _ = self._program.shared_train(
            self.params, self.batch_stats, self.opt_state, genomes, k_train, x_train, y_train,
            order)
        fitness = self._program.reward(self.params, self.batch_stats, genomes, k_valid,
                                       x_valid, y_valid, self._reward_size)
        return fitness, {"shared_train_steps": self.steps_per_call,
                         "shared_train_loss_sum": float(loss)}

    def get_state(self) -> Any:
        return {"params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state}

    def set_state(self, state: Any) -> None:
        self.params = jax.tree_util.tree_map(jnp.asarray, state["params"])
        self.batch_stats = jax.tree_util.tree_map(jnp.asarray, state["batch_stats"])
        self.opt_state = jax.tree_util.tree_map(jnp.asarray, state["opt_state"])


class Leaderboard:
    """Every evaluated genome with its reward (an ExtraState; grows, stored as two arrays).

    Wrap an evaluator with :meth:`wrap` so each call records its batch.
    """

    def __init__(self, genome_length: int):
        self.genomes = np.zeros((0, genome_length), np.int32)
        self.fitness = np.zeros((0,), np.float32)

    def wrap(self, evaluator):
        def wrapped(key, genomes):
            out = evaluator(key, genomes)
            fitness, info = out if isinstance(out, tuple) else (out, {})
            self.genomes = np.concatenate([self.genomes, np.asarray(genomes, np.int32)])
            self.fitness = np.concatenate([self.fitness, np.asarray(fitness, np.float32)])
            return fitness, info
        return wrapped

    def top(self, k: int) -> list[tuple[np.ndarray, float]]:
        """The ``k`` best distinct genomes (first occurrence on ties) with their best reward."""
        f = np.where(np.isnan(self.fitness), -np.inf, self.fitness)
        order = np.argsort(-f, kind="stable")
        seen, out = set(), []
        for i in order:
            key = self.genomes[i].tobytes()
            if key in seen:
                continue
            seen.add(key)
            out.append((self.genomes[i], float(self.fitness[i])))
            if len(out) == k:
                break
        return out

    def get_state(self) -> Any:
        return {"genomes": self.genomes, "fitness": self.fitness}

    def set_state(self, state: Any) -> None:
        self.genomes = np.asarray(state["genomes"], np.int32).reshape(-1, self.genomes.shape[1])
        self.fitness = np.asarray(state["fitness"], np.float32).reshape(-1)


@dataclasses.dataclass
class CombinedState:
    """Several ExtraStates saved as one dict (``None`` members are skipped)."""

    members: dict[str, Any]

    def get_state(self) -> Any:
        return {k: v.get_state() for k, v in self.members.items() if v is not None}

    def set_state(self, state: Any) -> None:
        for k, v in self.members.items():
            if v is not None:
                v.set_state(state[k])
