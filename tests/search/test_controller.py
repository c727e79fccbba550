"""The RNN controller: policy shapes and masks, synthetic-reward learning with REINFORCE and PPO,
float genes, resumable state through search.run, bad input."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search
from azjax.nas.space import CellSpace
from azjax.search.controller import Controller

# A small CellSpace (2 blocks per cell: 20 positions) keeps compiles short; the update rule
# and the masking are the same as for the full 50-position space.
SPACE = CellSpace(num_blocks=2)
OP_POS = np.asarray([i for i in range(20) if i % 5 in (2, 3)])
TARGET_OP = 3


def frac_target(genomes):
    return jnp.mean(genomes[:, OP_POS] == TARGET_OP, axis=1)


@pytest.fixture(scope="module")
def ppo():
    return Controller(SPACE, "ppo", batch_size=20, hidden=32, learning_rate=3e-3)


@pytest.fixture(scope="module")
def reinforce():
    return Controller(SPACE, "reinforce", batch_size=20, hidden=32, learning_rate=3e-3)


def _train(ctrl, updates, seed=0):
    state = ctrl.init(jax.random.key(seed))
    first = None
    for i in range(updates):
        genomes, state = ctrl.ask(jax.random.key(1000 + i), state)
        f = frac_target(genomes)
        if first is None:
            first = float(f.mean())
        state = ctrl.tell(genomes, f, state)
    return first, float(f.mean()), state


def test_samples_respect_choice_counts(ppo):
    state = ppo.init(jax.random.key(0))
    genomes, _ = ppo.ask(jax.random.key(1), state)
    chex.assert_shape(genomes, (20, 20))
    for g in np.asarray(genomes):
        SPACE.validate(g)
    logp, ent = ppo.log_prob(state.params, genomes)
    chex.assert_shape(logp, (20,))
    # Near-uniform initial policy: log p close to -log |space|, entropy close to log |space|.
    log_size = SPACE.log10_size() * np.log(10)
    np.testing.assert_allclose(np.asarray(-logp), log_size, rtol=0.05)
    np.testing.assert_allclose(np.asarray(ent), log_size, rtol=0.01)


@pytest.mark.parametrize("algo", ["reinforce", "ppo"])
def test_synthetic_reward_rises(algo, ppo, reinforce):
    ctrl = {"ppo": ppo, "reinforce": reinforce}[algo]
    first, last, state = _train(ctrl, 150)
    assert first < 0.2  # 1/13 expected at random
    assert last > 0.6, (algo, first, last)
    assert float(state.last_entropy) < 0.9 * SPACE.log10_size() * np.log(10)
    # The EMA baseline tracks the rising reward.
    assert float(state.baseline) > 0.4
    assert int(state.count) == 150 * 20


def test_tell_compiles_once(reinforce):
    state = reinforce.init(jax.random.key(0))
    tell = jax.jit(chex.assert_max_traces(reinforce._tell, n=1))
    for i in range(3):
        genomes, state = reinforce.ask(jax.random.key(i), state)
        state = tell(genomes, frac_target(genomes), state)


def test_runs_under_search_run_and_resumes(tmp_path, reinforce):
    evaluator = lambda k, g: frac_target(g)  # noqa: E731
    full = search.run(SPACE, reinforce, evaluator, jax.random.key(7), max_evaluations=200)

    def interrupt(m):
        if m["iteration"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search.run(SPACE, reinforce, evaluator, jax.random.key(7), max_evaluations=200,
                   workdir=tmp_path, callbacks=[interrupt], checkpoint_every_seconds=1e9)
    resumed = search.run(SPACE, reinforce, evaluator, jax.random.key(7), max_evaluations=200,
                         workdir=tmp_path)
    assert resumed.resumed_from == 4
    chex.assert_trees_all_close(resumed.state.params, full.state.params)
    assert resumed.best_fitness == full.best_fitness
    np.testing.assert_array_equal(resumed.best_genome, full.best_genome)


@pytest.mark.slow
def test_works_on_int_vector_and_mixed_spaces():
    space = search.IntVectorSpace((3, 1, 5))
    ctrl = Controller(space, "reinforce", batch_size=8, hidden=8, learning_rate=1e-2)
    res = search.run(space, ctrl, lambda k, g: (g[:, 2] == 4).astype(jnp.float32),
                     jax.random.key(0), max_evaluations=8 * 60)
    assert res.best_fitness == 1.0
    assert float(ctrl.metrics(res.state)["policy_entropy"]) < np.log(15) - 0.3
    mixed = search.MixedVectorSpace((2,), num_floats=2, float_low=0.0, float_high=1.0)
    ctrl = Controller(mixed, "ppo", batch_size=4, hidden=8)
    state = ctrl.init(jax.random.key(0))
    genomes, state = ctrl.ask(jax.random.key(1), state)
    chex.assert_shape(genomes.floats, (4, 2))
    assert np.all((np.asarray(genomes.floats) >= 0) & (np.asarray(genomes.floats) <= 1))
    state = ctrl.tell(genomes, genomes.floats.sum(1), state)
    assert np.isfinite(float(state.last_loss))


def test_bad_arguments():
    with pytest.raises(ValueError, match="algorithm"):
        Controller(SPACE, "a2c")
    with pytest.raises(ValueError, match="learning_rate"):
        Controller(SPACE, learning_rate=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        Controller(SPACE, batch_size=0)

    class NoSpec:  # like AutoML-Zero's ProgramSpace: sample/mutate/validate, no genome_spec
        def sample(self, key):
            return jnp.zeros(3)

        def mutate(self, key, g):
            return g

        def validate(self, g):
            pass

    with pytest.raises(ValueError, match="genome_spec"):
        Controller(NoSpec())
    ctrl = Controller(SPACE, batch_size=2, hidden=4)
    state = jax.eval_shape(ctrl._init, jax.random.key(0))  # shapes only: nothing compiles
    genomes = jnp.zeros((2, 20), jnp.int32)
    with pytest.raises(ValueError, match="fitness"):
        jax.eval_shape(ctrl._tell, genomes, jnp.zeros(3), state)
