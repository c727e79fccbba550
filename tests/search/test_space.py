import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search


def test_genome_spec_validation():
    spec = search.GenomeSpec((3, 1, 5), num_floats=2, float_low=0.0, float_high=2.0)
    assert spec.num_choices == (3, 1, 5) and spec.num_ints == 3 and spec.num_floats == 2
    with pytest.raises(ValueError, match=r"num_choices\[1\]"):
        search.GenomeSpec((3, 0))
    with pytest.raises(ValueError, match="num_floats"):
        search.GenomeSpec((3,), num_floats=-1)
    with pytest.raises(ValueError, match="float_low"):
        search.GenomeSpec((3,), num_floats=1, float_low=1.0, float_high=1.0)


def test_int_vector_space_sample_mutate_validate(key):
    choices = (2, 1, 5, 7, 3)
    space = search.IntVectorSpace(choices)
    assert isinstance(space, search.SearchSpace)
    assert space.genome_spec.num_choices == choices
    genomes = jax.jit(jax.vmap(space.sample))(jax.random.split(key, 512))
    chex.assert_shape(genomes, (512, 5))
    assert genomes.dtype == jnp.int32
    g = np.asarray(genomes)
    assert (g >= 0).all() and (g < np.array(choices)).all()
    # every value of every position is drawn
    for i, c in enumerate(choices):
        assert set(np.unique(g[:, i])) == set(range(c))
    space.validate(g[0])

    children = np.asarray(jax.jit(jax.vmap(space.mutate))(jax.random.split(key, 512), genomes))
    changed = children != g
    assert (changed.sum(axis=1) == 1).all(), "exactly one position changes"
    assert not changed[:, 1].any(), "a single-choice position can never change"
    assert (children < np.array(choices)).all() and (children >= 0).all()
    assert changed[:, 3].any() and changed[:, 0].any()


def test_int_vector_space_validate_names_field():
    space = search.IntVectorSpace((2, 3))
    with pytest.raises(ValueError, match=r"genome\[1\] = 3"):
        space.validate(np.array([1, 3], np.int32))
    with pytest.raises(ValueError, match="genome: expected shape"):
        space.validate(np.array([1, 2, 0], np.int32))
    with pytest.raises(ValueError, match="genome: expected an integer dtype"):
        space.validate(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="num_choices"):
        search.IntVectorSpace(())


def test_mixed_space(key):
    space = search.MixedVectorSpace((3, 4), num_floats=2, float_low=-1.0, float_high=1.0,
                                    float_sigma=0.5)
    spec = space.genome_spec
    assert spec.num_choices == (3, 4) and spec.num_floats == 2 and spec.float_low == -1.0
    genomes = jax.jit(jax.vmap(space.sample))(jax.random.split(key, 256))
    chex.assert_shape((genomes.ints, genomes.floats), ((256, 2), (256, 2)))
    space.validate(jax.tree_util.tree_map(lambda x: x[0], genomes))
    children = jax.jit(jax.vmap(space.mutate))(jax.random.split(key, 256), genomes)
    n_changed = (np.asarray(children.ints) != np.asarray(genomes.ints)).sum(1) + (
        np.asarray(children.floats) != np.asarray(genomes.floats)).sum(1)
    assert (n_changed == 1).all()
    f = np.asarray(children.floats)
    assert (f >= -1.0).all() and (f <= 1.0).all()
    # both kinds of gene get mutated
    assert (np.asarray(children.ints) != np.asarray(genomes.ints)).any()
    assert (f != np.asarray(genomes.floats)).any()
    with pytest.raises(ValueError, match=r"floats\[1\]"):
        space.validate(search.MixedGenome(ints=np.array([0, 0], np.int32),
                                          floats=np.array([0.0, 3.0], np.float32)))
    with pytest.raises(ValueError, match=r"ints\[0\]"):
        space.validate(search.MixedGenome(ints=np.array([3, 0], np.int32),
                                          floats=np.array([0.0, 0.0], np.float32)))


def test_encode_decode_roundtrip(key):
    space = search.IntVectorSpace((3, 4))
    g = space.sample(key)
    ints, floats = space.encode(g)
    chex.assert_shape((ints, floats), ((2,), (0,)))
    chex.assert_trees_all_equal(space.decode(ints, floats), g)
    mixed = search.MixedVectorSpace((3, 4), num_floats=2)
    m = mixed.sample(key)
    chex.assert_trees_all_equal(mixed.decode(*mixed.encode(m)), m)
