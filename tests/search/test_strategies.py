"""RegularizedEvolution and RandomSearch: ask/tell semantics, statistics, jit/scan behaviour."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search
from tests.search import toy

BITS = 16
SPACE = search.IntVectorSpace((2,) * BITS)
# Module-level strategies: jit caches are per instance, so sharing them saves compiles.
EVO = search.RegularizedEvolution(SPACE, population_size=8, tournament_size=3, batch_size=2)
EVO1 = search.RegularizedEvolution(SPACE, population_size=6, tournament_size=3, batch_size=1)
RANDOM = search.RandomSearch(SPACE, batch_size=4)
MIXED_SPACE = search.MixedVectorSpace((3, 4), num_floats=2)
EVO_MIXED = search.RegularizedEvolution(MIXED_SPACE, population_size=6, tournament_size=2,
                                        batch_size=3)


# (Evolution over plain int vectors runs under scan in the OneMax comparison below and in a
# Python loop in the determinism test; each extra scan costs seconds of compile time.)
@pytest.mark.parametrize("strategy,fitness_fn", [
    (RANDOM, toy.onemax), (EVO_MIXED, toy.mixed_fitness)],
    ids=["random", "evolution-mixed-genome"])
def test_python_loop_equals_scan(strategy, fitness_fn, key):
    iterations = 12
    state_py, best_py = toy.run_python_loop(strategy, fitness_fn, key, iterations)
    state_scan, best_scan = toy.scan_loop(strategy, fitness_fn, key, iterations)
    chex.assert_trees_all_equal(state_py, state_scan)
    chex.assert_trees_all_equal(best_py, best_scan)
    assert int(state_py.count) == iterations * strategy.batch_size
    # best-ever is monotone and equals the fitness of the stored best genome
    assert (np.diff(np.asarray(best_py)) >= 0).all()
    best_genome = jax.tree_util.tree_map(lambda x: x[None], state_py.best_genome)
    assert float(fitness_fn(best_genome)[0]) == float(state_py.best_fitness)


def test_bad_constructor_arguments_fail_before_tracing():
    class Untraceable:
        """A space that fails if anything ever samples or mutates it."""

        def sample(self, key):
            raise AssertionError("traced")

        mutate = validate = sample

    space = Untraceable()
    cases = [
        (dict(population_size=5, tournament_size=6), "tournament_size"),
        (dict(population_size=0, tournament_size=1), "population_size"),
        (dict(population_size=5, tournament_size=0), "tournament_size"),
        (dict(population_size=5, tournament_size=2, mutate_prob=1.5), "mutate_prob"),
        (dict(population_size=5, tournament_size=2, batch_size=0), "batch_size"),
        (dict(population_size=5, tournament_size=2, batch_size=6), "batch_size"),
        (dict(population_size=5.0, tournament_size=2), "population_size"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValueError, match=field):
            search.RegularizedEvolution(space, **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        search.RandomSearch(space, batch_size=-1)
    with pytest.raises(ValueError, match="space"):
        search.RandomSearch(object(), batch_size=1)


def test_initial_phase_then_aging(key):
    """Samples fill slots in order; then each tell overwrites the oldest member."""
    p, b = EVO.population_size, EVO.batch_size
    state = EVO.init(key)
    assert (np.asarray(state.birth) == -1).all()
    for i in range(p // b):  # initial phase: plain samples, slots filled in order
        genomes, state = EVO.ask(jax.random.fold_in(key, i), state)
        expect = jax.vmap(SPACE.sample)(jax.random.split(jax.random.fold_in(key, i), b))
        chex.assert_trees_all_equal(genomes, expect)
        state = EVO.tell(genomes, toy.onemax(genomes), state)
        np.testing.assert_array_equal(np.asarray(state.population[i * b:(i + 1) * b]), genomes)
    np.testing.assert_array_equal(np.asarray(state.birth), np.arange(p))
    for i in range(p // b, 2 * p // b):  # P more tells: every slot rewritten, oldest first
        birth = np.asarray(state.birth)
        oldest = np.argsort(birth)[:b]
        genomes, state = EVO.ask(jax.random.fold_in(key, i), state)
        state = EVO.tell(genomes, toy.onemax(genomes), state)
        np.testing.assert_array_equal(np.asarray(state.population[oldest]), genomes)
        new_birth = np.asarray(state.birth)
        np.testing.assert_array_equal(new_birth[oldest], np.arange(i * b, (i + 1) * b))
        keep = np.setdiff1d(np.arange(p), oldest)
        np.testing.assert_array_equal(new_birth[keep], birth[keep])
    assert (np.asarray(state.birth) >= p).all(), "after P more tells every slot was rewritten"


def _parent_distribution(strategy, state, n, key):
    """Parents of n independent tournaments (mutate_prob=0, so a child is its parent's copy)."""
    children = jax.jit(jax.vmap(lambda k: strategy._child(k, state)))(jax.random.split(key, n))
    # genome i is the binary code of slot i, so decode the slot of each parent
    return np.asarray(children) @ (1 << np.arange(children.shape[1]))


def test_tournament_distribution_matches_with_replacement_formula(key):
    p, t, n = 5, 3, 20000
    space = search.IntVectorSpace((2,) * 3)
    evo = search.RegularizedEvolution(space, p, t, mutate_prob=0.0)
    slots = np.arange(p)
    genomes = ((slots[:, None] >> np.arange(3)) & 1).astype(np.int32)  # slot id in binary
    fitness = np.array([2.0, 0.0, 4.0, 1.0, 3.0], np.float32)  # distinct ranks, shuffled
    state = evo.init(key).replace(population=jnp.asarray(genomes), fitness=jnp.asarray(fitness),
                                  birth=jnp.arange(p, dtype=jnp.int32),
                                  count=jnp.asarray(p, jnp.int32))
    parents = _parent_distribution(evo, state, n, key)
    counts = np.bincount(parents, minlength=p)
    rank = np.argsort(np.argsort(fitness)) + 1  # 1 = worst, p = best
    expected = (rank / p) ** t - ((rank - 1) / p) ** t  # max of t uniform draws w/ replacement
    sigma = np.sqrt(n * expected * (1 - expected))
    assert (np.abs(counts - n * expected) < 5 * sigma + 1).all(), (counts, n * expected)
    # the worst member can only win when all t draws hit it
    assert abs(counts[1] / n - (1 / p) ** t) < 0.005


def test_nan_fitness_is_never_selected_over_finite(key):
    p = t = 3
    n = 20000
    space = search.IntVectorSpace((2,) * 2)
    evo = search.RegularizedEvolution(space, p, t, mutate_prob=0.0, batch_size=3)
    state = evo.init(key)
    genomes = jnp.asarray([[0, 0], [1, 0], [0, 1]], jnp.int32)
    state = evo.tell(genomes, jnp.asarray([jnp.nan, -1.0, jnp.nan]), state)
    assert float(state.best_fitness) == -1.0
    np.testing.assert_array_equal(np.asarray(state.best_genome), [1, 0])
    parents = _parent_distribution(evo, state, n, key)
    # slot 1 wins unless all draws are NaN slots: 1 - (2/3)^3 (NaN-as-max would give (1/3)^3)
    assert abs((parents == 1).mean() - (1 - (2 / 3) ** 3)) < 0.02
    # random search keeps the finite best too
    rs = search.RandomSearch(space, batch_size=3)
    rs_state = rs.tell(genomes, jnp.asarray([jnp.nan, 0.5, jnp.nan]), rs.init(key))
    assert float(rs_state.best_fitness) == 0.5
    rs_state = rs.tell(genomes, jnp.full(3, jnp.nan), rs_state)
    assert float(rs_state.best_fitness) == 0.5


def _naive_reference(space, p, t, mutate_prob, fitness_fn, key, steps):
    """The reference loop (spec §6.2), one individual at a time, written plainly in Python."""
    population, fitness = [None] * p, [None] * p
    # jit only the space's own functions and the key plumbing (eager PRNG ops are slow)
    sample, mutate = jax.jit(space.sample), jax.jit(space.mutate)

    @jax.jit
    def child_keys(n):
        (k,) = jax.random.split(jax.random.fold_in(key, n), 1)  # the ask's per-child key
        k_draw, k_mut = jax.random.split(k)
        return k, k_mut, jax.random.bits(k_draw, (t + 1,), jnp.uint32)

    for n in range(steps):
        k, k_mut, bits = child_keys(n)
        if n < p:
            child = sample(k)
        else:
            # the documented key schedule: T draws and one coin from one bits call
            bits = np.asarray(bits).astype(np.uint64)
            drawn = [int(b % p) for b in bits[:t]]
            parent, best = drawn[0], -np.inf
            for i in drawn:  # first one with the strictly highest fitness; NaN is the worst
                f = -np.inf if np.isnan(fitness[i]) else fitness[i]
                if f > best:
                    parent, best = i, f
            child = population[parent]
            if bits[t] / 2.0**32 < mutate_prob:
                child = mutate(k_mut, child)
        population[n % p] = np.asarray(child)
        fitness[n % p] = float(fitness_fn(np.asarray(child)))
    return np.stack(population), np.asarray(fitness, np.float32)


def test_batch_one_equals_naive_reference_loop(key):
    p, t, steps = EVO1.population_size, EVO1.tournament_size, 40

    def fitness_fn(g):
        # OneMax with ties (so the tie rule matters) and NaN for genomes starting 1,1
        f = np.sum(g, axis=-1).astype(np.float32)
        return np.where((g[..., 0] == 1) & (g[..., 1] == 1), np.nan, f)

    ref_pop, ref_fit = _naive_reference(SPACE, p, t, EVO1.mutate_prob, fitness_fn, key, steps)
    state = EVO1.init(key)
    for n in range(steps):
        genomes, state = EVO1.ask(jax.random.fold_in(key, n), state)
        state = EVO1.tell(genomes, jnp.asarray(fitness_fn(np.asarray(genomes))), state)
    np.testing.assert_array_equal(np.asarray(state.population), ref_pop)
    np.testing.assert_array_equal(np.asarray(state.fitness),
                                  np.where(np.isnan(ref_fit), -np.inf, ref_fit))


def test_evolution_beats_random_search_on_onemax():
    bits, budget = 48, 1200
    space = search.IntVectorSpace((2,) * bits)
    evo = search.RegularizedEvolution(space, population_size=40, tournament_size=8,
                                      batch_size=20)
    rs = search.RandomSearch(space, batch_size=budget)  # the whole budget in one batch
    evo_best, rs_best = [], []
    for seed in range(3):
        k = jax.random.key(seed)
        evo_state, _ = toy.scan_loop(evo, toy.onemax, k, budget // evo.batch_size)
        genomes, rs_state = rs.ask(k, rs.init(k))
        rs_state = rs.tell(genomes, toy.onemax(genomes), rs_state)
        evo_best.append(float(evo_state.best_fitness))
        rs_best.append(float(rs_state.best_fitness))
    # random search: best of 1200 Binomial(48, 1/2) draws is ~36; evolution gets near 48
    assert min(evo_best) > max(rs_best), (evo_best, rs_best)
    assert np.mean(evo_best) >= 42


def test_determinism(key):
    a, _ = toy.run_python_loop(EVO, toy.onemax, key, 10)
    b, _ = toy.run_python_loop(EVO, toy.onemax, key, 10)
    c, _ = toy.run_python_loop(EVO, toy.onemax, jax.random.key(1), 10)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(np.asarray(a.population), np.asarray(c.population))


def test_tell_rejects_wrong_fitness_shape(key):
    state = EVO.init(key)
    genomes, state = EVO.ask(key, state)
    with pytest.raises(ValueError, match="fitness"):
        EVO.tell(genomes, jnp.zeros(3), state)
