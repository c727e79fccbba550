"""Ops: depthwise implementations agree, TF pooling semantics, factorized reduction, drop-path."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import nas


@pytest.mark.parametrize("k,stride,size", [(3, 1, 8), (5, 2, 8), (7, 2, 7), (3, 2, 5), (7, 1, 6)])
def test_depthwise_impls_agree(k, stride, size):
    kx, kk = jax.random.split(jax.random.key(k * 10 + stride))
    x = jax.random.normal(kx, (2, size, size, 5))
    w = jax.random.normal(kk, (k, k, 1, 5))
    ref = nas.depthwise_conv(x, w, stride, "grouped")
    for impl in ("shift", "dense"):
        out = nas.depthwise_conv(x, w, stride, impl)
        chex.assert_shape(out, ref.shape)
        chex.assert_trees_all_close(out, ref, atol=1e-4, rtol=1e-4)


def test_depthwise_gradients_agree():
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 5, 5, 3))
    w = jax.random.normal(kk, (3, 3, 1, 3))
    loss = lambda x, w, impl: jnp.sum(jnp.sin(nas.depthwise_conv(x, w, 2, impl)))
    g_ref = jax.grad(loss, argnums=(0, 1))(x, w, "grouped")
    for impl in ("shift", "dense"):
        chex.assert_trees_all_close(jax.grad(loss, argnums=(0, 1))(x, w, impl), g_ref,
                                    atol=1e-4, rtol=1e-4)


def test_depthwise_auto_by_backend():
    assert jax.default_backend() == "cpu"
    assert nas.resolve_depthwise_impl("auto", 64) == "shift"
    assert nas.resolve_depthwise_impl("auto", 8) == "dense"
    with pytest.raises(ValueError, match="depthwise_impl"):
        nas.resolve_depthwise_impl("fft")


def _apply(module, x, train=False):
    v = module.init(jax.random.key(0), x, train)
    return module.apply(v, x, train, mutable=["batch_stats"])[0] if train else module.apply(
        v, x, train), v


def test_avg_pool_excludes_padding():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    out, _ = _apply(nas.make_op("avg_pool_3x3", 1, 1), x)
    # TF SAME averaging: the corner averages its 4 in-bounds neighbours only.
    assert float(out[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)
    out2, _ = _apply(nas.make_op("max_pool_3x3", 1, 2), x)
    chex.assert_shape(out2, (1, 2, 2, 1))
    assert float(out2[0, 1, 1, 0]) == 15.0


@pytest.mark.parametrize("name", nas.OP_NAMES)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_shape(name, stride):
    x = jnp.zeros((2, 7, 7, 6))
    op = nas.make_op(name, 4, stride)
    v = jax.eval_shape(lambda k, x: op.init(k, x, False), jax.random.key(0), x)
    out = jax.eval_shape(lambda v, x: op.apply(v, x, False), v, x)
    assert out.shape == ((2, 4, 4, 4) if stride == 2 else (2, 7, 7, 4))


def test_identity_is_identity_when_shapes_match():
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    out, v = _apply(nas.make_op("identity", 3, 1), x)
    assert v == {} or not jax.tree_util.tree_leaves(v)
    chex.assert_trees_all_equal(out, x)
    op = nas.make_op("identity", 3, 2)
    v2 = jax.eval_shape(lambda k: op.init(k, x, False), jax.random.key(0))
    assert nas.count_params(v2["params"]) == 3 * 3 + 2 * 3  # 1x1 conv + BN scale/bias


def test_sep_conv_params_applied_twice():
    x = jnp.zeros((1, 8, 8, 6))
    op = nas.make_op("sep_conv_5x5", 4, 2)
    v = jax.eval_shape(lambda k: op.init(k, x, False), jax.random.key(0))
    # [depthwise 5x5 on 6 + pointwise 6->4 + BN] then [depthwise 5x5 on 4 + pointwise 4->4 + BN]
    assert nas.count_params(v["params"]) == (25 * 6 + 6 * 4 + 8) + (25 * 4 + 4 * 4 + 8)


def test_factorized_reduction_keeps_both_offsets():
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(1.0)  # only an odd-offset pixel is on
    fr = nas.FactorizedReduction(2, 2)
    v = fr.init(jax.random.key(0), x, False)
    v = jax.tree_util.tree_map(jnp.ones_like, v)  # unit 1x1 kernels, BN ~ identity
    out = fr.apply(v, x, False)
    chex.assert_shape(out, (1, 2, 2, 2))
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-4)  # path A misses it
    assert float(out[0, 0, 0, 1]) > 0.5  # path B sees it
    with pytest.raises(ValueError, match="features"):
        nas.FactorizedReduction(3, 2).init(jax.random.key(0), x, False)


def test_drop_path_mask_and_scale():
    x = jnp.ones((4000, 1, 1, 2))
    y = nas.drop_path(x, jnp.float32(0.6), jax.random.key(3))
    vals = np.unique(np.asarray(y))
    np.testing.assert_allclose(vals, [0.0, 1 / 0.6], rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.05  # unbiased
    assert bool(jnp.all(y[:, :, :, 0] == y[:, :, :, 1]))  # one decision per example


def test_drop_path_schedule():
    k = nas.drop_path_keep_prob(jnp.arange(20), 20, 0.5, 0.6)
    np.testing.assert_allclose(k[-1], 1 - 1.0 * 0.5 * 0.4, rtol=1e-6)
    np.testing.assert_allclose(k[0], 1 - (1 / 20) * 0.5 * 0.4, rtol=1e-6)
    np.testing.assert_allclose(nas.drop_path_keep_prob(19, 20, 3.0, 0.6), 0.6, rtol=1e-6)
