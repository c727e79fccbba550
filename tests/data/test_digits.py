"""scikit-learn digits as 8x8x1 images."""
import jax
import numpy as np

from azjax import data


def test_digits_images():
    x, y = data.load_digits_images()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_digits_split():
    s = data.load_digits_split(jax.random.key(0), num_test=297)
    assert s["train_images"].shape == (1500, 8, 8, 1)
    assert s["test_labels"].shape == (297,)
    s2 = data.load_digits_split(jax.random.key(0), num_test=297)
    np.testing.assert_array_equal(s["test_labels"], s2["test_labels"])
