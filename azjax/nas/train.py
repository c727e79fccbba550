"""Child training and evaluation for NASNet: the NAS reward lives here.

Pieces, each usable alone: :class:`TrainConfig`, :class:`TrainState` (a pytree), the optimizer
(momentum SGD, cosine decay, L2 on conv/dense kernels only via an optax mask, global-norm
clipping), jittable augmentation functions of a key, jitted train/eval steps that compile once,
atomic msgpack checkpoints, and :func:`train_and_evaluate`, which returns the validation
accuracy the NAS search uses as its reward. The library never prints; pass ``log_fn``.

Data parallelism (``TrainConfig.num_devices > 1``): the batch is split over a 1-D mesh of local
devices (axis ``"data"``), parameters, BN statistics and optimizer state are replicated, and the
step is ``jax.jit`` with those in/out shardings (see :func:`make_train_step` for why not
``shard_map``). Batch statistics are those of the global batch, so training does not depend on
the device count up to float rounding. With one device (``num_devices=1``, the default) nothing
changes; ``None`` or 0 means all local devices
(:func:`azjax.search.sharding.resolve_num_devices`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azjax.nas.genotype import Genotype
from azjax.nas.network import NASNet, count_params
from azjax.search.sharding import make_mesh, resolve_num_devices

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Child architecture and training recipe (defaults: a tiny CIFAR-style child).

    The NASNet CIFAR recipe is lr 0.025, momentum 0.9, L2 5e-4, cosine decay, batch 32,
    600 epochs, clip 5, aux weight 0.4, drop-path keep 0.6, pad-4 crop + flip (+ cutout 16).
    """

    num_cells: int = 3
    filters: int = 8
    stem: str = "cifar"
    num_classes: int = 10
    stem_multiplier: float = 3.0
    aux_head: bool = False
    aux_weight: float = 0.4
    drop_path_keep_prob: float = 1.0
    dense_dropout_keep_prob: float = 1.0
    depthwise_impl: str = "auto"
    batch_size: int = 32
    num_epochs: int = 1
    num_steps: int = 0  # > 0 overrides num_epochs
    learning_rate: float = 0.025
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    clip_norm: float = 5.0
    pad_crop: int = 4
    flip: bool = True
    cutout: int = 0
    eval_batch_size: int = 256
    log_every: int = 50
    checkpoint_every: int = 0  # steps; 0 means once per epoch
    # 1: one device (the plain jit path); None or 0: all local devices; k > 1: the first k local
    # devices (azjax.search.sharding.resolve_num_devices). More than one: data-parallel child
    # training (train_and_evaluate), or several children at once in the NAS ChildTrainer
    # (supernet backend).
    num_devices: int | None = 1

    def __post_init__(self):
        if self.num_devices is not None and (
                isinstance(self.num_devices, bool) or not isinstance(self.num_devices, int)
                or self.num_devices < 0):
            raise ValueError(f"num_devices: must be None or an int >= 0, got {self.num_devices!r}")
        for name in ("num_cells", "filters", "batch_size", "eval_batch_size", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("num_epochs", "num_steps", "pad_crop", "cutout", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.num_epochs == 0 and self.num_steps == 0:
            raise ValueError("num_epochs: one of num_epochs and num_steps must be positive")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: must be positive, got {self.learning_rate}")

    @classmethod
    def from_config(cls, cfg: Any = None, **overrides) -> "TrainConfig":
        """Build from a dict, ``ml_collections.ConfigDict`` or any object with attributes.

        Keys that are not fields are ignored, so a launcher config can carry extra entries.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if cfg is None:
            values = {}
        elif isinstance(cfg, Mapping):
            values = dict(cfg)
        elif hasattr(cfg, "to_dict"):
            values = cfg.to_dict()
        else:
            values = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if k in names})


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (a pytree; checkpointed as msgpack)."""

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


# --- augmentation: pure functions of a key, jittable, batched over NHWC images ---------------

def random_pad_crop(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """Zero-pad each image by ``pad`` and crop back at a random offset (per example)."""
    if pad == 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flip each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def cutout(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """Zero a ``size`` x ``size`` square (clipped at borders) at a random centre per image."""
    if size == 0:
        return images
    b, h, w, _ = images.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (b, 1, 1, 1), 0, h)
    cx = jax.random.randint(kx, (b, 1, 1, 1), 0, w)
    yy = jnp.arange(h)[None, :, None, None]
    xx = jnp.arange(w)[None, None, :, None]
    inside = ((yy >= cy - size // 2) & (yy < cy - size // 2 + size)
              & (xx >= cx - size // 2) & (xx < cx - size // 2 + size))
    return jnp.where(inside, 0.0, images)


def augment(key: jax.Array, images: jax.Array, config: TrainConfig) -> jax.Array:
    """Pad-and-crop, flip and cutout as configured."""
    k1, k2, k3 = jax.random.split(key, 3)
    images = random_pad_crop(k1, images, config.pad_crop)
    if config.flip:
        images = random_flip(k2, images)
    return cutout(k3, images, config.cutout)


# --- devices --------------------------------------------------------------------------------

def data_mesh(num_devices: int | None, batch_size: int | None = None) -> Mesh | None:
    """A 1-D ``"data"`` mesh over the first ``num_devices`` local devices, or ``None`` for one.

    Raises ``ValueError`` when there are not that many local devices or when ``batch_size``
    does not split evenly over them.
    """
    n = resolve_num_devices(num_devices)  # validates n against the local devices
    if n == 1:
        return None
    devices = make_mesh(n).devices
    if batch_size is not None and batch_size % n:
        raise ValueError(f"batch_size: {batch_size} must be divisible by num_devices ({n})")
    return Mesh(devices, (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state, keys)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(mesh: Mesh | None, *arrays: np.ndarray) -> tuple[Any, ...]:
    """Put host batches on the mesh, split on the batch axis; each process supplies only the
    shards of its own devices (every process holds the same global batch)."""
    if mesh is None:
        return arrays  # the one-device path passes host arrays to jit, as before
    sharding = batch_sharding(mesh)
    out = []
    for a in arrays:
        a = np.asarray(a)
        out.append(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]))
    return tuple(out)


# --- steps ----------------------------------------------------------------------------------

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
    batch = batch_sharding(mesh) if batch_size and batch_size % mesh.size == 0 else rep
    return jax.jit(_max_traces(eval_fn, max_traces), in_shardings=(rep, batch, batch, batch),
                   out_shardings=(rep, rep))


def evaluate(eval_step: Callable, state: TrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int) -> dict[str, float]:
    """Accuracy and mean loss over all of ``images`` (last batch padded, not dropped)."""
    n = images.shape[0]
    if n == 0:
        raise ValueError("images: empty evaluation set")
    correct = loss = 0.0
    for start in range(0, n, batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        m = x.shape[0]
        w = np.ones(batch_size, np.float32)
        if m < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - m, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(batch_size - m, y.dtype)])
            w[m:] = 0.0
        c, lsum = eval_step(state, x, y, w)
        correct += float(c)
        loss += float(lsum)
    return {"accuracy": correct / n, "loss": loss / n}


# --- checkpoints ----------------------------------------------------------------------------

CHECKPOINT_NAME = "checkpoint.msgpack"


def save_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Write ``state`` as msgpack (no pickled arrays), atomically via a temp file.

    ``state`` must be addressable from this process (single device or replicated)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    blob = flax.serialization.to_bytes(jax.device_get(state))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def restore_checkpoint(path: str | os.PathLike, target: TrainState) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``target``."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    try:
        restored = flax.serialization.from_bytes(target, blob)
    except Exception as e:
        raise ValueError(f"checkpoint file {path!r} is corrupt or does not match: {e!r}") from e
    return jax.tree_util.tree_map(jnp.asarray, restored)


# --- the whole loop -------------------------------------------------------------------------

def _prepare_images(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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

    With ``config.num_devices`` > 1 every step is data-parallel over that many local devices
    (:func:`make_train_step`); ``batch_size`` must be divisible by the device count.

    Returns:
      dict with ``valid_accuracy``, ``valid_loss`` (and ``test_*``), ``train_loss``,
      ``train_accuracy`` (mean over the last logging window), ``num_params``, ``steps``,
      ``train_seconds``, ``first_step_seconds`` (compile + one step), ``images_per_second``
      and ``num_devices``.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_config(config)
    for k in ("train_images", "train_labels", "valid_images", "valid_labels"):
        if k not in data:
            raise ValueError(f"data: missing {k!r}")
    data = _prepare_images(data)
    x_train, y_train = data["train_images"], data["train_labels"]
    n = x_train.shape[0]
    if n < config.batch_size:
        raise ValueError(f"batch_size: {config.batch_size} exceeds {n} training examples")
    steps_per_epoch = n // config.batch_size
    total_steps = config.num_steps or config.num_epochs * steps_per_epoch
    ckpt_every = config.checkpoint_every or steps_per_epoch
    mesh = data_mesh(config.num_devices, config.batch_size)

    k_init, k_shuffle, k_steps = jax.random.split(key, 3)
    model = make_model(genotype, config)
    optimizer = make_optimizer(config, total_steps)
    state = create_train_state(model, optimizer, k_init, x_train.shape[1:])
    ckpt_path = os.path.join(os.fspath(workdir), CHECKPOINT_NAME) if workdir else None
    if ckpt_path and os.path.exists(ckpt_path):
        state = restore_checkpoint(ckpt_path, state)
    if ckpt_path and jax.process_index() != 0:
        ckpt_path = None  # every process resumes; process 0 alone writes
    if mesh is not None:
        state = jax.device_put(state, replicated(mesh))
    train_step = make_train_step(model, optimizer, config, total_steps, mesh=mesh)
    eval_step = make_eval_step(model, mesh=mesh, batch_size=config.eval_batch_size)

    start = int(state.step)
    window: list[dict[str, jax.Array]] = []
    last_window: dict[str, float] = {}
    perm_epoch, perm = -1, None
    t0 = time.perf_counter()
    t_first = t_log = None
    first_step_seconds = float("nan")
    for step in range(start, total_steps):
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:  # the order depends only on (key, epoch): resumable exactly
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n))
            perm_epoch = epoch
        idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
        state, metrics = train_step(state, *shard_batch(mesh, x_train[idx], y_train[idx]),
                                    jax.random.fold_in(k_steps, step))
        window.append(metrics)
        if t_first is None:
            jax.block_until_ready(state.step)
            t_first = t_log = time.perf_counter()
            first_step_seconds = t_first - t0
        done = step + 1
        if done % config.log_every == 0 or done == total_steps:
            means = {k: float(np.mean([float(m[k]) for m in window])) for k in window[0]}
            now = time.perf_counter()
            means["steps_per_second"] = (len(window) - (1 if step - len(window) + 1 == start
                                                        else 0)) / max(now - t_log, 1e-9)
            t_log = now
            last_window = means
            window = []
            if log_fn:
                log_fn({"step": done, "epoch": done / steps_per_epoch, **means})
        if ckpt_path and (done % ckpt_every == 0 or done == total_steps):
            save_checkpoint(ckpt_path, state)
    jax.block_until_ready(state.params)
    train_seconds = time.perf_counter() - t0
    trained = total_steps - start

    result: dict[str, Any] = {
        "steps": int(state.step),
        "num_params": count_params(state.params),
        "train_seconds": train_seconds,
        "first_step_seconds": first_step_seconds,
        "images_per_second": ((trained - 1) * config.batch_size / (train_seconds -
                              first_step_seconds)) if trained > 1 else float("nan"),
        "train_loss": last_window.get("loss", float("nan")),
        "train_accuracy": last_window.get("accuracy", float("nan")),
        "num_devices": 1 if mesh is None else mesh.size,
    }
    for split in ("valid", "test"):
        if f"{split}_images" in data:
            ev = evaluate(eval_step, state, data[f"{split}_images"], data[f"{split}_labels"],
                          config.eval_batch_size)
            result[f"{split}_accuracy"] = ev["accuracy"]
            result[f"{split}_loss"] = ev["loss"]
    if log_fn:
        log_fn(dict(result))
    return result
