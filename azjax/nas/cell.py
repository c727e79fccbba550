"""A static NASNet cell built from a genotype (exact TF-slim behaviour)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from azjax.nas.genotype import OP_NAMES, Cell as CellBlocks
from azjax.nas.ops import FactorizedReduction, ReLUConvBN, drop_path, make_op


class Cell(nn.Module):
    """One Normal (``stride=1``) or Reduction (``stride=2``) cell.

    Attributes:
      blocks: the cell's blocks, ``(input 1, input 2, op 1, op 2, combine)`` each.
      concat: hidden-state indices concatenated into the output.
      features: the per-branch width ``F``.
      stride: 2 for a Reduction Cell; applies only to ops that read the cell inputs.
      use_drop_path: whether drop-path is active in training (base keep probability < 1).
    """

    blocks: CellBlocks
    concat: tuple[int, ...]
    features: int
    stride: int = 1
    use_drop_path: bool = False
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, prev: jax.Array | None, train: bool = False,
                 keep_prob: jax.Array | float = 1.0) -> jax.Array:
        """Apply the cell.

        Args:
          x: the previous cell's output ``h_i`` (NHWC).
          prev: the output two cells back ``h_{i-1}``, or ``None`` for the first cell.
          train: batch statistics and drop-path on (needs the ``'drop_path'`` RNG stream).
          keep_prob: this cell's drop-path keep probability (a traced scalar is fine).
        """
        f = self.features
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        # Align h_{i-1} to h_i. Without one, the raw input is used unchanged.
        if prev is None:
            prev = x
        elif prev.shape[1:3] != x.shape[1:3]:
            prev = FactorizedReduction(f, 2, **bn, name="prev_reduction")(nn.relu(prev), train)
        elif prev.shape[-1] != f:
            prev = ReLUConvBN(f, **bn, name="prev_1x1")(prev, train)
        states = [ReLUConvBN(f, **bn, name="beginning")(x, train), prev]

        for j, (in1, in2, op1, op2, combine) in enumerate(self.blocks):
            outs = []
            for side, idx, op in (("left", in1, op1), ("right", in2, op2)):
                stride = self.stride if idx < 2 else 1
                name = OP_NAMES[op]
                y = make_op(name, f, stride, depthwise_impl=self.depthwise_impl, **bn,
                            module_name=f"block{j}_{side}")(states[idx], train)
                # The reference drops every op output except identity's.
                if train and self.use_drop_path and name != "identity":
                    y = drop_path(y, keep_prob, self.make_rng("drop_path"))
                outs.append(y)
            if combine == 0:
                states.append(outs[0] + outs[1])
            else:
                states.append(jnp.concatenate(outs, axis=-1))

        # Output: states whose size or width differ from the last block's go through a
        # factorized reduction first (no ReLU), as TF-slim's _combine_unused_states does.
        final = states[-1]
        outputs = []
        for idx in self.concat:
            s = states[idx]
            if s.shape[1:] != final.shape[1:]:
                stride = 2 if s.shape[1:3] != final.shape[1:3] else 1
                s = FactorizedReduction(final.shape[-1], stride, **bn,
                                        name=f"reduction_{idx}")(s, train)
            outputs.append(s)
        return jnp.concatenate(outputs, axis=-1)


def cell_output_width(blocks: CellBlocks, concat: tuple[int, ...], features: int) -> int:
    """Channels of a cell's output (all concatenated states take the last block's width)."""
    last = 2 * features if blocks[-1][4] == 1 else features
    return last * len(concat)
