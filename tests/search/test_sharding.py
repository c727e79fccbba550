"""search.sharding in one process (several devices: tests/multidevice)."""
import jax
import jax.numpy as jnp
import numpy as np

from azjax.search import sharding


def test_shard_population_fn_replicated_or_sharded_outputs():
    mesh = sharding.make_mesh(None)

    def fn(population, shared):
        return population * 2 + shared

    x = jnp.arange(4 * mesh.size, dtype=jnp.float32)
    for replicate in (False, True):
        out = sharding.shard_population_fn(fn, mesh, (True, False),
                                           replicate_outputs=replicate)(x, jnp.float32(1))
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x) * 2 + 1)
        expected = sharding.replicated(mesh) if replicate else sharding.population_sharding(mesh)
        assert out.sharding.is_equivalent_to(expected, out.ndim)
    assert sharding.round_up(5, mesh) % mesh.size == 0 and jax.local_device_count() == mesh.size
