"""Parameter-count oracles (the published NASNet-A parameter counts) and cell shapes, via jax.eval_shape only."""
import jax
import jax.numpy as jnp
import pytest

from azjax import nas


def _split_aux(tree):
    aux = {k: v for k, v in tree.items() if k.startswith("aux_")}
    rest = {k: v for k, v in tree.items() if not k.startswith("aux_")}
    return rest, aux


@pytest.fixture(scope="module")
def cifar_shapes():
    model = nas.NASNet(genotype=nas.NASNET_A, num_cells=18, filters=32, stem="cifar",
                       num_classes=10, aux_head=True)
    return nas.init_shapes(model, (32, 32, 3))


@pytest.mark.slow
def test_cifar_6_768_trainable(cifar_shapes):
    params, _ = _split_aux(cifar_shapes["params"])
    assert nas.count_params(params) == 3_346_538
    stats, _ = _split_aux(cifar_shapes["batch_stats"])
    assert nas.count_params(params) + nas.count_params(stats) == 3_383_786


def test_cifar_aux_head(cifar_shapes):
    _, aux = _split_aux(cifar_shapes["params"])
    assert list(aux) == ["aux_11"]  # after the last normal cell of the second stack
    assert nas.count_params(aux) == 1_631_498


@pytest.mark.slow
def test_imagenet_mobile_4_1056_all_variables():
    model = nas.NASNet(genotype=nas.NASNET_A, num_cells=12, filters=44, stem="imagenet",
                       num_classes=1000)
    shapes = nas.init_shapes(model, (224, 224, 3))
    assert nas.count_params(shapes) == 5_326_716
    assert nas.count_params(shapes["params"]) == 5_289_978


def test_logits_shape_and_reduction_layout():
    model = nas.NASNet(genotype=nas.NASNET_A, num_cells=3, filters=8, stem="cifar",
                       num_classes=7)
    x = jnp.zeros((2, 16, 16, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (2, 7)
    names = set(variables["params"])
    assert {"cell_0", "reduction_cell_0", "cell_1", "reduction_cell_1", "cell_2"} <= names
    assert nas.reduction_indices(18) == (6, 12)


@pytest.mark.parametrize("stride,concat,width", [(1, None, 6), (2, None, 4)])
def test_cell_widths_and_spatial(stride, concat, width):
    g = nas.NASNET_A
    blocks, concat = (g.normal, g.normal_concat) if stride == 1 else (g.reduce, g.reduce_concat)
    f = 8
    cell = nas.Cell(blocks, concat, f, stride)
    x = jnp.zeros((2, 16, 16, 3 * f))
    prev = jnp.zeros((2, 16, 16, 2 * f))
    variables = jax.eval_shape(cell.init, jax.random.key(0), x, prev)
    out = jax.eval_shape(cell.apply, variables, x, prev)
    size = 16 // stride
    assert out.shape == (2, size, size, width * f)
    assert nas.cell_output_width(blocks, concat, f) == width * f


def test_loose_ends_widths():
    g = nas.NASNET_A_LOOSE_ENDS
    for blocks, concat, stride, width in ((g.normal, g.normal_concat, 1, 5),
                                          (g.reduce, g.reduce_concat, 2, 3)):
        cell = nas.Cell(blocks, concat, 4, stride)
        x = jnp.zeros((1, 8, 8, 12))
        v = jax.eval_shape(cell.init, jax.random.key(0), x, None)
        assert jax.eval_shape(cell.apply, v, x, None).shape[-1] == width * 4


def test_network_rejects_bad_fields():
    with pytest.raises(ValueError, match="stem"):
        nas.init_shapes(nas.NASNet(nas.NASNET_A, 3, 8, stem="mnist"), (8, 8, 1))
    with pytest.raises(ValueError, match="drop_path_keep_prob"):
        nas.init_shapes(nas.NASNet(nas.NASNET_A, 3, 8, drop_path_keep_prob=0.0), (8, 8, 1))
