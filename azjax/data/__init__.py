"""azjax.data: loaders of local files (CIFAR-10 python pickles) and scikit-learn digits.

Nothing here downloads; real datasets must be present on disk.
"""
from azjax.data.cifar10 import (
    LABEL_NAMES,
    channel_stats,
    load_batch,
    load_cifar10,
    normalize,
    split_train_valid,
    write_fake_cifar10,
)
from azjax.data.digits import load_digits_images, load_digits_split

__all__ = [
    "LABEL_NAMES",
    "channel_stats",
    "load_batch",
    "load_cifar10",
    "normalize",
    "split_train_valid",
    "write_fake_cifar10",
    "load_digits_images",
    "load_digits_split",
]
