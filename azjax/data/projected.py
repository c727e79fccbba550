"""Projected binary and multi-class classification datasets, built from local images.

For a class pair (positive, negative) and a data seed: take the images of both classes, label the positive
class 1 and the negative 0, draw a balanced train/valid split, project the raw pixels to F dimensions with a
Gaussian random matrix that depends only on the seed (the same projection for every pair, as the reference),
and standardize every split with the training split's mean and standard deviation. Multi-class datasets
(`projected_multiclass_dataset`) do the same with the first K classes, labelled by their class ids, and a
split stratified by class.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

# The reference's held-out class pairs (proto comment and scripts); search uses the other 36 pairs.
HELD_OUT_PAIRS: Tuple[Tuple[int, int], ...] = ((4, 6), (3, 5), (8, 9), (3, 8), (0, 9), (2, 9), (1, 8),
                                               (3, 6), (0, 5))
SOURCES = ("digits", "cifar10")


@functools.lru_cache(maxsize=4)
def _load(source: str, data_dir: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(flattened raw images float32 [N, D], labels int32 [N]) of the source's training split."""
    if source == "digits":
        from azjax.data.digits import load_digits_images
        images, labels = load_digits_images()
    elif source == "cifar10":
        if data_dir is None:
            raise ValueError("projected binary tasks: source 'cifar10' needs data_dir (the directory of the "
                             "CIFAR-10 python-pickle batches)")
        from azjax.data.cifar10 import load_cifar10
        data = load_cifar10(data_dir)
        images, labels = data["train_images"], data["train_labels"]
    else:
        raise ValueError(f"projected binary tasks: source must be one of {SOURCES}, got {source!r}")
    images = np.asarray(images, np.float32).reshape(len(images), -1)
    return images, np.asarray(labels, np.int32)


def class_pairs(held_out: Sequence[Tuple[int, int]] = HELD_OUT_PAIRS, use_held_out: bool = False,
                num_classes: int = 10) -> Tuple[Tuple[int, int], ...]:
    """The search pairs (all i < j except the held-out ones), or only the held-out pairs."""
    held = {tuple(sorted(p)) for p in held_out}
    pairs = [(i, j) for i in range(num_classes) for j in range(i + 1, num_classes)]
    return tuple(p for p in pairs if (p in held) == use_held_out)


def projected_binary_dataset(source: str, positive_class: int, negative_class: int, seed: int, features: int,
                             num_train: int, num_valid: int, data_dir: Optional[str] = None):
    """(train_x [N, F], train_y [N], valid_x [M, F], valid_y [M]) float32 numpy arrays."""
    images, labels = _load(source, data_dir)
    if positive_class == negative_class:
        raise ValueError(f"positive_class and negative_class must differ, got {positive_class}")
    key = jax.random.key(seed)
    k_split, k_proj = jax.random.split(key)
    pos = np.flatnonzero(labels == positive_class)
    neg = np.flatnonzero(labels == negative_class)
    total = num_train + num_valid
    if len(pos) + len(neg) < total:
        raise ValueError(f"projected binary tasks: classes {positive_class}/{negative_class} of {source} have "
                         f"{len(pos) + len(neg)} images, fewer than num_train + num_valid = {total}")
    kp, kn, ko = jax.random.split(k_split, 3)
    pos = pos[np.asarray(jax.random.permutation(kp, len(pos)))]
    neg = neg[np.asarray(jax.random.permutation(kn, len(neg)))]
    # Stratified: each split gets the classes in proportion, as the reference's stratified split.
    frac = len(pos) / (len(pos) + len(neg))
    n_pos_train = int(round(num_train * frac))
    n_pos_valid = int(round(num_valid * frac))
    train_idx = np.concatenate([pos[:n_pos_train], neg[:num_train - n_pos_train]])
    valid_idx = np.concatenate([pos[n_pos_train:n_pos_train + n_pos_valid],
                                neg[num_train - n_pos_train:num_train - n_pos_train + num_valid - n_pos_valid]])
    if len(train_idx) != num_train or len(valid_idx) != num_valid:
        raise ValueError(f"projected binary tasks: not enough images of classes {positive_class}/"
                         f"{negative_class} for {num_train} train and {num_valid} valid examples")
    train_idx = train_idx[np.asarray(jax.random.permutation(ko, len(train_idx)))]
    projection = np.asarray(jax.random.normal(k_proj, (images.shape[1], features), jnp.float32))
    x_train = images[train_idx] @ projection
    x_valid = images[valid_idx] @ projection
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    y_train = (labels[train_idx] == positive_class).astype(np.float32)
    y_valid = (labels[valid_idx] == positive_class).astype(np.float32)
    return ((x_train - mean) / std).astype(np.float32), y_train, ((x_valid - mean) / std).astype(np.float32), \
        y_valid


def _stratified_counts(class_sizes: np.ndarray, total: int) -> np.ndarray:
    """Per-class counts summing to `total`, proportional to the class sizes (largest remainders first)."""
    exact = total * class_sizes / class_sizes.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:total - counts.sum()]] += 1
    return counts


def projected_multiclass_dataset(source: str, seed: int, features: int, num_train: int, num_valid: int,
                                 num_classes: int = 10, data_dir: Optional[str] = None):
    """(train_x [N, F], train_y [N], valid_x [M, F], valid_y [M]) float32 numpy arrays of classes
    0..num_classes-1, labelled by class id; the split is stratified by class and, like the projection, fixed
    by `seed` (the projection is the binary datasets' one for the same seed)."""
    images, labels = _load(source, data_dir)
    key = jax.random.key(seed)
    k_split, k_proj = jax.random.split(key)
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    sizes = np.asarray([len(m) for m in members], np.int64)
    if sizes.sum() < num_train + num_valid:
        raise ValueError(f"projected multiclass tasks: the {num_classes} classes of {source} have {sizes.sum()} "
                         f"images, fewer than num_train + num_valid = {num_train + num_valid}")
    n_train = _stratified_counts(sizes, num_train)
    n_valid = np.minimum(_stratified_counts(sizes, num_valid), sizes - n_train)
    if n_valid.sum() != num_valid:
        raise ValueError(f"projected multiclass tasks: not enough images of {source} for {num_train} train and "
                         f"{num_valid} valid examples stratified by class")
    keys = jax.random.split(k_split, num_classes + 2)
    train_idx, valid_idx = [], []
    for c, m in enumerate(members):
        m = m[np.asarray(jax.random.permutation(keys[c], len(m)))]
        train_idx.append(m[:n_train[c]])
        valid_idx.append(m[n_train[c]:n_train[c] + n_valid[c]])
    train_idx, valid_idx = np.concatenate(train_idx), np.concatenate(valid_idx)
    train_idx = train_idx[np.asarray(jax.random.permutation(keys[-2], len(train_idx)))]
    valid_idx = valid_idx[np.asarray(jax.random.permutation(keys[-1], len(valid_idx)))]
    projection = np.asarray(jax.random.normal(k_proj, (images.shape[1], features), jnp.float32))
    x_train = images[train_idx] @ projection
    x_valid = images[valid_idx] @ projection
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    return (((x_train - mean) / std).astype(np.float32), labels[train_idx].astype(np.float32),
            ((x_valid - mean) / std).astype(np.float32), labels[valid_idx].astype(np.float32))
