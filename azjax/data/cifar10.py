"""CIFAR-10 from a local python-pickle directory, with a fake-directory writer.

The real archive ``cifar-10-python.tar.gz`` extracts to ``cifar-10-batches-py/`` holding
``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta``. Each batch is a
Python-2-era pickled dict; under Python 3 with ``encoding='bytes'`` its keys are ``b'data'``
(uint8 ``[N, 3072]``, planes R, G, B each 32×32 row-major), ``b'labels'`` (list of ints 0–9),
``b'batch_label'`` and ``b'filenames'``. Nothing is ever downloaded.
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Mapping

import jax
import numpy as np

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
SUBDIR = "cifar-10-batches-py"
LABEL_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
_ROW = 32 * 32 * 3
# First ten labels of the real data_batch_1 (an order sentinel, §7.4); the fake writer reuses them.
FIRST_LABELS = (6, 9, 9, 4, 1, 1, 2, 7, 8, 3)


def _resolve_dir(data_dir: str | os.PathLike) -> str:
    """Accept either the ``cifar-10-batches-py`` folder itself or a folder that contains it."""
    data_dir = os.fspath(data_dir)
    nested = os.path.join(data_dir, SUBDIR)
    if not os.path.exists(os.path.join(data_dir, TEST_FILE)) and os.path.isdir(nested):
        return nested
    return data_dir


def _get(d: Mapping[Any, Any], name: str) -> Any:
    """Fetch a key stored as bytes (``encoding='bytes'``) or as str (``encoding='latin1'``)."""
    if name.encode() in d:
        return d[name.encode()]
    if name in d:
        return d[name]
    raise KeyError(name)


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load one CIFAR-10 pickle batch.

    Args:
      path: a ``data_batch_k`` or ``test_batch`` file.

    Returns:
      ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` NHWC and int32 ``[N]``.

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
      ValueError: the file is truncated, not a pickle, or not in the CIFAR-10 layout (names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 batch file not found: {path!r}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated or corrupt pickles raise many different types
        raise ValueError(f"CIFAR-10 batch file {path!r} is truncated or corrupt: {e!r}") from e
    if not isinstance(d, dict):
        raise ValueError(f"CIFAR-10 batch file {path!r}: expected a pickled dict, got {type(d)}")
    try:
        data = np.asarray(_get(d, "data"))
        labels = np.asarray(_get(d, "labels"))
    except KeyError as e:
        raise ValueError(f"CIFAR-10 batch file {path!r}: missing key {e.args[0]!r}") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        raise ValueError(
            f"CIFAR-10 batch file {path!r}: 'data' must be uint8 [N, {_ROW}], "
            f"got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"CIFAR-10 batch file {path!r}: 'labels' has shape {labels.shape}, "
            f"expected ({data.shape[0]},)")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"CIFAR-10 batch file {path!r}: 'labels' outside 0..9")
    # Rows are planar R,G,B of 32x32 each: [N,3,32,32] -> NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def load_cifar10(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load CIFAR-10 (python version) from a local directory.

    Args:
      data_dir: the extracted ``cifar-10-batches-py`` folder, or a folder containing it.

    Returns:
      dict with ``train_images`` uint8 ``[50000, 32, 32, 3]`` (NHWC), ``train_labels`` int32
      ``[50000]``, ``test_images`` uint8 ``[10000, 32, 32, 3]``, ``test_labels`` int32 ``[10000]``
      (smaller for a fake directory), in file order.

    Raises:
      FileNotFoundError / ValueError: naming the missing or corrupt file.
    """
    root = _resolve_dir(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CIFAR-10 directory not found: {root!r}")
    parts = [load_batch(os.path.join(root, name)) for name in TRAIN_FILES]
    test_images, test_labels = load_batch(os.path.join(root, TEST_FILE))
    return {
        "train_images": np.concatenate([p[0] for p in parts]),
        "train_labels": np.concatenate([p[1] for p in parts]),
        "test_images": test_images,
        "test_labels": test_labels,
    }


def split_train_valid(
    images: np.ndarray,
    labels: np.ndarray,
    num_valid: int = 5000,
    key: jax.Array | None = None,
) -> dict[str, np.ndarray]:
    """Hold out ``num_valid`` training examples for validation (the NAS reward set).

    With a ``key`` the held-out set is a uniformly random subset (NASNet's convention); without
    one it is the last ``num_valid`` examples (ENAS' convention).

    Returns:
      dict with ``train_images``, ``train_labels``, ``valid_images``, ``valid_labels``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    n = images.shape[0]
    if labels.shape[:1] != (n,):
        raise ValueError(f"labels: expected leading size {n}, got shape {labels.shape}")
    if not 0 < num_valid < n:
        raise ValueError(f"num_valid must be in (0, {n}), got {num_valid}")
    if key is None:
        order = np.arange(n)
    else:
        order = np.asarray(jax.random.permutation(key, n))
    train_idx = np.sort(order[: n - num_valid])
    valid_idx = np.sort(order[n - num_valid:])
    return {
        "train_images": images[train_idx],
        "train_labels": labels[train_idx],
        "valid_images": images[valid_idx],
        "valid_labels": labels[valid_idx],
    }


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 (or float in [0,1]) NHWC images, on the [0,1] scale."""
    x = np.asarray(images)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float64) / scale
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes).astype(np.float32), x.std(axis=axes).astype(np.float32)


def normalize(
    images: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Scale uint8 images to [0,1] and standardize each channel: ``(x/255 - mean) / std``."""
    x = np.asarray(images)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if mean.shape != (x.shape[-1],) or std.shape != (x.shape[-1],):
        raise ValueError(f"mean/std: expected shape ({x.shape[-1]},), got {mean.shape}/{std.shape}")
    if np.any(std <= 0):
        raise ValueError("std: must be positive")
    return ((x.astype(np.float32) / scale - mean) / std).astype(np.float32)


def _atomic_pickle(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    os.replace(tmp, path)


def write_fake_cifar10(
    directory: str | os.PathLike, num_per_batch: int = 10, seed: int = 0
) -> str:
    """Write a small CIFAR-10 directory in the exact python-pickle layout (for tests).

    Writes ``data_batch_1`` … ``data_batch_5``, ``test_batch`` (``num_per_batch`` random images
    each) and ``batches.meta``, with bytes keys as the real Python-2 pickles load under
    ``encoding='bytes'``. The first labels of ``data_batch_1`` are the real order sentinel.

    Returns:
      the directory path (pass it to :func:`load_cifar10`).
    """
    if num_per_batch < 1:
        raise ValueError(f"num_per_batch must be >= 1, got {num_per_batch}")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in TRAIN_FILES + (TEST_FILE,):
        data = rng.integers(0, 256, size=(num_per_batch, _ROW), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, NUM_CLASSES, size=num_per_batch)]
        if name == TRAIN_FILES[0]:
            k = min(num_per_batch, len(FIRST_LABELS))
            labels[:k] = FIRST_LABELS[:k]
        label = "testing batch 1 of 1" if name == TEST_FILE else f"training batch {name[-1]} of 5"
        batch = {
            b"batch_label": label.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"fake_{name}_{i}.png".encode() for i in range(num_per_batch)],
        }
        _atomic_pickle(batch, os.path.join(directory, name))
    meta = {
        b"label_names": [n.encode() for n in LABEL_NAMES],
        b"num_cases_per_batch": num_per_batch,
        b"num_vis": _ROW,
    }
    _atomic_pickle(meta, os.path.join(directory, META_FILE))
    return directory
