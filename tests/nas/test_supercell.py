"""The genotype-as-data supercell: equal to the static cell on the same genotype and weights, and
one compile for every genotype (tiny: F=4, B=2, 3 ops, 8x8 inputs, batch 4)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import nas
from azjax.nas.cell import Cell
from azjax.nas.space import CellSpace
from azjax.nas.supercell import (SuperCell, SuperNet, conv2d, embed_static_params,
                                 init_variables, loose_end_mask, pack_loose_ends, variable_shapes)

OPS = ("identity", "sep_conv_3x3", "max_pool_3x3")
SPACE = CellSpace(ops=OPS, num_blocks=2)  # add and concat combiners
F = 4
I, S, M = (nas.OP_INDEX[o] for o in OPS)
ADD, CAT = 0, 1
# Chosen to exercise every width rule: a concat block (2F) read by identity (which must then
# project), a 2F loose end reduced to the last block's width F, h_{i-1} of width != F, and in the
# reduction cell a block reading both a cell input (stride 2) and a block output (stride 1).
NORMAL = ((0, 1, S, I, CAT), (0, 1, M, S, ADD))
NORMAL_2 = ((1, 1, I, M, ADD), (2, 0, I, S, CAT))
REDUCE = ((0, 1, I, M, ADD), (2, 0, S, I, CAT))


def _random_stats(variables, seed):
    """Non-trivial BN statistics so eval mode is a real test."""
    stats = jax.tree_util.tree_map(
        lambda a: a + 0.2 * jax.random.uniform(jax.random.key(seed), a.shape),
        variables["batch_stats"])
    return {**variables, "batch_stats": stats}


@pytest.mark.parametrize("layout", ["slots", "packed"])
@pytest.mark.parametrize("kind", ["normal", "reduce"])
def test_supercell_equals_static_cell_and_compiles_once(kind, layout):
    chex.clear_trace_counter()  # chex counts per definition site, across parametrized runs
    stride = 1 if kind == "normal" else 2
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 6))
    prev = jax.random.normal(jax.random.key(2), (4, 8, 8, 6))
    sc = SuperCell(F, stride, OPS, num_blocks=2, depthwise_impl="dense", output_layout=layout)
    cell0 = jnp.zeros((2, 5), jnp.int32)
    super_vars = init_variables(variable_shapes(sc, x, prev, cell0), 0)

    def apply(variables, cell, train):
        (out, _), _ = sc.apply(variables, x, prev, cell, train, mutable=["batch_stats"])
        return out

    super_apply = jax.jit(chex.assert_max_traces(apply, n=2), static_argnums=2)  # eval, train
    cells = [NORMAL, NORMAL_2] if kind == "normal" else [REDUCE, ((1, 0, M, S, CAT),
                                                                   (0, 2, I, I, ADD))]
    for blocks in cells:
        concat = nas.loose_ends(blocks)
        static = Cell(blocks, concat, F, stride, depthwise_impl="dense")
        static_vars = _random_stats(jax.jit(static.init)(jax.random.key(3), x, prev), 4)
        mapped = embed_static_params(static_vars, super_vars, _genotype(blocks, kind), kind)
        arr = jnp.asarray(blocks, jnp.int32)
        np.testing.assert_array_equal(np.flatnonzero(loose_end_mask(arr)) + 2, concat)
        for train in (False, True):
            want = jax.jit(lambda v: static.apply(v, x, prev, train, mutable=["batch_stats"])[0])(
                static_vars)
            got = super_apply(mapped, arr, train)
            width = want.shape[-1]
            chex.assert_shape(got, (4, 8 // stride, 8 // stride, sc.max_output_width))
            if layout == "slots":
                # Block k's loose end sits in slot k; every other slot is zero.
                slots = np.asarray(got).reshape(got.shape[:-1] + (2, -1))
                ends = np.asarray(loose_end_mask(arr))
                assert np.all(slots[..., ~ends, :] == 0.0)
                assert np.all(np.any(slots[..., ends, :] != 0.0, axis=(0, 1, 2, 4)))
                got = pack_loose_ends(got, arr, width)
            np.testing.assert_allclose(np.asarray(got[..., :width]), np.asarray(want),
                                       atol=2e-5, rtol=1e-4)
            assert np.all(np.asarray(got[..., width:]) == 0.0)  # padding stays zero


def _genotype(blocks, kind):
    other = ((0, 1, I, I, ADD), (0, 1, I, I, ADD))
    normal, reduce = (blocks, other) if kind == "normal" else (other, blocks)
    return nas.Genotype(normal, reduce, nas.loose_ends(normal), nas.loose_ends(reduce))


def test_supercell_width_output():
    x = jnp.zeros((1, 4, 4, 3))
    sc = SuperCell(F, 1, OPS, num_blocks=2)
    out_shapes = jax.eval_shape(
        lambda: sc.apply(init_variables(variable_shapes(sc, x, None, jnp.zeros((2, 5),
                                                                               jnp.int32)), 0),
                         x, None, jnp.asarray(NORMAL)))
    chex.assert_shape(out_shapes[0], (1, 4, 4, 2 * 2 * F))


@pytest.mark.slow
def test_supernet_slots_equal_static_network():
    """The whole SuperNet (slot layout) with mapped weights computes the static NASNet's logits:
    consumer 1x1 convs and the classifier take the packed rows at the slot channels."""
    normal = ((0, 1, S, I, ADD), (2, 0, M, S, ADD))  # one loose end (width F): no prev_1x1
    reduce = ((0, 1, S, M, ADD), (0, 1, I, S, ADD))  # two loose ends
    genotype = nas.Genotype(normal, reduce, nas.loose_ends(normal), nas.loose_ends(reduce))
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    static = nas.NASNet(genotype=genotype, num_cells=3, filters=F, stem="cifar",
                        num_classes=10, aux_head=False, depthwise_impl="dense")
    static_vars = _random_stats(jax.jit(static.init)(jax.random.key(3), x), 4)
    net = SuperNet(num_cells=3, filters=F, ops=OPS, num_blocks=2, allow_concat=False,
                   depthwise_impl="dense")
    arr_n, arr_r = jnp.asarray(normal, jnp.int32), jnp.asarray(reduce, jnp.int32)
    super_vars = init_variables(variable_shapes(net, x, arr_n, arr_r), 0)
    mapped = embed_static_params(static_vars, super_vars, genotype)
    for train in (False, True):
        want = static.apply(static_vars, x, train, mutable=["batch_stats"])[0]
        got = net.apply(mapped, x, arr_n, arr_r, train, mutable=["batch_stats"])[0]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["normal", "reduce"])
@pytest.mark.slow
def test_supercell_gradients_equal_static_cell(kind):
    """The switch's custom VJP (recompute the chosen op) gives the static cell's gradients for
    the inputs and the chosen ops' weights, and exact zeros for the ops not chosen."""
    stride = 1 if kind == "normal" else 2
    blocks = NORMAL if kind == "normal" else REDUCE
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 6))
    prev = jax.random.normal(jax.random.key(2), (4, 8, 8, 6))
    sc = SuperCell(F, stride, OPS, num_blocks=2, depthwise_impl="dense", output_layout="packed")
    arr = jnp.asarray(blocks, jnp.int32)
    static = Cell(blocks, nas.loose_ends(blocks), F, stride, depthwise_impl="dense")
    static_vars = jax.jit(static.init)(jax.random.key(3), x, prev)
    super_vars = init_variables(variable_shapes(sc, x, prev, arr), 0)
    mapped = embed_static_params(static_vars, super_vars, _genotype(blocks, kind), kind)
    width = jax.eval_shape(lambda: static.apply(static_vars, x, prev)).shape[-1]
    weights = jax.random.normal(jax.random.key(5), (4, 8 // stride, 8 // stride, width))

    def static_loss(params, x, prev):
        out, _ = static.apply({**static_vars, "params": params}, x, prev, True,
                              mutable=["batch_stats"])
        return jnp.sum(out * weights)

    def super_loss(params, x, prev):
        (out, _), _ = sc.apply({**mapped, "params": params}, x, prev, arr, True,
                               mutable=["batch_stats"])
        return jnp.sum(out[..., :width] * weights)

    want = jax.jit(jax.grad(static_loss, (0, 1, 2)))(static_vars["params"], x, prev)
    got = jax.jit(jax.grad(super_loss, (0, 1, 2)))(mapped["params"], x, prev)
    for w, g in zip(want[1:], got[1:]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-4, rtol=1e-4)
    # The chosen op of block 0's left slot: its weight gradient; every other op: zeros.
    op = OPS.index(nas.OP_NAMES[blocks[0][2]])
    left = got[0]["blocks"]["left"]
    for name in OPS:
        leaves = jax.tree_util.tree_leaves(left[f"candidates_{name}"])
        block0 = [np.asarray(leaf[0]) for leaf in leaves]
        if name == OPS[op]:
            assert any(np.any(v != 0.0) for v in block0)
        elif all(nas.OP_NAMES[b[2]] != name for b in blocks):
            assert all(np.all(leaf == 0.0) for leaf in jax.tree_util.tree_leaves(
                left[f"candidates_{name}"]))
    # ... equal to the static op's weight gradient on the static weights' slices.
    chosen = jax.tree_util.tree_map(lambda g: g[0], left[f"candidates_{OPS[op]}"])
    jax.tree_util.tree_map(
        lambda w, g: np.testing.assert_allclose(
            np.asarray(g[tuple(slice(0, n) for n in w.shape)]), np.asarray(w), atol=1e-4,
            rtol=1e-4),
        want[0]["block0_left"], chosen)


@pytest.mark.parametrize("kernel,stride,dilation", [((1, 1), 1, 1), ((3, 3), 2, 1),
                                                    ((1, 7), 1, 1), ((3, 3), 1, 2)])
def test_conv2d_gradients_equal_lax(kernel, stride, dilation):
    """``supercell.conv2d``'s canonical-layout VJP gives lax's gradients."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (*kernel, 3, 5))

    def ref(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                            rhs_dilation=(dilation, dilation),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
    want = jax.grad(loss(ref), (0, 1))(x, w)
    got = jax.jit(jax.grad(loss(lambda x, w: conv2d(x, w, stride, dilation)), (0, 1)))(x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
