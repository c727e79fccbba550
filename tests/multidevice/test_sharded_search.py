"""Sharded evaluation on 8 fake CPU devices, in a subprocess (the device count is fixed at JAX start-up)."""
import textwrap

import pytest

from tests.multidevice.fake_devices import run_on_8_cpu_devices

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from azjax import search, zero
    assert len(jax.devices()) == 8, jax.devices()
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET"),
                          predict_ops=("VECTOR_INNER_PRODUCT",),
                          learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                          setup_size=5, predict_size=1, learn_size=4)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 2, 4, 20, 10)
    space = zero.ProgramSpace(cfg)
    results = {}
    from azjax.zero.backends import native
    names = ("select", "cond") + (("native",) if native.available() else ())
    for strategy in names:
        for n in (1, 8):
            ev = zero.ProgramEvaluator(cfg, tasks, backend=strategy, num_devices=n)
            strat = search.RegularizedEvolution(space, population_size=16, tournament_size=4, batch_size=8)
            r = search.run(space, strat, ev, jax.random.key(1), max_evaluations=40)
            results[strategy, n] = r
            assert ev.mesh.size == n
    for strategy in names:
        base = results[strategy, 1]
        for n in (8,):
            other = results[strategy, n]
            np.testing.assert_array_equal(np.asarray(other.state.fitness), np.asarray(base.state.fitness))
            for a, b in zip(jax.tree_util.tree_leaves(other.state.population),
                            jax.tree_util.tree_leaves(base.state.population)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The sharded function really splits the batch over devices.
    ev = zero.ProgramEvaluator(cfg, tasks, backend="select", num_devices=8, fec=None)
    from azjax.zero import random_programs
    progs = random_programs.random_programs(jax.random.key(2), cfg, 16)
    from azjax.zero.search_evaluator import _host_programs
    from azjax.zero.backends.base import KeyRule
    out = ev._full(_host_programs(progs, cfg), *ev._task_arrays, KeyRule.lane_keys(jax.random.key(3), 16, 2),
                   np.ones(16, bool))
    assert len(out.sharding.device_set) == 8, out.sharding
    # Active programs are dealt round-robin: 5 of 16 rows active -> devices 0-4 get one each.
    ev.counters["evaluated_here"] = 0
    ev._run(ev._full, ev._task_arrays, progs, jax.random.key(3), np.arange(16) < 5)
    assert ev.counters["evaluated_here"] == 5
    assert sorted(search.sharding.interleave(16, 8)) == list(range(16))
    assert list(search.sharding.interleave(16, 8)[:3]) == [0, 2, 4]
    print("OK")
""")


@pytest.mark.slow  # two fresh processes compile the search twice (~2 min on 2 cores): CI's second step
def test_search_is_identical_on_1_and_8_devices():
    run_on_8_cpu_devices(SCRIPT)
