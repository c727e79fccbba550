"""RegularizedEvolution and RandomSearch: ask/tell semantics, statistics, jit/scan behaviour."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search
from tests.search import toy

SPACE, EVO = toy.SPACE, toy.EVO  # P=8, T=3, B=4 over 16 bits
# Module-level strategies: jit caches are per instance, so sharing them saves compiles.
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


# Tournaments are tested on P=5 members whose genome is their slot id in binary.
TOUR_SPACE = search.IntVectorSpace((2,) * 3)
TOUR_EVO = search.RegularizedEvolution(TOUR_SPACE, population_size=5, tournament_size=3,
                                       mutate_prob=0.0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _parents(strategy, state, key, n):
    """Parent slots of n independent tournaments (mutate_prob=0: a child is its parent's copy)."""
    children = jax.vmap(lambda k: strategy._child(k, state))(jax.random.split(key, n))
    return children @ (1 << jnp.arange(children.shape[1], dtype=jnp.int32))


def _slot_genomes(p):
    return jnp.asarray((np.arange(p)[:, None] >> np.arange(3)) & 1, jnp.int32)


def test_tournament_distribution_matches_with_replacement_formula(key):
    p, t, n = TOUR_EVO.population_size, TOUR_EVO.tournament_size, 20000
    fitness = np.array([2.0, 0.0, 4.0, 1.0, 3.0], np.float32)  # distinct ranks, shuffled
    state = TOUR_EVO.init(key).replace(
        population=_slot_genomes(p), fitness=jnp.asarray(fitness),
        birth=jnp.arange(p, dtype=jnp.int32), count=jnp.asarray(p, jnp.int32))
    counts = np.bincount(np.asarray(_parents(TOUR_EVO, state, key, n)), minlength=p)
    rank = np.argsort(np.argsort(fitness)) + 1  # 1 = worst, p = best
    expected = (rank / p) ** t - ((rank - 1) / p) ** t  # max of t uniform draws w/ replacement
    sigma = np.sqrt(n * expected * (1 - expected))
    assert (np.abs(counts - n * expected) < 5 * sigma + 1).all(), (counts, n * expected)
    # the worst member can only win when all t draws hit it
    assert abs(counts[1] / n - (1 / p) ** t) < 0.005


def test_nan_fitness_is_never_selected_over_finite(key):
    p, t, n = TOUR_EVO.population_size, TOUR_EVO.tournament_size, 20000
    state = TOUR_EVO.init(key)
    genomes = _slot_genomes(p)
    for i, f in enumerate([np.nan, -1.0, np.nan, np.nan, np.nan]):
        state = TOUR_EVO.tell(genomes[i:i + 1], jnp.asarray([f], jnp.float32), state)
    assert float(state.best_fitness) == -1.0
    np.testing.assert_array_equal(np.asarray(state.best_genome), np.asarray(genomes[1]))
    parents = np.asarray(_parents(TOUR_EVO, state, key, n))
    # slot 1 wins unless all draws are NaN slots: 1 - (4/5)^3 (NaN-as-max would give (1/5)^3)
    assert abs((parents == 1).mean() - (1 - (4 / 5) ** t)) < 0.02
    # random search keeps the finite best too
    g4 = jnp.zeros((4, 16), jnp.int32).at[1, 0].set(1)
    rs_state = RANDOM.tell(g4, jnp.asarray([jnp.nan, 0.5, jnp.nan, jnp.nan]), RANDOM.init(key))
    assert float(rs_state.best_fitness) == 0.5
    np.testing.assert_array_equal(np.asarray(rs_state.best_genome), np.asarray(g4[1]))
    rs_state = RANDOM.tell(g4, jnp.full(4, jnp.nan), rs_state)
    assert float(rs_state.best_fitness) == 0.5


def _naive_reference(space, p, t, mutate_prob, fitness_fn, key, steps):
    """The reference loop (docs/automl_zero.md), one individual at a time, written plainly in Python."""
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
