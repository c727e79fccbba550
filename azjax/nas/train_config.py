"""The child architecture and training recipe of NASNet child training."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = ["TrainConfig"]


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
