"""Child training and evaluation for NASNet: the NAS reward lives here.

:func:`train_and_evaluate` trains a child from a genotype and returns its validation accuracy,
the reward the NAS search uses; it resumes from the checkpoint in its ``workdir`` (written with
:mod:`azjax.search.checkpoint`'s atomic, checksummed ``.npz`` format). The library never prints;
pass ``log_fn``. The pieces live in their own modules and are re-exported here:

* :mod:`~azjax.nas.train_config`: :class:`TrainConfig`;
* :mod:`~azjax.nas.train_state`: the model, the optimizer, :class:`TrainState` (a pytree);
* :mod:`~azjax.nas.augment`: jittable augmentation functions of a key;
* :mod:`~azjax.nas.data_parallel`: the ``"data"`` mesh and batch sharding;
* :mod:`~azjax.nas.train_steps`: jitted train/eval steps that compile once, :func:`evaluate`.

Data parallelism (``TrainConfig.num_devices > 1``): the batch is split over a 1-D mesh of local
devices (axis ``"data"``), parameters, BN statistics and optimizer state are replicated, and the
step is ``jax.jit`` with those in/out shardings (see :func:`make_train_step` for why not
``shard_map``). Batch statistics are those of the global batch, so training does not depend on
the device count up to float rounding. With one device (``num_devices=1``, the default) nothing
changes; ``None`` or 0 means all local devices
(:func:`azjax.search.sharding.resolve_num_devices`). With ``global_mesh=True`` in a multi-process
run (``jax.distributed``) the mesh spans the first ``num_devices`` local devices of every process
and each process feeds only its rows of every batch (docs/scaling.md, section 4).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax.nas.augment import augment, cutout, random_flip, random_pad_crop
from azjax.nas.data_parallel import (
    DATA_AXIS,
    batch_sharding,
    data_mesh,
    process_rows,
    replicated,
    resolve_num_devices,
    shard_batch,
    shard_local_batch,
)
from azjax.nas.genotype import Genotype
from azjax.nas.network import count_params
from azjax.nas.train_config import TrainConfig
from azjax.nas.train_state import (
    TrainState,
    create_train_state,
    make_model,
    make_optimizer,
    weight_decay_mask,
)
from azjax.nas.train_steps import evaluate, make_eval_step, make_train_step, train_step_fn
from azjax.search import checkpoint as ckpt

__all__ = [
    "CHECKPOINT_NAME", "DATA_AXIS", "TrainConfig", "TrainState", "augment", "batch_sharding",
    "create_train_state", "cutout", "data_mesh", "evaluate", "make_eval_step", "make_model",
    "make_optimizer", "make_train_step", "prepare_data", "prepare_images", "process_rows",
    "random_flip", "random_pad_crop", "replicated", "resolve_num_devices", "restore_checkpoint",
    "save_checkpoint", "shard_batch", "shard_local_batch",
    "train_and_evaluate", "train_step_fn", "weight_decay_mask",
]

# --- checkpoints ----------------------------------------------------------------------------

CHECKPOINT_NAME = "checkpoint.npz"
_OLD_CHECKPOINT_NAME = "checkpoint.msgpack"  # written by earlier versions


def save_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (:func:`azjax.search.checkpoint.write_file`: npz,
    SHA-256, fsync; nothing pickled).

    ``state`` must be addressable from this process (single device or replicated)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state = jax.device_get(state)
    ckpt.write_file(path, int(state.step), state)


def restore_checkpoint(path: str | os.PathLike, target: TrainState) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``target``.

    Raises:
        ValueError: naming the file, if it is corrupt or does not match ``target``.
    """
    restored, _ = ckpt.restore_file(path, target)
    return jax.tree_util.tree_map(jnp.asarray, restored)


# --- the whole loop -------------------------------------------------------------------------

def prepare_images(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float images; uint8 ones are standardized per channel with training-set statistics."""
    from azjax.data.cifar10 import channel_stats, normalize

    out = dict(data)
    if np.asarray(data["train_images"]).dtype == np.uint8:
        mean, std = channel_stats(data["train_images"])
        for k in list(out):
            if k.endswith("_images"):
                out[k] = normalize(data[k], mean, std)
    for k in list(out):
        if k.endswith("_images"):
            out[k] = np.asarray(out[k], np.float32)
        elif k.endswith("_labels"):
            out[k] = np.asarray(out[k], np.int32)
    return out


def train_and_evaluate(
    genotype: Genotype,
    config: TrainConfig | Mapping[str, Any] | Any,
    data: Mapping[str, np.ndarray],
    key: jax.Array,
    workdir: str | os.PathLike | None = None,
    log_fn: Callable[[dict[str, Any]], None] | None = None,
    global_mesh: bool = False,
) -> dict[str, Any]:
    """Train a child from ``genotype`` and return its metrics, incl. ``valid_accuracy``.

    Args:
      genotype: the cells.
      config: a :class:`TrainConfig` or anything :meth:`TrainConfig.from_config` accepts.
      data: ``train_images``/``train_labels`` and ``valid_images``/``valid_labels`` (and
        optionally ``test_*``), NHWC; uint8 images are standardized per channel.
      key: a typed PRNG key; init, shuffling, augmentation and drop-path derive from it.
      workdir: if given, a checkpoint there is resumed and new ones are written (by process 0
        only when several processes run the same program, ``jax.distributed``).
      log_fn: called with a metrics dict every ``log_every`` steps and after evaluation.
      global_mesh: in a multi-process run, train data-parallel over the first
        ``config.num_devices`` local devices of every process (one global mesh; each process
        feeds only its rows of every training and evaluation batch); every process must call
        this with the same arguments. Off, each process trains on its own devices alone. In a
        single-process run both are the same.

    With ``config.num_devices`` > 1 (or several processes and ``global_mesh``) every step is
    data-parallel over the mesh (:func:`make_train_step`); ``batch_size`` must be divisible by
    the mesh's device count (a ``ValueError`` names it). Checkpoints hold the replicated state
    only, so a run resumes on any device or process count that divides ``batch_size``.

    Returns:
      dict with ``valid_accuracy``, ``valid_loss`` (and ``test_*``), ``train_loss``,
      ``train_accuracy`` (mean over the last logging window), ``num_params``, ``steps``,
      ``train_seconds``, ``first_step_seconds`` (compile + one step), ``images_per_second``
      and ``num_devices`` (the mesh's, all processes together).
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_config(config)
    data = _checked_data(data, config)
    schedule = _Schedule.of(config, data["train_images"].shape[0])
    mesh = data_mesh(config.num_devices, config.batch_size, global_mesh)
    k_init, k_shuffle, k_steps = jax.random.split(key, 3)
    model = make_model(genotype, config)
    optimizer = make_optimizer(config, schedule.total_steps)
    state = create_train_state(model, optimizer, k_init, data["train_images"].shape[1:])
    state, ckpt_path = _resume(state, workdir)
    if mesh is not None:
        state = jax.device_put(state, replicated(mesh))
    train_step = make_train_step(model, optimizer, config, schedule.total_steps, mesh=mesh)
    eval_step = make_eval_step(model, mesh=mesh, batch_size=config.eval_batch_size)
    rows = process_rows(mesh, config.batch_size) if mesh is not None else slice(None)
    batches = _Batches(data, config.batch_size, schedule, k_shuffle, rows)
    log = _WindowLog(config, schedule, int(state.step), log_fn)
    for step in range(int(state.step), schedule.total_steps):
        state, metrics = train_step(state, *shard_local_batch(mesh, config.batch_size,
                                                              *batches(step)),
                                    jax.random.fold_in(k_steps, step))
        log.record(step, metrics, state)
        done = step + 1
        if ckpt_path and (done % schedule.checkpoint_every == 0 or done == schedule.total_steps):
            save_checkpoint(ckpt_path, state)
    jax.block_until_ready(state.params)
    result = _final_metrics(state, log, config, schedule, mesh, eval_step, data)
    if log_fn:
        log_fn(dict(result))
    return result


def prepare_data(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``train_*`` and ``valid_*`` arrays (a ``ValueError`` names a missing one) and any
    others, prepared by :func:`prepare_images`."""
    for k in ("train_images", "train_labels", "valid_images", "valid_labels"):
        if k not in data:
            raise ValueError(f"data: missing {k!r}")
    return prepare_images(data)


def _checked_data(data: Mapping[str, np.ndarray], config: TrainConfig) -> dict[str, np.ndarray]:
    data = prepare_data(data)
    n = data["train_images"].shape[0]
    if n < config.batch_size:
        raise ValueError(f"batch_size: {config.batch_size} exceeds {n} training examples")
    return data


class _Schedule(NamedTuple):
    num_train: int
    steps_per_epoch: int
    total_steps: int
    checkpoint_every: int

    @classmethod
    def of(cls, config: TrainConfig, num_train: int) -> "_Schedule":
        steps_per_epoch = num_train // config.batch_size
        return cls(num_train, steps_per_epoch,
                   config.num_steps or config.num_epochs * steps_per_epoch,
                   config.checkpoint_every or steps_per_epoch)


def _resume(state: TrainState, workdir: str | os.PathLike | None
            ) -> tuple[TrainState, str | None]:
    """The state of the checkpoint in ``workdir`` (if any) and the path this process writes to
    (``None``: no workdir, or not process 0)."""
    if not workdir:
        return state, None
    path = os.path.join(os.fspath(workdir), CHECKPOINT_NAME)
    old = os.path.join(os.fspath(workdir), _OLD_CHECKPOINT_NAME)
    if os.path.exists(path):
        state = restore_checkpoint(path, state)
    elif os.path.exists(old):
        raise ValueError(f"workdir: {old} was written by an earlier azjax version and cannot be "
                         "resumed; use another workdir (or move the file aside to start over)")
    return state, (path if jax.process_index() == 0 else None)  # process 0 alone writes


class _Batches:
    """Host batches by step: epoch ``e`` is a permutation that depends only on
    ``(k_shuffle, e)``, so a resumed run draws exactly the batches of an uninterrupted one, on
    any process count. Only the ``rows`` of each global batch that this process feeds are
    gathered."""

    def __init__(self, data: dict[str, np.ndarray], batch_size: int, schedule: _Schedule,
                 k_shuffle: jax.Array, rows: slice = slice(None)):
        self.images, self.labels = data["train_images"], data["train_labels"]
        self.batch_size, self.schedule, self.k_shuffle = batch_size, schedule, k_shuffle
        self.rows = rows
        self.epoch, self.perm = -1, None

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, i = divmod(step, self.schedule.steps_per_epoch)
        if epoch != self.epoch:
            self.perm = np.asarray(jax.random.permutation(
                jax.random.fold_in(self.k_shuffle, epoch), self.schedule.num_train))
            self.epoch = epoch
        idx = self.perm[i * self.batch_size:(i + 1) * self.batch_size][self.rows]
        return self.images[idx], self.labels[idx]


class _WindowLog:
    """Training metrics averaged over windows of ``log_every`` steps (handed to ``log_fn``), and
    the timings of the run."""

    def __init__(self, config: TrainConfig, schedule: _Schedule, start: int,
                 log_fn: Callable[[dict[str, Any]], None] | None):
        self.log_every, self.schedule, self.start, self.log_fn = (
            config.log_every, schedule, start, log_fn)
        self.window: list[dict[str, jax.Array]] = []
        self.last_window: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.t_log: float | None = None
        self.first_step_seconds = float("nan")

    def record(self, step: int, metrics: dict[str, jax.Array], state: TrainState) -> None:
        self.window.append(metrics)
        if self.t_log is None:
            jax.block_until_ready(state.step)
            self.t_log = time.perf_counter()
            self.first_step_seconds = self.t_log - self.t0
        done = step + 1
        if done % self.log_every and done != self.schedule.total_steps:
            return
        window = self.window
        means = {k: float(np.mean([float(m[k]) for m in window])) for k in window[0]}
        now = time.perf_counter()
        # The first step of a session (compile) is not counted in its window's rate.
        timed = len(window) - (1 if step - len(window) + 1 == self.start else 0)
        means["steps_per_second"] = timed / max(now - self.t_log, 1e-9)
        self.t_log, self.last_window, self.window = now, means, []
        if self.log_fn:
            self.log_fn({"step": done, "epoch": done / self.schedule.steps_per_epoch, **means})


def _final_metrics(state: TrainState, log: _WindowLog, config: TrainConfig, schedule: _Schedule,
                   mesh: Any, eval_step: Callable, data: dict[str, np.ndarray]) -> dict[str, Any]:
    train_seconds = time.perf_counter() - log.t0
    trained = schedule.total_steps - log.start
    result: dict[str, Any] = {
        "steps": int(state.step),
        "num_params": count_params(state.params),
        "train_seconds": train_seconds,
        "first_step_seconds": log.first_step_seconds,
        "images_per_second": ((trained - 1) * config.batch_size / (
            train_seconds - log.first_step_seconds)) if trained > 1 else float("nan"),
        "train_loss": log.last_window.get("loss", float("nan")),
        "train_accuracy": log.last_window.get("accuracy", float("nan")),
        "num_devices": 1 if mesh is None else mesh.size,
    }
    for split in ("valid", "test"):
        if f"{split}_images" in data:
            ev = evaluate(eval_step, state, data[f"{split}_images"], data[f"{split}_labels"],
                          config.eval_batch_size, mesh=mesh)
            result[f"{split}_accuracy"] = ev["accuracy"]
            result[f"{split}_loss"] = ev["loss"]
    return result
