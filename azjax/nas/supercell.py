"""The genotype-as-data NASNet cell: one compiled graph serves every child of a :class:`CellSpace`.

:class:`SuperCell` takes the cell as an int32 ``[B, 5]`` array (global op / combiner ids, as
:meth:`CellSpace.cell_arrays` returns them) instead of a static tuple. Each op slot holds one
parameter set per candidate op and runs the chosen one with a ``lax.switch`` (a real conditional
when the index is not batched), so sampling a new architecture never recompiles, and the weights
can be shared across children (ENAS) or re-initialised per child (NASNet-style). The switch's
gradient is a second switch that recomputes the chosen op (:func:`_recompute_switch`), and on CPU
every convolution's gradient is laid out for XLA's fast kernel (:func:`conv2d`): a training step
then costs about what the static network's does (docs/nas.md, "Child training speed").

It computes the same function as the static :class:`~azjax.nas.cell.Cell` for the same genotype
and weights (tested); :func:`embed_static_params` maps a static cell's (or network's) variables
into the supercell's. How the data-dependent shapes are made static:

* Every hidden state is zero-padded to a fixed width ``Wmax`` and carries its real width as a
  traced int. A conv reading a padded state equals the static conv on the real channels when its
  extra kernel rows are anything (they multiply zeros), so weights map by leading slices.
* Width-dependent rules of the reference: identity and pools project with a 1x1 conv when the
  input width is not ``F``; they have one switch branch with and one without the projection,
  picked with the traced width, so only the needed one runs. ``h_{i-1}`` is projected when its
  width is not ``F``: both variants are computed and selected with the traced width.
* In a Reduction Cell an op reading a cell input runs at stride 2 and one reading a block output
  at stride 1: the switch has both variants with shared weights.
* The output holds the loose ends (a mask computed from the genotype in the graph) in one slot
  of ``Wblock`` channels per block (``B x Wblock`` in all; other slots zero), so a channel means
  the same block under every genotype and the next cell's 1x1 convs keep one weight slice per
  block (ENAS's per-block ``final_conv``). The static cell packs the loose ends in index order
  instead; that layout is ``output_layout="packed"`` (or :func:`pack_loose_ends`), and the
  mapped weights (:func:`embed_static_params`) make the slot layout compute the static
  network's function. The real width is returned alongside. States narrower than the last block
  go through a factorized reduction to its width first (both widths are built).

Drop-path is not implemented here (search-time children train without it).
"""
from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.nas.genotype import NUM_BLOCKS, OP_INDEX, OP_NAMES, Genotype
from azjax.nas.network import reduction_indices
from azjax.nas.ops import (batch_norm, conv_init, depthwise_conv, depthwise_init,
                           resolve_depthwise_impl)

__all__ = ["SuperCell", "SuperNet", "embed_static_params", "loose_end_mask", "pack_loose_ends",
           "slot_channels"]


def _pad_channels(x: jax.Array, width: int) -> jax.Array:
    extra = width - x.shape[-1]
    if extra < 0:
        raise ValueError(f"width: cannot pad {x.shape[-1]} channels down to {width}")
    return x if extra == 0 else jnp.pad(x, ((0, 0),) * (x.ndim - 1) + ((0, extra),))


def loose_end_mask(cell: jax.Array) -> jax.Array:
    """bool ``[B]``: block ``k`` is a loose end (no block reads state ``2 + k``); jittable."""
    cell = jnp.asarray(cell)
    b = cell.shape[0]
    states = 2 + jnp.arange(b)
    used = jnp.any((cell[:, 0, None] == states) | (cell[:, 1, None] == states), axis=0)
    return ~used


def pack_loose_ends(out: jax.Array, cell: jax.Array, width: jax.Array | int) -> jax.Array:
    """A slot-layout cell output -> the static cell's layout; jittable.

    ``out`` has ``B`` slots of ``out.shape[-1] // B`` channels, block ``k``'s loose end in the
    leading ``width / n`` channels of slot ``k`` (``n`` loose ends). The result packs the loose
    ends in index order in the leading ``width`` channels and zero-pads to the same size.
    """
    cell = jnp.asarray(cell)
    b = cell.shape[0]
    wb = out.shape[-1] // b
    mask = loose_end_mask(cell)
    n_sel = jnp.sum(mask).astype(jnp.int32)
    final_width = jnp.asarray(width, jnp.int32) // jnp.maximum(n_sel, 1)
    order = jnp.argsort(~mask, stable=True)  # selected block indices first, in order
    c = jnp.arange(b * wb)
    slot_k = c // final_width
    src = order[jnp.minimum(slot_k, b - 1)] * wb + c % final_width
    return jnp.where(slot_k < n_sel, jnp.take(out, src, axis=-1), 0.0)


def slot_channels(cell, width: int, block_width: int) -> np.ndarray:
    """For a concrete cell: the slot-layout channel of each packed output channel (host-side).

    ``width`` is the packed (real) output width, ``block_width`` the slot size.
    """
    ends = np.flatnonzero(np.asarray(loose_end_mask(jnp.asarray(cell, jnp.int32))))
    fw = width // len(ends)
    p = np.arange(width)
    return ends[p // fw] * block_width + p % fw


# --- convolutions whose gradients XLA CPU runs fast inside control flow --------------------------
#
# XLA CPU rewrites a convolution into the layout its fast (Eigen) kernel needs only in the
# entry computation; the gradient convolutions JAX emits (kernel in/out swapped, batch and
# feature swapped) then run on a slow generic loop when they sit in a conditional or a loop
# body, which is where the supernet's ops are (docs/nas.md, "Child training speed"). On CPU,
# ``conv2d``'s VJP therefore transposes its operands explicitly so that both gradient
# convolutions are already in the canonical NHWC x HWIO -> NHWC form. Same values as
# ``lax.conv_general_dilated``'s own VJP.

_DN = ("NHWC", "HWIO", "NHWC")


def _conv_raw(x, w, stride, padding, dilation):
    return lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                    dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_canonical(x, w, stride, padding, dilation):
    return _conv_raw(x, w, stride, padding, dilation)


def _conv_canonical_fwd(x, w, stride, padding, dilation):
    return _conv_raw(x, w, stride, padding, dilation), (x, w)


def _conv_canonical_bwd(stride, padding, dilation, res, dy):
    x, w = res
    # d/dx: the transpose of a conv whose kernel is stored [kh, kw, out, in].
    w_oi = jnp.transpose(w, (0, 1, 3, 2))
    dx, = jax.linear_transpose(
        lambda x: lax.conv_general_dilated(x, w_oi, stride, padding, rhs_dilation=dilation,
                                           dimension_numbers=("NHWC", "HWOI", "NHWC")), x)(dy)
    # d/dw: images as [C, H, W, N] and output gradients as [H, W, N, O].
    x_t = jnp.transpose(x, (3, 1, 2, 0))
    dw, = jax.linear_transpose(
        lambda w: lax.conv_general_dilated(x_t, w, stride, padding, rhs_dilation=dilation,
                                           dimension_numbers=("CHWN", "IHWO", "HWNC")),
        jnp.transpose(w, (2, 0, 1, 3)))(jnp.transpose(dy, (1, 2, 0, 3)))
    return dx, jnp.transpose(dw, (1, 2, 0, 3))


_conv_canonical.defvjp(_conv_canonical_fwd, _conv_canonical_bwd)


def conv2d(x: jax.Array, w: jax.Array, stride: int = 1, dilation: int = 1) -> jax.Array:
    """SAME NHWC x HWIO convolution (as ``ops.conv``); on CPU with the canonical-layout VJP."""
    kh, kw = w.shape[:2]
    strides, dilations = (stride, stride), (dilation, dilation)
    padding = tuple(tuple(p) for p in lax.padtype_to_pads(
        x.shape[1:3], (1 + (kh - 1) * dilation, 1 + (kw - 1) * dilation), strides, "SAME"))
    if jax.default_backend() != "cpu":
        return _conv_raw(x, w, strides, padding, dilations)
    return _conv_canonical(x, w, strides, padding, dilations)


class _Conv2D(nn.Module):
    """``ops.conv`` (bias-free SAME conv, TF-slim init, parameter ``kernel``) with the stride a
    call argument, through :func:`conv2d`."""

    features: int
    kernel_size: Any = (1, 1)
    dilation: int = 1

    @nn.compact
    def __call__(self, x, stride=1):
        k = self.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else k
        kernel = self.param("kernel", conv_init, (kh, kw, x.shape[-1], self.features),
                            jnp.float32)
        return conv2d(x, kernel.astype(x.dtype), stride, self.dilation)


class _Depthwise(nn.Module):
    """``ops.DepthwiseConv`` with the stride a call argument (same ``kernel`` parameter)."""

    kernel_size: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, stride):
        k, c = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", depthwise_init, (k, k, 1, c), jnp.float32).astype(x.dtype)
        if resolve_depthwise_impl(self.impl, c) == "dense":
            return conv2d(x, kernel * jnp.eye(c, dtype=x.dtype), stride)
        return depthwise_conv(x, kernel, stride, self.impl)


class _RCB(nn.Module):
    """ReLU -> convs (stride in the first) -> BN with the stride a call argument; parameters are
    named as in ``ops.ReLUConvBN`` (``conv0``, ``conv1``, ``BatchNorm_0``)."""

    features: int
    kernels: tuple[Any, ...] = ((1, 1),)
    dilation: int = 1
    relu: bool = True
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, stride, train):
        if self.relu:
            x = nn.relu(x)
        for i, kernel in enumerate(self.kernels):
            x = _Conv2D(self.features, kernel, self.dilation, name=f"conv{i}")(
                x, stride if i == 0 else 1)
        return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                            epsilon=self.bn_epsilon, name="BatchNorm_0")(x)


class _FactorizedReduction(nn.Module):
    """``ops.FactorizedReduction`` (same parameters) through :func:`conv2d`."""

    features: int
    stride: int = 2
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        bn = (self.bn_momentum, self.bn_epsilon)
        if self.stride == 1:
            return batch_norm(_Conv2D(self.features, name="path_conv")(x), train, *bn,
                              name="path_bn")
        if self.features % 2:
            raise ValueError(f"features: factorized reduction needs an even count, got "
                             f"{self.features}")
        s = self.stride
        path1 = x[:, ::s, ::s, :]
        path2 = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :][:, ::s, ::s, :]
        out = jnp.concatenate([_Conv2D(self.features // 2, name="path1_conv")(path1),
                               _Conv2D(self.features // 2, name="path2_conv")(path2)], axis=-1)
        return batch_norm(out, train, *bn, name="final_path_bn")


class _Sep(nn.Module):
    """Separable KxK applied twice (as ``ops.SepConv``) on a zero-padded input."""

    features: int
    kernel_size: int
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, width, stride, train, project=True):
        del width, project  # zero channels stay zero through ReLU and the depthwise conv
        for layer in range(2):
            x = nn.relu(x)
            x = _Depthwise(self.kernel_size, self.depthwise_impl, name=f"depthwise{layer}")(
                x, stride if layer == 0 else 1)
            x = _Conv2D(self.features, name=f"pointwise{layer}")(x)
            x = batch_norm(x, train, self.bn_momentum, self.bn_epsilon, name=f"bn{layer}")
        return x


class _Pool(nn.Module):
    """Pooling, then (``project``, a Python bool: the input width is not ``F``) 1x1 conv + BN."""

    features: int
    kind: str
    window: int
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, width, stride, train, project=True):
        del width  # the caller picks ``project`` from it (one switch branch per case)
        shape, strides = (self.window, self.window), (stride, stride)
        if self.kind == "avg":
            x = nn.avg_pool(x, shape, strides, padding="SAME", count_include_pad=False)
        else:
            x = nn.max_pool(x, shape, strides, padding="SAME")
        if not project:
            return x[..., :self.features]
        return _RCB(self.features, relu=False, bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon, name="project")(x, 1, train)


class _Identity(nn.Module):
    """Identity, or ReLU -> 1x1 conv (stride s) -> BN when ``project`` or the stride is 2."""

    features: int
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, width, stride, train, project=True):
        del width
        if not project and stride == 1:
            return x[..., :self.features]
        return _RCB(self.features, bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon, name="project")(x, stride, train)


class _Conv(_RCB):
    """The plain conv ops (1x1, 3x3, 1x3+3x1, 1x7+7x1, dilated 3x3): ReLU -> conv(s) -> BN;
    extra kernel rows multiply zero channels."""

    def __call__(self, x, width, stride, train, project=True):
        del width, project
        return super().__call__(x, stride, train)


_CONVS = {
    "conv_1x1": ((1, 1),),
    "conv_3x3": ((3, 3),),
    "conv_1x3_3x1": ((1, 3), (3, 1)),
    "conv_1x7_7x1": ((1, 7), (7, 1)),
}


def _make_super_op(name: str, features: int, depthwise_impl: str, bn: dict):
    """An unbound candidate op module: applied as a pure function with explicit variables."""
    bn = dict(bn, parent=None)
    if name == "identity":
        return _Identity(features, **bn)
    if name.startswith("sep_conv_"):
        return _Sep(features, int(name[-1]), depthwise_impl, **bn)
    if name.startswith(("avg_pool_", "max_pool_")):
        return _Pool(features, name[:3], int(name[-1]), **bn)
    if name in _CONVS:
        return _Conv(features, _CONVS[name], **bn)
    if name == "dil_conv_3x3":
        return _Conv(features, ((3, 3),), 2, **bn)
    raise ValueError(f"ops: unknown op {name!r}; expected one of {OP_NAMES}")


class SuperCell(nn.Module):
    """One Normal (``stride=1``) or Reduction (``stride=2``) cell with the genotype as data.

    Attributes:
      features: the per-branch width ``F``.
      stride: 2 for a Reduction Cell.
      ops: candidate op names (the switch branches); genotype op ids outside it are an error
        only in the sense that they run ``ops[0]`` (validate genomes with the space).
      num_blocks: ``B``.
      allow_concat: whether a block may concatenate (width ``2F``); ``False`` for add-only spaces
        saves memory and compute.
      output_layout: ``"slots"`` (default): block ``k``'s loose end sits in slot ``k`` (channels
        ``k * block_width ...``), other slots are zero, so a channel always carries the same
        block whichever genotype runs; the next cell's 1x1 convs then hold one weight slice per
        block, as ENAS's per-block ``final_conv`` does, and shared weights see a fixed meaning
        per channel. ``"packed"``: the static cell's layout (loose ends packed in index order),
        whose channel meaning changes with the genotype. :func:`pack_loose_ends` maps the first
        to the second.
    """

    features: int
    stride: int = 1
    ops: tuple[str, ...] = OP_NAMES
    num_blocks: int = NUM_BLOCKS
    allow_concat: bool = True
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    output_layout: str = "slots"

    @property
    def block_width(self) -> int:
        """Widest block output: ``2F`` with concat combiners, else ``F``."""
        return (2 if self.allow_concat else 1) * self.features

    @property
    def max_output_width(self) -> int:
        """Channels of the (padded) output: at most ``B`` loose ends of ``block_width`` each."""
        return self.num_blocks * self.block_width

    @nn.compact
    def __call__(self, x: jax.Array, prev: jax.Array | None, cell: jax.Array,
                 train: bool = False, prev_width: jax.Array | int | None = None,
                 prev_cell: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Apply the cell.

        Args:
          x: ``h_i``, NHWC, possibly zero-padded beyond its real width.
          prev: ``h_{i-1}`` (possibly padded) or ``None`` for the first cell (then ``x``, unpadded,
            is used as is).
          cell: int32 ``[B, 5]``, global op and combiner ids.
          train: batch-statistics BN.
          prev_width: the real width of ``prev`` (traced ok); default ``prev.shape[-1]``.
          prev_cell: the cell array of the supercell that produced ``prev`` when ``prev`` is in
            the ``"slots"`` layout (``None``: ``prev`` is packed or a plain tensor). Needed where
            ``prev`` is used without a projection (its real width is ``F``).

        Returns:
          ``(output, width)``: the output zero-padded to :attr:`max_output_width` channels, and
          its real width (int32 scalar).
        """
        f, b = self.features, self.num_blocks
        if self.output_layout not in ("slots", "packed"):
            raise ValueError(f"output_layout: expected 'slots' or 'packed', got "
                             f"{self.output_layout!r}")
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        cell = jnp.asarray(cell, jnp.int32)
        if cell.shape != (b, 5):
            raise ValueError(f"cell: expected shape ({b}, 5), got {cell.shape}")
        ops = tuple(self.ops)

        # Cell inputs, as the static cell aligns them.
        if prev is None:
            s1, w1 = x, jnp.asarray(x.shape[-1], jnp.int32)
        elif prev.shape[1:3] != x.shape[1:3]:
            s1 = _FactorizedReduction(f, 2, **bn, name="prev_reduction")(nn.relu(prev), train)
            w1 = jnp.asarray(f, jnp.int32)
        else:
            pw = jnp.asarray(prev.shape[-1] if prev_width is None else prev_width, jnp.int32)
            projected = _RCB(f, **bn, name="prev_1x1")(prev, 1, train)
            plain = prev if prev_cell is None else pack_loose_ends(prev, prev_cell, pw)
            s1 = jnp.where(pw != f, projected, plain[..., :f])
            w1 = jnp.asarray(f, jnp.int32)
        s0 = _RCB(f, **bn, name="beginning")(x, 1, train)
        wmax = max(self.block_width, s1.shape[-1], f)
        inputs = jnp.stack([_pad_channels(s0, wmax), _pad_channels(s1, wmax)])
        input_widths = jnp.stack([jnp.asarray(f, jnp.int32), w1])

        # The blocks run under one nn.scan (per-block weights stacked on a leading axis), so the
        # block body is traced and compiled once instead of B times.
        h, w = -(-x.shape[1] // self.stride), -(-x.shape[2] // self.stride)  # SAME padding
        buf = jnp.zeros((b, x.shape[0], h, w, wmax), x.dtype)
        widths = jnp.full((b,), f, jnp.int32)
        off = 2 if self.stride == 1 else 0  # normal: the inputs lead the state buffer
        if off:
            buf = jnp.concatenate([inputs, buf])
            widths = jnp.concatenate([input_widths, widths])
            inputs, input_widths = inputs[:0], input_widths[:0]
        carry = (inputs, input_widths, buf, widths)
        scan = nn.scan(_Block, variable_axes={"params": 0, "batch_stats": 0},
                       split_rngs={"params": True}, in_axes=0, length=b)
        carry, _ = scan(ops, f, self.stride, self.allow_concat, train, self.depthwise_impl, **bn,
                        name="blocks")(carry, (cell, jnp.arange(b)))
        _, _, buf, widths = carry
        blocks = [buf[off + k] for k in range(b)]
        block_widths = [widths[off + k] for k in range(b)]

        # Output: the loose ends, each at the last block's width, packed in index order.
        wb = self.block_width
        final_width = block_widths[-1]
        outs = []
        for k in range(b):
            s = blocks[k][..., :wb]
            if self.allow_concat:
                r1 = _FactorizedReduction(f, 1, **bn, name=f"reduction_{2 + k}_f")(s, train)
                r2 = _FactorizedReduction(2 * f, 1, **bn, name=f"reduction_{2 + k}_2f")(s, train)
                reduced = jnp.where(final_width == f, _pad_channels(r1, wb), r2)
                s = jnp.where(block_widths[k] == final_width, s, reduced)
            outs.append(s)
        stacked = jnp.stack(outs, axis=-2)  # [N, H, W, B, wb]
        mask = loose_end_mask(cell)
        width = jnp.sum(mask).astype(jnp.int32) * final_width
        if self.output_layout == "slots":
            out = jnp.where(mask[:, None], stacked, 0.0).reshape(stacked.shape[:-2] + (b * wb,))
        else:
            out = pack_loose_ends(stacked.reshape(stacked.shape[:-2] + (b * wb,)), cell, width)
        return out, width


class _Block(nn.Module):
    """One block (two op slots and the combiner) as an ``nn.scan`` body over the blocks.

    The carry holds the cell inputs ``[2, N, H, W, Wmax]`` with their real widths and a buffer of
    block outputs ``[B, N, H/s, W/s, Wmax]`` with theirs; block ``j`` writes slot ``j``. In a
    Normal Cell the inputs are the buffer's first two entries instead (``[2 + B, ...]``, block
    ``j`` in entry ``2 + j``, the carried ``inputs`` empty), so an op reads its input with one
    dynamic slice. A valid genome only reads earlier states, so unwritten (zero) slots are
    never read.
    """

    ops: tuple[str, ...]
    features: int
    stride: int
    allow_concat: bool
    train: bool
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, carry, xs):
        inputs, input_widths, buf, widths = carry
        row, j = xs
        f = self.features
        local = np.zeros(len(OP_NAMES), np.int32)
        for i, name in enumerate(self.ops):
            local[OP_INDEX[name]] = i
        local = jnp.asarray(local)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        outs = []
        for side, field in (("left", 0), ("right", 1)):
            idx, op = row[field], local[row[2 + field]]
            slot = _Slot(self.ops, f, self.depthwise_impl, **bn, name=side)
            if self.stride == 1:
                y = slot(op, 0, [((buf[idx], widths[idx]), 1)], self.train)
            else:
                # Reduction: cell inputs (full size) at stride 2, block outputs at stride 1.
                i_full, i_half = jnp.minimum(idx, 1), jnp.maximum(idx - 2, 0)
                y = slot(op, (idx >= 2).astype(jnp.int32),
                         [((inputs[i_full], input_widths[i_full]), self.stride),
                          ((buf[i_half], widths[i_half]), 1)], self.train)
            outs.append(y)
        wmax = buf.shape[-1]
        new = _pad_channels(outs[0] + outs[1], wmax)
        new_width = jnp.asarray(f, jnp.int32)
        if self.allow_concat:
            cat = _pad_channels(jnp.concatenate(outs, axis=-1), wmax)
            new = jnp.where(row[4] == 1, cat, new)
            new_width = jnp.where(row[4] == 1, 2 * f, f).astype(jnp.int32)
        at = j + 2 if self.stride == 1 else j
        buf = buf.at[at].set(new)
        widths = widths.at[at].set(new_width)
        return (inputs, input_widths, buf, widths), None


def _switch_branches(branches, index, params, stats, xs, widths):
    return jax.lax.switch(index, branches, params, stats, xs, widths)


# A ``lax.switch`` whose gradient runs only the chosen branch: the backward pass is a second
# switch that recomputes that branch's forward and pulls the cotangent back through it. The
# default VJP of a switch returns the union of every branch's residuals (zeros for the branches
# not taken), which is what made the supernet compile for an hour and run several times slower
# than the static network (docs/nas.md, "Child training speed").
_recompute_switch = jax.custom_vjp(_switch_branches, nondiff_argnums=(0,))


def _recompute_switch_fwd(branches, index, params, stats, xs, widths):
    out = _switch_branches(branches, index, params, stats, xs, widths)
    return out, (index, params, stats, xs, widths)


def _recompute_switch_bwd(branches, res, cotangent):
    index, params, stats, xs, widths = res
    dy = cotangent[0]  # the BN statistics output carries no gradient

    def pullback(branch):
        def fn(params, stats, xs, widths, dy):
            _, vjp = jax.vjp(lambda p, x: branch(p, stats, x, widths)[0], params, xs)
            return vjp(dy)
        return fn

    d_params, d_xs = jax.lax.switch(index, [pullback(b) for b in branches], params, stats, xs,
                                    widths, dy)
    return None, d_params, None, d_xs, None


_recompute_switch.defvjp(_recompute_switch_fwd, _recompute_switch_bwd)


def _needs_projection(name: str, stride: int) -> bool:
    """Whether op ``name`` at ``stride`` has a width rule (projects unless the width is ``F``)."""
    return (name == "identity" and stride == 1) or name.startswith(("avg_pool_", "max_pool_"))


class _Slot(nn.Module):
    """One op slot: every candidate op's parameters; one switch runs only the chosen op.

    ``variants`` is a list of ``((x, width), stride)`` (one in a Normal Cell; in a Reduction
    Cell the cell inputs at stride 2 and the block outputs at stride 1); ``op`` picks the op
    (index into ``ops``) and ``variant`` the variant, both traced. The variants share each op's
    parameters. Ops with a width rule (identity at stride 1, pools) have two branches, with and
    without the 1x1 projection, picked by the traced width, so only the needed one runs.

    The candidate ops are applied as pure functions of their variables (stored under
    ``candidates_<op>``, the layout of a Flax submodule), and the switch has a custom VJP that
    recomputes the chosen branch (:func:`_recompute_switch`): forward and backward each run one
    op, and nothing is kept for the branches not taken.
    """

    ops: tuple[str, ...]
    features: int
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, op, variant, variants, train):
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        mods = {name: _make_super_op(name, self.features, self.depthwise_impl, bn)
                for name in self.ops}
        xs = tuple(v[0][0] for v in variants)
        widths = tuple(jnp.asarray(v[0][1], jnp.int32) for v in variants)
        strides = [v[1] for v in variants]
        initializing = self.is_initializing()
        params, stats = {}, {}
        for name in self.ops:
            key = f"candidates_{name}"
            if initializing:
                v = mods[name].init(self.make_rng("params"), xs[0], widths[0], strides[0], train,
                                    True)
                params[name] = self.param(key, lambda _, v=v: v["params"])
                stats[name] = self.variable("batch_stats", key, lambda v=v: v["batch_stats"])
            else:
                params[name] = self.get_variable("params", key)
                stats[name] = self.variable("batch_stats", key)

        # Branch table: (variant, op, project); ``first[v][i]`` is op i's first branch.
        branches, first, has_rule = [], [], []
        for vi, stride in enumerate(strides):
            first.append([]), has_rule.append([])
            for name in self.ops:
                first[-1].append(len(branches))
                rule = _needs_projection(name, stride)
                has_rule[-1].append(int(rule))
                for project in ((False, True) if rule else (True,)):
                    branches.append(self._branch(mods[name], name, vi, stride, project, train))
        variant = jnp.asarray(variant, jnp.int32)
        width = jnp.stack(widths)[variant] if len(widths) > 1 else widths[0]
        index = (jnp.asarray(first, jnp.int32)[variant, op]
                 + jnp.asarray(has_rule, jnp.int32)[variant, op]
                 * (width != self.features).astype(jnp.int32))
        stat_values = {name: var.value for name, var in stats.items()}
        if len(branches) == 1:
            y, new_stats = branches[0](params, stat_values, xs, widths)
        else:
            y, new_stats = _recompute_switch(tuple(branches), index, params, stat_values, xs,
                                             widths)
        if train and not initializing and self.is_mutable_collection("batch_stats"):
            for name, var in stats.items():
                var.value = new_stats[name]
        return y

    @staticmethod
    def _branch(mod, name, variant, stride, project, train):
        def fn(params, stats, xs, widths):
            variables = {"params": params[name], "batch_stats": stats[name]}
            args = (xs[variant], widths[variant], stride, train, project)
            if not train:
                return mod.apply(variables, *args), stats
            y, upd = mod.apply(variables, *args, mutable=["batch_stats"])
            return y, {**stats, name: upd["batch_stats"]}
        return fn


class SuperNet(nn.Module):
    """NASNet (CIFAR stem, no aux head, no drop-path) of :class:`SuperCell`\\ s.

    The layout is :class:`~azjax.nas.network.NASNet`'s: stem -> N normal -> reduction -> ... ->
    ReLU -> global average pool -> dense, ``num_cells = 3N`` normal cells. The normal and
    reduction cells are arguments of ``__call__`` (int32 ``[B, 5]`` each), so one compile serves
    every genotype. ``cell_output_layout`` is :class:`SuperCell`'s ``output_layout`` (``"slots"``
    for weights shared across genotypes).
    """

    num_cells: int = 3
    filters: int = 8
    ops: tuple[str, ...] = OP_NAMES
    num_blocks: int = NUM_BLOCKS
    allow_concat: bool = True
    num_classes: int = 10
    stem_multiplier: float = 3.0
    num_reduction_layers: int = 2
    filter_scaling_rate: float = 2.0
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    cell_output_layout: str = "slots"
    output_bn: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, normal: jax.Array, reduce: jax.Array,
                 train: bool = False) -> jax.Array:
        """Logits for NHWC images ``x`` with the cells ``normal`` and ``reduce`` as data."""
        if x.ndim != 4:
            raise ValueError(f"x: expected NHWC images [B, H, W, C], got shape {x.shape}")
        kw = dict(ops=tuple(self.ops), num_blocks=self.num_blocks,
                  allow_concat=self.allow_concat, depthwise_impl=self.depthwise_impl,
                  bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                  output_layout=self.cell_output_layout)
        slots = self.cell_output_layout == "slots"
        net = _Conv2D(int(self.stem_multiplier * self.filters), 3, name="stem_conv")(x)
        net = batch_norm(net, train, self.bn_momentum, self.bn_epsilon, name="stem_bn")
        width = jnp.asarray(net.shape[-1], jnp.int32)
        outputs = [(None, None, None), (net, width, None)]  # (output, real width, its cell)
        reductions = reduction_indices(self.num_cells, self.num_reduction_layers)
        scaling = 1.0
        for i in range(self.num_cells):
            if i in reductions:
                scaling *= self.filter_scaling_rate
                prev, prev_w, prev_cell = outputs[-2]
                net, width = SuperCell(int(self.filters * scaling), 2, **kw,
                                       name=f"reduction_cell_{reductions.index(i)}")(
                    net, prev, reduce, train, prev_w, prev_cell)
                outputs.append((net, width, reduce if slots else None))
            prev, prev_w, prev_cell = outputs[-2]
            net, width = SuperCell(int(self.filters * scaling), 1, **kw, name=f"cell_{i}")(
                net, prev, normal, train, prev_w, prev_cell)
            outputs.append((net, width, normal if slots else None))
        if self.output_bn:
            net = batch_norm(net, train, self.bn_momentum, self.bn_epsilon, name="output_bn")
        net = nn.relu(net)
        net = jnp.mean(net, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.variance_scaling(
            2.0, "fan_out", "truncated_normal"), name="logits")(net)


# --- weight mapping: static cell / network -> supercell / supernet ------------------------------

def _embed_leaf(src, dst):
    src, dst = jnp.asarray(src), jnp.asarray(dst)
    if src.ndim != dst.ndim or any(s > d for s, d in zip(src.shape, dst.shape)):
        raise ValueError(f"params: cannot embed shape {src.shape} into {dst.shape}")
    return dst.at[tuple(slice(0, s) for s in src.shape)].set(src.astype(dst.dtype))


def _embed_tree(src, dst, where: str):
    if not isinstance(src, dict):
        return _embed_leaf(src, dst)
    out = dict(dst)
    for k, v in src.items():
        if k not in dst:
            raise ValueError(f"params: {where}/{k} has no counterpart in the supercell")
        out[k] = _embed_tree(v, dst[k], f"{where}/{k}")
    return out


def _embed_cell(src: dict, dst: dict, blocks, where: str) -> dict:
    out = dict(dst)
    last_concat = blocks[-1][4] == 1
    for k, v in src.items():
        if k.startswith("block"):
            j, side = k[len("block"):].split("_")
            op = "candidates_" + OP_NAMES[blocks[int(j)][2 if side == "left" else 3]]
            stacked = out["blocks"][side][op]
            # The scanned blocks stack their weights: block j is index j of the leading axis.
            mapped = jax.tree_util.tree_map(
                lambda s, d, j=int(j): jnp.asarray(d).at[j].set(_embed_leaf(s, d[j])), v,
                stacked)
            out["blocks"] = {**out["blocks"], side: {**out["blocks"][side], op: mapped}}
        elif k.startswith("reduction_"):
            target = f"{k}_{'2f' if last_concat else 'f'}"
            out[target] = _embed_tree(v, dst[target], f"{where}/{target}")
        else:
            out[k] = _embed_tree(v, dst[k], f"{where}/{k}")
    return out


def embed_static_params(static: Any, super_: Any, genotype: Genotype,
                        cell: str | None = None) -> Any:
    """Copy a static model's variables into a supercell's (or supernet's) variable tree.

    Args:
      static: variables (or one collection, e.g. ``params``) of a static
        :class:`~azjax.nas.cell.Cell` or :class:`~azjax.nas.network.NASNet` (CIFAR stem, no aux).
      super_: the matching tree of a :class:`SuperCell` / :class:`SuperNet` (its values fill
        everything the static model does not have).
      genotype: the genotype both are built from.
      cell: ``"normal"`` or ``"reduce"`` when ``static`` is one cell; ``None`` for a network.

    Returns:
      ``super_`` with the static weights in the leading slices of the chosen ops' parameters,
      so the supercell computes the static model's function on that genotype.
    """
    static = flax.core.unfreeze(static)
    super_ = flax.core.unfreeze(super_)
    if cell is not None:
        if cell not in ("normal", "reduce"):
            raise ValueError(f"cell: expected 'normal', 'reduce' or None, got {cell!r}")
        blocks = genotype.normal if cell == "normal" else genotype.reduce
        if "beginning" in static:
            return _embed_cell(static, super_, blocks, cell)
        return {c: _embed_cell(static[c], super_[c], blocks, f"{cell}/{c}") for c in static}
    if set(static) <= {"params", "batch_stats"}:  # a variables dict: one level of collections
        return {c: embed_static_params(static[c], super_[c], genotype) for c in static}
    out = dict(super_)
    for k, v in static.items():
        if k.startswith("cell_"):
            out[k] = _embed_cell(v, super_[k], genotype.normal, k)
        elif k.startswith("reduction_cell_"):
            out[k] = _embed_cell(v, super_[k], genotype.reduce, k)
        else:
            out[k] = _embed_tree(v, super_[k], k)
    if "logits" in super_ and "kernel" in super_["logits"]:  # params: re-lay consumer rows
        _embed_consumers(static, super_, out, genotype)
    # (The SuperNet must use the default "slots" layout for these weights.)
    return out


def _set_rows(src, dst, rows, axis):
    """``dst`` with ``src``'s input-channel rows written at ``rows`` along ``axis``."""
    src, dst = jnp.asarray(src), jnp.asarray(dst)
    index = [slice(0, n) for n in src.shape]
    index[axis] = rows
    return dst.at[tuple(index)].set(src.astype(dst.dtype))


def _embed_consumers(static, super_, out, genotype: Genotype) -> None:
    """Where a layer reads a cell output, the static kernel's input rows (packed loose ends)
    go to the slot-layout channels (in place on ``out``)."""
    num_cells = sum(1 for k in static if k.startswith("cell_"))
    reductions = reduction_indices(num_cells, 2)
    # producers: (name, blocks) of each output in order; None for the stem / missing input.
    producers: list[Any] = [None, None]
    order = []
    for i in range(num_cells):
        if i in reductions:
            name = f"reduction_cell_{reductions.index(i)}"
            order.append((name, producers[-1], producers[-2]))
            producers.append((name, genotype.reduce))
        name = f"cell_{i}"
        order.append((name, producers[-1], producers[-2]))
        producers.append((name, genotype.normal))

    def put(producer, src, dst, axis):
        # The consumer's input axis holds the producer's B slots.
        blocks = producer[1]
        return _set_rows(src, dst, slot_channels(blocks, src.shape[axis],
                                                 dst.shape[axis] // len(blocks)), axis)

    for name, px, pp in order:
        cell = dict(out[name])
        if px is not None:
            cell["beginning"] = _replace(cell["beginning"], ("conv0", "kernel"), put(
                px, static[name]["beginning"]["conv0"]["kernel"],
                super_[name]["beginning"]["conv0"]["kernel"], 2))
        if pp is not None:
            for layer, convs in (("prev_1x1", ("conv0",)),
                                 ("prev_reduction", ("path1_conv", "path2_conv"))):
                if layer not in static[name]:
                    continue
                for c in convs:
                    cell[layer] = _replace(cell[layer], (c, "kernel"), put(
                        pp, static[name][layer][c]["kernel"], super_[name][layer][c]["kernel"],
                        2))
        out[name] = cell
    out["logits"] = {**out["logits"], "kernel": put(
        producers[-1], static["logits"]["kernel"], super_["logits"]["kernel"], 0)}


def _replace(tree, path, value):
    tree = dict(tree)
    if len(path) == 1:
        tree[path[0]] = value
        return tree
    tree[path[0]] = _replace(tree[path[0]], path[1:], value)
    return tree


# --- cheap initialisation --------------------------------------------------------------------

_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def variable_shapes(model: nn.Module, *args, **kwargs) -> Any:
    """Variable shapes of ``model.init(key, *args, **kwargs)`` via ``jax.eval_shape``."""
    return jax.eval_shape(lambda k: model.init(k, *args, **kwargs), jax.random.key(0))


def init_variables(shapes: Any, seed: int | np.random.Generator) -> dict:
    """Fresh variables for the shapes from :func:`variable_shapes`, drawn on the host with NumPy.

    A supernet's ``init`` has one threefry call site per parameter, which costs XLA CPU a minute
    or more to compile; drawing on the host costs nothing to compile and milliseconds to run, so
    NASNet-style search can re-initialise every child. The distributions follow the static
    model's initialisers: conv and dense kernels from a fan-out variance-scaling truncated normal
    (factor 2), depthwise kernels with fan-out ``k * k``, BN scale 1 and bias 0, BN mean 0 and
    variance 1. (The same distributions, not the same numbers as ``model.init``.)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
    out = {}
    for path, s in flat.items():
        name = path[-1]
        shape = tuple(s.shape)
        if name == "kernel":
            # Scanned blocks stack weights on a leading axis: fan-out ignores it.
            core = shape[1:] if "blocks" in path else shape
            if len(core) == 4 and any(p.startswith("depthwise") for p in path):
                fan_out = core[0] * core[1] * core[2]
            elif len(core) == 4:
                fan_out = core[0] * core[1] * core[3]
            else:
                fan_out = core[-1]
            std = np.sqrt(2.0 / max(1, fan_out)) / _TRUNC_STD
            value = np.clip(rng.standard_normal(shape), -2.0, 2.0) * std
        elif name in ("scale", "var"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        out[path] = np.asarray(value, s.dtype)
    return flax.traverse_util.unflatten_dict(out)
