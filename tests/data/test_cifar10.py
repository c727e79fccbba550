"""Loader tests on a fake CIFAR-10 directory in the exact python-pickle layout."""
import os
import pickle

import jax
import numpy as np
import pytest

from azjax import data


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    return data.write_fake_cifar10(d, num_per_batch=12, seed=3)


def test_layout_and_shapes(fake_dir):
    assert sorted(os.listdir(fake_dir)) == sorted(
        ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)])
    ds = data.load_cifar10(fake_dir)
    assert ds["train_images"].shape == (60, 32, 32, 3)
    assert ds["train_images"].dtype == np.uint8
    assert ds["train_labels"].shape == (60,) and ds["train_labels"].dtype == np.int32
    assert ds["test_images"].shape == (12, 32, 32, 3)
    assert ds["test_labels"].shape == (12,)
    np.testing.assert_array_equal(ds["train_labels"][:10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])


def test_parent_directory_accepted(fake_dir):
    parent = os.path.dirname(fake_dir)
    a = data.load_cifar10(parent)
    b = data.load_cifar10(fake_dir)
    np.testing.assert_array_equal(a["test_images"], b["test_images"])


def test_planar_rgb_to_nhwc(fake_dir):
    # Row layout: 1024 R, 1024 G, 1024 B, each 32x32 row-major.
    with open(os.path.join(fake_dir, "data_batch_2"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    row = raw[b"data"][5]
    ds = data.load_cifar10(fake_dir)
    img = ds["train_images"][12 + 5]
    assert img[0, 0, 0] == row[0]
    assert img[0, 1, 0] == row[1]
    assert img[1, 0, 0] == row[32]
    assert img[0, 0, 1] == row[1024]
    assert img[31, 31, 2] == row[3071]


def test_latin1_style_string_keys(tmp_path):
    d = data.write_fake_cifar10(tmp_path / "c", num_per_batch=2)
    path = os.path.join(d, "test_batch")
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump({k.decode(): v for k, v in raw.items()}, f, protocol=2)
    images, labels = data.load_batch(path)
    assert images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(labels, raw[b"labels"])


def test_missing_file_named(tmp_path):
    d = data.write_fake_cifar10(tmp_path / "c", num_per_batch=2)
    os.remove(os.path.join(d, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load_cifar10(d)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        data.load_cifar10(tmp_path / "nope")


def test_truncated_file_named(tmp_path):
    d = data.write_fake_cifar10(tmp_path / "c", num_per_batch=2)
    path = os.path.join(d, "test_batch")
    blob = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="test_batch"):
        data.load_cifar10(d)


def test_wrong_layout_named(tmp_path):
    d = data.write_fake_cifar10(tmp_path / "c", num_per_batch=2)
    path = os.path.join(d, "data_batch_1")
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="data_batch_1.*'data'"):
        data.load_cifar10(d)
    with open(path, "wb") as f:
        pickle.dump({b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="data_batch_1.*missing key"):
        data.load_cifar10(d)


def test_split_random_and_last(fake_dir):
    ds = data.load_cifar10(fake_dir)
    x, y = ds["train_images"], ds["train_labels"]
    last = data.split_train_valid(x, y, num_valid=10)
    np.testing.assert_array_equal(last["valid_images"], x[-10:])
    np.testing.assert_array_equal(last["train_labels"], y[:-10])
    r1 = data.split_train_valid(x, y, num_valid=10, key=jax.random.key(1))
    r2 = data.split_train_valid(x, y, num_valid=10, key=jax.random.key(1))
    r3 = data.split_train_valid(x, y, num_valid=10, key=jax.random.key(2))
    assert r1["train_images"].shape == (50, 32, 32, 3)
    assert r1["valid_images"].shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(r1["valid_images"], r2["valid_images"])
    assert not np.array_equal(r1["valid_images"], r3["valid_images"])
    # Disjoint and complete: every image appears exactly once across the two parts.
    both = np.concatenate([r1["train_images"], r1["valid_images"]]).reshape(60, -1)
    assert len({row.tobytes() for row in both}) == len({row.tobytes() for row in x.reshape(60, -1)})
    with pytest.raises(ValueError, match="num_valid"):
        data.split_train_valid(x, y, num_valid=60)


def test_normalization(fake_dir):
    ds = data.load_cifar10(fake_dir)
    mean, std = data.channel_stats(ds["train_images"])
    assert mean.shape == (3,) and std.shape == (3,)
    z = data.normalize(ds["train_images"], mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="std"):
        data.normalize(ds["train_images"], mean, np.zeros(3))
