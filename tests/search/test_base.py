"""The strategy base class: every constructor argument is a checkpointed hyperparameter, repr
and hparams come from one declaration, and a resume with a changed hyperparameter is refused."""
import inspect

import jax
import pytest

from azjax import search
from azjax.search.controller import Controller

SPACE = search.IntVectorSpace((3, 2, 4))

# Per strategy: the arguments of a valid instance and, per argument, another valid value.
CASES = {
    search.RegularizedEvolution: (
        dict(population_size=6, tournament_size=2, mutate_prob=0.9, batch_size=2),
        dict(population_size=7, tournament_size=3, mutate_prob=0.5, batch_size=3)),
    search.IslandEvolution: (
        dict(num_islands=2, population_size=6, tournament_size=2, mutate_prob=0.9,
             batch_size=2, migrate_every=10, num_migrants=2, migration_topology="ring"),
        dict(num_islands=3, population_size=7, tournament_size=3, mutate_prob=0.5,
             batch_size=3, migrate_every=11, num_migrants=3, migration_topology="random")),
    search.RandomSearch: (dict(batch_size=2), dict(batch_size=3)),
    Controller: (
        dict(algorithm="ppo", batch_size=2, learning_rate=1e-3, hidden=4, embed=3,
             entropy_weight=1e-5, baseline_decay=0.9, ppo_epochs=2, ppo_clip=0.2,
             init_scale=0.1, non_finite_reward=0.0),
        dict(algorithm="reinforce", batch_size=3, learning_rate=2e-3, hidden=5, embed=4,
             entropy_weight=1e-4, baseline_decay=0.8, ppo_epochs=3, ppo_clip=0.3,
             init_scale=0.2, non_finite_reward=-1.0)),
}


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_every_constructor_argument_is_a_checkpointed_hyperparameter(cls):
    args, other = CASES[cls]
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "space"}
    assert params == set(args) == set(cls.hparam_names)
    strategy = cls(SPACE, **args)
    assert isinstance(strategy, search.Strategy)
    assert strategy.hparams == {"strategy": cls.__name__, **args}
    assert repr(strategy).startswith(f"{cls.__name__}(space={SPACE!r}, ")
    for name, value in other.items():
        changed = cls(SPACE, **dict(args, **{name: value}))
        assert changed.hparams[name] == value != strategy.hparams[name]
        assert f"{name}={value!r}" in repr(changed)


def test_resume_with_changed_non_finite_reward_is_refused(tmp_path):
    args = CASES[Controller][0]
    key = jax.random.key(0)

    def session(**overrides):
        ctrl = Controller(SPACE, **dict(args, **overrides))
        # A stop rule that fires before the first iteration: only `init` compiles, and the run
        # still writes its iteration-0 checkpoint.
        return search.run(SPACE, ctrl, lambda k, g: g.sum(-1), key, max_seconds=1e-9,
                          workdir=tmp_path)

    assert session().checkpoint is not None
    assert session().resumed_from == 0
    with pytest.raises(search.CheckpointError, match="non_finite_reward"):
        session(non_finite_reward=-1.0)


def test_strategies_without_the_base_class_still_run():
    """The loop takes any object with the interface (the base class is a convenience)."""

    class Counter:
        batch_size = 2

        def init(self, key):
            return search.RandomSearch(SPACE, 2).init(key)

        def ask(self, key, state):
            return jax.numpy.zeros((2, 3), jax.numpy.int32), state

        def tell(self, genomes, fitness, state):
            return state.replace(count=state.count + 2, best_fitness=fitness.max())

    result = search.run(SPACE, Counter(), lambda k, g: g.sum(-1).astype("float32"),
                        jax.random.key(0), max_evaluations=4)
    assert result.evaluations == 4 and result.best_fitness == 0.0


def test_subclass_must_implement_the_private_steps():
    class Incomplete(search.Strategy):
        def _init(self, key):
            return None

    with pytest.raises(TypeError, match="_ask"):
        Incomplete()
