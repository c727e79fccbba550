"""NASNet macro-architecture: stems, stacks of cells, reductions, drop-path, aux head."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from azjax.nas.cell import Cell
from azjax.nas.genotype import Genotype
from azjax.nas.ops import batch_norm, conv

STEMS = ("cifar", "imagenet")


def reduction_indices(num_cells: int, num_reduction_layers: int = 2) -> tuple[int, ...]:
    """Normal-cell indices before which a Reduction Cell is inserted (TF-slim rule)."""
    return tuple(int(p / (num_reduction_layers + 1) * num_cells)
                 for p in range(1, num_reduction_layers + 1))


def drop_path_keep_prob(cell_index, total_cells: int, progress, base_keep: float):
    """ScheduledDropPath keep probability.

    ``1 - (c + 1) / C_total * min(1, progress) * (1 - base_keep)`` where ``progress`` is
    ``step / total_training_steps``; works on traced arrays.
    """
    ratio = jnp.minimum(1.0, jnp.asarray(progress, jnp.float32))
    return 1.0 - (cell_index + 1) / total_cells * ratio * (1.0 - base_keep)


class NASNet(nn.Module):
    """NASNet built from a :class:`Genotype`, as TF-slim builds it.

    Layout: stem -> N normal -> reduction -> N normal -> reduction -> N normal -> ReLU ->
    global average pool -> dropout -> dense, with ``num_cells = 3N`` normal cells.

    Attributes:
      genotype: the two cells.
      num_cells: the number of normal cells (18 for CIFAR 6@768).
      filters: the initial per-branch width ``F0``; it doubles at each reduction.
      stem: ``"cifar"`` (3x3 conv + BN) or ``"imagenet"`` (strided conv + two reduction cells).
      num_classes: logits width.
      aux_head: build the auxiliary head (its logits are sown to ``intermediates/aux_logits``
        when ``train=True``).
      stem_multiplier: stem width factor (default 3.0 on CIFAR, 1.0 on ImageNet as Mobile).
      drop_path_keep_prob: base keep probability of ScheduledDropPath (1.0 turns it off).
      dense_dropout_keep_prob: keep probability before the dense layer (default 1.0 on CIFAR,
        0.5 on ImageNet).
      skip_reduction_layer_input: take ``h_{i-1}`` of the first cell after a reduction from
        before the reduction's input (NASNet-Large).
      bn_momentum, bn_epsilon: BN decay and epsilon (default 0.9/1e-5 CIFAR, 0.9997/1e-3
        ImageNet).
      depthwise_impl: ``"auto"``, ``"shift"`` or ``"grouped"`` (see :mod:`azjax.nas.ops`).
    """

    genotype: Genotype
    num_cells: int = 18
    filters: int = 32
    stem: str = "cifar"
    num_classes: int = 10
    aux_head: bool = False
    stem_multiplier: float | None = None
    drop_path_keep_prob: float = 1.0
    dense_dropout_keep_prob: float | None = None
    skip_reduction_layer_input: bool = False
    filter_scaling_rate: float = 2.0
    num_reduction_layers: int = 2
    bn_momentum: float | None = None
    bn_epsilon: float | None = None
    depthwise_impl: str = "auto"

    def _check(self):
        if not isinstance(self.genotype, Genotype):
            raise ValueError(f"genotype: expected a Genotype, got {type(self.genotype).__name__}")
        if self.stem not in STEMS:
            raise ValueError(f"stem: expected one of {STEMS}, got {self.stem!r}")
        if self.num_cells < 1:
            raise ValueError(f"num_cells: must be >= 1, got {self.num_cells}")
        if self.filters < 1:
            raise ValueError(f"filters: must be >= 1, got {self.filters}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {self.num_classes}")
        if not 0.0 < self.drop_path_keep_prob <= 1.0:
            raise ValueError(f"drop_path_keep_prob: must be in (0, 1], got "
                             f"{self.drop_path_keep_prob}")

    @property
    def total_cells(self) -> int:
        """``C_total`` of the drop-path schedule: normal + reduction (+ stem) cells."""
        return self.num_cells + self.num_reduction_layers + (2 if self.stem == "imagenet" else 0)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False,
                 drop_path_progress: jax.Array | float = 0.0) -> jax.Array:
        """Logits for NHWC images ``x``.

        Long by design: the stem, the N normal / reduction stacks, the auxiliary head and the classifier
        read top to bottom as the network's definition.

        Args:
          x: float images ``[B, H, W, C]``.
          train: batch-statistics BN, drop-path (RNG ``'drop_path'``) and dropout (RNG
            ``'dropout'``); also sows aux logits when ``aux_head``.
          drop_path_progress: ``step / total_training_steps`` (clipped to 1); pass it as an array
            so the compiled graph does not change as it grows.
        """
        self._check()
        if x.ndim != 4:
            raise ValueError(f"x: expected NHWC images [B, H, W, C], got shape {x.shape}")
        imagenet = self.stem == "imagenet"
        stem_mult = self.stem_multiplier if self.stem_multiplier is not None else (
            1.0 if imagenet else 3.0)
        momentum = self.bn_momentum if self.bn_momentum is not None else (
            0.9997 if imagenet else 0.9)
        epsilon = self.bn_epsilon if self.bn_epsilon is not None else (
            1e-3 if imagenet else 1e-5)
        dense_keep = self.dense_dropout_keep_prob if self.dense_dropout_keep_prob is not None \
            else (0.5 if imagenet else 1.0)
        use_dp = self.drop_path_keep_prob < 1.0
        g = self.genotype

        def make_cell(blocks, concat, features, stride, name):
            return Cell(blocks, concat, features, stride, use_drop_path=use_dp,
                        depthwise_impl=self.depthwise_impl, bn_momentum=momentum,
                        bn_epsilon=epsilon, name=name)

        def keep(c):
            if not use_dp:
                return 1.0
            return drop_path_keep_prob(c, self.total_cells, drop_path_progress,
                                       self.drop_path_keep_prob)

        # Stem.
        if imagenet:
            net = conv(int(32 * stem_mult), 3, 2, padding="VALID", name="conv0")(x)
            net = batch_norm(net, train, momentum, epsilon, name="conv0_bn")
            outputs = [None, net]
            scaling = 1.0 / self.filter_scaling_rate ** 2
            for c in range(2):
                net = make_cell(g.reduce, g.reduce_concat, int(self.filters * scaling), 2,
                                f"cell_stem_{c}")(net, outputs[-2], train, keep(c))
                outputs.append(net)
                scaling *= self.filter_scaling_rate
            true_cell = 2
        else:
            net = conv(int(stem_mult * self.filters), 3, name="stem_conv")(x)
            net = batch_norm(net, train, momentum, epsilon, name="stem_bn")
            outputs = [None, net]
            true_cell = 0

        reductions = reduction_indices(self.num_cells, self.num_reduction_layers)
        aux_cell = reductions[1] - 1 if len(reductions) >= 2 else None
        scaling = 1.0
        for i in range(self.num_cells):
            prev = outputs[-2]  # used by skip_reduction_layer_input: the cell before the input
            if i in reductions:
                scaling *= self.filter_scaling_rate
                net = make_cell(g.reduce, g.reduce_concat, int(self.filters * scaling), 2,
                                f"reduction_cell_{reductions.index(i)}")(
                                    net, outputs[-2], train, keep(true_cell))
                true_cell += 1
                outputs.append(net)
            if not self.skip_reduction_layer_input:
                prev = outputs[-2]
            net = make_cell(g.normal, g.normal_concat, int(self.filters * scaling), 1,
                            f"cell_{i}")(net, prev, train, keep(true_cell))
            true_cell += 1
            if self.aux_head and i == aux_cell and (train or self.is_initializing()):
                aux = AuxHead(self.num_classes, momentum, epsilon, name=f"aux_{i}")(
                    nn.relu(net), train)
                if train:
                    self.sow("intermediates", "aux_logits", aux)
            outputs.append(net)

        net = nn.relu(net)
        net = jnp.mean(net, axis=(1, 2))
        if dense_keep < 1.0:
            net = nn.Dropout(1.0 - dense_keep, deterministic=not train)(net)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.variance_scaling(
            2.0, "fan_out", "truncated_normal"), name="logits")(net)


class AuxHead(nn.Module):
    """Auxiliary classifier: avgpool 5/3 -> 1x1x128 -> BN -> ReLU -> full-size conv 768 -> BN ->
    ReLU -> dense (its input is already ReLU'd)."""

    num_classes: int
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.avg_pool(x, (5, 5), (3, 3), padding="VALID")
        x = conv(128, 1, name="proj")(x)
        x = nn.relu(batch_norm(x, train, self.bn_momentum, self.bn_epsilon, name="aux_bn0"))
        x = conv(768, tuple(x.shape[1:3]), padding="VALID", name="conv")(x)
        x = nn.relu(batch_norm(x, train, self.bn_momentum, self.bn_epsilon, name="aux_bn1"))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.variance_scaling(
            2.0, "fan_out", "truncated_normal"), name="dense")(x)


def count_params(tree) -> int:
    """Total number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def init_shapes(model: NASNet, image_shape: tuple[int, int, int], batch: int = 1):
    """Variable shapes of ``model`` via ``jax.eval_shape`` (no compile, no FLOPs)."""
    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    return jax.eval_shape(lambda k, x: model.init(k, x), jax.random.key(0), x)
