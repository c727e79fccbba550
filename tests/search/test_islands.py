"""IslandEvolution: migration bookkeeping (tagged genomes), K=1 == RegularizedEvolution,
determinism, lax.scan == search.run, checkpoint/resume, argument checks."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search
from tests.search import toy

# Genomes tagged (home island, serial); fitness 100 * island + serial travels with them.
TAG_SPACE = search.IntVectorSpace((64, 64))
K, P, B, M, MIGRANTS = 3, 6, 3, 6, 2
RING = search.IslandEvolution(TAG_SPACE, num_islands=K, population_size=P, tournament_size=2,
                              batch_size=B, migrate_every=M, num_migrants=MIGRANTS)
RANDOM = search.IslandEvolution(TAG_SPACE, num_islands=K, population_size=P, tournament_size=2,
                                batch_size=B, migrate_every=M, num_migrants=MIGRANTS,
                                migration_topology="random")
# OneMax islands for trajectories: 3 islands of 8, 4 children each, migration every 8 evaluations.
ISLANDS = search.IslandEvolution(toy.SPACE, num_islands=3, population_size=8, tournament_size=3,
                                 batch_size=4, migrate_every=8, num_migrants=3)
# K=1 twin of toy.EVO (P=8, T=3, B=4, mutate_prob=0.9).
SINGLE = search.IslandEvolution(toy.SPACE, num_islands=1, population_size=8, tournament_size=3,
                                batch_size=4, migrate_every=2, num_migrants=4)


def comparable(state):
    """The state with its typed key replaced by the key data (chex compares plain arrays)."""
    return state.replace(migration_key=jax.random.key_data(state.migration_key))


def tagged_tell(strategy, state, step):
    """Tells every island B genomes (island, serial = step*B + j), fitness 100*island + serial."""
    island = np.repeat(np.arange(K), B)
    serial = np.tile(step * B + np.arange(B), K)
    genomes = jnp.asarray(np.stack([island, serial], axis=1), jnp.int32)
    return strategy.tell(genomes, jnp.asarray(100.0 * island + serial, jnp.float32), state)


@pytest.mark.parametrize("strategy", [RING, RANDOM], ids=["ring", "random"])
def test_migration_moves_exactly_num_migrants(strategy, key):
    state = strategy.init(key)
    state = tagged_tell(strategy, state, 0)  # 3 evaluations per island: not yet
    assert int(state.migrations) == 0
    state = tagged_tell(strategy, state, 1)  # 6 = migrate_every and the populations are full
    assert int(state.migrations) == 1
    pop = np.asarray(state.islands.population)  # [K, P, 2]
    fit = np.asarray(state.islands.fitness)
    birth = np.asarray(state.islands.birth)
    # Fitness and birth travel with the genome (no re-evaluation); before migration birth == serial.
    np.testing.assert_array_equal(fit, 100.0 * pop[..., 0] + pop[..., 1])
    np.testing.assert_array_equal(birth, pop[..., 1])
    for i in range(K):
        home = pop[i, :, 0] == i
        assert home.sum() == P - MIGRANTS, (i, pop[i])
        # Members that stayed are untouched in their slots.
        np.testing.assert_array_equal(pop[i, home, 1], np.flatnonzero(home))
        immigrants = {tuple(g) for g in pop[i, ~home]}
        assert len(immigrants) == MIGRANTS, "immigrants are distinct (sent without replacement)"
        if strategy is RING:
            assert all(src == (i - 1) % K for src, _ in immigrants), pop[i]
    assert int(state.islands.count[0]) == 2 * B and int(state.count) == 2 * K * B
    state = tagged_tell(strategy, state, 2)  # 9: no multiple of 6 crossed
    assert int(state.migrations) == 1
    state = tagged_tell(strategy, state, 3)  # 12: the second migration
    assert int(state.migrations) == 2
    assert strategy.metrics(state)["migrations"] == 2
    # The best ever over all islands: island 2's last serial.
    assert float(state.best_fitness) == 200.0 + 4 * B - 1
    np.testing.assert_array_equal(np.asarray(state.best_genome), [2, 4 * B - 1])
    chex.assert_shape(state.population, (K * P, 2))
    chex.assert_shape(state.fitness, (K * P,))


def test_single_island_is_regularized_evolution(key):
    """K=1 follows RegularizedEvolution's trajectory bit for bit (and never migrates)."""
    iterations = 6
    single, best_single = toy.run_python_loop(SINGLE, toy.onemax, key, iterations)
    evo, best_evo = toy.run_python_loop(toy.EVO, toy.onemax, key, iterations)
    chex.assert_trees_all_equal(jax.tree_util.tree_map(lambda x: x[0], single.islands), evo)
    chex.assert_trees_all_equal(best_single, best_evo)
    chex.assert_trees_all_equal((single.best_genome, single.count), (evo.best_genome, evo.count))
    assert int(single.migrations) == 0


@functools.partial(jax.jit, static_argnums=(0, 2))
def scan_run(strategy, key, iterations):
    """search.run's loop (its key schedule, OneMax fitness) as one lax.scan under one jit."""
    init_key, run_key = jax.random.split(key)

    def step(state, i):
        ask_key, _ = jax.random.split(jax.random.fold_in(run_key, i))
        genomes, state = strategy.ask(ask_key, state)
        return strategy.tell(genomes, toy.onemax(genomes), state), state.best_fitness

    return jax.lax.scan(step, strategy.init(init_key), jnp.arange(iterations))


def test_scan_equals_run_and_resume_equals_uninterrupted(key, tmp_path):
    """lax.scan == search.run; same key, same run; checkpoint + resume == one uninterrupted run."""
    kwargs = dict(checkpoint_every_seconds=0)
    full = search.run(toy.SPACE, ISLANDS, toy.onemax_evaluator, key, max_evaluations=96,
                      workdir=tmp_path / "full", **kwargs)
    assert int(full.state.migrations) == 4  # 32 evaluations per island: after 8, 16, 24, 32
    assert int(full.state.count) == 96 and full.state.population.shape == (24, 16)
    scanned, best = scan_run(ISLANDS, key, 8)
    chex.assert_trees_all_equal(comparable(scanned), comparable(full.state))
    chex.assert_trees_all_equal(comparable(scan_run(ISLANDS, key, 8)[0]), comparable(scanned))
    other, _ = scan_run(ISLANDS, jax.random.key(1), 8)
    assert not np.array_equal(np.asarray(other.population), np.asarray(scanned.population))
    # best over islands is the best of every island's best-ever, and never decreases
    assert float(scanned.best_fitness) == float(jnp.max(scanned.islands.best_fitness))
    assert (np.diff(np.asarray(best)) >= 0).all()

    workdir = tmp_path / "resumed"
    first = search.run(toy.SPACE, ISLANDS, toy.onemax_evaluator, key, max_evaluations=36,
                       workdir=workdir, **kwargs)
    assert int(first.state.migrations) == 1
    resumed = search.run(toy.SPACE, ISLANDS, toy.onemax_evaluator, key, max_evaluations=96,
                         workdir=workdir, **kwargs)
    assert resumed.resumed_from == 3
    chex.assert_trees_all_equal(comparable(resumed.state), comparable(full.state))  # bitwise
    assert resumed.counters == full.counters
    # A checkpoint of island evolution is not accepted by a differently configured strategy.
    other = search.IslandEvolution(toy.SPACE, num_islands=3, population_size=8, tournament_size=3,
                                   batch_size=4, migrate_every=8, num_migrants=2)
    with pytest.raises(search.CheckpointError, match="num_migrants"):
        search.run(toy.SPACE, other, toy.onemax_evaluator, key, max_evaluations=120,
                   workdir=workdir, **kwargs)


def test_bad_arguments_name_the_field():
    class Untraceable:
        """A space that fails if anything ever samples or mutates it."""

        def sample(self, key):
            raise AssertionError("traced")

        mutate = validate = sample

    space = Untraceable()
    ok = dict(num_islands=2, population_size=4, tournament_size=2, batch_size=2, migrate_every=4,
              num_migrants=2)
    cases = [
        (dict(num_islands=0), "num_islands"),
        (dict(num_islands=2.0), "num_islands"),
        (dict(num_migrants=5), "num_migrants"),
        (dict(num_migrants=-1), "num_migrants"),
        (dict(migrate_every=0), "migrate_every"),
        (dict(migration_topology="star"), "migration_topology"),
        (dict(tournament_size=5), "tournament_size"),
        (dict(batch_size=5), "batch_size"),
        (dict(population_size=0), "population_size"),
    ]
    for change, field in cases:
        with pytest.raises(ValueError, match=field):
            search.IslandEvolution(space, **{**ok, **change})
    with pytest.raises(ValueError, match="space"):
        search.IslandEvolution(object(), **ok)
    s = search.IslandEvolution(space, **{**ok, "num_migrants": None})
    assert s.num_migrants == 2 and s.batch_size == 4  # default: half the population, the paper's
    with pytest.raises(ValueError, match="fitness"):
        ISLANDS.tell(jnp.zeros((12, 16), jnp.int32), jnp.zeros(4), ISLANDS.init(jax.random.key(0)))


def test_launcher_config_selects_islands_and_checks_fields():
    """experiments/automl_zero: num_islands=1 (the default) keeps RegularizedEvolution; > 1 builds
    islands from the config; bad island fields fail in validate_config, naming the field."""
    from experiments.automl_zero import search as launcher
    from experiments.automl_zero.configs import default

    c = default.get_config()
    space = launcher.make_space(c)
    assert type(launcher.make_strategy(c, space)) is search.RegularizedEvolution
    c.num_islands, c.migrate_every, c.migration_topology = 4, 500, "random"
    s = launcher.make_strategy(c, space)
    assert isinstance(s, search.IslandEvolution)
    assert (s.num_islands, s.population_size, s.batch_size, s.num_migrants) == (4, 1000, 400, 500)
    assert s.hparams["migration_topology"] == "random" and s.migrate_every == 500
    for field, value in (("num_migrants", 2000), ("migrate_every", 0),
                         ("migration_topology", "star"), ("num_islands", 0)):
        bad = default.get_config()
        bad.num_islands = 2
        bad[field] = value
        with pytest.raises(ValueError, match=field):
            launcher.validate_config(bad)


@pytest.mark.parametrize("topology,num_processes", [("ring", 2), ("random", 4)])
def test_process_islands_shards_equal_island_evolution(topology, num_processes, key):
    """ProcessIslands of every process, their emigrants concatenated as the all-gather of a
    multi-process run concatenates them (docs/scaling.md, "Islands per process"), advance exactly
    as IslandEvolution does; gathered, they are its state."""
    from azjax.search import process_islands
    islands = search.IslandEvolution(toy.SPACE, num_islands=4, population_size=8, tournament_size=3,
                                     batch_size=4, migrate_every=8, num_migrants=3,
                                     migration_topology=topology)
    shards = [search.ProcessIslands(islands, p, num_processes) for p in range(num_processes)]
    init_key, run_key = jax.random.split(key)
    whole = islands.init(init_key)
    states = [s.init(init_key) for s in shards]
    for it in range(10):
        ask_key = jax.random.fold_in(run_key, it)
        genomes, whole = islands.ask(ask_key, whole)
        asked = [s.ask(ask_key, st) for s, st in zip(shards, states)]
        got = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *[g for g, _ in asked])
        chex.assert_trees_all_equal(got, genomes)
        fitness = toy.onemax(genomes)
        migrate = shards[0].migration_due(int(whole.count) // islands.num_islands)
        whole = islands.tell(genomes, fitness, whole)
        n = shards[0].batch_size
        states = [s.tell(g, fitness[p * n:(p + 1) * n], st)
                  for p, (s, (g, st)) in enumerate(zip(shards, asked))]
        if migrate:
            emigrants = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x),
                                               *[s.emigrants(st) for s, st in zip(shards, states)])
            states = [s.immigrate(st, emigrants) for s, st in zip(shards, states)]
        assert int(states[0].migrations) == int(whole.migrations)
        full = process_islands.assemble([st.islands for st in states], states[0])
        chex.assert_trees_all_equal(comparable(full), comparable(whole))
    assert int(whole.migrations) == 5  # after 8, 16, ..., 40 evaluations per island


def test_process_islands_checks_the_split():
    with pytest.raises(ValueError, match="divisible"):
        search.ProcessIslands(ISLANDS, 0, 2)  # 3 islands over 2 processes
    with pytest.raises(ValueError, match="process_index"):
        search.ProcessIslands(ISLANDS, 3, 3)
    assert search.ProcessIslands(ISLANDS, 1, 3).hparams == ISLANDS.hparams


def test_process_islands_run_on_one_process_is_search_run(key, tmp_path):
    """process_islands.run with the one process holding every island follows search.run with
    IslandEvolution (state, counters, metrics), and resumes exactly from its own checkpoint shards
    and from a search.run checkpoint."""
    from azjax.search import process_islands
    islands = search.IslandEvolution(toy.SPACE, num_islands=4, population_size=8, tournament_size=3,
                                     batch_size=4, migrate_every=8, num_migrants=3,
                                     migration_topology="random")
    shard = search.ProcessIslands(islands)
    n = 12 * islands.batch_size
    want_hist, got_hist = search.History(), search.History()
    want = search.run(toy.SPACE, islands, toy.onemax_evaluator, key, max_evaluations=n,
                      callbacks=[want_hist], metrics_every=5)
    got = process_islands.run(toy.SPACE, shard, toy.onemax_evaluator, key, max_evaluations=n,
                              callbacks=[got_hist], metrics_every=5)
    chex.assert_trees_all_equal(comparable(got.state), comparable(want.state))
    assert (got.evaluations, got.iterations, got.counters) == (
        want.evaluations, want.iterations, want.counters)
    assert int(want.state.migrations) == 6 and got.best_fitness == want.best_fitness
    timing = ("evals_per_second", "elapsed_seconds")
    for a, b in zip(got_hist.records, want_hist.records, strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == pytest.approx(
            {k: v for k, v in b.items() if k not in timing})
    # Halfway into a workdir, then on to the end: from shards, and from a search.run checkpoint.
    kw = dict(checkpoint_every_seconds=0)
    for first in (process_islands.run, search.run):
        workdir = tmp_path / first.__module__
        strategy = shard if first is process_islands.run else islands
        first(toy.SPACE, strategy, toy.onemax_evaluator, key, max_evaluations=n // 2,
              workdir=workdir, **kw)
        resumed = process_islands.run(toy.SPACE, shard, toy.onemax_evaluator, key,
                                      max_evaluations=n, workdir=workdir, **kw)
        assert resumed.resumed_from == 6
        chex.assert_trees_all_equal(comparable(resumed.state), comparable(want.state))
        assert resumed.counters == want.counters
    assert (tmp_path / process_islands.__name__ / "process_0_of_1").is_dir()


@pytest.mark.parametrize("rule", ["sufficient_fitness", "max_counter"])
def test_process_islands_stop_rules_cut_the_exchange_window(rule, key):
    """The processes meet every `exchange_every` iterations; a stop rule that fires inside a window
    still stops the run after the same iteration as search.run (the later iterations are dropped)."""
    from azjax.search import process_islands
    islands = search.IslandEvolution(toy.SPACE, num_islands=2, population_size=8, tournament_size=3,
                                     batch_size=4, migrate_every=10_000)
    # toy.onemax_evaluator reports 10 train_steps per child, 40 per iteration.
    limit = dict(sufficient_fitness=dict(sufficient_fitness=12.5),
                 max_counter=dict(max_counter=("train_steps", 40 * 13)))[rule]
    want = search.run(toy.SPACE, islands, toy.onemax_evaluator, key, max_evaluations=400,
                      metrics_every=1000, **limit)
    got = process_islands.run(toy.SPACE, search.ProcessIslands(islands), toy.onemax_evaluator, key,
                              max_evaluations=400, metrics_every=1000, exchange_every=5, **limit)
    assert want.stop_reason == got.stop_reason != "max_evaluations"
    assert want.iterations % 5  # the rule fired inside a window
    assert (got.iterations, got.evaluations, got.counters) == (want.iterations, want.evaluations,
                                                                want.counters)
    chex.assert_trees_all_equal(comparable(got.state), comparable(want.state))
    with pytest.raises(ValueError, match="exchange_every"):
        process_islands.run(toy.SPACE, search.ProcessIslands(islands), toy.onemax_evaluator, key,
                            max_evaluations=8, exchange_every=0)
