"""Data augmentation for child training: pure functions of a key, jittable, batched over NHWC
images."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from azjax.nas.train_config import TrainConfig

__all__ = ["augment", "cutout", "random_flip", "random_pad_crop"]


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
