"""ProgramSpace: the SearchSpace protocol over programs, initial kinds, evolution over programs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search, zero
from azjax.zero import mutations as M
from azjax.zero.space import ProgramSpace
from tests.search import toy

LINEAR_CFG = zero.algorithms.linear_regression_config()
NN_CFG = zero.algorithms.neural_network_config()


def test_protocol_hashing_and_errors():
    space = ProgramSpace(LINEAR_CFG, M.MutationConfig(), initial="random")
    assert isinstance(space, search.SearchSpace)
    assert space.initial == "RANDOM" and space.sizes_init == (10, 2, 8)
    assert space == ProgramSpace(LINEAR_CFG) and hash(space) == hash(ProgramSpace(LINEAR_CFG))
    assert space != ProgramSpace(LINEAR_CFG, initial="NO_OP")
    with pytest.raises(ValueError, match="ProgramSpace.initial"):
        ProgramSpace(LINEAR_CFG, initial="EMPTY")
    with pytest.raises(ValueError, match="ProgramSpace.sizes_init: the learn size 9"):
        ProgramSpace(LINEAR_CFG, sizes_init=(1, 1, 9))
    with pytest.raises(ValueError, match="ProgramSpace.sizes_init must have 3 entries"):
        ProgramSpace(LINEAR_CFG, sizes_init=(1, 1))
    with pytest.raises(
        ValueError, match="initial=NEURAL_NET: the hand-written program does not fit"
    ):
        ProgramSpace(LINEAR_CFG, initial="NEURAL_NET")
    with pytest.raises(ValueError, match="MutationConfig.setup_size_max"):
        ProgramSpace(LINEAR_CFG, M.MutationConfig(setup_size_max=12))
    with pytest.raises(ValueError, match="ProgramSpace.mutation_config"):
        ProgramSpace(LINEAR_CFG, mutation_config=("ALTER_PARAM",))
    with pytest.raises(ValueError, match="genome: expected a Program"):
        space.validate(np.zeros(3))
    bad = zero.empty_program(LINEAR_CFG).replace(predict=zero.empty_program(LINEAR_CFG).setup)
    with pytest.raises(ValueError, match="program.predict.instructions"):
        space.validate(bad)


@pytest.mark.parametrize(
    "kind, cfg, sizes, text",
    [
        ("LINEAR", LINEAR_CFG, (0, 0, 0), zero.algorithms.linear_regression_text()),
        ("NEURAL_NET", NN_CFG, (0, 0, 0), zero.algorithms.neural_network_text()),
        (
            "DAMAGED_NEURAL_NET",
            NN_CFG,
            (2, 5, 11),
            zero.algorithms.neural_network_text(damaged=True).replace(
                "def Predict", "  no_op\ndef Predict"
            ),
        ),
    ],
)
def test_hand_written_initial_programs_format_to_their_texts(kind, cfg, sizes, text):
    space = ProgramSpace(cfg, initial=kind, sizes_init=sizes)
    prog = jax.jit(space.sample)(jax.random.key(1))
    space.validate(prog)
    assert zero.format_program(prog, cfg) == text


def test_no_op_and_random_samples():
    noop = ProgramSpace(LINEAR_CFG, initial="NO_OP", sizes_init=(1, 1, 1))
    prog = noop.sample(jax.random.key(0))
    assert zero.format_program(prog, LINEAR_CFG) == (
        "def Setup():\n  no_op\ndef Predict():\n  no_op\ndef Learn():\n  no_op\n"
    )
    space = ProgramSpace(LINEAR_CFG, sizes_init=(4, 1, 3))
    progs = jax.jit(jax.vmap(space.sample))(jax.random.split(jax.random.key(0), 64))
    space.validate(progs)
    assert [int(progs.component(c).size[0]) for c in zero.program.COMPONENTS] == [4, 1, 3]
    # ops are drawn uniformly from the six linear ops: every one shows up among 64 * 8 instructions
    used = np.concatenate(
        [
            np.asarray(progs.component(c).instructions[..., 0]).ravel()
            for c in zero.program.COMPONENTS
        ]
    )
    assert set(np.unique(used)) == {0} | {zero.OP_IDS[n] for n in zero.algorithms.LINEAR_OPS}
    assert len({zero.format_program(p, LINEAR_CFG) for p in zero.unstack_programs(progs)}) == 64


# The restricted linear-regressor space with insert/remove, so evolution can change
# sizes.
QUICK_CFG = zero.ZeroConfig(
    setup_ops=("SCALAR_CONST_SET",),
    predict_ops=("VECTOR_INNER_PRODUCT",),
    learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
    setup_size=5,
    predict_size=1,
    learn_size=4,
)
QUICK = ProgramSpace(
    QUICK_CFG,
    M.MutationConfig(
        types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION", "INSERT_INSTRUCTION", "REMOVE_INSTRUCTION"),
        setup_size_min=0,
        predict_size_min=0,
        learn_size_min=0,
        learn_size_max=5,
    ),
    sizes_init=(2, 1, 2),
)
EVO = search.RegularizedEvolution(QUICK, population_size=8, tournament_size=3, batch_size=4)


def _fitness(progs: zero.Program) -> jax.Array:
    """A toy fitness on the arrays (no evaluation): a longer Learn with more VECTOR_SUMs wins."""
    vector_sums = jnp.sum(progs.learn.instructions[..., 0] == zero.OP_IDS["VECTOR_SUM"], axis=-1)
    return (progs.learn.size + 2 * vector_sums).astype(jnp.float32)


def test_regularized_evolution_over_programs_in_python_loop_and_scan(key):
    iterations = 40
    state_py, best_py = toy.run_python_loop(EVO, _fitness, key, iterations)
    state_scan, best_scan = toy.scan_loop(EVO, _fitness, key, iterations)
    chex.assert_trees_all_equal(state_py, state_scan)
    chex.assert_trees_all_equal(best_py, best_scan)
    QUICK.validate(state_py.population)
    QUICK.validate(state_py.best_genome)
    assert int(state_py.count) == iterations * EVO.batch_size
    # selection works: the best ever beats the best initial sample (learn size 2, a few VECTOR_SUMs)
    assert float(best_py[-1]) > float(best_py[1])
    assert int(state_py.best_genome.learn.size) >= 3
