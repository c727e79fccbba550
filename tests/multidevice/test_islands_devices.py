"""Island search on 1, 2 and 8 fake CPU devices, in a subprocess (the device count is fixed at JAX
start-up): identical populations, fitness and migrations; the evaluator's outputs are sharded over
the whole mesh."""
import textwrap

import pytest

from tests.multidevice.fake_devices import run_on_8_cpu_devices

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from azjax import search, zero
    from azjax.search import sharding
    assert len(jax.devices()) == 8, jax.devices()
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET"),
                          predict_ops=("VECTOR_INNER_PRODUCT",),
                          learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT",
                                     "VECTOR_SUM"),
                          setup_size=5, predict_size=1, learn_size=4)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 4, 20, 10)
    space = zero.ProgramSpace(cfg)
    # 4 islands x 4 children = one evaluator batch of 16 programs; 64 evaluations = 16 per island,
    # so the islands migrate after 8 and 16.
    strat = search.IslandEvolution(space, num_islands=4, population_size=8, tournament_size=3,
                                   batch_size=4, migrate_every=8, num_migrants=3,
                                   migration_topology="random")
    results = {}
    for n in (1, 2, 8):
        # "cond" pads every batch to K*B programs: one compile per device count.
        ev = zero.ProgramEvaluator(cfg, tasks, num_devices=n, fec=None, backend="cond")
        assert ev.mesh.size == n
        results[n] = search.run(space, strat, ev, jax.random.key(1), max_evaluations=64)
        if n > 1:
            # The evaluator's sharded output spans the whole mesh, split on the population axis
            # (K*B members of the final populations: the batch shape the search compiled).
            progs = jax.tree_util.tree_map(lambda x: x[:strat.batch_size],
                                           results[n].state.population)
            from azjax.zero.backends.base import KeyRule
            from azjax.zero.search_evaluator import _host_programs
            out = ev._full(_host_programs(progs, cfg), *ev._task_arrays,
                           KeyRule.lane_keys(jax.random.key(3), strat.batch_size, tasks.num_tasks),
                           np.ones(strat.batch_size, bool))
            assert len(out.sharding.device_set) == n, (n, out.sharding)
            want = sharding.population_sharding(ev.mesh)
            assert out.sharding.is_equivalent_to(want, out.ndim), out.sharding
            shards = out.addressable_shards
            assert sorted(s.data.shape[0] for s in shards) == [strat.batch_size // n] * n
    base = results[1]
    assert int(base.state.migrations) == 2, base.state.migrations
    assert base.evaluations == 64 and np.isfinite(base.best_fitness)
    for n in (2, 8):
        other = results[n]
        assert int(other.state.migrations) == 2
        np.testing.assert_array_equal(np.asarray(other.state.fitness),
                                      np.asarray(base.state.fitness))
        np.testing.assert_array_equal(np.asarray(other.state.islands.birth),
                                      np.asarray(base.state.islands.birth))
        for a, b in zip(jax.tree_util.tree_leaves(other.state.population),
                        jax.tree_util.tree_leaves(base.state.population)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert other.best_fitness == base.best_fitness
    print("OK")
""")


@pytest.mark.slow
def test_island_search_is_identical_on_1_2_and_8_devices():
    run_on_8_cpu_devices(SCRIPT)
