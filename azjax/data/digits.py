"""scikit-learn's bundled 8×8 digits as a tiny real image set (no download)."""
from __future__ import annotations

import jax
import numpy as np


_SKLEARN_MISSING = ("the digits data set ships with scikit-learn, which is not installed: "
                    'pip install -e ".[data]" (from the azjax checkout), '
                    "or pip install scikit-learn")


def require_sklearn() -> None:
    """Raises ``ModuleNotFoundError`` saying what to install when scikit-learn is missing."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as e:
        raise ModuleNotFoundError(_SKLEARN_MISSING, name=e.name) from e


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Load the 1,797 bundled 8×8 grayscale digits.

    Returns:
      ``(images, labels)``: float32 ``[1797, 8, 8, 1]`` scaled from 0–16 to [0, 1], and int32
      ``[1797]`` in 0–9.
    """
    # Imported lazily: scikit-learn is an extra dependency (azjax[data]), not a core one.
    require_sklearn()
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0)[..., None]
    return images, np.asarray(bunch.target, np.int32)


def load_digits_split(
    key: jax.Array | None = None, num_test: int = 297
) -> dict[str, np.ndarray]:
    """Digits split into train and test parts (random with ``key``, else the last ``num_test``).

    Returns:
      dict with ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    """
    images, labels = load_digits_images()
    n = images.shape[0]
    if not 0 < num_test < n:
        raise ValueError(f"num_test must be in (0, {n}), got {num_test}")
    order = np.arange(n) if key is None else np.asarray(jax.random.permutation(key, n))
    tr, te = np.sort(order[: n - num_test]), np.sort(order[n - num_test:])
    return {
        "train_images": images[tr],
        "train_labels": labels[tr],
        "test_images": images[te],
        "test_labels": labels[te],
    }
