"""The 13 NASNet candidate ops as Flax modules, following TF-slim.

Conventions (all reference behaviour unless noted):

* Convs are ReLU -> conv -> BN, with no conv biases and fan-out variance-scaling init.
* A separable conv is applied twice: [ReLU -> depthwise KxK -> pointwise 1x1 -> BN] x 2, with the
  stride in the first depthwise conv only and nothing between depthwise and pointwise.
* Pools use SAME padding; average pooling divides by the number of in-bounds elements (TF).
  If the input width differs from ``F`` a 1x1 conv and BN follow (no ReLU).
* Identity becomes ReLU -> 1x1 conv (stride s) -> BN when the stride is 2 or widths differ.
* The ops TF-slim never built (1x3/3x1, 1x7/7x1, dilated 3x3, 1x1, 3x3) are a reimplementation
  decision: ReLU -> conv(s) -> BN, stride in the first conv; dilated 3x3 is a dense conv with
  dilation 2.

Depthwise convolution has three implementations with identical results: XLA's grouped
convolution (``feature_group_count``); a sum of k*k shifted element-wise products, which is
several times faster on XLA CPU; and a dense conv with a diagonal kernel (C times the
FLOPs, but compiles about twice as fast as shift-and-sum and runs as fast at <= 16 channels).
``impl="auto"`` picks grouped on GPU/TPU and dense/shift on CPU by width.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from azjax.nas.genotype import OP_NAMES

# TF-slim arg scope: variance scaling (factor 2, fan-out), truncated normal.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
# A depthwise kernel [k, k, 1, C] has k*k outputs per input channel (multiplier 1), as in TF.
depthwise_init = nn.initializers.variance_scaling(
    2.0, "fan_out", "truncated_normal", in_axis=-1, out_axis=-2)

DEPTHWISE_IMPLS = ("auto", "shift", "grouped", "dense")


# On CPU, at or below this many channels the diagonal dense conv beats shift-and-sum overall:
# same steady speed at 16 channels and about half the compile time of a NASNet child (measured).
DENSE_MAX_CHANNELS = 16


def resolve_depthwise_impl(impl: str, channels: int | None = None) -> str:
    """Map ``"auto"`` to a concrete implementation for the default backend.

    ``"grouped"`` on GPU/TPU; on CPU ``"dense"`` for at most :data:`DENSE_MAX_CHANNELS` channels,
    else ``"shift"``.
    """
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise_impl: expected one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if impl == "auto":
        if jax.default_backend() != "cpu":
            return "grouped"
        if channels is not None and channels <= DENSE_MAX_CHANNELS:
            return "dense"
        return "shift"
    return impl


def _same_padding(size: int, k: int, stride: int) -> tuple[int, int, int]:
    """TF/XLA SAME padding: (out size, pad before, pad after); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1, impl: str = "auto"):
    """Depthwise (multiplier 1) SAME convolution of NHWC ``x`` with a ``[k, k, 1, C]`` kernel."""
    k, c = kernel.shape[0], x.shape[-1]
    impl = resolve_depthwise_impl(impl, c)
    if kernel.shape != (k, k, 1, c):
        raise ValueError(f"kernel: expected shape ({k}, {k}, 1, {c}), got {kernel.shape}")
    if impl == "grouped":
        return lax.conv_general_dilated(
            x, kernel, (stride, stride), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    if impl == "dense":
        # A dense conv with a diagonal kernel: C times the FLOPs, but one plain conv op, which
        # XLA CPU compiles and runs far better than a grouped one at small widths.
        full = kernel * jnp.eye(c, dtype=kernel.dtype)
        return lax.conv_general_dilated(
            x, full, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    b, h, w, _ = x.shape
    oh, ph0, ph1 = _same_padding(h, k, stride)
    ow, pw0, pw1 = _same_padding(w, k, stride)
    xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    out = None
    for i in range(k):
        for j in range(k):
            patch = lax.slice(
                xp, (0, i, j, 0),
                (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
                (1, stride, stride, 1))
            term = patch * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


class DepthwiseConv(nn.Module):
    """Depthwise KxK conv (multiplier 1, SAME, no bias) with a selectable implementation."""

    kernel_size: int
    stride: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", depthwise_init, (k, k, 1, x.shape[-1]), jnp.float32)
        return depthwise_conv(x, kernel.astype(x.dtype), self.stride, self.impl)


def batch_norm(x, train: bool, momentum: float = 0.9, epsilon: float = 1e-5,
               name: str | None = None):
    """BatchNorm with scale and bias inside a compact method (TF decay == Flax momentum)."""
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        name=name)(x)


def conv(features: int, kernel, stride: int = 1, name: str | None = None, **kw) -> nn.Conv:
    """A bias-free SAME conv with TF-slim's init."""
    if isinstance(kernel, int):
        kernel = (kernel, kernel)
    return nn.Conv(features, kernel, strides=(stride, stride), padding=kw.pop("padding", "SAME"),
                   use_bias=False, kernel_init=conv_init, name=name, **kw)


class ReLUConvBN(nn.Module):
    """ReLU -> one or more convs (stride in the first) -> BN."""

    features: int
    kernels: tuple[Any, ...] = ((1, 1),)
    stride: int = 1
    dilation: int = 1
    relu: bool = True
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        if self.relu:
            x = nn.relu(x)
        for i, kernel in enumerate(self.kernels):
            x = conv(self.features, kernel, self.stride if i == 0 else 1, name=f"conv{i}",
                     kernel_dilation=(self.dilation, self.dilation))(x)
        return batch_norm(x, train, self.bn_momentum, self.bn_epsilon)


class SepConv(nn.Module):
    """TF-slim ``separable_KxK_2``: [ReLU -> depthwise -> pointwise -> BN] twice."""

    features: int
    kernel_size: int
    stride: int = 1
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        stride = self.stride
        for layer in range(2):
            x = nn.relu(x)
            x = DepthwiseConv(self.kernel_size, stride, self.depthwise_impl,
                              name=f"depthwise{layer}")(x)
            x = conv(self.features, 1, name=f"pointwise{layer}")(x)
            x = batch_norm(x, train, self.bn_momentum, self.bn_epsilon, name=f"bn{layer}")
            stride = 1  # the stride applies in the first layer only
        return x


class Pool(nn.Module):
    """SAME avg/max pooling (TF averaging), then 1x1 conv + BN if the width is not ``F``."""

    features: int
    kind: str
    window: int
    stride: int = 1
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        shape, strides = (self.window, self.window), (self.stride, self.stride)
        if self.kind == "avg":
            x = nn.avg_pool(x, shape, strides, padding="SAME", count_include_pad=False)
        else:
            x = nn.max_pool(x, shape, strides, padding="SAME")
        if x.shape[-1] != self.features:
            x = ReLUConvBN(self.features, relu=False, bn_momentum=self.bn_momentum,
                           bn_epsilon=self.bn_epsilon, name="project")(x, train)
        return x


class Identity(nn.Module):
    """Identity, or ReLU -> 1x1 conv (stride s) -> BN when the stride or width differ."""

    features: int
    stride: int = 1
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride > 1 or x.shape[-1] != self.features:
            x = ReLUConvBN(self.features, stride=self.stride, bn_momentum=self.bn_momentum,
                           bn_epsilon=self.bn_epsilon, name="project")(x, train)
        return x


def make_op(name: str, features: int, stride: int, *, depthwise_impl: str = "auto",
            bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
            module_name: str | None = None) -> nn.Module:
    """Build candidate op ``name`` (one of :data:`OP_NAMES`) producing ``features`` channels."""
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=module_name)
    if name == "identity":
        return Identity(features, stride, **bn)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConv(features, k, stride, depthwise_impl, **bn)
    if name.startswith(("avg_pool_", "max_pool_")):
        return Pool(features, name[:3], int(name[-1]), stride, **bn)
    convs = {
        "conv_1x1": ((1, 1),),
        "conv_3x3": ((3, 3),),
        "conv_1x3_3x1": ((1, 3), (3, 1)),
        "conv_1x7_7x1": ((1, 7), (7, 1)),
    }
    if name in convs:
        return ReLUConvBN(features, convs[name], stride, **bn)
    if name == "dil_conv_3x3":
        return ReLUConvBN(features, ((3, 3),), stride, dilation=2, **bn)
    raise ValueError(f"op: unknown op {name!r}; expected one of {OP_NAMES}")


class FactorizedReduction(nn.Module):
    """Reduce to ``features`` channels; stride 2 keeps both pixel offsets.

    Stride 2: path A subsamples from (0, 0), path B from (1, 1) (zero-padded at bottom/right),
    each through a 1x1 conv to ``features / 2``; concat; BN. Stride 1: 1x1 conv and BN.
    No ReLU here; callers add it where the reference does.
    """

    features: int
    stride: int = 2
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride == 1:
            x = conv(self.features, 1, name="path_conv")(x)
            return batch_norm(x, train, self.bn_momentum, self.bn_epsilon, name="path_bn")
        if self.features % 2:
            raise ValueError(f"features: factorized reduction needs an even count, got "
                             f"{self.features}")
        s = self.stride
        path1 = x[:, ::s, ::s, :]
        shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
        path2 = shifted[:, ::s, ::s, :]
        path1 = conv(self.features // 2, 1, name="path1_conv")(path1)
        path2 = conv(self.features // 2, 1, name="path2_conv")(path2)
        out = jnp.concatenate([path1, path2], axis=-1)
        return batch_norm(out, train, self.bn_momentum, self.bn_epsilon,
                          name="final_path_bn")


def drop_path(x: jax.Array, keep_prob: jax.Array, key: jax.Array) -> jax.Array:
    """Per-example drop-path: zero whole examples with prob ``1 - keep_prob``, scale by 1/keep.

    ``keep_prob`` is a traced scalar, so changing it does not change the compiled graph.
    """
    keep_prob = jnp.asarray(keep_prob, x.dtype)
    mask = jax.random.bernoulli(key, keep_prob, (x.shape[0], 1, 1, 1))
    return x * (mask.astype(x.dtype) / keep_prob)
