"""A fixed-seed search follows the recorded trajectory exactly, with every strategy.

``data/trajectory.npz`` was recorded (``python -m tests.search.trajectory``) by the strategies as
they were before they shared a base class; refactors of the strategies or of ``search.run`` must
reproduce every asked genome, every fitness and the final state.
"""
import numpy as np
import pytest

from tests.search import trajectory

# The PPO controller compiles for tens of seconds on CPU; REINFORCE covers the controller's
# sampling and update path in the default run.
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "ppo" else n
         for n in trajectory.strategies()]


@pytest.fixture(scope="module")
def saved():
    with np.load(trajectory.FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", NAMES)
def test_fixed_seed_trajectory_is_bitwise_unchanged(name, saved):
    strategy = trajectory.strategies()[name]
    fresh = trajectory.record_one(strategy)
    expected = {k[len(name) + 1:]: v for k, v in saved.items() if k.startswith(name + "/")}
    assert expected, f"no recording of {name} in {trajectory.FIXTURE}"
    assert sorted(fresh) == sorted(expected)
    for k, v in expected.items():
        assert fresh[k].dtype == v.dtype and fresh[k].shape == v.shape, k
        np.testing.assert_array_equal(fresh[k], v, err_msg=f"{name}/{k}")
