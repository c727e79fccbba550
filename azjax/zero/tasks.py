"""Task collections: the datasets a program is evaluated on.

`Tasks` holds T tasks of equal shapes as dense arrays, so evaluation vmaps over them. Generators here build
the reference's synthetic tasks (linear, affine, teacher 2-layer network, unit tasks) from an explicit key;
`projected_binary_tasks` and `projected_multiclass_tasks` build binary and K-class classification tasks
from real images (local CIFAR-10 or scikit-learn's bundled digits) projected to F dimensions.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

EVAL_TYPES = ("rms", "accuracy", "multiclass")


@struct.dataclass
class Tasks:
    """T tasks: train features [T, N, F], labels [T, N]; valid features [T, M, F], labels [T, M].

    `eval_type` is "rms" (fitness 1 - (2/pi) atan(RMSE)), "accuracy" (binary labels in {0, 1}, sigmoid
    output) or "multiclass" (labels are integer class ids 0..num_classes-1 stored in the float label
    arrays; softmax output, fitness = the fraction of validation examples whose argmax logit is the label;
    docs/automl_zero.md, "Multi-class tasks"). `num_classes` is K for "multiclass" and 0 otherwise.
    Training runs `num_epochs` epochs; epoch 0 visits examples in stored order, later epochs in a
    permutation drawn from the task's `data_seeds` entry (defaults to the task index).
    """

    train_features: jax.Array
    train_labels: jax.Array
    valid_features: jax.Array
    valid_labels: jax.Array
    eval_type: str = struct.field(pytree_node=False, default="rms")
    num_epochs: int = struct.field(pytree_node=False, default=1)
    data_seeds: Optional[jax.Array] = None
    num_classes: int = struct.field(pytree_node=False, default=0)

    @property
    def num_tasks(self) -> int:
        return self.train_features.shape[0]

    @property
    def num_train(self) -> int:
        return self.train_features.shape[1]

    @property
    def num_valid(self) -> int:
        return self.valid_features.shape[1]

    @property
    def features(self) -> int:
        return self.train_features.shape[2]

    def seeds(self) -> jax.Array:
        if self.data_seeds is None:
            return jnp.arange(self.num_tasks, dtype=jnp.uint32)
        return jnp.asarray(self.data_seeds).astype(jnp.uint32)

    def epoch_orders(self) -> np.ndarray:
        """int32 [T, num_epochs, N]: the order in which each epoch visits the training examples."""
        return np.asarray(epoch_orders(self.seeds(), self.num_epochs, self.num_train))

    def validate(self, features: Optional[int] = None) -> None:
        """Checks shapes, dtypes and settings; raises ValueError naming the bad field."""
        names = ("train_features", "train_labels", "valid_features", "valid_labels")
        arrays = [np.asarray(getattr(self, n)) if not isinstance(getattr(self, n), jax.Array)
                  else getattr(self, n) for n in names]
        for n, a in zip(names, arrays):
            if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
                raise ValueError(f"Tasks.{n}: expected a numeric array, got dtype {a.dtype}")
        tf, tl, vf, vl = arrays
        if tf.ndim != 3:
            raise ValueError(f"Tasks.train_features: expected shape [T, N, F], got {tf.shape}")
        if vf.ndim != 3:
            raise ValueError(f"Tasks.valid_features: expected shape [T, M, F], got {vf.shape}")
        if tl.shape != tf.shape[:2]:
            raise ValueError(f"Tasks.train_labels: expected shape {tf.shape[:2]}, got {tl.shape}")
        if vl.shape != vf.shape[:2]:
            raise ValueError(f"Tasks.valid_labels: expected shape {vf.shape[:2]}, got {vl.shape}")
        if vf.shape[0] != tf.shape[0]:
            raise ValueError(f"Tasks.valid_features: {vf.shape[0]} tasks but train_features has {tf.shape[0]}")
        if vf.shape[2] != tf.shape[2]:
            raise ValueError(f"Tasks.valid_features: F={vf.shape[2]} but train_features has F={tf.shape[2]}")
        if features is not None and tf.shape[2] != features:
            raise ValueError(f"Tasks.train_features: F={tf.shape[2]} but ZeroConfig.features={features}")
        if tf.shape[0] < 1 or tf.shape[1] < 1 or vf.shape[1] < 1:
            raise ValueError(f"Tasks: need at least one task, one train and one valid example, got "
                             f"train_features {tf.shape}, valid_features {vf.shape}")
        if self.eval_type not in EVAL_TYPES:
            raise ValueError(f"Tasks.eval_type must be one of {EVAL_TYPES}, got {self.eval_type!r}")
        if isinstance(self.num_epochs, bool) or not isinstance(self.num_epochs, (int, np.integer)) \
                or self.num_epochs < 1:
            raise ValueError(f"Tasks.num_epochs must be an integer >= 1, got {self.num_epochs!r}")
        if self.data_seeds is not None and np.shape(self.data_seeds) != (tf.shape[0],):
            raise ValueError(f"Tasks.data_seeds: expected shape ({tf.shape[0]},), got {np.shape(self.data_seeds)}")
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"Tasks.num_classes must be an integer >= 0, got {k!r}")
        if self.eval_type == "multiclass":
            if k < 2:
                raise ValueError(f"Tasks.num_classes must be >= 2 for eval_type 'multiclass', got {k}")
            for name, labels in (("train_labels", tl), ("valid_labels", vl)):
                try:
                    y = np.asarray(labels)
                except jax.errors.TracerArrayConversionError:
                    continue  # traced (inside jit): values cannot be checked here
                ok = (y == np.floor(y)) & (y >= 0) & (y < k)
                if not np.all(ok):
                    raise ValueError(f"Tasks.{name}: multiclass labels must be integer class ids in "
                                     f"[0, {k}), got values such as {y[~ok][:3]}")
        elif k != 0:
            raise ValueError(f"Tasks.num_classes must be 0 for eval_type {self.eval_type!r} (it is the class "
                             f"count of 'multiclass' tasks), got {k}")


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_orders(seeds: jax.Array, num_epochs: int, num_train: int) -> jax.Array:
    """Epoch 0 in stored order, epoch e > 0 a permutation keyed by (seed, e)."""

    def one(seed):
        base = jax.random.key(seed)

        def order(e):
            perm = jax.random.permutation(jax.random.fold_in(base, e), num_train)
            return jnp.where(e == 0, jnp.arange(num_train), perm).astype(jnp.int32)

        return jax.vmap(order)(jnp.arange(num_epochs))

    return jax.vmap(one)(seeds)


def concat_tasks(*collections: Tasks) -> Tasks:
    """Concatenates task collections of equal shapes and settings along the task axis."""
    first = collections[0]
    for c in collections[1:]:
        if (c.eval_type, c.num_epochs, c.num_classes) != (first.eval_type, first.num_epochs, first.num_classes):
            raise ValueError("concat_tasks: eval_type, num_epochs and num_classes must agree")
    cat = lambda name: jnp.concatenate([getattr(c, name) for c in collections])  # noqa: E731
    return Tasks(cat("train_features"), cat("train_labels"), cat("valid_features"), cat("valid_labels"),
                 eval_type=first.eval_type, num_epochs=first.num_epochs,
                 data_seeds=jnp.concatenate([c.seeds() for c in collections]), num_classes=first.num_classes)


def _dtype(dtype: str):
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return jnp.float64 if dtype == "float64" else jnp.float32


def _check_sizes(num_tasks, features, num_train, num_valid):
    for name, v in (("num_tasks", num_tasks), ("features", features), ("num_train", num_train),
                    ("num_valid", num_valid)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def _regression_tasks(key, num_tasks, features, num_train, num_valid, num_epochs, dtype, label_fn):
    _check_sizes(num_tasks, features, num_train, num_valid)
    dt = _dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        k_param, k_data, k_seed = jax.random.split(key, 3)
        params = jax.random.split(k_param, num_tasks)
        data = jax.random.split(k_data, num_tasks)
        x = jax.vmap(lambda k: jax.random.normal(k, (num_train + num_valid, features), dt))(data)
        y = jax.vmap(label_fn)(params, x).astype(dt)
        seeds = jax.random.bits(k_seed, (num_tasks,), jnp.uint32)
        return Tasks(x[:, :num_train], y[:, :num_train], x[:, num_train:], y[:, num_train:],
                     eval_type="rms", num_epochs=num_epochs, data_seeds=seeds)


def linear_regression_tasks(key: jax.Array, num_tasks: int, features: int, num_train: int,
                            num_valid: int, num_epochs: int = 1, dtype: str = "float32") -> Tasks:
    """Scalar linear regression: x ~ N(0, I), w ~ N(0, I) per task, label = w·x."""

    def label(k, x):
        w = jax.random.normal(k, (x.shape[-1],), x.dtype)
        return x @ w

    return _regression_tasks(key, num_tasks, features, num_train, num_valid, num_epochs, dtype, label)


def affine_regression_tasks(key: jax.Array, num_tasks: int, features: int, num_train: int,
                            num_valid: int, num_epochs: int = 1, dtype: str = "float32") -> Tasks:
    """Affine regression (paper Fig. 4): label = w·x + b with w ~ N(0, I), b ~ N(0, 1)."""

    def label(k, x):
        kw, kb = jax.random.split(k)
        return x @ jax.random.normal(kw, (x.shape[-1],), x.dtype) + jax.random.normal(kb, (), x.dtype)

    return _regression_tasks(key, num_tasks, features, num_train, num_valid, num_epochs, dtype, label)


def teacher_network_tasks(key: jax.Array, num_tasks: int, features: int, num_train: int,
                          num_valid: int, num_epochs: int = 1, dtype: str = "float32") -> Tasks:
    """Teacher 2-layer ReLU network: label = u·ReLU(M x), M rows 0, 2 and u entries 0, 2 zeroed."""

    def label(k, x):
        km, ku = jax.random.split(k)
        F = x.shape[-1]
        mask = jnp.ones((F,), x.dtype).at[jnp.array([0, 2])].set(0, mode="drop")
        M = jax.random.normal(km, (F, F), x.dtype) * mask[:, None]
        u = jax.random.normal(ku, (F,), x.dtype) * mask
        return jnp.maximum(x @ M.T, 0) @ u

    return _regression_tasks(key, num_tasks, features, num_train, num_valid, num_epochs, dtype, label)


def unit_tasks(kind: str, features: int, num_train: int = 10, num_valid: int = 10,
               increment: float = 1.0, num_epochs: int = 1, dtype: str = "float32") -> Tasks:
    """The reference's unit-test tasks: "zeros", "ones" or "increment" (one task)."""
    _check_sizes(1, features, num_train, num_valid)
    dt = np.float64 if dtype == "float64" else np.float32

    def make(n):
        if kind == "zeros":
            return np.zeros((n, features), dt), np.zeros((n,), dt)
        if kind == "ones":
            return np.ones((n, features), dt), np.ones((n,), dt)
        if kind == "increment":
            k = np.arange(n, dtype=dt) * increment
            return np.repeat(k[:, None], features, axis=1).astype(dt), k
        raise ValueError(f"unit_tasks: kind must be 'zeros', 'ones' or 'increment', got {kind!r}")

    (tx, ty), (vx, vy) = make(num_train), make(num_valid)
    return Tasks(tx[None], ty[None], vx[None], vy[None], eval_type="rms", num_epochs=num_epochs)


def fixed_tasks(train: Sequence[Tuple[Sequence[float], float]], valid: Sequence[Tuple[Sequence[float], float]],
                eval_type: str = "rms", num_epochs: int = 1) -> Tasks:
    """One task from explicit (features, label) lists (the reference's unit_test_fixed_task)."""
    tx = np.asarray([f for f, _ in train], np.float64)
    ty = np.asarray([y for _, y in train], np.float64)
    vx = np.asarray([f for f, _ in valid], np.float64)
    vy = np.asarray([y for _, y in valid], np.float64)
    return Tasks(tx[None], ty[None], vx[None], vy[None], eval_type=eval_type, num_epochs=num_epochs)


def projected_binary_tasks(key: jax.Array, num_tasks: int, features: int, num_train: int, num_valid: int,
                           source: str = "digits", data_dir: Optional[str] = None,
                           positive_class: Optional[int] = None, negative_class: Optional[int] = None,
                           use_held_out_pairs: bool = False, max_data_seed: int = 100, num_epochs: int = 1,
                           dtype: str = "float32") -> Tasks:
    """Projected binary classification tasks from local images: "digits" or "cifar10".

    Without an explicit class pair, each task draws a pair uniformly among the 36 search pairs (or among the
    9 held-out pairs with `use_held_out_pairs`) and a data seed in [0, max_data_seed); the seed fixes the
    random projection to `features` dims and the split. Labels: 1 for the positive (lower) class, else 0.
    """
    from azjax.data import projected

    _check_sizes(num_tasks, features, num_train, num_valid)
    if (positive_class is None) != (negative_class is None):
        raise ValueError("projected_binary_tasks: give both positive_class and negative_class, or neither")
    pairs = projected.class_pairs(use_held_out=use_held_out_pairs)
    k_pair, k_seed, k_shuffle = jax.random.split(key, 3)
    pair_idx = np.asarray(jax.random.randint(k_pair, (num_tasks,), 0, len(pairs)))
    seeds = np.asarray(jax.random.randint(k_seed, (num_tasks,), 0, max_data_seed))
    arrays = []
    for t in range(num_tasks):
        pos, neg = (positive_class, negative_class) if positive_class is not None else pairs[pair_idx[t]]
        arrays.append(projected.projected_binary_dataset(source, int(pos), int(neg), int(seeds[t]), features,
                                                         num_train, num_valid, data_dir))
    tx, ty, vx, vy = (np.stack(a) for a in zip(*arrays))
    dt = np.float64 if dtype == "float64" else np.float32
    return Tasks(tx.astype(dt), ty.astype(dt), vx.astype(dt), vy.astype(dt), eval_type="accuracy",
                 num_epochs=num_epochs,
                 data_seeds=np.asarray(jax.random.bits(k_shuffle, (num_tasks,), jnp.uint32)))


def projected_multiclass_tasks(key: jax.Array, num_tasks: int, features: int, num_train: int, num_valid: int,
                               source: str = "digits", data_dir: Optional[str] = None, num_classes: int = 10,
                               max_data_seed: int = 100, num_epochs: int = 1, dtype: str = "float32") -> Tasks:
    """Projected K-class classification tasks from local images: "digits" or "cifar10" (10 classes).

    Each task draws a data seed in [0, max_data_seed); the seed fixes the random projection of the raw
    pixels to `features` dims and a split, stratified by class, of the source's training images into
    `num_train` train and `num_valid` validation examples (the paper's CIFAR-10 setting is 45,000 / 5,000;
    the 1,797 digits allow at most 1,797 in all). Labels are the class ids 0..num_classes-1 (the first
    `num_classes` classes of the source), as float values of the label arrays; `eval_type` "multiclass".
    """
    from azjax.data import projected

    _check_sizes(num_tasks, features, num_train, num_valid)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
            not 2 <= num_classes <= 10:
        raise ValueError(f"num_classes must be an integer in [2, 10], got {num_classes!r}")
    if num_classes > features:
        raise ValueError(f"num_classes={num_classes} must be <= features={features} (one vector entry per class)")
    if isinstance(max_data_seed, bool) or not isinstance(max_data_seed, (int, np.integer)) or max_data_seed < 1:
        raise ValueError(f"max_data_seed must be an integer >= 1, got {max_data_seed!r}")
    k_seed, k_shuffle = jax.random.split(key)
    seeds = np.asarray(jax.random.randint(k_seed, (num_tasks,), 0, max_data_seed))
    arrays = [projected.projected_multiclass_dataset(source, int(seeds[t]), features, num_train, num_valid,
                                                     num_classes, data_dir) for t in range(num_tasks)]
    tx, ty, vx, vy = (np.stack(a) for a in zip(*arrays))
    dt = np.float64 if dtype == "float64" else np.float32
    return Tasks(tx.astype(dt), ty.astype(dt), vx.astype(dt), vy.astype(dt), eval_type="multiclass",
                 num_epochs=num_epochs, num_classes=int(num_classes),
                 data_seeds=np.asarray(jax.random.bits(k_shuffle, (num_tasks,), jnp.uint32)))
