"""CellSpace: choice counts, sampling, AmoebaNet mutations, genotype round trips (no compiles of
networks; pure and fast)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import nas, search
from azjax.nas.space import ENAS_OPS, CellSpace


@pytest.fixture(scope="module")
def space():
    return CellSpace()


def test_genome_spec_counts(space):
    choices = space.genome_spec.num_choices
    assert len(choices) == 50
    for cell in range(2):
        for j in range(5):
            assert choices[cell * 25 + 5 * j:cell * 25 + 5 * j + 5] == (2 + j, 2 + j, 13, 13, 2)
    # The paper's count: prod over both cells of (2+j)^2 * 13^2 * 2.
    expected = 2 * sum(2 * np.log10(2 + j) + 2 * np.log10(13) + np.log10(2) for j in range(5))
    assert space.log10_size() == pytest.approx(expected)


def test_samples_valid_and_cover_choices(space):
    genomes = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(0), 400)))
    for g in genomes[:20]:
        space.validate(g)
    counts = np.asarray(space.genome_spec.num_choices)
    assert np.all(genomes.max(0) == counts - 1)  # every choice of every position appears
    assert np.all(genomes.min(0) == 0)


def test_mutation_changes_exactly_one_input_or_op(space):
    keys = jax.random.split(jax.random.key(1), 300)
    parent = space.sample(jax.random.key(2))
    children = np.asarray(jax.vmap(lambda k: space.mutate(k, parent))(keys))
    diffs = (children != np.asarray(parent)).sum(1)
    assert np.all(diffs == 1)
    changed = np.argmax(children != np.asarray(parent), axis=1)
    fields = changed % 5
    assert set(fields.tolist()) == {0, 1, 2, 3, 4}  # inputs, ops and combiners all mutate
    for c in children[:20]:
        space.validate(c)


def test_identity_prob_and_add_only_space():
    sp = CellSpace(ops=ENAS_OPS, combiners=("add",), identity_prob=0.5)
    parent = sp.sample(jax.random.key(0))
    children = np.asarray(jax.vmap(lambda k: sp.mutate(k, parent))(
        jax.random.split(jax.random.key(3), 400)))
    same = np.all(children == np.asarray(parent), axis=1).mean()
    assert 0.4 < same < 0.6
    assert np.all(children[:, 4::5] == 0)  # combine genes have one choice and never move


def test_genotype_round_trip_and_loose_ends(space):
    g = np.asarray(space.sample(jax.random.key(5)))
    geno = space.to_genotype(g)
    np.testing.assert_array_equal(space.from_genotype(geno), g)
    assert geno.normal_concat == nas.loose_ends(geno.normal)
    assert geno.normal_concat[-1] == 6  # the last block is always a loose end
    # NASNet-A's cells are in the 13-op space (its slim concat lists are not the paper rule).
    a = space.from_genotype(nas.NASNET_A)
    assert space.to_genotype(a).normal == nas.NASNET_A.normal
    assert space.to_genotype(a) == nas.NASNET_A_LOOSE_ENDS


def test_cell_arrays_use_global_ids():
    sp = CellSpace(ops=("max_pool_3x3", "sep_conv_3x3"), combiners=("add",), num_blocks=2)
    g = jnp.asarray([0, 1, 1, 0, 0, 2, 0, 0, 0, 0] * 2, jnp.int32)
    normal, reduce = jax.jit(sp.cell_arrays)(g)
    assert normal.shape == (2, 5)
    assert int(normal[0, 2]) == nas.OP_INDEX["sep_conv_3x3"]
    assert int(normal[0, 3]) == nas.OP_INDEX["max_pool_3x3"]


def test_validation_errors_name_the_field(space):
    g = np.asarray(space.sample(jax.random.key(0)))
    bad = g.copy()
    bad[25 + 5 * 1 + 1] = 3  # reduce, block 1, input 2 may only be 0..2
    with pytest.raises(ValueError, match=r"reduce, block 1, field 'input 2'"):
        space.validate(bad)
    with pytest.raises(ValueError, match="shape"):
        space.validate(g[:10])
    with pytest.raises(ValueError, match="ops"):
        CellSpace(ops=("conv_9x9",))
    with pytest.raises(ValueError, match="combiners"):
        CellSpace(combiners=("mul",))
    with pytest.raises(ValueError, match="num_blocks"):
        CellSpace(num_blocks=0)
    sp = CellSpace(ops=ENAS_OPS)
    with pytest.raises(ValueError, match="reduce, block 0, field 'op 2'"):
        sp.from_genotype(nas.NASNET_A)  # sep_conv_7x7 is not an ENAS op


def test_evolution_runs_on_cell_space():
    sp = CellSpace(ops=("identity", "max_pool_3x3"), num_blocks=2)
    evo = search.RegularizedEvolution(sp, population_size=6, tournament_size=2, batch_size=3)
    # Fitness: fraction of op genes equal to op 0; evolution must not decrease the best.
    ops = np.asarray([i for i in range(20) if i % 5 in (2, 3)])
    res = search.run(sp, evo, lambda k, g: jnp.mean(g[:, ops] == 0, axis=1),
                     jax.random.key(0), max_evaluations=150)
    assert res.best_fitness == 1.0
    sp.validate(np.asarray(res.best_genome))
