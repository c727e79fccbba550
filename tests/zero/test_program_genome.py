"""ProgramGenomeSpace: programs as fixed-length int genomes (layout, round trips, validity, all strategies)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search, zero

# The linear-regressor space (experiments/automl_zero/configs/linear_quick.py).
CFG = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                      setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                      learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                      setup_size=5, predict_size=1, learn_size=4)
SPACE = zero.ProgramGenomeSpace(zero.ProgramSpace(CFG, zero.MutationConfig(), initial="RANDOM"))


def _equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _random_genes(space, key, n):
    choices = jnp.asarray(space.genome_spec.num_choices)
    return jax.random.randint(key, (n, choices.size), 0, 1 << 30) % choices


def test_layout_and_choice_counts():
    spec = SPACE.genome_spec
    assert SPACE.num_genes == len(spec.num_choices) == 3 + 7 * (5 + 1 + 4)
    # Setup: fixed size; NO_OP or s = const (out s1..s3, value on 16 levels); no operands.
    assert spec.num_choices[:8] == (1, 2, 1, 1, 3, 16, 1, 1)
    # Learn rows: 4 ops + NO_OP; inputs lcm(4 scalars, 3 vectors) = 12; outputs lcm(3, 2) = 6.
    assert spec.num_choices[-7:] == (5, 12, 12, 6, 1, 1, 1)
    resizing = zero.ProgramGenomeSpace(zero.ProgramSpace(
        CFG, zero.MutationConfig(types=("INSERT_INSTRUCTION", "REMOVE_INSTRUCTION"), learn_size_min=1,
                                 learn_size_max=5), initial="RANDOM", sizes_init=(5, 1, 2)))
    low, choices = [(lay.size_low, lay.size_choices) for lay in resizing.layout][2]
    assert (low, choices) == (1, 4)  # learn sizes 1..4
    genes = np.zeros(resizing.num_genes, np.int32)
    genes[resizing.num_genes - 1 - 7 * 4] = 3
    assert int(jax.jit(resizing.decode)(genes).learn.size) == 4
    with pytest.raises(ValueError, match="constant_levels"):
        zero.ProgramGenomeSpace(SPACE.space, constant_levels=0)
    with pytest.raises(ValueError, match="must be a zero.ProgramSpace"):
        zero.ProgramGenomeSpace(CFG)


def test_random_genomes_decode_to_valid_programs_and_round_trip():
    genes = _random_genes(SPACE, jax.random.key(0), 300)
    programs = jax.jit(jax.vmap(SPACE.decode))(genes)
    zero.validate_program(programs, CFG)
    # Canonical: canonicalize changes nothing.
    assert _equal(programs, zero.canonicalize(programs, CFG))
    encode = jax.jit(jax.vmap(lambda p: SPACE.encode(p)[0]))
    canonical = encode(programs)
    assert _equal(jax.jit(jax.vmap(SPACE.decode))(canonical), programs)
    np.testing.assert_array_equal(encode(jax.jit(jax.vmap(SPACE.decode))(canonical)), canonical)
    assert np.all((canonical >= 0) & (canonical < np.asarray(SPACE.genome_spec.num_choices)))
    # Every program on the grid validates; the genes decode uniformly over addresses.
    for i in range(0, 300, 60):
        SPACE.validate(jax.device_get(jax.tree_util.tree_map(lambda x: x[i], programs)))
    learn_ops = np.asarray(programs.learn.instructions)[..., 0]
    assert set(np.unique(learn_ops)) == {0} | {zero.OP_IDS[n] for n in CFG.learn_ops}


def test_samples_and_mutants_lie_on_the_grid():
    keys = jax.random.split(jax.random.key(1), 50)
    samples = jax.jit(jax.vmap(SPACE.sample))(keys)
    mutants = jax.jit(jax.vmap(SPACE.mutate))(keys, samples)
    for batch in (samples, mutants):
        assert _equal(jax.jit(jax.vmap(SPACE.snap))(batch), batch)
        zero.validate_program(batch, CFG)
    assert not _equal(samples, mutants)
    values = np.asarray(samples.setup.data)[..., 0]
    levels = -1 + 2 * (np.arange(16) + 0.5) / 16
    assert np.all(np.isin(values, levels.astype(np.float32)))


def test_off_grid_constants_snap_to_their_cell_and_fail_validation():
    program = zero.parse_program(zero.algorithms.linear_regression_text(0.01).replace(
        "def Predict", "  s3 = 7.5\n  s1 = -0.99\n  s1 = 0.0\n  s1 = 0.2\ndef Predict"), CFG)
    snapped = jax.jit(SPACE.snap)(program)
    values = np.asarray(snapped.setup.data)[:5, 0]
    np.testing.assert_allclose(values, [0.0625, 0.9375, -0.9375, 0.0625, 0.1875])
    SPACE.validate(jax.device_get(snapped))
    with pytest.raises(ValueError, match="not on the genome grid"):
        SPACE.validate(program)
    with pytest.raises(ValueError, match="expected a Program"):
        SPACE.validate(np.zeros(SPACE.num_genes, np.int32))


def test_index_constants_and_other_banks():
    cfg = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=3,
                          setup_ops=("VECTOR_CONST_SET", "MATRIX_CONST_SET", "VECTOR_GAUSSIAN_SET"),
                          predict_ops=("MATRIX_VECTOR_PRODUCT", "VECTOR_INNER_PRODUCT"),
                          learn_ops=("SCALAR_DIFF", "VECTOR_OUTER_PRODUCT", "MATRIX_SUM"),
                          setup_size=4, predict_size=2, learn_size=3)
    space = zero.ProgramGenomeSpace(zero.ProgramSpace(cfg), constant_levels=4)
    setup_row = space.genome_spec.num_choices[1:8]
    # Const-set indices have F = 3 choices, values 4 levels: lcm 12; outputs lcm(3 vectors, 2 matrices).
    assert setup_row == (4, 1, 1, 6, 12, 12, 4)
    genes = _random_genes(space, jax.random.key(2), 200)
    decode = jax.jit(jax.vmap(space.decode))
    programs = decode(genes)
    zero.validate_program(programs, cfg)
    canonical = jax.jit(jax.vmap(lambda p: space.encode(p)[0]))(programs)
    assert _equal(decode(canonical), programs)
    sd = np.asarray(programs.setup.data)[np.asarray(programs.setup.instructions)[..., 0]
                                         == zero.OP_IDS["VECTOR_GAUSSIAN_SET"]][:, 1]
    assert set(np.round(sd, 6)) <= {0.125, 0.375, 0.625, 0.875}


def _evaluator():
    tasks = zero.linear_regression_tasks(jax.random.key(3), num_tasks=2, features=4, num_train=20,
                                         num_valid=10)
    return zero.ProgramEvaluator(CFG, tasks, fec=None)


@pytest.mark.parametrize("make", [
    lambda s: search.Controller(s, algorithm="reinforce", batch_size=8, hidden=16, embed=8),
    lambda s: search.Controller(s, algorithm="ppo", batch_size=8, hidden=16, embed=8, ppo_epochs=2),
    lambda s: search.RegularizedEvolution(s, population_size=8, tournament_size=2, batch_size=8),
    lambda s: search.RandomSearch(s, batch_size=8),
], ids=["reinforce", "ppo", "evolution", "random"])
def test_every_strategy_runs_on_the_genome_space_without_retracing(make):
    chex.clear_trace_counter()  # the counter is per function, shared by the parametrized cases
    strategy = make(SPACE)
    strategy._ask = chex.assert_max_traces(strategy._ask, n=1)
    strategy._tell = chex.assert_max_traces(strategy._tell, n=1)
    result = search.run(SPACE, strategy, _evaluator(), jax.random.key(4), max_evaluations=40,
                        validate_every=1)
    assert result.evaluations == 40
    assert np.isfinite(result.best_fitness)
    SPACE.validate(jax.device_get(result.best_genome))
    print(zero.format_program(jax.device_get(result.best_genome), CFG))
